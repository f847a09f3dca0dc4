"""The invariant gate: sod, levels, golden and satisfiable, on small inline policies."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest

from finops_fabric import model as m
from finops_fabric.errors import Finding
from finops_fabric.invariants import (
    INVARIANTS,
    check_golden,
    check_invariants,
    check_levels,
    check_satisfiable,
    check_sod,
)

EX = "https://example.com/test#"
PolicyOf = Callable[..., m.Policy]

SOD_WIRE = 'ex:sod-wire a fab:SegregationOfDutyRule ; rdfs:label "sod" ; fab:appliesTo ex:wire .\n'
SOD_ALL = 'ex:sod-all a fab:SegregationOfDutyRule ; rdfs:label "sod for all" .\n'


@pytest.fixture
def policy(policies: SimpleNamespace) -> PolicyOf:
    return policies.policy_of


def _check(findings: list[Finding], invariant: str) -> None:
    for f in findings:
        assert f.gate == "invariant"
        assert f.invariant == invariant
        assert f.message
        assert f.focus in f.nodes


def test_the_invariants_are_named() -> None:
    assert INVARIANTS == ("sod", "levels", "golden", "satisfiable")


# --- sod -----------------------------------------------------------------------------------


def test_a_role_that_approves_and_executes_a_covered_type(policy: PolicyOf) -> None:
    p = policy(
        SOD_WIRE + 'ex:teller a fab:Role ; rdfs:label "Teller" ; fab:canApprove ex:wire ; '
        "fab:canExecute ex:wire, ex:purchase .\n"
    )
    (f,) = check_sod(p)
    _check([f], "sod")
    assert f.severity == "violation"
    assert f.focus == EX + "teller"
    assert f.label == "Teller"
    assert set(f.nodes) == {EX + "teller", EX + "sod-wire"}
    assert "wire" in f.message and "Teller" in f.message


def test_a_role_on_an_uncovered_type_is_fine(policy: PolicyOf) -> None:
    p = policy(
        SOD_WIRE + 'ex:buyer a fab:Role ; rdfs:label "Buyer" ; fab:canApprove ex:purchase ; '
        "fab:canExecute ex:purchase .\n"
    )
    assert check_sod(p) == []


def test_roles_that_split_the_duty_are_fine(policy: PolicyOf) -> None:
    p = policy(
        SOD_ALL
        + 'ex:approver a fab:Role ; rdfs:label "Approver" ; fab:canApprove ex:wire, ex:purchase .\n'
        + 'ex:operator a fab:Role ; rdfs:label "Operator" ; fab:canExecute ex:wire, ex:purchase .\n'
    )
    assert check_sod(p) == []


def test_a_sod_rule_without_applies_to_covers_every_type(policy: PolicyOf) -> None:
    p = policy(
        SOD_ALL + 'ex:clerk a fab:Role ; rdfs:label "Clerk" ; fab:canApprove ex:refund, ex:purchase ; '
        "fab:canExecute ex:refund, ex:purchase .\n"
    )
    findings = check_sod(p)
    _check(findings, "sod")
    assert len(findings) == 2
    assert {("refund" in f.message, "purchase" in f.message) for f in findings} == {
        (True, False),
        (False, True),
    }
    assert all(EX + "sod-all" in f.nodes for f in findings)


def test_without_a_sod_rule_nothing_is_covered(policy: PolicyOf) -> None:
    p = policy(
        'ex:clerk a fab:Role ; rdfs:label "Clerk" ; fab:canApprove ex:wire ; fab:canExecute ex:wire .\n'
    )
    assert check_sod(p) == []


def test_every_covering_rule_is_named(policy: PolicyOf) -> None:
    p = policy(
        SOD_WIRE + SOD_ALL + 'ex:clerk a fab:Role ; rdfs:label "Clerk" ; fab:canApprove ex:wire ; '
        "fab:canExecute ex:wire .\n"
    )
    (f,) = check_sod(p)
    assert f.nodes == (EX + "clerk", EX + "sod-all", EX + "sod-wire")


# --- levels --------------------------------------------------------------------------------


def test_unique_reference_data_is_fine(policy: PolicyOf) -> None:
    assert check_levels(policy("")) == []


def test_duplicate_level_codes(policy: PolicyOf) -> None:
    p = policy('ex:L2b a fab:AuthorityLevel ; fab:code "L2" ; fab:rank 7 .\n')
    (f,) = check_levels(p)
    _check([f], "levels")
    assert "code" in f.message and "'L2'" in f.message
    assert set(f.nodes) == {EX + "L2", EX + "L2b"}
    assert f.severity == "violation"


def test_duplicate_level_ranks(policy: PolicyOf) -> None:
    p = policy('ex:Deputy a fab:AuthorityLevel ; fab:code "Deputy" ; fab:rank 4 .\n')
    (f,) = check_levels(p)
    _check([f], "levels")
    assert "rank" in f.message and "'4'" in f.message
    assert set(f.nodes) == {EX + "CFO", EX + "Deputy"}


def test_duplicate_type_codes(policy: PolicyOf) -> None:
    p = policy('ex:wire2 a fab:TransactionType ; fab:code "wire" ; rdfs:label "Another wire" .\n')
    (f,) = check_levels(p)
    _check([f], "levels")
    assert "transaction type code" in f.message
    assert set(f.nodes) == {EX + "wire", EX + "wire2"}


def test_every_duplicate_is_reported(policy: PolicyOf) -> None:
    p = policy(
        'ex:X a fab:AuthorityLevel ; fab:code "L1" ; fab:rank 2 .\n'
        'ex:p2 a fab:TransactionType ; fab:code "purchase" ; rdfs:label "P" .\n'
    )
    findings = check_levels(p)
    _check(findings, "levels")
    kinds = sorted(f.message.split(" '")[0] for f in findings)
    assert kinds == ["authority level code", "authority level rank", "transaction type code"]


# --- golden --------------------------------------------------------------------------------

GOLDEN_RULES = """
ex:approval a fab:ApprovalRule ; rdfs:label "a" ; fab:appliesTo ex:purchase ;
    fab:amountThreshold 100 ; fab:requiredAuthority ex:L3 .
