"""Drift (job 6.1): a fresh regeneration from the latest receipted O equals production, or every
difference is named with its cause."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from harness import EX, Run, changed_example, copy_example

from finops_fabric.canonical import canonical_json, sha256_hex
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


def test_an_a_of_an_older_receipt_is_superseded(mu: Run, prod: Path, tmp_path: Path) -> None:
    o2 = changed_example(tmp_path)
    mu.json("generate", f"--input={o2}", f"--output={tmp_path / 'A2'}")
    out = mu.json("drift", f"--enforcer={prod}", code=1)
    older = json.loads((tmp_path / "R.json").read_text())["receipt_hash"]
    assert out["differences"][0]["cause"] == "superseded" and older in out["differences"][0]["detail"]
    assert {d["cause"] for d in out["differences"]} == {"superseded"}
    assert mu.json("drift", f"--enforcer={tmp_path / 'A2'}")["drift"] is False


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
