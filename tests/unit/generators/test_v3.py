"""Generator v3 (policy language 1.1, fail closed): every generator-agnostic test of v1 runs
against v3 as well, with the reference interpreter in language 1.1 (the ``policies`` fixture
below); v3 decides exactly as v2 on a transaction the input checks accept and rejects, naming
the field, one they refuse; and what is v3's own: lazy reasons, the manifest's language, the
lock, the golden gate in language 1.1, the default generator, old receipts replaying."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from harness import EX as ACME
from harness import changed_example, copy_example
from hypothesis import example, given
from hypothesis import strategies as st

# The tests of v1 that do not depend on the generator version: collected here a second time,
# with this module's `policies` (generator v3, interpreter in language 1.1).
from test_v1 import (  # noqa: F401
    MORE_RULES,
    SETTINGS,
    test_a_decision_has_the_documented_shape,
    test_a_rank_comparison_with_a_hostile_code_is_refused,
    test_an_unchanged_rule_yields_a_byte_identical_module,
    test_core_fields_of_the_wrong_type_agree,
    test_decisions_equal_the_interpreter,
    test_decisions_equal_the_interpreter_on_chosen_cases,
    test_generated_files_have_no_absolute_path_and_no_timestamp,
    test_golden_cases_are_compiled,
    test_hostile_text_stays_inert_and_round_trips,
    test_two_builds_are_byte_identical,
    transactions,
)
from test_v2 import _load

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.enforcer import load_enforcer
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.generators.v3 import emit
from finops_fabric.golden import run_golden_gate
from finops_fabric.interpreter import Interpreter, comparable
from finops_fabric.pipeline import load_ontology
from finops_fabric.rdf.reader import read_policy

V3 = generators.get("3")
TYPE, AMOUNT, LEVEL = m.INPUT_CHECK_TYPE, m.INPUT_CHECK_AMOUNT, m.INPUT_CHECK_LEVEL


@pytest.fixture(scope="module")
def policies(policies: SimpleNamespace) -> SimpleNamespace:
    """The shared policies, building and loading A with generator v3, judged in language 1.1."""
    return SimpleNamespace(
        **{
            **vars(policies),
            "build": lambda policy, ontology_hash=policies.ZERO_HASH: V3.build(policy, ontology_hash),
            "load_built": lambda files: _load("3", files),
            "interpreter": lambda policy: Interpreter(policy, "1.1"),
        }
    )


@pytest.fixture(scope="module")
def full_policy(policies: SimpleNamespace) -> m.Policy:
    policy: m.Policy = policies.policy_of(policies.FULL_RULES + MORE_RULES)
    return policy


@pytest.fixture(scope="module")
def pair(policies: SimpleNamespace, full_policy: m.Policy) -> tuple[Interpreter, Any]:
    return Interpreter(full_policy, "1.1"), policies.load_built(policies.build(full_policy))


@pytest.fixture(scope="module")
def v2_v3(policies: SimpleNamespace, full_policy: m.Policy) -> tuple[Any, Any]:
    return (
        _load("2", generators.get("2").build(full_policy, policies.ZERO_HASH)),
        _load("3", V3.build(full_policy, policies.ZERO_HASH)),
    )


def _decided(enforcer: Any, tx: Any) -> dict[str, Any]:
    d: dict[str, Any] = enforcer.decide(tx).to_dict()
    d.pop("enforcer_hash")
    return d


# --- hostile inputs: v3 and the interpreter (1.1) agree, and v3 equals v2 where 1.1 accepts ----

LOOK_ALIKES = [
    "PURCHASE",
    "Purchase",
    "purch\u0430se",
    "purchase ",
    " wire",
    "wire\u200b",
    "ｗｉｒｅ",
    "nope",
    "",
]
hostile_types = st.one_of(
    st.sampled_from(["purchase", "wire", "refund", *LOOK_ALIKES, 7, True, None]),
    st.text(max_size=12),
)
hostile_amounts = st.one_of(
    st.sampled_from(
        [
            "-0.01",
            "-100",
            "-0",
            "+7",
            ".5",
            "7.",
            " 100",
            "100 ",
            "1e5",
            "1E+5",
            "0x10",
            "1_000",
            "１００",
            "NaN",
            "Infinity",
            "",
            1.5,
            100.0,
            True,
            False,
            [],
            {},
            None,
            -3,
            Decimal("NaN"),
            Decimal("sNaN"),
            Decimal("Infinity"),
            Decimal("-Infinity"),
            Decimal("-5"),
            Decimal("1E+5"),
            Decimal("105000.00"),
            Decimal("0E-30"),
        ]
    ),
    st.decimals(allow_nan=True, allow_infinity=True, places=2),
    st.integers(-(10**6), 10**9),
    st.text(alphabet="0123456789.+- e", max_size=10),
)
hostile_levels = st.one_of(
    st.sampled_from(["L1", "L2", "L3", "CFO", "Board", "l1", "L1 ", "cfo", "B\u043eard", "L\u0031", 3, None]),
    st.text(max_size=6),
)


@st.composite
def hostile_transactions(draw: st.DrawFn) -> dict[str, Any]:
    tx = draw(transactions())
    for key, strategy in (
        ("type", hostile_types),
        ("amount", hostile_amounts),
        ("actor_level", hostile_levels),
    ):
        if draw(st.booleans()):
            value = draw(strategy)
            if value is None:
                tx.pop(key, None)
            else:
                tx[key] = value
    return tx


@SETTINGS
@given(tx=hostile_transactions())
@example(tx={"id": "x", "type": "PURCHASE", "amount": "999999999", "actor_level": "L1"})
@example(tx={"id": "x", "type": "purchase", "amount": Decimal("sNaN"), "actor_level": "L1"})
def test_v3_agrees_with_the_interpreter_on_hostile_inputs(
    pair: tuple[Interpreter, Any], tx: dict[str, Any]
) -> None:
    oracle, enforcer = pair
    decision = enforcer.decide(tx).to_dict()
    assert comparable(decision) == oracle.decide(tx).comparable(), tx
    assert (decision["decision"] == "REJECT") == bool(decision["fired"])
    checks = {r for r, _ in oracle.input_checks(tx)}
    assert checks == {f["rule"] for f in decision["fired"]} & set(m.INPUT_CHECKS)


@SETTINGS
@given(tx=hostile_transactions())
def test_v3_decides_as_v2_exactly_when_the_input_checks_pass(
    full_policy: m.Policy, v2_v3: tuple[Any, Any], tx: dict[str, Any]
) -> None:
    v2, v3 = (_decided(e, tx) for e in v2_v3)
    if Interpreter(full_policy, "1.1").input_checks(tx):
        assert v3 != v2 and v3["decision"] == "REJECT", tx
        assert {f["rule"] for f in v3["fired"]} & set(m.INPUT_CHECKS)
    else:
        assert v3 == v2, tx  # reasons and their order included


# --- the reproductions: what language 1.0 let through ------------------------------------------


APPROVAL = """
ex:approval-purchase a fab:ApprovalRule ; rdfs:label "Purchases over 100k need L3" ;
    fab:appliesTo ex:purchase ; fab:amountThreshold "100000"^^xsd:decimal ; fab:requiredAuthority ex:L3 .
