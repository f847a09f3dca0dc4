"""Token management: `mu daemon token create | list | revoke`, and a revoked token locked out of a
daemon that is already running."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from finops_fabric.cli import main
from finops_fabric.daemon import auth
from finops_fabric.daemon.app import create_app
from finops_fabric.store import Store


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "store"
    assert main(["init", f"--home={h}"]) == 0
    return h


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_list_shows_ids_and_roles_never_tokens(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code, out, _ = run(
        capsys, "daemon", "token", "create", "--role=auditor", "--label=ext audit", f"--home={home}", "--json"
    )
    assert code == 0
    token = json.loads(out)["token"]
    code, out, _ = run(capsys, "daemon", "token", "list", f"--home={home}", "--json")
    assert code == 0
    rows = json.loads(out)["tokens"]
    assert [(r["roles"], r["label"]) for r in rows] == [(["auditor"], "ext audit")]
    assert rows[0]["id"] == auth.hash_token(token)[: auth.ID_LENGTH]
    assert token not in out
    code, out, _ = run(capsys, "daemon", "token", "list", f"--home={home}")
    assert code == 0 and rows[0]["id"] in out and "auditor" in out


def test_revoked_token_is_refused_by_a_running_daemon(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keep = auth.create_token(home, ["auditor"], label="keep")
    gone = auth.create_token(home, ["auditor"], label="gone")
    app = create_app(Store.open(str(home)), "test")
    with TestClient(app) as c:
        assert c.get("/metrics", headers={"Authorization": f"Bearer {gone}"}).status_code == 200
        code, out, _ = run(
            capsys,
            "daemon",
            "token",
            "revoke",
            f"--id={auth.hash_token(gone)[:8]}",
            f"--home={home}",
            "--json",
        )
        assert code == 0 and json.loads(out)["revoked"]["label"] == "gone"
        assert c.get("/metrics", headers={"Authorization": f"Bearer {gone}"}).status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Bearer {keep}"}).status_code == 200
    assert [r["label"] for r in auth.list_tokens(home)] == ["keep"]


@pytest.mark.parametrize(
    ("token_id", "code_name"),
    [
        ("", "usage"),
        ("abc", "not a token id"),
        ("zzzzzzzz", "not a token id"),
        ("000000000000", "no token has id"),
    ],
)
def test_revoke_bad_ids_exit_2_and_change_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], token_id: str, code_name: str
) -> None:
    auth.create_token(home, ["operator"])
    before = (home / "tokens.json").read_bytes()
    code, _, err = run(capsys, "daemon", "token", "revoke", f"--id={token_id}", f"--home={home}")
    assert code == 2
    assert code_name in err or (code_name == "usage" and "--id" in err)
    assert (home / "tokens.json").read_bytes() == before


def test_revoke_ambiguous_prefix(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    auth.create_token(home, ["operator"])
    auth.create_token(home, ["auditor"])
    doc = json.loads((home / "tokens.json").read_text())
    first = doc["tokens"][0]["sha256"]
    doc["tokens"][1]["sha256"] = first[:8] + "f" * (len(first) - 8)  # two hashes sharing 8 digits
    (home / "tokens.json").write_text(json.dumps(doc))
    code, _, err = run(capsys, "daemon", "token", "revoke", f"--id={first[:8]}", f"--home={home}")
    assert code == 2 and "matches 2 tokens" in err
    code, _, _ = run(capsys, "daemon", "token", "revoke", f"--id={first[:12]}", f"--home={home}")
    assert code == 0 and len(auth.list_tokens(home)) == 1
