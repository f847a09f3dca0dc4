"""Drafts are tried without becoming policy changes: `mu validate --golden` and `mu test
--ontology=O` run the golden cases on a throwaway A and write nothing to the store; a failed
golden case is explained (expected, actual, the reasons of the rules that fired)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness import Run, copy_example

from finops_fabric import generators
from finops_fabric.store import Store


def store_fingerprint(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.rglob("*"))
        if p.is_file()
    }


def lowered_threshold_draft(tmp_path: Path) -> Path:
    """Purchases need L3 only above $200k: compliance's 105k-by-L2 case now fails."""
    o = copy_example(tmp_path, "draft")
    p = o / "purchases.ttl"
    p.write_text(p.read_text().replace('"100000"^^xsd:decimal', '"200000"^^xsd:decimal'))
    return o


def test_validate_golden_runs_the_golden_gate_and_stores_nothing(mu: Run, tmp_path: Path) -> None:
    home = tmp_path / "store"
    before = store_fingerprint(home)
    doc = mu.json("validate", f"--ontology={copy_example(tmp_path)}", "--golden")
    dry = doc["dry_run"]
    assert doc["conforms"] and dry["ok"] and dry["store_written"] is False
    assert dry["generator"]["version"] == generators.DEFAULT_VERSION == "3"
    assert dry["enforcer_hash"].startswith("sha256:")
    golden = dry["golden"]
    assert golden["status"] == "PASS" and golden["golden_passed"] == golden["golden_cases"] == 7
    assert golden["derived_rule_checks"] > 0 and golden["derived_decisions_compared"] > 0
    assert store_fingerprint(home) == before
    assert Store(home).receipts() == []


def test_a_failing_draft_is_explained_and_leaves_no_ledger_entry(mu: Run, tmp_path: Path) -> None:
    home = tmp_path / "store"
    before = store_fingerprint(home)
    draft = lowered_threshold_draft(tmp_path)
    code, out, _ = mu("validate", f"--ontology={draft}", "--golden")
    assert code == 1
    assert "golden case transaction_105k_L2_actor FAILED" in out
    assert "  expected REJECT; fired: https://example.com/acme/policy#approval-purchase;" in out
    assert "  actual   APPROVE; fired: none; notified: finance@acme.example" in out
    assert "golden FAIL, 6 of 7 golden cases passed" in out and "nothing written to the store" in out
    doc = mu.json("validate", f"--ontology={draft}", "--golden", code=1)
    (failure,) = doc["dry_run"]["golden"]["failures"]
    assert failure["actual"]["decision"] == "APPROVE" and failure["expected"]["decision"] == "REJECT"
    code, out, _ = mu("test", f"--ontology={draft}", "--golden-suite")
    assert code == 1 and "FAIL transaction_105k_L2_actor: APPROVE" in out and "6 passed, 1 failed" in out
    assert store_fingerprint(home) == before and Store(home).receipts() == []


def test_validate_golden_on_a_non_conforming_draft_runs_no_cases(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    (o / "wires.ttl").write_text((o / "wires.ttl").read_text().replace("fab:appliesTo", "fab:apliesTo"))
    doc = mu.json("validate", f"--ontology={o}", "--golden", code=1)
    assert doc["conforms"] is False and doc["dry_run"]["golden"] is None and doc["dry_run"]["ok"] is False
    code, _, err = mu("test", f"--ontology={o}", "--golden-suite")
    assert code == 1 and "does not conform" in err and "did you mean fab:appliesTo?" in err


def test_test_ontology_runs_one_scenario_or_a_transaction(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    doc = mu.json("test", f"--ontology={o}", "--scenario=wire_1k_to_KP")
    assert doc["passed"] == 1 and doc["dry_run"]["store_written"] is False
    assert mu("test", f"--ontology={o}", f"--enforcer={tmp_path}", "--golden-suite")[0] == 2
    assert mu("test", "--golden-suite")[0] == 2


def test_generate_prints_each_failing_golden_case(mu: Run, tmp_path: Path) -> None:
    draft = lowered_threshold_draft(tmp_path)
    code, out, _ = mu("generate", f"--input={draft}", f"--output={tmp_path / 'A'}")
    assert code == 1 and not (tmp_path / "A").exists()
    assert "golden case transaction_105k_L2_actor FAILED" in out
    assert "  actual   APPROVE; fired: none; notified: finance@acme.example" in out
    assert "REJECTED: golden cases failed" in out
    doc = mu.json("generate", f"--input={draft}", f"--output={tmp_path / 'A'}", code=1)
    assert [f["scenario"] for f in doc["golden_failures"]] == ["transaction_105k_L2_actor"]
