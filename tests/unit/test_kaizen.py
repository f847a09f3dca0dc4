"""mu kaizen: a newer generator changes A's bytes, never its decisions; one that does is refused."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from harness import EX, copy_example

from finops_fabric import generators
from finops_fabric.generators.v2 import emit as emit2
from finops_fabric.golden import boundary_cases, whole_cases
from finops_fabric.kaizen import DEFAULT_SEED, kaizen, random_cases
from finops_fabric.pipeline import load_ontology
from finops_fabric.rdf.reader import read_policy
from finops_fabric.receipts import verify_receipt
from finops_fabric.store import Store


def off_by_one_cent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deliberately defective v2: every approval threshold one cent too high."""
    real = emit2._approval

    def emit(rule):  # type: ignore[no-untyped-def]
        return [line.replace("THRESHOLD = ", "THRESHOLD = Decimal('0.01') + ") for line in real(rule)]

    monkeypatch.setattr(emit2, "_approval", emit)


def _store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store")
    store.init()
    return store


def test_v1_to_v2_is_a_kaizen_on_the_example(mu: Any, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    out = mu.json("kaizen", f"--ontology={o}", "--from-generator=1", "--to-generator=2", "--receipt=k.json")
    assert out["behaviour_equivalent"] is True and out["accepted"] is True, out
    assert out["from"] == "1" and out["to"] == "2"
    assert out["counterexamples"] == [] and out["interpreter_disagreements"] == []
    by = out["cases_by_category"]
    assert by["golden"] == 7 and by["complete"] > 100 and by["random"] > 1900
    assert by["boundary"] == by["rule_edges"] == 0  # (the sampled set is for an O the analysis cannot cut)
    assert out["cases_compared"] == sum(by.values())
    case_set = out["case_set"]
    assert case_set["kind"] == "complete" and case_set["languages"] == ["1.0"]
    assert case_set["cases"] >= by["complete"] and case_set["type_atoms"] == 4  # purchase, wire, other, none
    assert case_set["parts"]["plane"] > 0 and case_set["combinations"]["rules"] > 0
    assert out["from_enforcer_hash"] != out["to_enforcer_hash"]  # the bytes changed
    assert out["artifacts"]["differing"] > 9  # every rule module and the runtime

    receipt = json.loads((tmp_path / "k.json").read_text())
    assert receipt["receipt_hash"] == out["receipt_hash"]
    verify_receipt(receipt, Store(tmp_path / "store").operator_public_key())
    assert receipt["kind"] == "kaizen"
    assert receipt["inputs"]["ontology_hash"] == mu("hash", o)[1].strip()
    assert receipt["inputs"]["from_generator"] == generators.get("1").describe()
    assert receipt["inputs"]["to_generator"] == generators.get("2").describe()
    assert receipt["ontology_unchanged"] is True and receipt["behaviour_equivalent"] is True
    assert receipt["outputs"]["from_enforcer_hash"] == out["from_enforcer_hash"]
    assert receipt["outputs"]["to_enforcer_hash"] == out["to_enforcer_hash"]
    assert receipt["cases_compared"]["total"] == out["cases_compared"]
    assert receipt["case_set"] == case_set
    assert receipt["gates"]["kaizen"]["evidence"]["case_set"] == "complete"
    assert receipt["random"]["seed"] == DEFAULT_SEED and receipt["random"]["count"] == 2000
    assert {g: receipt["gates"][g]["status"] for g in ("ontology", "invariant", "determinism", "golden")} == (
        dict.fromkeys(("ontology", "invariant", "determinism", "golden"), "PASS")
    )

    # the receipt sits in the ledger after a generation; the audit trail still verifies
    mu.json("generate", f"--input={o}", "--output=A")
    again = mu.json("kaizen", f"--ontology={o}", "--from-generator=v1", "--to-generator=2", "--random=10")
    assert again["cases_by_category"]["random"] == 10
    trail = mu.json("audit-trail")
    assert trail["verified"] is True and trail["receipts"] == 3 and not trail["gaps"], trail
    ledger = Store(tmp_path / "store").receipts()
    assert [r["kind"] for r in ledger] == ["kaizen", "generation", "kaizen"]
    assert ledger[1]["previous_receipt_hash"] == ledger[0]["receipt_hash"]
    assert ledger[2]["previous_receipt_hash"] == ledger[1]["receipt_hash"]
    # a kaizen does not change what replay and drift regard as the receipted A
    assert mu.json("drift", "--enforcer=A")["drift"] is False


def test_a_generator_that_changes_behaviour_is_refused(
    mu: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off_by_one_cent(monkeypatch)
    o = copy_example(tmp_path)
    out = mu.json("kaizen", f"--ontology={o}", "--from-generator=1", "--to-generator=2", code=1)
    assert out["behaviour_equivalent"] is False and out["accepted"] is False
    assert out["verdict"] == "behaviour_changed"
    assert 0 < len(out["counterexamples"]) <= 20 and out["counterexamples_total"] >= len(
        out["counterexamples"]
    )
    ce = out["counterexamples"][0]
    assert set(ce) == {"category", "transaction", "old_decision", "new_decision"}
    assert ce["old_decision"] != ce["new_decision"]
    amounts = {c["transaction"].get("amount") for c in out["counterexamples"] if c["category"] == "complete"}
    assert amounts & {"100000.01", "50000.01", "1000000.01"}, amounts
    fired_old = {f["rule"] for f in ce["old_decision"]["fired"]}
    fired_new = {f["rule"] for f in ce["new_decision"]["fired"]}
    assert {r for r in fired_old ^ fired_new} <= {
        EX + "approval-purchase",
        EX + "approval-wire",
        EX + "approval-wire-large",
    }
    assert out["interpreter_disagreements"], "the new A disagrees with the reference interpreter too"
    # the receipt is written all the same, and says so
    store = Store(tmp_path / "store")
    (receipt,) = store.receipts("kaizen")
    assert receipt["receipt_hash"] == out["receipt_hash"]
    assert receipt["behaviour_equivalent"] is False and receipt["gates"]["kaizen"]["status"] == "FAIL"
    assert receipt["counterexamples_total"] == out["counterexamples_total"]
    assert mu.json("audit-trail")["verified"] is True


def test_bad_invocations_exit_2(mu: Any, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    code, _, err = mu("kaizen", f"--ontology={o}", "--from-generator=1", "--to-generator=99")
    assert code == 2 and "unknown generator version" in err
    code, _, err = mu("kaizen", f"--ontology={o}", "--from-generator=2", "--to-generator=2")
    assert code == 2 and "both v2" in err
    code, _, _ = mu("kaizen", f"--ontology={o}", "--from-generator=1", "--to-generator=2", "--random=-1")
    assert code == 2
    code, _, _ = mu("kaizen", f"--ontology={tmp_path / 'nope'}", "--from-generator=1", "--to-generator=2")
    assert code == 2
    assert Store(tmp_path / "store").receipts() == []  # nothing was compared: no receipt


def test_an_ontology_that_fails_its_gates_is_not_compared(tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    wires = o / "wires.ttl"
    wires.write_text(wires.read_text().replace("fab:requiredAuthority ex:CFO .", "."))
    store = _store(tmp_path)
    from finops_fabric.errors import CheckFailed

    with pytest.raises(CheckFailed) as err:
        kaizen(o, "1", "2", store, count=0)
    assert err.value.code == "kaizen.ontology_rejected"
    assert store.receipts() == []


def test_the_boundary_comparison_is_exhaustive(tmp_path: Path) -> None:
    onto = load_ontology(copy_example(tmp_path))
    policy = read_policy(onto.raw.triples)
    cases = boundary_cases(policy)
    amounts = {c.get("amount") for c in cases}
    for t in ("100000", "50000", "1000000", "25000"):
        d = int(t)
        assert {f"{d - 1}.99", t, f"{d}.01"} <= amounts
    assert None in amounts  # a missing amount
    combos = {(c.get("type"), c.get("amount"), c.get("actor_level")) for c in cases}
    types: list[str | None] = ["purchase", "wire", "zz_unknown_type", None]
    levels: list[str | None] = ["L1", "L2", "L3", "CFO", "Board", "ZZ-unknown-level", None]
    for tx_type in types:
        for lv in levels:
            assert (tx_type, "100000.01", lv) in combos and (tx_type, "99999.99", lv) in combos
    # the golden gate's selection is the same list, thinned only for large policies
    assert whole_cases(policy) == cases


def test_random_cases_are_seeded() -> None:
    from harness import EXAMPLE

    policy = read_policy(load_ontology(EXAMPLE).raw.triples)
    a, b, c = random_cases(policy, 300, 1), random_cases(policy, 300, 1), random_cases(policy, 300, 2)
    assert a == b and a != c
    assert {t.get("type") for t in a} >= {"purchase", "wire", "zz_unknown_type", None, 7}
    assert any(
        t.get("attributes", {}).get("country") == "KP" for t in a if isinstance(t.get("attributes"), dict)
    )
    assert any(not isinstance(t.get("attributes", {}), dict) for t in a)


def test_kaizen_in_process_counts_and_receipt(tmp_path: Path) -> None:
    store = _store(tmp_path)
    result = kaizen(copy_example(tmp_path), "1", "2", store, count=50, seed=7)
    assert result.behaviour_equivalent and result.accepted and result.verdict == "equivalent"
    assert result.cases["random"] == 50 and result.seed == 7
    assert result.receipt is not None and result.receipt["random"] == {
        "count": 50,
        "seed": 7,
        "generator": "python random.Random(seed)",
    }
    assert store.latest("generation") is None  # a kaizen is not a generation


def test_the_two_process_comparison_equals_the_one_process_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Split across a forked child or not, the same cases, counts and counterexamples, in order."""
    import finops_fabric.kaizen as kz

    off_by_one_cent(monkeypatch)
    o = copy_example(tmp_path)
    parts: list[int] = []
    split_compare = kz._compare_in_parallel

    def counting(*args: Any) -> list[dict[str, Any]]:
        out = split_compare(*args)
        parts.append(len(out))
        return out

    monkeypatch.setattr(kz, "_compare_in_parallel", counting)
    results = []
    for parallel_from in (10**9, 1):
        monkeypatch.setattr(kz, "PARALLEL_FROM", parallel_from)
        results.append(kaizen(o, "1", "2", _store(tmp_path / str(parallel_from)), count=1000, seed=3))
    serial, split = results
    assert parts[0] == 1 and parts[1] >= 2  # the second run compared slices in forked children
    assert serial.cases == split.cases and serial.cases_compared > 1000
    assert serial.counterexamples_total == split.counterexamples_total > 0
    assert serial.counterexamples == split.counterexamples
    assert serial.oracle_total == split.oracle_total and serial.oracle == split.oracle


# --- v2 -> v3: policy language 1.0 -> 1.1 differs on purpose, and kaizen names exactly how ------


def test_the_cases_include_every_input_language_1_1_refuses() -> None:
    from harness import EXAMPLE

    from finops_fabric.kaizen import input_cases

    policy = read_policy(load_ontology(EXAMPLE).raw.triples)
    cases = input_cases(policy)
    types = {c.get("type", "<missing>") for c in cases}
    assert {"PURCHASE", "Purchase", "purch\u0430se", "purchase ", " purchase", "zz_unknown_type"} <= types
    assert {"<missing>", None, 7, "ｐｕｒｃｈａｓｅ", "purchase\u200b"} <= types
    amounts = [c.get("amount", "<missing>") for c in cases]
    shown = {repr(a) for a in amounts}  # (a signalling NaN cannot even be compared)
    for bad in ("-0.01", " 100", "100 ", "1e5", 100.0, "<missing>", True, Decimal("sNaN")):
        assert repr(bad) in shown, bad
    assert any(isinstance(a, Decimal) and a.is_nan() for a in amounts)
    assert any(isinstance(a, Decimal) and a.is_infinite() for a in amounts)
    levels = {c.get("actor_level", "<missing>") for c in cases}
    assert {"l1", "cfo", "L1 ", "ZZ-unknown-level", "<missing>", 3} <= levels
    assert len({c["id"] for c in cases}) == len(cases)


def test_v2_to_v3_differs_exactly_on_the_inputs_language_1_1_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import finops_fabric.kaizen as kz
    from finops_fabric.interpreter import Interpreter
    from finops_fabric.model import INPUT_CHECKS

    monkeypatch.setattr(kz, "LISTED", 10**6)  # list every counterexample
    o = copy_example(tmp_path)
    result = kaizen(o, "2", "3", _store(tmp_path), count=300)
    assert result.behaviour_equivalent is False and result.verdict == "behaviour_changed"
    assert result.languages == {"from": "1.0", "to": "1.1"}
    assert result.oracle_total == {"from": 0, "to": 0}  # each A agrees with its own language
    policy = read_policy(load_ontology(o).raw.triples)
    oracle = Interpreter(policy, "1.1")
    compared = kz.cases(policy, 300, DEFAULT_SEED, ("1.0", "1.1"))
    refused = {kz._key(tx) for _, tx in compared if oracle.input_checks(tx)}
    differing = {kz._key(ce["transaction"]) for ce in result.counterexamples}
    assert differing == refused and len(refused) > 500
    assert result.counterexamples_total == result.counterexamples_by_language == len(refused)
    for ce in result.counterexamples:
        assert ce["input_checks"] and set(ce["input_checks"]) <= set(INPUT_CHECKS)
        assert ce["new_decision"]["decision"] == "REJECT"
        added = {f["rule"] for f in ce["new_decision"]["fired"]} - {
            f["rule"] for f in ce["old_decision"]["fired"]
        }
        assert set(ce["input_checks"]) <= added
    assert result.cases["inputs"] > 100


def test_mu_kaizen_2_to_3_names_the_differences(mu: Any, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    out = mu.json(
        "kaizen", f"--ontology={o}", "--from-generator=2", "--to-generator=3", "--random=50", code=1
    )
    assert out["behaviour_equivalent"] is False and out["accepted"] is False
    assert out["counterexamples_by_language"] == out["counterexamples_total"] > 0
    first = out["counterexamples"][0]
    assert first["category"] == "inputs" and first["transaction"]["type"] == "PURCHASE"
    assert first["input_checks"] == ["https://w3id.org/finops-fabric/ns#FailClosed/type"]
    code, text, _ = mu("kaizen", f"--ontology={o}", "--from-generator=2", "--to-generator=3", "--random=50")
    assert code == 1
    assert f"policy language 1.0 → 1.1: {out['counterexamples_total']} of the" in text
    assert "decide differently by design" in text
    # 1 -> 2 stays a kaizen, and says nothing about languages
    same = mu.json("kaizen", f"--ontology={o}", "--from-generator=1", "--to-generator=2", "--random=50")
    assert same["behaviour_equivalent"] is True and same["counterexamples_by_language"] is None


# --- the complete case set catches what sampling misses --------------------------------------------


def ge_at_one_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deliberately defective v2: the fraud check of wires also holds for an amount of exactly
    25000 when the actor is L3 (O says ``amount > 25000``). It decides otherwise on one narrow
    cell only: a wire of exactly 25000 from a high-risk vendor, by an L3 actor."""
    real = emit2._restriction

    def emit(rule, levels):  # type: ignore[no-untyped-def]
        lines = real(rule, levels)
        if rule.iri == EX + "fraud-wire":
            assert any("(amount > K0)" in line for line in lines)
            wrong = "(amount > K0 or (amount == K0 and rank == 3))"
            return [line.replace("(amount > K0)", wrong) for line in lines]
        return lines

    monkeypatch.setattr(emit2, "_restriction", emit)


def test_the_complete_cases_catch_a_defect_the_random_cases_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import finops_fabric.kaizen as kz

    ge_at_one_threshold(monkeypatch)
    o = copy_example(tmp_path)
    policy = read_policy(load_ontology(o).raw.triples)
    onto_hash = load_ontology(o).hash
    workdir = tmp_path / "built"
    workdir.mkdir()
    good, _ = kz._build(generators.get("1"), policy, onto_hash, workdir)
    bad, _ = kz._build(generators.get("2"), policy, onto_hash, workdir)

    # the seeded random cases alone (the default seed and count) never meet the defect (about
    # half of all seeds would not)
    sampled = random_cases(policy, 2000, DEFAULT_SEED)
    assert all(kz._decide(good, tx) == kz._decide(bad, tx) for tx in sampled)

    # the complete cases do, and name the cell
    result = kaizen(o, "1", "2", _store(tmp_path))
    assert result.behaviour_equivalent is False and result.verdict == "behaviour_changed"
    assert result.case_set["kind"] == "complete"
    assert {ce["category"] for ce in result.counterexamples} == {"complete"}
    for ce in result.counterexamples:
        tx = ce["transaction"]
        assert tx["type"] == "wire" and Decimal(tx["amount"]) == 25000 and tx["actor_level"] == "L3"
        assert tx["attributes"]["vendor_risk"] == "high"
        assert {f["rule"] for f in ce["new_decision"]["fired"]} - {
            f["rule"] for f in ce["old_decision"]["fired"]
        } == {EX + "fraud-wire"}
    assert result.oracle_total == {"from": 0, "to": result.counterexamples_total}


@pytest.mark.parametrize("fork", [True, False])
def test_a_generator_that_is_not_deterministic_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    """The second build of the determinism check (in a forked child, or here) differs: refused."""
    import itertools

    import finops_fabric.kaizen as kz
    from finops_fabric.errors import CheckFailed

    builds = itertools.count()
    real = emit2._approval

    def emit(rule):  # type: ignore[no-untyped-def]
        return [*real(rule), f"BUILD = {next(builds)}"]

    monkeypatch.setattr(emit2, "_approval", emit)
    monkeypatch.setattr(kz, "_forkable", lambda: fork)
    store = _store(tmp_path)
    with pytest.raises(CheckFailed) as err:
        kaizen(copy_example(tmp_path), "1", "2", store, count=0)
    assert err.value.code == "kaizen.not_deterministic" and "generator v2" in err.value.message
    assert store.receipts() == []


def test_an_o_the_engine_cannot_cut_is_compared_on_the_sampled_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Such an O orders a field as text and also compares it as a decimal; here the engine is
    made to refuse the example.) The receipt says which set the verdict rests on, and why."""
    from finops_fabric.analysis import cases as analysis_cases
    from finops_fabric.analysis.fields import Unsupported

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Unsupported("country is ordered as text and also compared as a decimal")

    monkeypatch.setattr(analysis_cases, "kaizen_cases", refuse)
    store = _store(tmp_path)
    result = kaizen(copy_example(tmp_path), "1", "2", store, count=20)
    assert result.behaviour_equivalent and result.accepted
    assert result.case_set == {
        "kind": "sampled",
        "reason": "country is ordered as text and also compared as a decimal",
        "languages": ["1.0"],
    }
    assert (
        result.cases["complete"] == 0 and result.cases["boundary"] > 1000 and result.cases["rule_edges"] > 0
    )
    (receipt,) = store.receipts("kaizen")
    assert (
        receipt["case_set"]["kind"] == "sampled"
        and receipt["gates"]["kaizen"]["evidence"]["case_set"] == "sampled"
    )
