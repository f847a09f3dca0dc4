"""The decision semantics of POLICY-LANGUAGE.md on the reference interpreter (the oracle)."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from finops_fabric.interpreter import Interpreter, Outcome, comparable

EX = "https://example.com/test#"

APPROVAL = """
ex:approval a fab:ApprovalRule ; rdfs:label "Purchases over 100k need L3" ; fab:appliesTo ex:purchase ;
    fab:amountThreshold "100000.00"^^xsd:decimal ; fab:requiredAuthority ex:L3 .
"""
SOD = """
ex:sod a fab:SegregationOfDutyRule ; rdfs:label "Approver must not execute" ; fab:appliesTo ex:wire .
"""
SANCTIONS = """
ex:sanctions a fab:RestrictionRule ; rdfs:label "No sanctioned countries" ; fab:appliesTo ex:wire ;
    fab:condition [ a fab:Membership ; fab:attribute "country" ; fab:value "IR", "KP" ] .
"""
OVERRIDABLE = """
ex:big-refund a fab:RestrictionRule ; rdfs:label "Refunds of 5000 or more need the CFO" ;
    fab:appliesTo ex:refund ;
    fab:condition [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:ge ;
                    fab:value "5000"^^xsd:decimal ] ;
    fab:overrideAuthority ex:CFO .
"""
FRAUD = """
ex:fraud a fab:FraudCheckRule ; rdfs:label "Risky vendors over 25k need the CFO" ;
    fab:condition [ a fab:AllOf ;
        fab:operand [ a fab:Comparison ; fab:attribute "vendor_risk" ; fab:operator fab:eq ;
                      fab:value "high" ] ,
                    [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:gt ;
                      fab:value "25000"^^xsd:decimal ] ] ;
    fab:overrideAuthority ex:CFO .