"""


@pytest.mark.parametrize("tx_type", ["PURCHASE", "purch\u0430se", "purchase ", "nope"])
def test_an_undeclared_type_is_rejected_naming_it(policies: SimpleNamespace, tx_type: str) -> None:
    policy = policies.policy_of(APPROVAL)
    enforcer, oracle = policies.load_built(policies.build(policy)), Interpreter(policy, "1.1")
    tx = {"type": tx_type, "amount": "999999999", "actor_level": "L1"}
    d = enforcer.decide(tx)
    assert d.decision == "REJECT" and oracle.decide(tx).decision == "REJECT"
    assert d.fired == [
        (
            TYPE,
            f"field 'type' is {tx_type!a}, which is not a declared transaction type "
            "(declared: purchase, refund, wire); the transaction fails closed",
        )
    ]
    assert comparable(d.to_dict()) == oracle.decide(tx).comparable()
    # language 1.0 (generator v2) approved it: the gap v3 closes
    v2 = _load("2", generators.get("2").build(policy, policies.ZERO_HASH))
    assert v2.decide(tx).decision == "APPROVE" and Interpreter(policy).decide(tx).decision == "APPROVE"


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        ("-0.01", "field 'amount' is negative (-0.01)"),
        (-5, "field 'amount' is negative (-5)"),
        (Decimal("-100"), "field 'amount' is negative (-100)"),
        (" 100", "field 'amount' is ' 100', which is not a plain decimal"),
        ("1e5", "field 'amount' is '1e5', which is not a plain decimal"),
        (Decimal("NaN"), "field 'amount' is NaN, which is not a finite decimal"),
        (1.5, "field 'amount' is 1.5: amount is a binary float; send a decimal string"),
        (True, "field 'amount' is true, which is not a decimal amount"),
        (None, "field 'amount' is missing"),
    ],
)
def test_a_bad_amount_is_rejected_naming_it(
    policies: SimpleNamespace, pair: tuple[Interpreter, Any], amount: object, words: str
) -> None:
    oracle, enforcer = pair
    tx = policies.tx(amount=amount, attributes={"country": "US", "vendor_risk": "low", "score": "0.1"})
    d = enforcer.decide(tx)
    assert d.decision == "REJECT" and oracle.decide(tx).decision == "REJECT"
    (why,) = [reason for rule, reason in d.fired if rule == AMOUNT]
    assert why.startswith(words) and why.endswith("; the transaction fails closed")


@pytest.mark.parametrize("level", ["l2", "L2 ", "C\u0424O", 2, None])
def test_an_undeclared_level_is_rejected_naming_it(
    policies: SimpleNamespace, pair: tuple[Interpreter, Any], level: object
) -> None:
    oracle, enforcer = pair
    tx = policies.tx(actor_level=level)
    d = enforcer.decide(tx)
    assert d.decision == "REJECT" and oracle.decide(tx).decision == "REJECT"
    (why,) = [reason for rule, reason in d.fired if rule == LEVEL]
    assert why.startswith("field 'actor_level' is " + ("missing" if level is None else ""))
    assert "(declared: L1, L2, L3, CFO, Board)" in why


def test_a_hostile_value_is_shown_short_and_by_type(pair: tuple[Interpreter, Any]) -> None:
    _, enforcer = pair
    huge = "x" * 10_000
    d = enforcer.decide({"type": huge, "amount": "1", "actor_level": "L1"})
    (why,) = [r for rule, r in d.fired if rule == TYPE]
    assert len(why) < 300 and "(10002 characters)" in why
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    d = enforcer.decide({"type": "purchase", "amount": deep, "actor_level": "L1"})
    assert any("is a value of type list" in r for _, r in d.fired)  # never repr() of the value


def test_a_non_mapping_is_an_input_error(pair: tuple[Interpreter, Any]) -> None:
    _, enforcer = pair
    for bad in ([("type", "purchase")], "purchase", None, 7):
        with pytest.raises(InputError) as err:
            enforcer.decide(bad)
        assert err.value.code == "tx.not_object"


# --- lazy decisions --------------------------------------------------------------------------


def test_reasons_are_built_from_what_decide_read(
    policies: SimpleNamespace, pair: tuple[Interpreter, Any]
) -> None:
    _, enforcer = pair
    tx = policies.tx(amount="105000.00", actor_level="L2", type="wire", approver_id="u-1", executor_id="u-1")
    tx["attributes"] = {"country": "KP", "vendor_risk": "high", "score": "0.1"}
    d = enforcer.decide(tx)
    before = d.to_dict()
    tx.update(amount="1", actor_level="Board", approver_id="zz")  # the caller reuses its dict
    tx["attributes"]["country"] = "US"
    assert d.to_dict() == before
    assert d.rules == sorted(f["rule"] for f in before["fired"])
    assert d.fired == [(f["rule"], f["reason"]) for f in before["fired"]]
    assert d.notifications == [(n["rule"], n["recipient"]) for n in before["notifications"]]
    assert "approver u-1 is also the executor" in " ".join(r for _, r in d.fired)
    assert d.enforcer_hash == before["enforcer_hash"] and d.transaction_id == "tx-1"


def test_a_fragment_holds_no_text_from_o(policies: SimpleNamespace) -> None:
    import ast

    policy = policies.policy_of(policies.FULL_RULES + MORE_RULES)
    for rule in policy.rules:
        tree = ast.parse(emit.emit_rule(rule, {lv.code: lv.rank for lv in policy.levels}))
        (fragment,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "fragment"]
        texts = {
            n.value for n in ast.walk(fragment) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        assert texts <= emit._FIXED_TEXT, rule.iri


# --- A, its manifest and the line ----------------------------------------------------------------


def test_the_manifest_names_generator_v3_and_language_1_1(
    policies: SimpleNamespace, full_policy: m.Policy
) -> None:
    files = policies.build(full_policy)
    manifest = json.loads(files["manifest.json"])
    assert manifest["generator"] == V3.describe() and manifest["generator"]["version"] == "3"
    assert manifest["language"] == "1.1" == V3.language
    assert manifest["format"] == "finops-fabric-enforcer/1"  # the layout of A is v1's
    one = generators.get("1").build(full_policy, policies.ZERO_HASH)
    assert set(one) == set(files)  # one artifact per rule, the same support files
    assert [generators.get(v).language for v in ("1", "2", "3")] == ["1.0", "1.0", "1.1"]
    assert generators.language("v3") == "1.1"
    with pytest.raises(InputError):
        generators.language("99")


def test_a_tiny_golden_amount_is_written_in_plain_notation(policies: SimpleNamespace) -> None:
    golden = """
