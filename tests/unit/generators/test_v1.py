"""Generator v1: agrees with the interpreter, is deterministic, and keeps text from O inert."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import finops_fabric
from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.errors import CheckFailed
from finops_fabric.generators.v1 import emit
from finops_fabric.interpreter import Interpreter, comparable

EX = "https://example.com/test#"

# Extra rules for the differential test: core fields read by conditions, numeric and text
# membership, rank comparisons, and an untyped approval.
MORE_RULES = """
ex:core-fields a fab:RestrictionRule ;
    rdfs:label "Executors may not approve for themselves below L3" ;
    fab:appliesTo ex:purchase ;
    fab:condition [ a fab:AllOf ;
        fab:operand [ a fab:Comparison ; fab:attribute "approver_id" ; fab:operator fab:eq ;
                      fab:value "u-1" ] ,
                    [ a fab:Comparison ; fab:attribute "actor_level" ; fab:operator fab:le ;
                      fab:value "L2" ] ,
                    [ a fab:Not ; fab:operand [ a fab:Comparison ; fab:attribute "executor_id" ;
                                                fab:operator fab:ne ; fab:value "u-2" ] ] ] .

ex:level-text a fab:RestrictionRule ;
    rdfs:label "L1 may not refund" ;
    fab:appliesTo ex:refund ;
    fab:condition [ a fab:Comparison ; fab:attribute "actor_level" ; fab:operator fab:eq ; fab:value "L1" ] .

ex:any-type-approval a fab:ApprovalRule ;
    rdfs:label "Anything over 1M needs the Board" ;
    fab:amountThreshold "1000000"^^xsd:decimal ;
    fab:requiredAuthority ex:Board .
"""

LEVELS = ["L1", "L2", "L3", "CFO", "Board"]
THRESHOLDS = ["100000", "50000.50", "25000", "1000000", "10000", "0.75", "5000"]


def _plain(d: Decimal) -> str:
    return f"{d:f}"


amounts = st.one_of(
    st.decimals(min_value=-10, max_value=2_000_000, places=2, allow_nan=False, allow_infinity=False).map(
        _plain
    ),
    st.decimals(min_value=0, max_value=2_000_000, places=0, allow_nan=False, allow_infinity=False).map(int),
    st.sampled_from(THRESHOLDS).flatmap(
        lambda t: st.sampled_from(
            [t, t + ".00", t + ".01", _plain(Decimal(t) - Decimal("0.01")), int(Decimal(t))]
        )
    ),
    st.sampled_from(["abc", "", "1e5", " 42 ", "+7", 1.5, True, None, "NaN"]),
)
levels = st.sampled_from([*LEVELS, "Intern", 3, None])
types = st.sampled_from(["purchase", "wire", "refund", "loan", None])
people = st.sampled_from(["u-1", "u-2", "u-3", 7, None])
attr_values = {
    "country": st.sampled_from(["US", "KP", "IR", "FR", 1, None]),
    "vendor_risk": st.sampled_from(["high", "low", True, None]),
    "channel": st.sampled_from(["portal", "branch", "fax", None]),
    "score": st.one_of(
        st.decimals(min_value=0, max_value=1, places=3, allow_nan=False, allow_infinity=False).map(_plain),
        st.sampled_from(["0.75", "0.750", 1, 0, "high", 0.8, None]),
    ),
    "bucket": st.sampled_from(["3", "3.0", 7, "7.00", "4", "x", None]),
}


@st.composite
def transactions(draw: st.DrawFn) -> dict[str, Any]:
    tx: dict[str, Any] = {
        "id": "tx-" + str(draw(st.integers(0, 10_000))),
        "currency": "USD",
        "actor_id": "u-9",
    }
    for key, strategy in (
        ("type", types),
        ("amount", amounts),
        ("actor_level", levels),
        ("approver_id", people),
        ("executor_id", people),
    ):
        value = draw(strategy)
        if value is not None:
            tx[key] = value
    shape = draw(st.sampled_from(["dict", "dict", "dict", "missing", "not-a-dict"]))
    if shape == "dict":
        attrs = {}
        for key, strategy in attr_values.items():
            value = draw(strategy)
            if value is not None:
                attrs[key] = value
        tx["attributes"] = attrs
    elif shape == "not-a-dict":
        tx["attributes"] = ["country", "KP"]
    return tx


@pytest.fixture(scope="module")
def full_policy(policies: SimpleNamespace) -> m.Policy:
    return policies.policy_of(policies.FULL_RULES + MORE_RULES)


@pytest.fixture(scope="module")
def pair(policies: SimpleNamespace, full_policy: m.Policy) -> tuple[Interpreter, Any]:
    enforcer = policies.load_built(policies.build(full_policy))
    return policies.interpreter(full_policy), enforcer


def _agree(pair: tuple[Interpreter, Any], tx: dict[str, Any]) -> dict[str, Any]:
    oracle, enforcer = pair
    decision = enforcer.decide(tx).to_dict()
    assert comparable(decision) == oracle.decide(tx).comparable(), tx
    assert decision["decision"] in ("APPROVE", "REJECT")
    assert (decision["decision"] == "REJECT") == bool(decision["fired"])
    assert all(isinstance(f["reason"], str) and f["reason"] for f in decision["fired"])
    return decision


SETTINGS = settings(
    max_examples=600,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(tx=transactions())
@example(
    tx={
        "id": "x",
        "type": "refund",
        "amount": "0.00",
        "actor_level": 3,
        "approver_id": "u-1",
        "executor_id": "u-1",
    }
)
def test_decisions_equal_the_interpreter(pair: tuple[Interpreter, Any], tx: dict[str, Any]) -> None:
    _agree(pair, tx)


# Conditions that read the core fields as text or decimals, against transactions whose core
# fields have the wrong JSON type: both sides must treat them alike (missing, so fail closed).
ODD_RULES = """
ex:t1 a fab:RestrictionRule ; rdfs:label "t1" ;
    fab:condition [ a fab:Comparison ; fab:attribute "type" ; fab:operator fab:eq ; fab:value "wire" ] .