"""


def _restriction(condition: str, extra: str = "") -> str:
    return f'ex:r a fab:RestrictionRule ; rdfs:label "r" ; fab:condition {condition} {extra}.\n'


@pytest.fixture
def decide(policies: SimpleNamespace) -> Any:
    """decide(rules_ttl, **tx_overrides) -> Outcome."""

    def run(rules: str, **overrides: Any) -> Outcome:
        return Interpreter(policies.policy_of(rules)).decide(policies.tx(**overrides))

    return run


def _fired(o: Outcome) -> list[str]:
    return [r.removeprefix(EX) for r, _ in o.fired]


def _reason(o: Outcome) -> str:
    assert len(o.fired) == 1, o.fired
    return o.fired[0][1]


# --- approval ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "level", "decision"),
    [
        ("100000.00", "L1", "APPROVE"),  # exactly at the threshold: not strictly greater
        ("100000", "L1", "APPROVE"),
        (100000, "L2", "APPROVE"),
        ("99999.99", "L2", "APPROVE"),
        ("100000.01", "L2", "REJECT"),
        ("100000.001", "L1", "REJECT"),
        (100001, "L2", "REJECT"),
        ("100000.01", "L3", "APPROVE"),  # rank equal to the required rank
        ("5000000", "CFO", "APPROVE"),
        ("5000000", "Board", "APPROVE"),
        ("-5", "L1", "APPROVE"),
        ("  100000.01 ", "L2", "REJECT"),
        ("+100000.01", "L2", "REJECT"),
    ],
)
def test_approval_is_strictly_greater_than_the_threshold(
    decide: Any, amount: object, level: str, decision: str
) -> None:
    o = decide(APPROVAL, amount=amount, actor_level=level)
    assert o.decision == decision
    assert _fired(o) == ([] if decision == "APPROVE" else ["approval"])


def test_an_approval_rejection_explains_itself(decide: Any) -> None:
    why = _reason(decide(APPROVAL, amount="105000.00", actor_level="L2"))
    assert "105000.00" in why and "100000" in why and "L3" in why


def test_approval_only_applies_to_its_types(decide: Any) -> None:
    assert decide(APPROVAL, type="wire", amount="9999999", actor_level="L1").decision == "APPROVE"


def test_approval_fails_closed_on_a_missing_or_bad_amount(decide: Any) -> None:
    for bad in (None, "abc", "", "1e6", "1,000", "NaN", "Infinity", True, [1], {"v": 1}):
        o = (
            decide(APPROVAL, amount=bad, actor_level="Board")
            if bad is not None
            else decide(APPROVAL, amount=None)
        )
        assert o.decision == "REJECT", bad
        assert "amount" in _reason(o)


def test_floats_are_refused_as_amounts(decide: Any) -> None:
    for f in (5.0, 100000.5, 0.1):
        o = decide(APPROVAL, amount=f, actor_level="Board")
        assert o.decision == "REJECT", f
        assert "amount" in _reason(o)


def test_decimal_strings_and_json_ints_are_the_same_amount(decide: Any) -> None:
    for above in ("100001", 100001, "100001.00", Decimal("100001")):
        assert decide(APPROVAL, amount=above, actor_level="L2").decision == "REJECT", above
    for at in ("100000", 100000, "100000.0000", Decimal("100000.00")):
        assert decide(APPROVAL, amount=at, actor_level="L2").decision == "APPROVE", at


def test_approval_above_threshold_needs_a_known_level(decide: Any) -> None:
    for level in (None, "L9", "", 3):
        o = decide(APPROVAL, amount="200000", actor_level=level)
        assert o.decision == "REJECT", level
        assert "actor_level" in _reason(o)
    # Below the threshold the level is not needed.
    assert decide(APPROVAL, amount="10", actor_level=None).decision == "APPROVE"


# --- segregation of duty -------------------------------------------------------------------


def test_sod(decide: Any) -> None:
    same = decide(SOD, type="wire", approver_id="u-1", executor_id="u-1")
    assert same.decision == "REJECT" and _fired(same) == ["sod"]
    assert decide(SOD, type="wire", approver_id="u-1", executor_id="u-2").decision == "APPROVE"
    assert decide(SOD, type="purchase", approver_id="u-1", executor_id="u-1").decision == "APPROVE"


@pytest.mark.parametrize("missing", ["approver_id", "executor_id"])
def test_sod_fails_closed_naming_the_field(decide: Any, missing: str) -> None:
    o = decide(SOD, type="wire", **{missing: None})
    assert o.decision == "REJECT"
    assert "approver_id" in _reason(o)


# --- restrictions --------------------------------------------------------------------------


def test_restriction_without_override_rejects_every_level(decide: Any) -> None:
    for level in ("L1", "CFO", "Board"):
        o = decide(SANCTIONS, type="wire", actor_level=level, attributes={"country": "KP"})
        assert o.decision == "REJECT" and _fired(o) == ["sanctions"]
    assert decide(SANCTIONS, type="wire", attributes={"country": "US"}).decision == "APPROVE"
    assert decide(SANCTIONS, type="purchase", attributes={"country": "KP"}).decision == "APPROVE"


def test_restriction_with_override(decide: Any) -> None:
    assert decide(OVERRIDABLE, type="refund", amount="5000", actor_level="L3").decision == "REJECT"
    assert decide(OVERRIDABLE, type="refund", amount="5000", actor_level="CFO").decision == "APPROVE"
    assert decide(OVERRIDABLE, type="refund", amount="5000", actor_level="Board").decision == "APPROVE"
    assert decide(OVERRIDABLE, type="refund", amount="4999.99", actor_level="L1").decision == "APPROVE"
    o = decide(OVERRIDABLE, type="refund", amount="6000", actor_level=None)
    assert o.decision == "REJECT" and "actor_level" in _reason(o)
    o = decide(OVERRIDABLE, type="refund", amount="6000", actor_level="Intern")
    assert o.decision == "REJECT" and "actor_level" in _reason(o)


def test_fraud_check(decide: Any) -> None:
    risky = {"vendor_risk": "high"}
    assert decide(FRAUD, amount="25000.01", actor_level="L3", attributes=risky).decision == "REJECT"
    assert decide(FRAUD, amount="25000.01", actor_level="CFO", attributes=risky).decision == "APPROVE"
    assert decide(FRAUD, amount="25000", actor_level="L1", attributes=risky).decision == "APPROVE"
    assert (
        decide(FRAUD, amount="90000", actor_level="L1", attributes={"vendor_risk": "low"}).decision
        == "APPROVE"
    )
    # No appliesTo: every type, even an unknown one or none at all.
    assert decide(FRAUD, type="loan", amount="90000", actor_level="L1", attributes=risky).decision == "REJECT"
    assert decide(FRAUD, type=None, amount="90000", actor_level="L1", attributes=risky).decision == "REJECT"


def test_membership(decide: Any) -> None:
    text = _restriction('[ a fab:Membership ; fab:attribute "channel" ; fab:value "fax", "telex" ]')
    assert decide(text, attributes={"channel": "fax"}).decision == "REJECT"
    assert decide(text, attributes={"channel": "Fax"}).decision == "APPROVE"
    assert decide(text, attributes={"channel": "portal"}).decision == "APPROVE"
    numeric = _restriction('[ a fab:Membership ; fab:attribute "bucket" ; fab:value 3, "7.5"^^xsd:decimal ]')
    assert decide(numeric, attributes={"bucket": "3.00"}).decision == "REJECT"
    assert decide(numeric, attributes={"bucket": 3}).decision == "REJECT"
    assert decide(numeric, attributes={"bucket": "7.50"}).decision == "REJECT"
    assert decide(numeric, attributes={"bucket": "4"}).decision == "APPROVE"
    o = decide(numeric, attributes={"bucket": "three"})
    assert o.decision == "REJECT" and "bucket" in _reason(o)


def test_not(decide: Any) -> None:
    text = _restriction(
        '[ a fab:Not ; fab:operand [ a fab:Membership ; fab:attribute "country" ; fab:value "US", "CA" ] ]'
    )
    assert decide(text, attributes={"country": "FR"}).decision == "REJECT"
    assert decide(text, attributes={"country": "US"}).decision == "APPROVE"
    # A missing field never makes a Not hold by accident: it fails closed, naming the field.
    o = decide(text, attributes={})
    assert o.decision == "REJECT" and "country" in _reason(o)


def test_any_of(decide: Any) -> None:
    text = _restriction(
        "[ a fab:AnyOf ; fab:operand "
        '[ a fab:Comparison ; fab:attribute "country" ; fab:operator fab:eq ; fab:value "KP" ] , '
        '[ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:ge ; fab:value 1000 ] ]'
    )
    assert decide(text, amount="10", attributes={"country": "KP"}).decision == "REJECT"
    assert decide(text, amount="1000", attributes={"country": "US"}).decision == "REJECT"
    assert decide(text, amount="999.99", attributes={"country": "US"}).decision == "APPROVE"
    # Every leaf is read: a missing field fails closed even when another operand already holds.
    o = decide(text, amount="5000", attributes={})
    assert o.decision == "REJECT" and "country" in _reason(o)


def test_all_of_names_every_missing_field(decide: Any) -> None:
    text = _restriction(
        "[ a fab:AllOf ; fab:operand "
        '[ a fab:Comparison ; fab:attribute "zeta" ; fab:operator fab:eq ; fab:value "x" ] , '
        '[ a fab:Comparison ; fab:attribute "alpha" ; fab:operator fab:eq ; fab:value "y" ] ]'
    )
    why = _reason(decide(text, attributes={}))
    assert "alpha" in why and "zeta" in why
    assert decide(text, attributes={"zeta": "x", "alpha": "y"}).decision == "REJECT"
    assert decide(text, attributes={"zeta": "x", "alpha": "n"}).decision == "APPROVE"


@pytest.mark.parametrize(
    ("op", "value", "holds_for"),
    [
        ("lt", "L3", {"L1", "L2"}),
        ("le", "L3", {"L1", "L2", "L3"}),
        ("gt", "L3", {"CFO", "Board"}),
        ("ge", "CFO", {"CFO", "Board"}),
        ("eq", "L2", {"L2"}),
        ("ne", "L2", {"L1", "L3", "CFO", "Board"}),
    ],
)
def test_actor_level_compares_by_rank(decide: Any, op: str, value: str, holds_for: set[str]) -> None:
    text = _restriction(
        f'[ a fab:Comparison ; fab:attribute "actor_level" ; fab:operator fab:{op} ; fab:value "{value}" ]'
    )
    got = {
        lv for lv in ("L1", "L2", "L3", "CFO", "Board") if decide(text, actor_level=lv).decision == "REJECT"
    }
    assert got == holds_for


def test_an_unknown_actor_level_fails_closed_on_rank_comparisons(decide: Any) -> None:
    text = _restriction(
        '[ a fab:Comparison ; fab:attribute "actor_level" ; fab:operator fab:lt ; fab:value "L3" ]'
    )
    for level in ("Intern", None):
        o = decide(text, actor_level=level)
        assert o.decision == "REJECT" and "actor_level" in _reason(o)


@pytest.mark.parametrize(
    ("op", "attr", "decision"),
    [
        ("gt", "0.30", "APPROVE"),
        ("ge", "0.30", "REJECT"),
        ("eq", "0.3", "REJECT"),  # decimals compare as decimals, not as text
        ("eq", "0.300", "REJECT"),
        ("ne", "0.30", "APPROVE"),
        ("lt", "0.29999999999999999999", "REJECT"),
        ("le", "0.30000000000000000001", "APPROVE"),
    ],
)
def test_decimal_comparisons_are_exact(decide: Any, op: str, attr: str, decision: str) -> None:
    text = _restriction(
        f'[ a fab:Comparison ; fab:attribute "fee" ; fab:operator fab:{op} ; fab:value "0.30"^^xsd:decimal ]'
    )
    assert decide(text, attributes={"fee": attr}).decision == decision


def test_float_attributes_are_refused_where_a_decimal_is_compared(decide: Any) -> None:
    text = _restriction(
        '[ a fab:Comparison ; fab:attribute "fee" ; fab:operator fab:eq ; fab:value "0.3"^^xsd:decimal ]'
    )
    o = decide(text, attributes={"fee": 0.1 + 0.2})
    assert o.decision == "REJECT" and "fee" in _reason(o)


def test_string_comparisons(decide: Any) -> None:
    text = _restriction('[ a fab:Comparison ; fab:attribute "tier" ; fab:operator fab:lt ; fab:value "m" ]')
    assert decide(text, attributes={"tier": "a"}).decision == "REJECT"
    assert decide(text, attributes={"tier": "z"}).decision == "APPROVE"
    flag = _restriction(
        '[ a fab:Comparison ; fab:attribute "manual" ; fab:operator fab:eq ; fab:value "true" ]'
    )
    assert decide(flag, attributes={"manual": True}).decision == "REJECT"
    assert decide(flag, attributes={"manual": False}).decision == "APPROVE"


def test_conditions_can_read_core_fields(decide: Any) -> None:
    text = _restriction(
        '[ a fab:Comparison ; fab:attribute "executor_id" ; fab:operator fab:eq ; fab:value "u-banned" ]'
    )
    assert decide(text, executor_id="u-banned").decision == "REJECT"
    assert decide(text, executor_id="u-2").decision == "APPROVE"
    typed = _restriction(
        '[ a fab:Comparison ; fab:attribute "type" ; fab:operator fab:eq ; fab:value "refund" ]'
    )
    assert decide(typed, type="refund").decision == "REJECT"
    assert decide(typed, type="wire").decision == "APPROVE"


@pytest.mark.parametrize("attributes", [None, "country=KP", ["country"], {}])
def test_missing_attributes_fail_closed(decide: Any, attributes: object) -> None:
    o = decide(SANCTIONS, type="wire", attributes=attributes)
    assert o.decision == "REJECT"
    assert "country" in _reason(o)


# --- types ---------------------------------------------------------------------------------


def test_a_transaction_without_type_fails_closed_on_typed_rules(decide: Any) -> None:
    rules = APPROVAL + SOD + FRAUD
    for no_type in (None, 7, ["wire"]):
        o = decide(rules, type=no_type, amount="1", actor_level="Board", attributes={"vendor_risk": "low"})
        assert o.decision == "REJECT", no_type
        assert sorted(_fired(o)) == ["approval", "sod"]
        assert all("type" in why for _, why in o.fired)


def test_an_unknown_type_matches_only_untyped_rules(decide: Any) -> None:
    rules = APPROVAL + SOD + FRAUD
    o = decide(
        rules,
        type="loan",
        amount="90000",
        actor_level="L1",
        attributes={"vendor_risk": "high"},
        approver_id="u",
        executor_id="u",
    )
    assert _fired(o) == ["fraud"]


def test_every_rule_that_fires_is_named(decide: Any) -> None:
    rules = SOD + SANCTIONS + FRAUD
    o = decide(
        rules,
        type="wire",
        amount="30000",
        actor_level="L1",
        approver_id="u",
        executor_id="u",
        attributes={"country": "KP", "vendor_risk": "high"},
    )
    assert sorted(_fired(o)) == ["fraud", "sanctions", "sod"]
    assert all(why for _, why in o.fired)


# --- notifications and audit ---------------------------------------------------------------

EFFECTS = """
ex:n-any a fab:NotificationRule ; rdfs:label "any" ; fab:onEvent fab:AnyDecision ;
    fab:recipient "all@x", "ops@x" .
