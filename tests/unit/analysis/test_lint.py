"""`mu analyze`'s findings on small inline policies with known answers."""

from __future__ import annotations

from types import SimpleNamespace

from finops_fabric.analysis.lint import analyze, condition_can_hold

EX = "https://example.com/test#"


def _approval(name: str, threshold: str, level: str, types: str = "ex:purchase") -> str:
    return (
        f'ex:{name} a fab:ApprovalRule ; rdfs:label "{name}" ; fab:appliesTo {types} ;\n'
        f'    fab:amountThreshold "{threshold}"^^xsd:decimal ; fab:requiredAuthority ex:{level} .\n'
    )


def _restriction(name: str, condition: str, extra: str = "") -> str:
    return (
        f'ex:{name} a fab:RestrictionRule ; rdfs:label "{name}" ; fab:appliesTo ex:purchase ;\n'
        f"    fab:condition {condition}{extra} .\n"
    )


def _cmp(attr: str, op: str, value: str) -> str:
    return f'[ a fab:Comparison ; fab:attribute "{attr}" ; fab:operator fab:{op} ; fab:value {value} ]'


def _all(*operands: str) -> str:
    return "[ a fab:AllOf ; fab:operand " + " , ".join(operands) + " ]"


def _any(*operands: str) -> str:
    return "[ a fab:AnyOf ; fab:operand " + " , ".join(operands) + " ]"


def test_a_clean_policy_has_no_findings(policies: SimpleNamespace) -> None:
    result = analyze(policies.policy_of(policies.FULL_RULES))
    assert result.never_fires == {} and result.never_triggers == {} and result.golden == []


def test_shadowed_approval_rules_name_their_cover(policies: SimpleNamespace) -> None:
    p = policies.policy_of(_approval("wide", "50000", "L3") + _approval("narrow", "60000", "L2"))
    result = analyze(p)
    assert list(result.shadowed) == [EX + "narrow"]
    assert result.shadowed[EX + "narrow"] == {"purchase": [EX + "wide"]}
    assert result.to_dict()["shadowed"][0]["types"] == ["purchase"]


def test_a_rule_covered_only_by_two_others_together(policies: SimpleNamespace) -> None:
    rules = (
        _restriction("low", _cmp("score", "lt", "5"))
        + _restriction("high", _cmp("score", "ge", "5"))
        + _restriction("any", _cmp("score", "ge", "0"))
    )
    result = analyze(policies.policy_of(rules))
    assert result.shadowed[EX + "any"] == {"purchase": ["(the other rules together)"]}
    assert result.shadowed[EX + "high"] == {"purchase": [EX + "any"]}  # each judged on its own
    assert EX + "low" not in result.shadowed  # a score below 0 only "low" rejects


def test_never_fires_and_fails_closed_only(policies: SimpleNamespace) -> None:
    rules = (
        _restriction("wrong-type", _cmp("type", "eq", '"refund"'))  # a purchase is never a refund
        + _restriction("impossible", _all(_cmp("amount", "gt", "100"), _cmp("amount", "lt", "50")))
        + _approval("lowest", "1000", "L1")  # every declared level is at least L1
    )
    result = analyze(policies.policy_of(rules))
    assert result.never_fires == {EX + "wrong-type": ["purchase"]}
    assert set(result.fails_closed_only) == {EX + "impossible", EX + "lowest"}


def test_an_effect_that_never_triggers(policies: SimpleNamespace) -> None:
    rules = (
        _restriction("always", _any(_cmp("amount", "ge", "0"), _cmp("amount", "lt", "0")))
        + 'ex:cheer a fab:NotificationRule ; rdfs:label "cheer" ; fab:appliesTo ex:purchase ; '
        'fab:onEvent fab:Approved ; fab:recipient "x@example.com" .\n'
        + 'ex:log a fab:AuditLogRule ; rdfs:label "log" ; fab:appliesTo ex:purchase ; '
        'fab:onEvent fab:Rejected ; fab:ledger "l" .\n'
    )
    result = analyze(policies.policy_of(rules))
    assert result.never_triggers == {EX + "cheer": ["purchase"]}


def test_golden_cases_that_no_longer_exercise_their_rule(policies: SimpleNamespace) -> None:
    rules = _approval("big", "100000", "L3") + (
        'ex:case a fab:GoldenCase ; fab:scenario "60k by L1" ; fab:txType ex:purchase ; '
        'fab:txAmount "60000"^^xsd:decimal ; fab:txActorLevel ex:L1 ;\n'
        "    fab:expect fab:Reject ; fab:expectFired ex:big .\n"
    )
    result = analyze(policies.policy_of(rules))
    assert result.golden == [
        {
            "scenario": "60k by L1",
            "case": EX + "case",
            "rule": EX + "big",
            "why": "it does not fire on the case's transaction",
        }
    ]
    assert result.findings == 1


def test_language_1_1_input_checks_shadow_fail_closed_rejections(policies: SimpleNamespace) -> None:
    """In 1.1 a missing amount is rejected by the input check too; above its threshold the rule
    still rejects alone."""
    p = policies.policy_of(_approval("big", "100000", "L3"))
    assert EX + "big" not in analyze(p, "1.1").shadowed


def test_condition_can_hold_is_exact(policies: SimpleNamespace) -> None:
    p = policies.policy_of(
        _restriction("r", _all(_cmp("country", "eq", '"1.0"'), _cmp("country", "eq", "1")))
    )
    rule = p.rules[0]
    # "1.0" as text and 1 as a decimal: the text "1.0" is both
    assert condition_can_hold(p, rule)  # type: ignore[arg-type]
    q = policies.policy_of(_restriction("r", _all(_cmp("country", "eq", '"1"'), _cmp("country", "ne", "1"))))
    assert not condition_can_hold(q, q.rules[0])  # type: ignore[arg-type]