ex:t2 a fab:RestrictionRule ; rdfs:label "t2" ;
    fab:condition [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:eq ; fab:value "7" ] .
ex:t3 a fab:RestrictionRule ; rdfs:label "t3" ;
    fab:condition [ a fab:Membership ; fab:attribute "actor_level" ; fab:value "L1", "3" ] .
ex:t4 a fab:RestrictionRule ; rdfs:label "t4" ;
    fab:condition [ a fab:Comparison ; fab:attribute "approver_id" ; fab:operator fab:gt ; fab:value 5 ] .
ex:t5 a fab:RestrictionRule ; rdfs:label "t5" ;
    fab:condition [ a fab:Membership ; fab:attribute "amount" ; fab:value "abc", "42" ] .
ex:t6 a fab:RestrictionRule ; rdfs:label "t6" ;
    fab:condition [ a fab:Comparison ; fab:attribute "type" ; fab:operator fab:gt ; fab:value 5 ] .
ex:t7 a fab:RestrictionRule ; rdfs:label "t7" ;
    fab:condition [ a fab:Comparison ; fab:attribute "country" ; fab:operator fab:ge ; fab:value 1 ] .
ex:t8 a fab:RestrictionRule ; rdfs:label "t8" ;
    fab:condition [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:lt ; fab:value "0.000001" ] .