ex:n-ok a fab:NotificationRule ; rdfs:label "ok" ; fab:onEvent fab:Approved ; fab:recipient "ok@x" .
ex:n-no a fab:NotificationRule ; rdfs:label "no" ; fab:onEvent fab:Rejected ; fab:recipient "no@x" .
ex:n-senior a fab:NotificationRule ; rdfs:label "senior" ; fab:onEvent fab:AnyDecision ;
    fab:minAuthority ex:CFO ;
    fab:recipient "senior@x" .
ex:n-big a fab:NotificationRule ; rdfs:label "big" ; fab:onEvent fab:AnyDecision ;
    fab:amountThreshold "1000"^^xsd:decimal ; fab:recipient "big@x" .
ex:n-wire a fab:NotificationRule ; rdfs:label "wire" ; fab:onEvent fab:AnyDecision ; fab:appliesTo ex:wire ;
    fab:recipient "wire@x" .
ex:a-ok a fab:AuditLogRule ; rdfs:label "a-ok" ; fab:onEvent fab:Approved ; fab:ledger "main" ;
    fab:flag "f2", "f1" .
ex:a-senior a fab:AuditLogRule ; rdfs:label "a-senior" ; fab:onEvent fab:AnyDecision ;
    fab:minAuthority ex:L3 ;
    fab:ledger "senior" .
