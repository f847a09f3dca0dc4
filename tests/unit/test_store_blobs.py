"""The store's content-addressed objects (snapshots of O, ΔO, A's files) are checked against their
address whenever read: a flipped byte or a deleted blob makes `mu audit-trail` (with and without
--rebuild), `mu drift` and `mu replay` fail, naming the blob."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from harness import EXAMPLE

from finops_fabric.cli import main


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("blobs")
    home = root / "store"
    assert main(["init", f"--home={home}"]) == 0
    receipt = root / "r.json"
    args = [
        "generate",
        f"--home={home}",
        f"--input={EXAMPLE}",
        f"--output={root / 'A'}",
        f"--receipt={receipt}",
    ]
    assert main(args) == 0
    return SimpleNamespace(
        root=root, home=home, a=root / "A", receipt=receipt, doc=json.loads(receipt.read_text())
    )


@pytest.fixture
def store(generated: SimpleNamespace, tmp_path: Path) -> Path:
    home = tmp_path / "store"
    shutil.copytree(generated.home, home)
    return home


def blob_path(home: Path, kind: str, digest: str) -> Path:
    return home / "objects" / kind / digest.removeprefix("sha256:")


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def damaged(generated: SimpleNamespace, store: Path, what: str) -> tuple[str, str]:
    """Damage one object; (its digest, the word the messages use)."""
    if what.startswith("A"):
        _name, digest = sorted(generated.doc["outputs"]["artifacts"].items())[3]
        path = blob_path(store, "blob", digest)
    else:
        digest = generated.doc["inputs"]["delta_hash"]
        path = blob_path(store, "delta", digest)
    if what.endswith("corrupt"):
        flip(path)
        return digest, "corrupt"
    path.unlink()
    return digest, "not in the store"


CASES = ["A-corrupt", "A-missing", "delta-corrupt", "delta-missing"]


@pytest.mark.parametrize("what", CASES)
def test_audit_trail_names_the_blob(generated: SimpleNamespace, store: Path, mu: Any, what: str) -> None:
    digest, word = damaged(generated, store, what)
    for extra in ((), ("--rebuild",)):
        doc = mu.json("audit-trail", f"--home={store}", *extra, code=1)
        gaps = [g for g in doc["gaps"] if digest in g["message"]]
        assert gaps and word in gaps[0]["message"], doc["gaps"]
        assert gaps[0]["seq"] == 1 and "NOT verified" in doc["summary"]


@pytest.mark.parametrize("what", CASES)
def test_replay_and_drift_fail_naming_the_blob(
    generated: SimpleNamespace, store: Path, mu: Any, what: str
) -> None:
    digest, _ = damaged(generated, store, what)
    code, _, err = mu("replay", f"--receipt={generated.receipt}", f"--home={store}")
    assert code == 1 and digest in err and "replay.store_object" in err
    code, _, err = mu("drift", f"--enforcer={generated.a}", f"--home={store}")
    assert code == 1 and digest in err


def test_an_intact_store_replays_and_has_no_drift(generated: SimpleNamespace, store: Path, mu: Any) -> None:
    doc = mu.json("replay", f"--receipt={generated.receipt}", f"--home={store}")
    checks = {c["check"]: c for c in doc["checks"]}
    assert checks["replay.store"]["status"] == "PASS" and "14 files of A" in checks["replay.store"]["detail"]
    assert mu("drift", f"--enforcer={generated.a}", f"--home={store}")[0] == 0