"""
ODD = {
    "type": ["purchase", "wire", "7", 7, 3, True, None],
    "amount": ["7", "7.0", "+7", " 7", 7, "abc", "42", 42, "0.0000001", 1.5, True, None, "1e1"],
    "approver_id": ["7", 7, "u-1", True, 6.5, "6.5", None],
    "actor_level": ["L1", 3, "3", True, None],
    "country": ["1", 2, "x", True, 0.5, None],
}


@pytest.mark.parametrize("rule", [r for r in ODD_RULES.strip().split("ex:")[1:]])
def test_core_fields_of_the_wrong_type_agree(policies: SimpleNamespace, rule: str) -> None:
    policy = policies.policy_of("ex:" + rule)
    pair = (policies.interpreter(policy), policies.load_built(policies.build(policy)))

    @settings(SETTINGS, max_examples=250)
    @given(choice=st.fixed_dictionaries({k: st.sampled_from(v) for k, v in ODD.items()}))
    def check(choice: dict[str, Any]) -> None:
        country = choice.pop("country")
        _agree(pair, policies.tx(**choice, attributes={} if country is None else {"country": country}))

    check()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"amount": "100000"},
        {"amount": "100000.01"},
        {"amount": "100000.01", "actor_level": "L3"},
        {"type": "wire", "amount": "50000.50", "actor_level": "L1"},
        {"type": "wire", "amount": "50000.51", "actor_level": "L3"},
        {"type": "wire", "approver_id": "u-1", "executor_id": "u-1"},
        {"type": "wire", "attributes": {"country": "KP", "score": "0.1"}},
        {"type": "purchase", "amount": "30000", "attributes": {"vendor_risk": "high", "score": "0.1"}},
        {
            "type": "purchase",
            "amount": "30000",
            "actor_level": "CFO",
            "attributes": {"vendor_risk": "high", "score": "0.1"},
        },
        {"type": "refund", "attributes": {"channel": "fax", "score": "0.1", "bucket": "3"}},
        {
            "type": "refund",
            "actor_level": "L1",
            "attributes": {"channel": "portal", "score": "0.1", "bucket": 4},
        },
        {"attributes": {"score": "0.75"}},
        {"attributes": {"score": "0.75"}, "actor_level": "Board"},
        {"type": None},
        {"amount": None},
        {"amount": 12.5},
        {"attributes": None},
        {"actor_level": None, "amount": "2000000"},
    ],
)
def test_decisions_equal_the_interpreter_on_chosen_cases(
    policies: SimpleNamespace, pair: tuple[Interpreter, Any], overrides: dict[str, Any]
) -> None:
    _agree(pair, policies.tx(**overrides))


def test_a_decision_has_the_documented_shape(
    policies: SimpleNamespace, pair: tuple[Interpreter, Any]
) -> None:
    _, enforcer = pair
    d = enforcer.decide(policies.tx(amount="105000.00", actor_level="L2", approver_id="u-3")).to_dict()
    assert set(d) == {"transaction_id", "decision", "fired", "notifications", "audit", "enforcer_hash"}
    assert d["transaction_id"] == "tx-1"
    assert d["decision"] == "REJECT"
    assert d["fired"] == [
        {
            "rule": EX + "approval-purchase",
            "reason": "amount 105000.00 > 100000 requires L3 or above; actor is L2",
        }
    ]
    assert {"rule": EX + "notify-finance", "recipient": "finance@example.com"} in d["notifications"]
    assert {"rule": EX + "audit-rejections", "ledger": "rejections", "flags": []} in d["audit"]
    assert d["enforcer_hash"].startswith("sha256:")


def test_golden_cases_are_compiled(policies: SimpleNamespace) -> None:
    golden = """
ex:case a fab:GoldenCase ; fab:scenario "purchase_105k_L2" ; fab:txType ex:purchase ;
    fab:txAmount "105000.00"^^xsd:decimal ; fab:txActorLevel ex:L2 ; fab:txApprover "u-1" ;
    fab:txAttribute [ fab:attribute "score" ; fab:value "0.1" ] ,
                    [ fab:attribute "vendor_risk" ; fab:value "low" ] ;
    fab:expect fab:Reject ; fab:expectFired ex:approval-purchase .
"""
    policy = policies.policy_of(policies.FULL_RULES + golden)
    files = policies.build(policy)
    (case,) = json.loads(files["golden.json"])
    assert case["scenario"] == "purchase_105k_L2"
    assert case["transaction"]["amount"] == "105000.00"
    assert case["transaction"]["attributes"] == {"score": "0.1", "vendor_risk": "low"}
    assert case["expect"] == "REJECT" and case["expect_fired"] == [EX + "approval-purchase"]
    assert case["expect_notified"] is None
    enforcer = policies.load_built(files)
    d = enforcer.decide(case["transaction"]).to_dict()
    # The approval rule alone fires (the case has every field the purchase rules read).
    assert [f["rule"] for f in d["fired"]] == case["expect_fired"]


# --- determinism ---------------------------------------------------------------------------


def test_two_builds_are_byte_identical(policies: SimpleNamespace, full_policy: m.Policy) -> None:
    a = policies.build(full_policy)
    b = policies.build(policies.policy_of(policies.FULL_RULES + MORE_RULES))
    assert a == b
    assert list(a) == list(b)


def test_the_manifest_lists_every_file_with_its_hash(
    policies: SimpleNamespace, full_policy: m.Policy
) -> None:
    files = policies.build(full_policy, "sha256:" + "ab" * 32)
    manifest = json.loads(files["manifest.json"])
    assert manifest["ontology_hash"] == "sha256:" + "ab" * 32
    assert manifest["generator"] == generators.get("1").describe()
    listed = {a["path"]: a for a in manifest["artifacts"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for path, art in listed.items():
        assert art["sha256"] == "sha256:" + hashlib.sha256(files[path]).hexdigest()
    rules = {a["rule"]: a["kind"] for a in manifest["artifacts"] if "rule" in a}
    assert set(rules) == {r.iri for r in full_policy.rules}
    assert rules[EX + "notify-finance"] == "notification"
    assert rules[EX + "audit-senior"] == "audit"
    assert rules[EX + "fraud"] == "decision"


def test_an_unchanged_rule_yields_a_byte_identical_module(policies: SimpleNamespace) -> None:
    before = policies.policy_of(policies.FULL_RULES)
    changed = policies.FULL_RULES.replace('"KP" ]', '"KP", "SY" ]').replace(
        '"Purchases over 100k need L3"', '"Purchases over 100k need L3 (v2)"'
    )
    assert changed != policies.FULL_RULES
    extra = """