ex:notify a fab:NotificationRule ; rdfs:label "n" ; fab:onEvent fab:AnyDecision ;
    fab:recipient "x@example.com" .
"""


def _case(name: str, expect: str = "Reject", fired: str = "") -> str:
    fired_part = f" ; fab:expectFired {fired}" if fired else ""
    return (
        f'ex:{name} a fab:GoldenCase ; fab:scenario "{name}" ; fab:txType ex:purchase ; fab:txAmount 500 ; '
        f"fab:txActorLevel ex:L1 ; fab:expect fab:{expect}{fired_part} .\n"
    )


def test_golden_cases_naming_decision_rules_are_fine(policy: PolicyOf) -> None:
    p = policy(GOLDEN_RULES + _case("ok", fired="ex:approval") + _case("small", expect="Approve"))
    assert check_golden(p) == []


def test_expect_fired_naming_an_unknown_rule(policy: PolicyOf) -> None:
    p = policy(GOLDEN_RULES + _case("c1", fired="ex:approval, ex:ghost"))
    (f,) = check_golden(p)
    _check([f], "golden")
    assert f.focus == EX + "c1"
    assert EX + "ghost" in f.nodes
    assert "not a rule of O" in f.message
    assert '"c1"' in f.message


def test_expect_fired_naming_a_notification_rule(policy: PolicyOf) -> None:
    p = policy(GOLDEN_RULES + _case("c2", fired="ex:notify"))
    (f,) = check_golden(p)
    _check([f], "golden")
    assert EX + "notify" in f.nodes
    assert "notification or audit rule" in f.message


def test_expect_approve_with_fired_rules(policy: PolicyOf) -> None:
    p = policy(GOLDEN_RULES + _case("c3", expect="Approve", fired="ex:approval"))
    (f,) = check_golden(p)
    _check([f], "golden")
    assert "APPROVE" in f.message


def test_duplicate_scenarios(policy: PolicyOf) -> None:
    p = policy(GOLDEN_RULES + _case("dup") + _case("dup").replace("ex:dup a", "ex:dup2 a"))
    (f,) = check_golden(p)
    _check([f], "golden")
    assert set(f.nodes) == {EX + "dup", EX + "dup2"}
    assert "2 times" in f.message


# --- satisfiable ---------------------------------------------------------------------------


def _restriction(name: str, condition: str) -> str:
    return f'ex:{name} a fab:RestrictionRule ; rdfs:label "{name}" ; fab:condition {condition} .\n'


def _cmp(attr: str, op: str, value: str) -> str:
    return f'[ a fab:Comparison ; fab:attribute "{attr}" ; fab:operator fab:{op} ; fab:value {value} ]'


def _all(*ops: str) -> str:
    return "[ a fab:AllOf ; fab:operand " + " , ".join(ops) + " ]"


def _any(*ops: str) -> str:
    return "[ a fab:AnyOf ; fab:operand " + " , ".join(ops) + " ]"


def test_an_impossible_range_is_a_warning(policy: PolicyOf) -> None:
    p = policy(_restriction("never", _all(_cmp("amount", "gt", "100"), _cmp("amount", "lt", "50"))))
    (f,) = check_satisfiable(p)
    _check([f], "satisfiable")
    assert f.severity == "warning"
    assert f.focus == EX + "never"
    assert f.label == "never"
    assert "never hold" in f.message


def test_a_possible_range_is_not_a_warning(policy: PolicyOf) -> None:
    p = policy(_restriction("band", _all(_cmp("amount", "gt", "50"), _cmp("amount", "lt", "100"))))
    assert check_satisfiable(p) == []


@pytest.mark.parametrize(
    ("condition", "never"),
    [
        (_all(_cmp("amount", "gt", "100"), _cmp("amount", "le", "100")), True),
        (_all(_cmp("amount", "ge", "100"), _cmp("amount", "lt", "100")), True),
        (_all(_cmp("amount", "ge", "100"), _cmp("amount", "le", "100")), False),
        (_all(_cmp("amount", "gt", '"0.10"^^xsd:decimal'), _cmp("amount", "lt", '"0.1"^^xsd:decimal')), True),
        (_all(_cmp("amount", "gt", "100"), _cmp("fee", "lt", "50")), False),  # different attributes
        (_all(_cmp("country", "eq", '"US"'), _cmp("country", "eq", '"FR"')), True),
        (_all(_cmp("country", "eq", '"US"'), _cmp("country", "eq", '"US"')), False),
        (
            _all(
                '[ a fab:Membership ; fab:attribute "c" ; fab:value "A", "B" ]',
                '[ a fab:Membership ; fab:attribute "c" ; fab:value "C" ]',
            ),
            True,
        ),
        (
            _all(
                '[ a fab:Membership ; fab:attribute "c" ; fab:value "A", "B" ]',
                '[ a fab:Membership ; fab:attribute "c" ; fab:value "B", "C" ]',
            ),
            False,
        ),
        (_all('[ a fab:Membership ; fab:attribute "n" ; fab:value 1, 2 ]', _cmp("n", "gt", "5")), True),
        (_all('[ a fab:Membership ; fab:attribute "n" ; fab:value 1, 7 ]', _cmp("n", "gt", "5")), False),
        (
            _any(
                _all(_cmp("amount", "gt", "100"), _cmp("amount", "lt", "50")),
                _all(_cmp("x", "eq", '"a"'), _cmp("x", "eq", '"b"')),
            ),
            True,
        ),
        (_any(_all(_cmp("amount", "gt", "100"), _cmp("amount", "lt", "50")), _cmp("x", "eq", '"a"')), False),
        (_all(_all(_cmp("amount", "gt", "100"), _cmp("amount", "lt", "50")), _cmp("x", "eq", '"a"')), True),
        ("[ a fab:Not ; fab:operand " + _cmp("amount", "gt", "0") + " ]", False),
        (
            _all(_cmp("actor_level", "gt", '"CFO"'), _cmp("actor_level", "lt", '"L1"')),
            True,
        ),  # rank > 4 and < 1: none
    ],
)
def test_satisfiable_is_exact(policy: PolicyOf, condition: str, never: bool) -> None:
    p = policy(_restriction("r", condition))
    assert bool(check_satisfiable(p)) is never


def test_fraud_checks_are_checked_too(policy: PolicyOf) -> None:
    p = policy(
        'ex:f a fab:FraudCheckRule ; rdfs:label "f" ; fab:condition '
        + _all(_cmp("amount", "gt", "10"), _cmp("amount", "lt", "5"))
        + " .\n"
    )
    (f,) = check_satisfiable(p)
    assert f.focus == EX + "f"


# --- all together --------------------------------------------------------------------------


def test_check_invariants_combines_and_sorts(policy: PolicyOf, policies: SimpleNamespace) -> None:
    p = policy(
        SOD_WIRE
        + 'ex:teller a fab:Role ; rdfs:label "Teller" ; fab:canApprove ex:wire ; fab:canExecute ex:wire .\n'
        + 'ex:L2b a fab:AuthorityLevel ; fab:code "L2" ; fab:rank 9 .\n'
        + GOLDEN_RULES
        + _case("c", fired="ex:ghost")
        + _restriction("never", _all(_cmp("amount", "gt", "100"), _cmp("amount", "lt", "50")))
    )
    findings = check_invariants(p)
    assert {f.invariant for f in findings} == {"sod", "levels", "golden", "satisfiable"}
    assert findings == sorted(findings, key=Finding.sort_key)
    assert [f.severity for f in findings if f.invariant == "satisfiable"] == ["warning"]
    assert all(f.severity == "violation" for f in findings if f.invariant != "satisfiable")
    clean: m.Policy = policies.policy_of(policies.FULL_RULES)
    assert check_invariants(clean) == []