"""


def _recipients(o: Outcome) -> set[str]:
    return {to for _, to in o.notifications}


def _ledgers(o: Outcome) -> set[str]:
    return {ledger for _, ledger, _ in o.audit}


def test_notifications_match_event_authority_threshold_and_type(decide: Any) -> None:
    approved = decide(EFFECTS, type="purchase", amount="1000", actor_level="L2")
    assert approved.decision == "APPROVE"
    assert _recipients(approved) == {"all@x", "ops@x", "ok@x"}  # 1000 is not > 1000
    assert ("https://example.com/test#n-any", "ops@x") in approved.notifications
    assert _ledgers(approved) == {"main"}
    assert ("https://example.com/test#a-ok", "main", ("f1", "f2")) in approved.audit

    rich = decide(EFFECTS, type="wire", amount="1000.01", actor_level="CFO")
    assert _recipients(rich) == {"all@x", "ops@x", "ok@x", "senior@x", "big@x", "wire@x"}
    assert _ledgers(rich) == {"main", "senior"}

    rejected = decide(
        EFFECTS + SANCTIONS, type="wire", amount="5", actor_level="L3", attributes={"country": "IR"}
    )
    assert rejected.decision == "REJECT"
    assert _recipients(rejected) == {"all@x", "ops@x", "no@x", "wire@x"}
    assert _ledgers(rejected) == {"senior"}


def test_effects_with_a_condition_they_cannot_read_do_not_match(decide: Any) -> None:
    o = decide(EFFECTS, type="purchase", amount="oops", actor_level="Nobody")
    assert o.decision == "APPROVE"  # no decision rule needs the fields
    assert "senior@x" not in _recipients(o) and "big@x" not in _recipients(o)
    assert "senior" not in _ledgers(o)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"amount": "250000", "actor_level": "L1"},
        {"type": "wire", "approver_id": "u", "executor_id": "u"},
        {"type": "wire", "attributes": {"country": "KP"}},
        {"type": None},
        {"amount": 1.5},
        {"type": "refund", "amount": "9000", "actor_level": "Board", "attributes": {"country": "US"}},
    ],
)
def test_notification_and_audit_never_change_the_decision(
    policies: SimpleNamespace, overrides: dict[str, Any]
) -> None:
    decision_rules = APPROVAL + SOD + SANCTIONS + OVERRIDABLE
    without = Interpreter(policies.policy_of(decision_rules)).decide(policies.tx(**overrides))
    with_effects = Interpreter(policies.policy_of(decision_rules + EFFECTS)).decide(policies.tx(**overrides))
    assert with_effects.decision == without.decision
    assert with_effects.fired == without.fired
    assert with_effects.notifications  # AnyDecision always matches
    assert without.notifications == () and without.audit == ()


def test_comparable_agrees_with_the_decision_json(decide: Any) -> None:
    o = decide(
        APPROVAL + SOD + EFFECTS,
        type="wire",
        approver_id="u",
        executor_id="u",
        amount="2000",
        actor_level="CFO",
    )
    as_json = {
        "decision": o.decision,
        "fired": [{"rule": r, "reason": "whatever"} for r, _ in reversed(o.fired)],
        "notifications": [{"rule": r, "recipient": to} for r, to in reversed(o.notifications)],
        "audit": [{"rule": r, "ledger": led, "flags": list(fl)} for r, led, fl in o.audit],
    }
    assert comparable(as_json) == o.comparable()
    assert o.comparable()[0] == "REJECT"
    assert o.comparable()[1] == (EX + "sod",)


# --- language 1.1: fail closed on what the policy did not foresee ---------------------------

INPUT = "https://w3id.org/finops-fabric/ns#FailClosed/"


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"type": "PURCHASE"}, ["type"]),
        ({"type": "purch\u0430se"}, ["type"]),  # a Cyrillic а
        ({"type": "purchase "}, ["type"]),
        ({"type": "nope"}, ["type"]),
        ({"type": None}, ["type"]),
        ({"amount": "-1"}, ["amount"]),
        ({"amount": " 1000 "}, ["amount"]),
        ({"amount": "1e3"}, ["amount"]),
        ({"amount": 1000.0}, ["amount"]),
        ({"amount": Decimal("NaN")}, ["amount"]),
        ({"amount": None}, ["amount"]),
        ({"actor_level": "l1"}, ["actor_level"]),
        ({"actor_level": None}, ["actor_level"]),
        ({"type": "nope", "amount": "-5", "actor_level": "X"}, ["actor_level", "amount", "type"]),
    ],
)
def test_language_1_1_rejects_undeclared_inputs(
    policies: SimpleNamespace, overrides: dict[str, Any], fields: list[str]
) -> None:
    policy = policies.policy_of(APPROVAL)
    tx = policies.tx(**{"amount": "10", **overrides})
    old = Interpreter(policy).decide(tx)
    new = Interpreter(policy, language="1.1").decide(tx)
    checks = sorted(r.removeprefix(INPUT) for r, _ in new.fired if r.startswith(INPUT))
    assert checks == fields
    assert new.decision == "REJECT"
    # language 1.0 is unchanged: none of the input checks
    assert not any(r.startswith(INPUT) for r, _ in old.fired)


def test_language_1_1_keeps_1_0_on_declared_inputs(policies: SimpleNamespace) -> None:
    policy = policies.policy_of(APPROVAL + SOD)
    for amount in ("0", "99999.99", "100000.01", 5):
        tx = policies.tx(amount=amount)
        assert Interpreter(policy, "1.1").decide(tx) == Interpreter(policy).decide(tx)


def test_unknown_language_is_refused(policies: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="language"):
        Interpreter(policies.policy_of(APPROVAL), language="2.0")


# --- language 1.1 reads every decimal strictly ------------------------------------------------

_CMP = '[ a fab:Comparison ; fab:attribute "{}" ; fab:operator fab:{} ; fab:value {} ]'
_IN = '[ a fab:Membership ; fab:attribute "{}" ; fab:value {} ]'
STRICT_RULES = "".join(
    f'ex:{name} a fab:RestrictionRule ; rdfs:label "{name}" ; fab:condition {cond} .\n'
    for name, cond in [
        ("score", _CMP.format("score", "ge", "0.75")),
        ("bucket", _IN.format("bucket", "3, 100")),
        ("approver", _CMP.format("approver_id", "eq", "100")),
        ("executor", _IN.format("executor_id", "7, 100")),
        ("level", _CMP.format("actor_level", "ne", "2")),
        ("type", _CMP.format("type", "eq", "5")),
    ]
)
#: Decimal spellings: plain ones (every reading accepts them) and ones only language 1.0 reads
#: (surrounding spaces; a JSON number whose text has an exponent, on a party or code).
SPELLINGS: list[object] = [
    "0.75", "+0.75", "-0", ".5", "100", "+100", "100.0", " 0.75 ", "0.75 ", "\t100", "100\n", " +100",
    "1e2", "1E+2", "+ 1", "5.", "0x10", 100, 3, True, Decimal("100"), Decimal("1E+2"), Decimal("0.75"),
    Decimal("7.0"), Decimal("1E-7"), 0.75, None,
]  # fmt: skip


def _strict_cases() -> list[dict[str, Any]]:
    from conftest import tx  # the tests directory's helpers

    out: list[dict[str, Any]] = []
    for v in SPELLINGS:
        out.append(tx(attributes={"score": v, "bucket": v}))
        out.append(tx(approver_id=v, executor_id=v))
        out.append(tx(approver_id=v, executor_id="u-2"))
        out.append(tx(actor_level=v))
        out.append(tx(type=v))
    return out


@pytest.mark.parametrize(("version", "language"), [("1", "1.0"), ("2", "1.0"), ("3", "1.1")])
def test_the_interpreter_reads_decimals_as_the_generator_of_its_language(
    policies: SimpleNamespace, version: str, language: str
) -> None:
    """Under 1.1 an attribute, a party, a level or a type compared with a decimal is read strictly
    (generator 3's reading): a spaced string is missing to the rule, a party or code is read
    through its text; under 1.0 (generators 1 and 2) a string is trimmed, a party is read through
    its text too."""
    import hashlib
    import json

    from finops_fabric import generators

    policy = policies.policy_of(STRICT_RULES)
    gen = generators.get(version)
    files = gen.build(policy, policies.ZERO_HASH)
    manifest = json.loads(files["manifest.json"])
    enforcer = gen.load(files, manifest, "sha256:" + hashlib.sha256(files["manifest.json"]).hexdigest())
    interp = Interpreter(policy, language)
    cases = _strict_cases()
    for case in cases:
        got, want = comparable(enforcer.decide(dict(case)).to_dict()), interp.decide(case).comparable()
        assert got == want, (case, got, want)


def test_spaced_decimals_are_missing_under_1_1_and_trimmed_under_1_0(policies: SimpleNamespace) -> None:
    policy = policies.policy_of(STRICT_RULES)
    old, new = Interpreter(policy, "1.0"), Interpreter(policy, "1.1")

    def fired(i: Interpreter, **over: Any) -> set[str]:
        return {r.removeprefix(EX) for r, _ in i.decide(policies.tx(**over)).fired}

    for spaced in (" 0.75 ", "0.75\t", "\n0.75"):
        assert "score" in fired(old, attributes={"score": spaced, "bucket": 3})
        assert "score" in fired(new, attributes={"score": spaced, "bucket": 3})  # missing: fails closed
        assert "score" not in fired(old, attributes={"score": spaced.replace("0.75", "0.5"), "bucket": 1})
        assert "score" in fired(new, attributes={"score": spaced.replace("0.75", "0.5"), "bucket": 1})
    assert "score" not in fired(new, attributes={"score": "+0.5", "bucket": 1})
    assert "bucket" not in fired(old, attributes={"score": "0", "bucket": " 1 "})
    assert "bucket" in fired(new, attributes={"score": "0", "bucket": " 1 "})
    # a party is read through its text under 1.1: a JSON number 1e2 is "1E+2", not a plain decimal
    assert "approver" in fired(old, approver_id=Decimal("1E+2"))  # 100 = 100
    assert "approver" in fired(new, approver_id=Decimal("1E+2"))  # missing: fails closed
    assert "approver" not in fired(old, approver_id=" 99 ")
    assert "approver" in fired(new, approver_id=" 99 ")
    assert "approver" not in fired(new, approver_id=99)
    assert "level" not in fired(old, actor_level=" 2 ")
    assert "level" in fired(new, actor_level=" 2 ")
