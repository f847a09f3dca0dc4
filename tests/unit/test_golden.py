"""The golden gate: compliance's cases on A, and A against the reference interpreter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finops_fabric import generators
from finops_fabric.enforcer import load_enforcer
from finops_fabric.generators.v1 import emit
from finops_fabric.generators.v3 import emit as emit3
from finops_fabric.golden import rule_cases, run_golden_gate, whole_cases
from finops_fabric.pipeline import generate, load_ontology
from finops_fabric.rdf.reader import read_policy
from finops_fabric.store import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "finops_fabric" / "examples" / "acme"
EX = "https://example.com/acme/policy#"


def _build(tmp_path: Path) -> tuple[object, Path]:
    onto = load_ontology(EXAMPLE)
    policy = read_policy(onto.raw.triples)
    files = generators.get("1").build(policy, onto.hash)
    root = tmp_path / "A"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return policy, root


def test_a_correct_enforcer_passes_with_many_derived_checks(tmp_path: Path) -> None:
    policy, root = _build(tmp_path)
    report = run_golden_gate(policy, load_enforcer(root))  # type: ignore[arg-type]
    assert report.ok, report.evidence()
    assert report.passed == 7
    assert report.derived_rule_checks > 500 and report.derived_whole_checks > 500


def test_boundary_cases_sit_on_each_threshold(tmp_path: Path) -> None:
    policy, _ = _build(tmp_path)
    rule = next(r for r in policy.rules if r.iri == EX + "approval-purchase")  # type: ignore[attr-defined]
    amounts = {c.get("amount") for c in rule_cases(policy, rule)}  # type: ignore[arg-type]
    assert {"99999.99", "100000", "100000.01", None} <= amounts
    levels = {c.get("actor_level") for c in rule_cases(policy, rule)}  # type: ignore[arg-type]
    assert {"L1", "L2", "L3", "CFO", "Board", None} <= levels
    whole = whole_cases(policy)  # type: ignore[arg-type]
    assert {c.get("type") for c in whole} >= {"purchase", "wire", "zz_unknown_type", None}


def test_a_generator_defect_is_caught_with_a_counterexample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deliberately wrong generator: approval rules compare with >= instead of > (off by one cent).
    real = emit._approval

    def off_by_one(rule):  # type: ignore[no-untyped-def]
        return [line.replace("amount > THRESHOLD", "amount >= THRESHOLD") for line in real(rule)]

    monkeypatch.setattr(emit, "_approval", off_by_one)
    policy, root = _build(tmp_path)
    report = run_golden_gate(policy, load_enforcer(root))  # type: ignore[arg-type]
    assert not report.ok
    bad = report.disagreements[0]
    assert bad["rule"].startswith(EX + "approval-")
    assert bad["enforcer_fires"] is True and bad["interpreter_fires"] is False
    assert bad["transaction"]["amount"] in {"100000", "50000", "1000000"}


def test_the_pipeline_rejects_a_defective_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert generators.DEFAULT_VERSION == "3"  # the generator `generate` uses below
    real = emit3._sod

    def broken(rule):  # type: ignore[no-untyped-def]
        return [
            line.replace("elif approver == executor:", "elif approver != executor:") for line in real(rule)
        ]

    monkeypatch.setattr(emit3, "_sod", broken)
    store = Store(tmp_path / "store")
    store.init()
    o = tmp_path / "O"
    shutil.copytree(EXAMPLE, o)
    result = generate(o, tmp_path / "A", store, receipt_file=tmp_path / "r.json")
    assert result.status == "rejected" and not (tmp_path / "A").exists()
    receipt = json.loads((tmp_path / "r.json").read_text())
    assert receipt["gates"]["golden"]["status"] == "FAIL"
    assert receipt["reason"].startswith("generator defect")
    assert receipt["gates"]["golden"]["evidence"]["disagreements"]


def test_a_failing_compliance_case_stops_the_line(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.init()
    o = tmp_path / "O"
    shutil.copytree(EXAMPLE, o)
    wires = o / "wires.ttl"
    # compliance says a CFO may approve a risky $30k wire; the policy now demands the Board
    text = wires.read_text().replace("fab:overrideAuthority ex:CFO", "fab:overrideAuthority ex:Board")
    wires.write_text(text)
    result = generate(o, tmp_path / "A", store, receipt_file=tmp_path / "r.json")
    assert result.status == "rejected"
    receipt = json.loads((tmp_path / "r.json").read_text())
    assert receipt["gates"]["golden"]["evidence"]["golden_failed"] == ["wire_30k_high_risk_CFO"]
    assert receipt["reason"].startswith("golden cases failed")


def test_a_failing_compliance_case_is_explained_in_the_rejection_receipt(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.init()
    o = tmp_path / "O"
    shutil.copytree(EXAMPLE, o)
    wires = o / "wires.ttl"
    wires.write_text(
        wires.read_text().replace("fab:overrideAuthority ex:CFO", "fab:overrideAuthority ex:Board")
    )
    generate(o, tmp_path / "A", store, receipt_file=tmp_path / "r.json")
    receipt = json.loads((tmp_path / "r.json").read_text())
    (failure,) = receipt["gates"]["golden"]["evidence"]["failures"]
    assert failure["scenario"] == "wire_30k_high_risk_CFO"
    assert failure["expected"] == {
        "decision": "APPROVE",
        "fired": None,  # the case does not list the rules it expects to fire
        "notified": ["audit@acme.example", "finance@acme.example"],
    }
    assert failure["actual"] == {
        "decision": "REJECT",
        "fired": [EX + "fraud-wire"],
        "notified": ["finance@acme.example"],
    }
    (reason,) = failure["reasons"]
    assert (
        reason["rule"] == EX + "fraud-wire"
        and "override needs Board or above, actor is CFO" in reason["reason"]
    )
    assert failure["problems"][0] == "expected APPROVE, got REJECT"


def test_failure_lines_say_expected_actual_and_why() -> None:
    from finops_fabric.golden import failure_lines

    lines = failure_lines(
        {
            "scenario": "s",
            "expected": {"decision": "REJECT", "fired": ["r1"], "notified": None},
            "actual": {"decision": "APPROVE", "fired": [], "notified": ["a@x"]},
            "reasons": [],
            "problems": [],
        }
    )
    assert lines == [
        "golden case s FAILED",
        "  expected REJECT; fired: r1; notified: (not listed)",
        "  actual   APPROVE; fired: none; notified: a@x",
    ]