ex:new-rule a fab:SegregationOfDutyRule ; rdfs:label "new" ; fab:appliesTo ex:purchase .
ex:Intern a fab:AuthorityLevel ; fab:code "Intern" ; fab:rank 0 .
ex:loan a fab:TransactionType ; fab:code "loan" ; rdfs:label "Loan" .
"""
    after_text = policies.REFERENCE.replace('"Test policy"', '"Renamed policy"') + changed + extra
    after = policies.policy_of(after_text, reference=False)
    a, b = policies.build(before, "sha256:" + "1" * 64), policies.build(after, "sha256:" + "2" * 64)
    path = {r.iri: emit.artifact_path(r) for r in after.rules}
    changed_rules = {EX + "sanctions", EX + "approval-purchase"}
    for rule in before.rules:
        p = path[rule.iri]
        if rule.iri in changed_rules:
            assert a[p] != b[p], rule.iri
        else:
            assert a[p] == b[p], rule.iri
    assert path[EX + "new-rule"] not in a
    assert a["runtime.py"] == b["runtime.py"]
    assert a["reference.py"] != b["reference.py"]  # the new level
    assert a["manifest.json"] != b["manifest.json"]


def test_artifact_paths_are_safe_file_names() -> None:
    for iri in (
        EX + "approval-purchase",
        "urn:x:../../etc/passwd",
        "https://e.com/a/b/",
        "https://e.com/#",
        "https://e.com/x#Ünïcödé rule",
    ):
        p = emit.artifact_path(m.SegregationOfDutyRule(iri, "l", None, ()))
        assert re.fullmatch(r"rules/[a-z0-9_]+_[0-9a-f]{10}\.py", p), p
    a = emit.artifact_path(m.SegregationOfDutyRule("https://e.com/a#x", "l", None, ()))
    b = emit.artifact_path(m.SegregationOfDutyRule("https://e.com/b#x", "l", None, ()))
    assert a != b


# --- hostile text --------------------------------------------------------------------------

PAYLOAD = "__import__('os').system('touch PWNED')"
HOSTILE = [
    'it\'s a "quoted" label',
    "'''" + PAYLOAD + "'''",
    '"""' + PAYLOAD + '"""',
    "first line\nsecond line",
    "back\\slash\\n\\x41\\",
    "{} {0} {__class__} %s %(x)s",
    PAYLOAD,
    "'); " + PAYLOAD + "; ('",
    '"); ' + PAYLOAD + '; ("',
    "# comment",
    "# comment\n" + PAYLOAD,
    "\n" + PAYLOAD + "\n",
    "x\r\n" + PAYLOAD,
    "Ω ünïcødé 🚀 \u2028 \u2029 \u0085 \t tab",
    "open('PWNED', 'w').write('x')",
]


def _hostile_policy(policies: SimpleNamespace, i: int, text: str) -> m.Policy:
    lit = policies.turtle_string(text)
    iri = f"<https://example.com/x#r{i}'+{PAYLOAD.replace(' ', '')}+'>"
    rules = f"""
{iri} a fab:RestrictionRule ; rdfs:label {lit} ; fab:rationale {lit} ;
    fab:condition [ a fab:AllOf ; fab:operand
        [ a fab:Comparison ; fab:attribute {lit} ; fab:operator fab:eq ; fab:value {lit} ] ,
        [ a fab:Membership ; fab:attribute "kind" ; fab:value {lit}, "plain" ] ] .
ex:notify-{i} a fab:NotificationRule ; rdfs:label {lit} ; fab:onEvent fab:AnyDecision ;
    fab:recipient {lit}, "ok@example.com" .
ex:audit-{i} a fab:AuditLogRule ; rdfs:label {lit} ; fab:onEvent fab:AnyDecision ;
    fab:ledger {lit} ; fab:flag {lit} .