ex:tiny a fab:GoldenCase ; fab:scenario "tiny" ; fab:txType ex:purchase ;
    fab:txAmount "0.0000001"^^xsd:decimal ; fab:txActorLevel ex:L1 ; fab:expect fab:Approve .
"""
    policy = policies.policy_of(golden)
    (case,) = json.loads(policies.build(policy)["golden.json"])
    assert case["transaction"]["amount"] == "0.0000001"  # str() would say 1E-7, refused by 1.1
    assert policies.load_built(policies.build(policy)).decide(case["transaction"]).decision == "APPROVE"


def test_generator_v3_is_the_default_and_locked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert generators.DEFAULT_VERSION == "3" and generators.get().version == "3"
    assert generators.RELEASED["3"] == generators.source_hash("3")
    monkeypatch.setitem(generators.RELEASED, "3", "sha256:" + "0" * 64)
    with pytest.raises(CheckFailed) as err:
        generators.get("3")
    assert err.value.code == "generator.modified"


def _example_policy() -> tuple[Any, m.Policy]:
    from harness import EXAMPLE

    onto = load_ontology(EXAMPLE)
    return onto, read_policy(onto.raw.triples)


def test_the_golden_gate_judges_v3_in_language_1_1(tmp_path: Path, policies: SimpleNamespace) -> None:
    onto, policy = _example_policy()
    root = policies.write_tree(tmp_path / "A", V3.build(policy, onto.hash))
    enforcer = load_enforcer(root)
    assert enforcer.language == "1.1"
    report = run_golden_gate(policy, enforcer)
    assert report.ok, report.evidence()
    assert report.derived_whole_checks > 500
    # judged in language 1.0, the same A disagrees on every undeclared type and level
    monkey = Interpreter(policy)
    tx = {"type": "zz_unknown_type", "amount": "1", "actor_level": "L1"}
    assert comparable(enforcer.decide(tx).to_dict()) != monkey.decide(tx).comparable()


def test_mu_generate_uses_v3_and_old_receipts_replay(mu: Any, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    receipts = {}
    for version in ("1", "2", None):
        name = f"A{version or 'default'}"
        extra = [f"--generator-version={version}"] if version else []
        out = mu.json("generate", f"--input={o}", f"--output={name}", f"--receipt={name}.json", *extra)
        assert out["status"] == "generated", out
        receipts[version or "3"] = json.loads((tmp_path / f"{name}.json").read_text())
    assert receipts["3"]["inputs"]["generator"] == V3.describe()
    assert json.loads((tmp_path / "Adefault" / "manifest.json").read_text())["language"] == "1.1"
    for version, receipt in receipts.items():
        replayed = mu.json("replay", f"--receipt=A{'default' if version == '3' else version}.json")
        assert replayed["match"] is True and replayed["generator"]["version"] == version
        assert replayed["enforcer_hash"] == receipt["outputs"]["enforcer_hash"]
    tested = mu.json("test", "--enforcer=Adefault", "--golden-suite")
    assert tested["failed"] == 0 and tested["passed"] == 7
    (tmp_path / "tx.json").write_text(json.dumps({"id": "t", "type": "PURCHASE", "amount": "999999999"}))
    d = mu.json("decide", "--enforcer=Adefault", "--transaction=tx.json")
    assert d["decision"] == "REJECT" and {f["rule"] for f in d["fired"]} == {TYPE, LEVEL}
    assert mu.json("decide", "--enforcer=A2", "--transaction=tx.json")["decision"] == "APPROVE"


def test_one_threshold_changes_exactly_one_v3_artifact(mu: Any, tmp_path: Path) -> None:
    o1, o2 = copy_example(tmp_path), changed_example(tmp_path)
    mu.json("generate", f"--input={o1}", "--output=A1")
    out = mu.json("generate", f"--input={o2}", "--output=A2")
    assert out["changed"] == [ACME + "approval-wire-large"] and len(out["unchanged"]) == 8
    diff = mu.json("verify-hashes", "--old=A1", "--new=A2")
    assert [c["rule"] for c in diff["changed"]] == [ACME + "approval-wire-large"]
    assert len(diff["unchanged"]) == 8
    assert all(s["status"] == "unchanged" for s in diff["support"] if s["artifact"] != "manifest.json")


def test_the_diagnosis_judges_a_v3_receipt_in_language_1_1(mu: Any, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    mu.json("generate", f"--input={o}", "--output=A", "--receipt=R.json")
    (tmp_path / "tx.json").write_text(
        json.dumps({"id": "t", "type": "nope", "amount": "5", "actor_level": "L1"})
    )
    out = mu.json(
        "diagnose", "--receipt=R.json", "--transaction=tx.json", "--enforcer=A", f"--ontology={o}",
        "--observed=APPROVE",
    )  # fmt: skip
    assert out["verdict"] == "runtime", out  # A and O (in 1.1) both reject; production did not
    assert out["decision"]["interpreter"]["decision"] == "REJECT"
    assert [f["rule"] for f in out["decision"]["interpreter"]["fired"]] == [TYPE]
