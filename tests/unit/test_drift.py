"""Drift (job 6.1): a fresh regeneration from the latest receipted O equals production, or every
difference is named with its cause."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from harness import EX, Run, changed_example, copy_example

from finops_fabric.canonical import canonical_json, sha256_hex
from finops_fabric.daemon.runtime import Runtime
from finops_fabric.drift import CAUSES, detect_drift
from finops_fabric.store import Store


@pytest.fixture
def prod(mu: Run, tmp_path: Path) -> Path:
    """A generated from the example, receipted in the store; returns a copy that 'runs'."""
    o = copy_example(tmp_path)
    mu.json("generate", f"--input={o}", f"--output={tmp_path / 'A'}", f"--receipt={tmp_path / 'R.json'}")
    shutil.copytree(tmp_path / "A", tmp_path / "A_prod")
    return tmp_path / "A_prod"


def artifact_of(a: Path, rule: str) -> Path:
    manifest = json.loads((a / "manifest.json").read_text())
    return a / next(x["path"] for x in manifest["artifacts"] if x.get("rule") == rule)


def causes(out: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d["cause"], d["artifact"]) for d in out["differences"]]


def test_no_drift_right_after_generate(mu: Run, prod: Path, tmp_path: Path) -> None:
    out = mu.json("drift", f"--enforcer={prod}")
    assert out["drift"] is False and out["differences"] == []
    r = json.loads((tmp_path / "R.json").read_text())
    assert out["receipt_hash"] == r["receipt_hash"]
    assert out["enforcer_hash"] == out["expected_enforcer_hash"] == r["outputs"]["enforcer_hash"]
    code, text, _ = mu("drift", f"--enforcer={prod}")
    assert code == 0 and text.startswith("no drift")


def test_a_one_byte_edit_in_a_rule_module_is_drift_naming_the_rule(mu: Run, prod: Path) -> None:
    mod = artifact_of(prod, EX + "approval-purchase")
    data = bytearray(mod.read_bytes())
    data[-2] ^= 0x01
    mod.write_bytes(bytes(data))
    out = mu.json("drift", f"--enforcer={prod}", code=1)
    rel = mod.relative_to(prod).as_posix()
    assert out["drift"] is True
    assert out["differences"] == [
        {
            "artifact": rel,
            "rule": EX + "approval-purchase",
            "cause": "edited",
            "detail": out["differences"][0]["detail"],
            "expected": sha256_hex((prod.parent / "A" / rel).read_bytes()),
            "actual": sha256_hex(mod.read_bytes()),
        }
    ]
    assert "manifest" in out["differences"][0]["detail"]
    code, text, _ = mu("drift", f"--enforcer={prod}")
    lines = text.strip().splitlines()
    assert code == 1 and lines[0].startswith("DRIFT") and len(lines) == 2
    assert "edited" in lines[1] and rel in lines[1] and "approval-purchase" in lines[1]


def test_an_extra_file_is_drift(mu: Run, prod: Path) -> None:
    (prod / "rules" / "backdoor.py").write_text("ALLOW = True\n")
    out = mu.json("drift", f"--enforcer={prod}", code=1)
    assert causes(out) == [("extra", "rules/backdoor.py")]


def test_a_deleted_file_is_drift(mu: Run, prod: Path) -> None:
    mod = artifact_of(prod, EX + "sanctions")
    mod.unlink()
    out = mu.json("drift", f"--enforcer={prod}", code=1)
    assert out["differences"][0]["cause"] == "missing" and out["differences"][0]["rule"] == EX + "sanctions"
    assert causes(out) == [("missing", mod.relative_to(prod).as_posix())]


def test_an_a_from_another_o_is_not_receipted(mu: Run, prod: Path, tmp_path: Path) -> None:
    mu("init", "--home", tmp_path / "elsewhere")
    o2 = changed_example(tmp_path)
    mu.json("generate", f"--input={o2}", f"--output={tmp_path / 'A_other'}", "--home", tmp_path / "elsewhere")
    out = mu.json("drift", f"--enforcer={tmp_path / 'A_other'}", code=1)
    assert ("enforcer_not_receipted", "manifest.json") in causes(out)
    rule_diffs = [d for d in out["differences"] if d["artifact"] != "manifest.json"]
    assert [(d["cause"], d["rule"]) for d in rule_diffs] == [
        ("enforcer_not_receipted", EX + "approval-wire-large")
    ]


def test_an_a_of_an_older_receipt_is_compared_with_its_own_generation(
    mu: Run, prod: Path, tmp_path: Path
) -> None:
    # A newer generation (a throwaway `mu generate`) does not make the older A drift: it is
    # compared with the receipt that produced it, and the newer A is information.
    o2 = changed_example(tmp_path)
    newer = mu.json(
        "generate", f"--input={o2}", f"--output={tmp_path / 'A2'}", f"--receipt={tmp_path / 'R2.json'}"
    )
    out = mu.json("drift", f"--enforcer={prod}")
    older = json.loads((tmp_path / "R.json").read_text())["receipt_hash"]
    assert out["drift"] is False and out["receipt_hash"] == older
    assert "deployed nowhere" in out["reference"]["why"]
    assert any(
        "a newer A exists that is not deployed" in i and newer["receipt_hash"] in i
        for i in out["information"]
    )
    assert mu.json("drift", f"--enforcer={tmp_path / 'A2'}")["drift"] is False
    # a hand edit of the older A is still drift against its own generation
    mod = artifact_of(prod, EX + "approval-purchase")
    mod.write_text(mod.read_text() + "\n")
    out = mu.json("drift", f"--enforcer={prod}", code=1)
    assert causes(out) == [("edited", mod.relative_to(prod).as_posix())] and out["receipt_hash"] == older


def test_an_a_by_another_generator_is_a_generator_mismatch(mu: Run, prod: Path) -> None:
    manifest = json.loads((prod / "manifest.json").read_text())
    manifest["generator"]["source_hash"] = "sha256:" + "7" * 64
    (prod / "manifest.json").write_bytes(canonical_json(manifest))
    out = mu.json("drift", f"--enforcer={prod}", code=1)
    assert causes(out) == [("generator_mismatch", "manifest.json")]
    assert "sha256:" + "7" * 64 in out["differences"][0]["detail"]


def test_a_manifest_that_is_not_the_generators_is_manifest_edited(mu: Run, prod: Path) -> None:
    manifest = json.loads((prod / "manifest.json").read_text())
    (prod / "manifest.json").write_text(json.dumps(manifest, indent=2))
    out = mu.json("drift", f"--enforcer={prod}", code=1)
    assert causes(out) == [("manifest_edited", "manifest.json")]


def test_an_edit_covered_by_a_rewritten_manifest_is_still_found(mu: Run, prod: Path) -> None:
    mod = artifact_of(prod, EX + "approval-wire")
    rel = mod.relative_to(prod).as_posix()
    mod.write_text(mod.read_text().replace("50000", "5000000"))
    manifest = json.loads((prod / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["path"] == rel:
            a["sha256"] = sha256_hex(mod.read_bytes())
    (prod / "manifest.json").write_bytes(canonical_json(manifest))
    out = mu.json("drift", f"--enforcer={prod}", code=1)
    assert causes(out) == [("manifest_edited", "manifest.json"), ("edited", rel)]


def test_o_changed_without_a_receipt(mu: Run, prod: Path, tmp_path: Path) -> None:
    same = mu.json("drift", f"--enforcer={prod}", f"--ontology={tmp_path / 'O'}")
    assert same["drift"] is False and same["ontology"]["changed"] is False
    o2 = changed_example(tmp_path)
    out = mu.json("drift", f"--enforcer={prod}", f"--ontology={o2}", code=1)
    assert [(d["cause"], d.get("rule")) for d in out["differences"]] == [
        ("ontology_changed_without_receipt", EX + "approval-wire-large")
    ]
    assert "2000000" in out["differences"][0]["detail"]
    assert out["ontology"]["changed"] is True and out["ontology"]["hash"] != out["ontology_hash"]


def test_library_report(prod: Path, tmp_path: Path) -> None:
    (prod / "extra.txt").write_text("x")
    report = detect_drift(prod, Store(tmp_path / "store"))
    assert report.drift and [d.cause for d in report.differences] == ["extra"]
    assert all(d.cause in CAUSES for d in report.differences)


def test_no_generation_receipt_is_exit_2(mu: Run, tmp_path: Path) -> None:
    (tmp_path / "A").mkdir()
    code, _, err = mu("drift", f"--enforcer={tmp_path / 'A'}")
    assert code == 2 and "no generation receipt" in err


def test_not_an_enforcer_is_exit_2(mu: Run, prod: Path, tmp_path: Path) -> None:
    code, _, err = mu("drift", f"--enforcer={tmp_path / 'absent'}")
    assert code == 2 and "absent" in err
    (tmp_path / "empty").mkdir()
    code, _, err = mu("drift", f"--enforcer={tmp_path / 'empty'}")
    assert code == 2 and "not an enforcer" in err


def test_drift_changes_nothing_in_the_store(mu: Run, prod: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    before = store.receipts()
    (prod / "extra.txt").write_text("x")
    mu.json("drift", f"--enforcer={prod}", code=1)
    assert store.receipts() == before


# --- drift is about what an environment runs -------------------------------------------------------


@pytest.fixture
def deployed(mu: Run, prod: Path, tmp_path: Path) -> SimpleNamespace:
    """The example's A deployed to test and production (by the daemon's runtime, as `mu deploy`
    does; compliance approved its O), then a throwaway generation of a changed O nobody deploys."""
    assert mu("keygen", "--out", "alice")[0] == 0
    assert mu("roster", "init", "--member=alice=alice.pub", "--key=alice.key")[0] == 0
    mu.json("approve", f"--ontology={tmp_path / 'O'}", "--key=alice.key")
    store = Store(tmp_path / "store")
    r1 = json.loads((tmp_path / "R.json").read_text())
    for env in ("test", "production"):
        result = Runtime(store, env).deploy((tmp_path / "A").absolute(), r1["receipt_hash"])
        assert result.ok, result.reason
    r2 = mu.json("generate", f"--input={changed_example(tmp_path)}", f"--output={tmp_path / 'Aspace'}")
    return SimpleNamespace(store=store, r1=r1, r2=r2, a=tmp_path / "A")


def test_a_throwaway_generation_is_not_drift_of_what_runs(
    mu: Run, deployed: SimpleNamespace, prod: Path
) -> None:
    out = mu.json("drift", "--env=production")
    assert out["drift"] is False and out["receipt_hash"] == deployed.r1["receipt_hash"]
    assert out["reference"]["envs"] == ["production", "test"] and out["reference"]["deployment_receipt_hash"]
    assert out["enforcer"].startswith("what production runs")
    assert any("no production daemon is running" in i for i in out["information"])
    assert any("a newer A exists that is not deployed" in i for i in out["information"])
    code, text, _ = mu("drift", "--env=production")
    assert code == 0 and text.startswith("no drift") and "note: a newer A exists" in text
    # the running production A, given as a directory, is compared with production's deployment
    out = mu.json("drift", f"--enforcer={prod}")
    assert out["drift"] is False and "production, test runs" in out["reference"]["why"]
    # the throwaway A is deployed nowhere: compared with the generation that produced it
    out = mu.json("drift", f"--enforcer={deployed.a.parent / 'Aspace'}")
    assert out["drift"] is False and out["receipt_hash"] == deployed.r2["receipt_hash"]
    assert not any("not deployed" in i for i in out["information"])


def test_the_newest_a_deployed_somewhere_is_said_so(mu: Run, deployed: SimpleNamespace, prod: Path) -> None:
    result = Runtime(deployed.store, "test").deploy(
        (deployed.a.parent / "Aspace").absolute(), deployed.r2["receipt_hash"]
    )
    assert result.ok
    out = mu.json("drift", "--env=production")
    assert out["drift"] is False and out["reference"]["envs"] == ["production"]
    assert any("runs in test" in i for i in out["information"])
    out = mu.json("drift", "--env=test")
    assert (
        out["drift"] is False
        and out["receipt_hash"] == deployed.r2["receipt_hash"]
        and not out["information"][1:]
    )


def test_env_and_an_enforcer_of_another_generation_is_drift(mu: Run, deployed: SimpleNamespace) -> None:
    out = mu.json("drift", "--env=production", f"--enforcer={deployed.a.parent / 'Aspace'}", code=1)
    assert out["receipt_hash"] == deployed.r1["receipt_hash"]
    assert ("other_generation", "manifest.json") in causes(out)
    assert deployed.r2["receipt_hash"] in out["differences"][0]["detail"]


def test_a_damaged_copy_of_what_runs_is_drift(mu: Run, deployed: SimpleNamespace) -> None:
    listing = deployed.r1["outputs"]["artifacts"]
    rel = next(p for p in listing if p.startswith("rules/"))
    blob = deployed.store.objects_dir / "blob" / listing[rel].removeprefix("sha256:")
    blob.write_bytes(blob.read_bytes() + b"# edited\n")
    out = mu.json("drift", "--env=test", code=1)
    assert causes(out) == [("edited", rel)] and "boots from" in out["differences"][0]["detail"]
    blob.unlink()
    out = mu.json("drift", "--env=test", code=1)
    assert causes(out) == [("missing", rel)]


def test_a_daemon_serving_another_a_than_its_receipt_is_drift(deployed: SimpleNamespace) -> None:
    other = "sha256:" + "5" * 64
    report = detect_drift(None, deployed.store, env="production", served_hash=other)
    assert [d.cause for d in report.differences] == ["not_serving"] and other in report.differences[0].detail
    same = detect_drift(
        None, deployed.store, env="production", served_hash=deployed.r1["outputs"]["enforcer_hash"]
    )
    assert not same.drift


def test_env_never_deployed_or_bad_is_exit_2(mu: Run, deployed: SimpleNamespace) -> None:
    code, _, err = mu("drift", "--env=staging")
    assert code == 2 and "nothing has been deployed to staging" in err and "production, test" in err
    code, _, err = mu("drift")
    assert code == 2 and "--env" in err