"""
    return policies.policy_of(rules)


def _string_constants(source: bytes) -> set[str]:
    return {
        n.value
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _calls(source: bytes) -> set[str]:
    out = set()
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Call):
            f = n.func
            out.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "?")
    return out


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_hostile_text_stays_inert_and_round_trips(
    policies: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, i: int
) -> None:
    text = HOSTILE[i]
    monkeypatch.chdir(tmp_path)
    policy = _hostile_policy(policies, i, text)
    restriction = next(r for r in policy.rules if isinstance(r, m.RestrictionRule))
    assert restriction.label == text and restriction.rationale == text  # the reader keeps it exactly
    assert "'" in restriction.iri and PAYLOAD.replace(" ", "") in restriction.iri

    files = policies.build(policy)
    for path, data in files.items():
        if path.endswith(".py"):
            ast.parse(data)  # every module parses
            assert not _calls(data) & {"__import__", "system", "open", "exec", "eval"}, path
    modules_src = {r.iri: files[emit.artifact_path(r)] for r in policy.rules}
    for iri, src in modules_src.items():
        consts = _string_constants(src)
        assert iri in consts
        assert text in consts, iri  # the label (and the values) are string constants, nothing else

    enforcer = policies.load_built(files)
    assert not (tmp_path / "PWNED").exists()

    mods = {mod.RULE: mod for mod in enforcer.modules}
    assert set(mods) == {r.iri for r in policy.rules}
    for mod in mods.values():
        assert text == mod.LABEL
    notify = mods[EX + f"notify-{i}"]
    assert tuple(sorted({text, "ok@example.com"})) == notify.RECIPIENTS
    audit = mods[EX + f"audit-{i}"]
    assert text == audit.LEDGER and (text,) == audit.FLAGS

    hit = policies.tx(attributes={text: text, "kind": text})
    d = enforcer.decide(hit).to_dict()
    assert d["decision"] == "REJECT"
    (fired,) = d["fired"]
    assert fired["rule"] == restriction.iri
    assert fired["reason"].startswith(text + ": ")
    assert {"rule": EX + f"notify-{i}", "recipient": text} in d["notifications"]
    assert d["audit"] == [{"rule": EX + f"audit-{i}", "ledger": text, "flags": [text]}]
    assert comparable(d) == policies.interpreter(policy).decide(hit).comparable()

    miss = policies.tx(attributes={text: text + "!", "kind": text})
    assert enforcer.decide(miss).to_dict()["decision"] == "APPROVE"
    assert not (tmp_path / "PWNED").exists()
    assert not Path("PWNED").exists()


def test_a_rank_comparison_with_a_hostile_code_is_refused(policies: SimpleNamespace) -> None:
    # A rank comparison against a code that is not a level cannot be compiled: refused, not guessed.
    rules = f"""
ex:r a fab:RestrictionRule ; rdfs:label "r" ;
    fab:condition [ a fab:Comparison ; fab:attribute "actor_level" ; fab:operator fab:gt ;
                    fab:value {policies.turtle_string(PAYLOAD)} ] .
"""
    with pytest.raises(CheckFailed) as ei:
        policies.build(policies.policy_of(rules))
    assert ei.value.code == "generate.unknown_level"


def test_literals_are_python_literals() -> None:
    for v in HOSTILE:
        assert ast.literal_eval(emit.lit(v)) == v
    assert emit.lit(Decimal("0.10")) == "Decimal('0.10')"
    assert emit.lit(("a",)) == "('a',)"
    assert emit.lit(()) == "()"
    assert emit.lit(None) == "None"
    assert emit.lit(3) == "3"
    for bad in (True, 1.5, Decimal("NaN"), object()):
        with pytest.raises((TypeError, ValueError)):
            emit.lit(bad)


# --- no machine-specific bytes ---------------------------------------------------------------

TIMESTAMP = re.compile(rb"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}|\b1[6-9]\d{8}(?:\.\d+)?\b")


def test_generated_files_have_no_absolute_path_and_no_timestamp(
    policies: SimpleNamespace, full_policy: m.Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    files = policies.build(full_policy)
    machine = {
        str(tmp_path),
        os.getcwd(),
        str(Path.home()) if len(Path.home().parts) > 1 else str(tmp_path),
        str(Path(finops_fabric.__file__).resolve().parent),
        str(Path(__file__).resolve().parents[3]),
    }
    for path, data in files.items():
        assert not path.startswith("/") and ".." not in path.split("/"), path
        text = data.decode("utf-8")
        for m_path in machine:
            assert m_path not in text, (path, m_path)
        assert not re.search(r"(?<![\w/:])/(?:home|root|tmp|usr|work|var|Users)/", text), path
        assert not re.search(r"[A-Za-z]:\\\\", text), path
        assert not TIMESTAMP.search(data), path
    loaded = policies.load_built(files)
    for mod in loaded.modules:
        assert not os.path.isabs(mod.__file__)
        assert mod.__file__.startswith("rules/")
