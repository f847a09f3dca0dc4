"""Reading O into the typed model: every rule kind, every condition, golden cases, and refusals."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from finops_fabric import model as m
from finops_fabric.errors import CheckFailed
from finops_fabric.rdf.load import load_graph
from finops_fabric.rdf.reader import read_policy

EX = "https://example.com/test#"


def _read(tmp_path: Path, text: str, name: str = "o.ttl") -> m.Policy:
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return read_policy(load_graph(f).triples)


def _refused(tmp_path: Path, text: str) -> CheckFailed:
    with pytest.raises(CheckFailed) as ei:
        _read(tmp_path, text)
    assert ei.value.code == "ontology.model"
    assert ei.value.exit_code == 1
    return ei.value


@pytest.fixture
def full(tmp_path: Path, policies: SimpleNamespace) -> m.Policy:
    return _read(tmp_path, policies.REFERENCE + policies.FULL_RULES)


def test_reference_data(full: m.Policy) -> None:
    assert full.iri == EX + "policy"
    assert full.title == "Test policy"
    assert full.version == "1.0"
    assert [t.code for t in full.types] == ["purchase", "refund", "wire"]
    assert full.types[2] == m.TransactionType(EX + "wire", "wire", "Wire transfer")
    assert [(lv.code, lv.rank) for lv in full.levels] == [
        ("L1", 1),
        ("L2", 2),
        ("L3", 3),
        ("CFO", 4),
        ("Board", 5),
    ]
    assert full.level_by_code("CFO") == m.AuthorityLevel(EX + "CFO", "CFO", 4)
    assert full.level_by_code("nope") is None
    assert full.roles == ()
    assert full.golden == ()


def test_rules_are_sorted_by_iri_and_looked_up(full: m.Policy) -> None:
    iris = [r.iri for r in full.rules]
    assert iris == sorted(iris)
    assert len(iris) == 13
    assert full.rule(EX + "sod-wire") is not None
    assert full.rule(EX + "nope") is None


def test_approval_rule(full: m.Policy) -> None:
    r = full.rule(EX + "approval-purchase")
    assert isinstance(r, m.ApprovalRule)
    assert r.kind == "approval"
    assert r.label == "Purchases over 100k need L3"
    assert r.rationale == "Delegation of authority, section 4"
    assert r.applies_to == ("purchase",)
    assert r.threshold == Decimal("100000") and r.threshold_text == "100000"
    assert r.required == m.AuthorityLevel(EX + "L3", "L3", 3)
    w = full.rule(EX + "approval-wire")
    assert isinstance(w, m.ApprovalRule)
    assert w.rationale is None
    assert w.threshold_text == "50000.50"
    assert str(w.threshold) == "50000.50"


def test_segregation_of_duty_rule(full: m.Policy) -> None:
    r = full.rule(EX + "sod-wire")
    assert r == m.SegregationOfDutyRule(EX + "sod-wire", "Wire approver must not execute it", None, ("wire",))
    assert r.kind == "sod"


def test_restriction_rule_with_membership(full: m.Policy) -> None:
    r = full.rule(EX + "sanctions")
    assert isinstance(r, m.RestrictionRule)
    assert r.kind == "restriction"
    assert r.fraud_check is False
    assert r.override is None
    assert r.condition == m.Membership("country", ("IR", "KP"))


def test_fraud_check_rule_with_nested_all_of(full: m.Policy) -> None:
    r = full.rule(EX + "fraud")
    assert isinstance(r, m.RestrictionRule)
    assert r.fraud_check is True
    assert r.applies_to == ("purchase", "wire")
    assert r.override is not None and r.override.code == "CFO"
    assert r.condition == m.AllOf(
        (
            m.Comparison("amount", "gt", Decimal("25000")),
            m.Comparison("vendor_risk", "eq", "high"),
        )
    )


def test_any_of_not_and_rank_comparison(full: m.Policy) -> None:
    r = full.rule(EX + "refund-channel")
    assert isinstance(r, m.RestrictionRule)
    assert r.condition == m.AnyOf(
        (
            m.Comparison("actor_level", "lt", "L2"),
            m.Not(m.Membership("channel", ("branch", "portal"))),
        )
    )
    assert m.condition_attributes(r.condition) == ("actor_level", "channel")


def test_numeric_membership_and_decimal_comparison(full: m.Policy) -> None:
    bucket = full.rule(EX + "bucket")
    assert isinstance(bucket, m.RestrictionRule)
    assert bucket.condition == m.Membership("bucket", (Decimal(3), Decimal(7)))
    assert all(isinstance(v, Decimal) for v in bucket.condition.values)  # type: ignore[union-attr]
    score = full.rule(EX + "score-limit")
    assert isinstance(score, m.RestrictionRule)
    assert score.applies_to == ()
    assert score.override is not None and score.override.rank == 5
    assert score.condition == m.Comparison("score", "ge", Decimal("0.75"))


def test_notification_rules(full: m.Policy) -> None:
    r = full.rule(EX + "notify-finance")
    assert isinstance(r, m.NotificationRule)
    assert r.kind == "notification"
    assert r.event == "AnyDecision"
    assert r.recipients == ("finance@example.com", "ops@example.com")
    assert r.min_authority is None and r.threshold is None and r.threshold_text is None
    big = full.rule(EX + "notify-rejected-big")
    assert isinstance(big, m.NotificationRule)
    assert big.event == "Rejected"
    assert big.threshold == Decimal("10000") and big.threshold_text == "10000"
    senior = full.rule(EX + "notify-senior")
    assert isinstance(senior, m.NotificationRule)
    assert senior.event == "Approved"
    assert senior.min_authority is not None and senior.min_authority.code == "L3"
    assert senior.applies_to == ("purchase",)


def test_audit_rules(full: m.Policy) -> None:
    r = full.rule(EX + "audit-senior")
    assert r == m.AuditLogRule(
        EX + "audit-senior",
        "Senior approvals go to the ledger",
        None,
        (),
        event="Approved",
        ledger="immutable",
        min_authority=m.AuthorityLevel(EX + "CFO", "CFO", 4),
        flags=("cfo_or_above", "senior"),
    )
    rej = full.rule(EX + "audit-rejections")
    assert isinstance(rej, m.AuditLogRule)
    assert rej.kind == "audit" and rej.event == "Rejected" and rej.flags == () and rej.ledger == "rejections"


def test_deeply_nested_conditions(tmp_path: Path, policies: SimpleNamespace) -> None:
    rules = """
ex:nested a fab:RestrictionRule ; rdfs:label "Nested" ;
    fab:condition [ a fab:AllOf ; fab:operand
        [ a fab:AnyOf ; fab:operand
            [ a fab:Membership ; fab:attribute "country" ; fab:value "FR", "DE" ] ,
            [ a fab:Not ; fab:operand [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:le ;
                                        fab:value 10 ] ] ] ,
        [ a fab:Not ; fab:operand [ a fab:AllOf ; fab:operand
            [ a fab:Comparison ; fab:attribute "actor_level" ; fab:operator fab:ge ; fab:value "CFO" ] ] ] ,
        [ a fab:Comparison ; fab:attribute "note" ; fab:operator fab:ne ; fab:value "ok" ] ] .
"""
    p = _read(tmp_path, policies.REFERENCE + rules)
    (r,) = p.rules
    assert isinstance(r, m.RestrictionRule)
    c = r.condition
    assert isinstance(c, m.AllOf)
    assert len(c.operands) == 3
    expected = {
        m.AnyOf(
            (
                m.Membership("country", ("DE", "FR")),
                m.Not(m.Comparison("amount", "le", Decimal(10))),
            )
        ),
        m.Not(m.AllOf((m.Comparison("actor_level", "ge", "CFO"),))),
        m.Comparison("note", "ne", "ok"),
    }
    assert set(c.operands) == expected
    assert m.condition_attributes(c) == ("actor_level", "amount", "country", "note")
    # The operand order is canonical: reading the same O again gives an equal model.
    assert _read(tmp_path, policies.REFERENCE + rules, name="again.ttl") == p


def test_every_operator_is_read(tmp_path: Path, policies: SimpleNamespace) -> None:
    ops = ("gt", "ge", "lt", "le", "eq", "ne")
    rules = "".join(
        f'ex:r-{op} a fab:RestrictionRule ; rdfs:label "{op}" ;\n'
        f'    fab:condition [ a fab:Comparison ; fab:attribute "x" ; fab:operator fab:{op} ;\n'
        '                    fab:value "v" ] .\n'
        for op in ops
    )
    p = _read(tmp_path, policies.REFERENCE + rules)
    got = {r.iri.rsplit("-", 1)[1]: r.condition.operator for r in p.rules}  # type: ignore[union-attr]
    assert got == {op: op for op in ops}


def test_decimals_are_exact(tmp_path: Path, policies: SimpleNamespace) -> None:
    rules = """
ex:a1 a fab:ApprovalRule ; rdfs:label "a1" ; fab:amountThreshold "0.10"^^xsd:decimal ;
    fab:requiredAuthority ex:L2 .
ex:a2 a fab:ApprovalRule ; rdfs:label "a2" ; fab:amountThreshold 0.10 ; fab:requiredAuthority ex:L2 .
ex:a3 a fab:ApprovalRule ; rdfs:label "a3" ; fab:amountThreshold 1000000000000000000000.000000001 ;
    fab:requiredAuthority ex:L2 .
ex:a4 a fab:ApprovalRule ; rdfs:label "a4" ; fab:amountThreshold 250 ; fab:requiredAuthority ex:L2 .
ex:r1 a fab:RestrictionRule ; rdfs:label "r1" ;
    fab:condition [ a fab:Comparison ; fab:attribute "fee" ; fab:operator fab:gt ;
                    fab:value "0.30"^^xsd:decimal ] .
ex:r2 a fab:RestrictionRule ; rdfs:label "r2" ;
    fab:condition [ a fab:Comparison ; fab:attribute "code" ; fab:operator fab:eq ; fab:value "0.30" ] .
"""
    p = _read(tmp_path, policies.REFERENCE + rules)
    by = {r.iri[len(EX) :]: r for r in p.rules}
    for name in ("a1", "a2"):
        r = by[name]
        assert isinstance(r, m.ApprovalRule)
        assert isinstance(r.threshold, Decimal)
        assert str(r.threshold) == "0.10" and r.threshold_text == "0.10"
        assert r.threshold.as_tuple().exponent == -2
    a3 = by["a3"]
    assert isinstance(a3, m.ApprovalRule)
    assert a3.threshold == Decimal("1000000000000000000000.000000001")
    assert a3.threshold_text == "1000000000000000000000.000000001"
    a4 = by["a4"]
    assert isinstance(a4, m.ApprovalRule) and a4.threshold_text == "250"
    r1 = by["r1"]
    assert isinstance(r1, m.RestrictionRule) and isinstance(r1.condition, m.Comparison)
    assert isinstance(r1.condition.value, Decimal) and str(r1.condition.value) == "0.30"
    r2 = by["r2"]
    assert isinstance(r2, m.RestrictionRule) and isinstance(r2.condition, m.Comparison)
    assert r2.condition.value == "0.30"  # a plain string literal stays a string


def test_applies_to_is_sorted_codes(tmp_path: Path, policies: SimpleNamespace) -> None:
    rules = """
ex:s a fab:SegregationOfDutyRule ; rdfs:label "s" ; fab:appliesTo ex:wire, ex:refund, ex:purchase, ex:wire .
"""
    p = _read(tmp_path, policies.REFERENCE + rules)
    assert p.rules[0].applies_to == ("purchase", "refund", "wire")


def test_roles(tmp_path: Path, policies: SimpleNamespace) -> None:
    rules = """
ex:clerk a fab:Role ; rdfs:label "Clerk" ; fab:canApprove ex:wire, ex:purchase ; fab:canExecute ex:refund .
ex:auditor a fab:Role ; rdfs:label "Auditor" .
"""
    p = _read(tmp_path, policies.REFERENCE + rules)
    assert p.roles == (
        m.Role(EX + "auditor", "Auditor", (), ()),
        m.Role(EX + "clerk", "Clerk", ("purchase", "wire"), ("refund",)),
    )


GOLDEN = """
ex:approval a fab:ApprovalRule ; rdfs:label "Over 100k needs L3" ; fab:appliesTo ex:purchase ;
    fab:amountThreshold "100000"^^xsd:decimal ; fab:requiredAuthority ex:L3 .
ex:notify a fab:NotificationRule ; rdfs:label "n" ; fab:onEvent fab:AnyDecision ;
    fab:recipient "b@example.com", "a@example.com" .

ex:case-1 a fab:GoldenCase ; fab:scenario "purchase_105k_L2" ;
    fab:txType ex:purchase ; fab:txAmount "105000.00"^^xsd:decimal ; fab:txActorLevel ex:L2 ;
    fab:txApprover "u-1" ; fab:txExecutor "u-2" ;
    fab:txAttribute [ fab:attribute "vendor_risk" ; fab:value "low" ] ,
                    [ fab:attribute "country" ; fab:value "US" ] ;
    fab:expect fab:Reject ; fab:expectFired ex:approval ;
    fab:expectNotified "b@example.com", "a@example.com" .

ex:case-2 a fab:GoldenCase ; fab:scenario "a_small_wire" ;
    fab:txType ex:wire ; fab:txAmount 5 ; fab:txActorLevel ex:Board ;
    fab:expect fab:Approve .
"""


def test_golden_cases(tmp_path: Path, policies: SimpleNamespace) -> None:
    p = _read(tmp_path, policies.REFERENCE + GOLDEN)
    assert [g.scenario for g in p.golden] == ["a_small_wire", "purchase_105k_L2"]
    small, big = p.golden
    assert big == m.GoldenCase(
        iri=EX + "case-1",
        scenario="purchase_105k_L2",
        tx_type="purchase",
        amount=Decimal("105000.00"),
        amount_text="105000.00",
        actor_level="L2",
        approver="u-1",
        executor="u-2",
        attributes=(("country", "US"), ("vendor_risk", "low")),
        expect="REJECT",
        expect_fired=(EX + "approval",),
        expect_notified=("a@example.com", "b@example.com"),
    )
    assert big.transaction() == {
        "id": "purchase_105k_L2",
        "type": "purchase",
        "amount": "105000.00",
        "currency": "USD",
        "actor_id": "golden",
        "actor_level": "L2",
        "attributes": {"country": "US", "vendor_risk": "low"},
        "approver_id": "u-1",
        "executor_id": "u-2",
    }
    assert small.expect == "APPROVE"
    assert small.expect_fired is None and small.expect_notified is None
    assert small.approver is None and small.executor is None and small.attributes == ()
    assert small.amount_text == "5"
    assert "approver_id" not in small.transaction() and "executor_id" not in small.transaction()


def test_the_model_does_not_depend_on_file_layout(tmp_path: Path, policies: SimpleNamespace) -> None:
    one = _read(tmp_path, policies.REFERENCE + policies.FULL_RULES + GOLDEN.split("ex:case-1")[0])
    d = tmp_path / "split"
    d.mkdir()
    (d / "ref.ttl").write_text(policies.REFERENCE, encoding="utf-8")
    (d / "rules.ttl").write_text(policies.PREFIXES + policies.FULL_RULES, encoding="utf-8")
    (d / "more.ttl").write_text(policies.PREFIXES + GOLDEN.split("ex:case-1")[0], encoding="utf-8")
    assert read_policy(load_graph(d).triples) == one


# --- refusals ------------------------------------------------------------------------------


def test_a_blank_node_rule_is_refused(tmp_path: Path, policies: SimpleNamespace) -> None:
    e = _refused(tmp_path, policies.REFERENCE + '[] a fab:SegregationOfDutyRule ; rdfs:label "anonymous" .\n')
    assert "blank node" in e.message
    assert e.location is not None and e.location.node is not None and e.location.node.startswith("_:")


def test_a_rule_with_two_classes_is_refused(tmp_path: Path, policies: SimpleNamespace) -> None:
    rules = """
ex:both a fab:ApprovalRule, fab:SegregationOfDutyRule ; rdfs:label "both" ;
    fab:amountThreshold 10 ; fab:requiredAuthority ex:L2 .
"""
    e = _refused(tmp_path, policies.REFERENCE + rules)
    assert e.location is not None and e.location.node == EX + "both"
    assert "ApprovalRule" in e.message and "SegregationOfDutyRule" in e.message


def test_restriction_and_fraud_check_together_is_a_fraud_check(
    tmp_path: Path, policies: SimpleNamespace
) -> None:
    rules = """
ex:f a fab:RestrictionRule, fab:FraudCheckRule ; rdfs:label "f" ;
    fab:condition [ a fab:Comparison ; fab:attribute "risk" ; fab:operator fab:eq ; fab:value "high" ] .
"""
    (r,) = _read(tmp_path, policies.REFERENCE + rules).rules
    assert isinstance(r, m.RestrictionRule) and r.fraud_check is True


def test_an_unknown_level_is_refused(tmp_path: Path, policies: SimpleNamespace) -> None:
    rules = """
ex:a a fab:ApprovalRule ; rdfs:label "a" ; fab:amountThreshold 10 ; fab:requiredAuthority ex:L9 .
"""
    e = _refused(tmp_path, policies.REFERENCE + rules)
    assert e.location is not None and e.location.node == EX + "a"
    assert EX + "L9" in e.message
    assert "not an authority level" in e.message
    assert "L1, L2, L3, CFO, Board" in e.message


def test_an_unknown_level_in_a_golden_case_is_refused(tmp_path: Path, policies: SimpleNamespace) -> None:
    case = """
ex:c a fab:GoldenCase ; fab:scenario "s" ; fab:txType ex:wire ; fab:txAmount 5 ; fab:txActorLevel ex:Intern ;
    fab:expect fab:Approve .
"""
    e = _refused(tmp_path, policies.REFERENCE + case)
    assert e.location is not None and e.location.node == EX + "c"


def test_an_unknown_type_is_refused(tmp_path: Path, policies: SimpleNamespace) -> None:
    e = _refused(
        tmp_path,
        policies.REFERENCE + 'ex:s a fab:SegregationOfDutyRule ; rdfs:label "s" ; fab:appliesTo ex:loan .\n',
    )
    assert "not a transaction type" in e.message


@pytest.mark.parametrize(
    ("rules", "needle"),
    [
        ("ex:a a fab:ApprovalRule ; fab:amountThreshold 10 ; fab:requiredAuthority ex:L2 .", "rdfs:label"),
        (
            'ex:a a fab:ApprovalRule ; rdfs:label "a", "b" ; fab:amountThreshold 10 ; '
            "fab:requiredAuthority ex:L2 .",
            "rdfs:label",
        ),
        (
            'ex:a a fab:ApprovalRule ; rdfs:label "a" ; fab:amountThreshold "ten" ; '
            "fab:requiredAuthority ex:L2 .",
            "fab:amountThreshold",
        ),
        (
            'ex:r a fab:RestrictionRule ; rdfs:label "r" ; fab:condition [ a fab:Comparison ; '
            'fab:attribute "x" ; fab:operator fab:between ; fab:value 1 ] .',
            "fab:operator",
        ),
        (
            'ex:r a fab:RestrictionRule ; rdfs:label "r" ; fab:condition [ fab:attribute "x" ] .',
            "condition class",
        ),
        ('ex:r a fab:RestrictionRule ; rdfs:label "r" ; fab:condition [ a fab:AllOf ] .', "fab:operand"),
        (
            'ex:r a fab:RestrictionRule ; rdfs:label "r" ; '
            'fab:condition [ a fab:Membership ; fab:attribute "x" ] .',
            "fab:value",
        ),
        ('ex:n a fab:NotificationRule ; rdfs:label "n" ; fab:onEvent fab:Approved .', "fab:recipient"),
        (
            'ex:n a fab:NotificationRule ; rdfs:label "n" ; fab:onEvent fab:Sometimes ; fab:recipient "x" .',
            "fab:onEvent",
        ),
        (
            'ex:c a fab:GoldenCase ; fab:scenario "s" ; fab:txType ex:wire ; fab:txAmount 5 ; '
            "fab:txActorLevel ex:L1 ; fab:expect fab:Maybe .",
            "fab:expect",
        ),
    ],
)
def test_malformed_rules_are_refused(
    tmp_path: Path, policies: SimpleNamespace, rules: str, needle: str
) -> None:
    e = _refused(tmp_path, policies.REFERENCE + rules + "\n")
    assert needle in e.message


@pytest.mark.parametrize("lexical", ["1e400x", "NaN", "1_000", " 5 ", "1e5", "0x10", "9" * 80])
def test_the_reader_reads_numbers_only_in_their_lexical_form(policies: SimpleNamespace, lexical: str) -> None:
    """The loader refuses these already (exit 2); triples from elsewhere meet the same rule."""
    import pyoxigraph as ox

    text = (
        policies.REFERENCE
        + f'ex:a a fab:ApprovalRule ; rdfs:label "a" ; fab:amountThreshold "{lexical}"^^xsd:decimal ; '
        + "fab:requiredAuthority ex:L2 .\n"
    )
    triples = list(ox.parse(text.encode(), ox.RdfFormat.TURTLE))
    with pytest.raises(CheckFailed) as ei:
        read_policy(triples)
    assert "fab:amountThreshold" in ei.value.message and "not a decimal number" in ei.value.message


def test_a_condition_cycle_is_refused(tmp_path: Path, policies: SimpleNamespace) -> None:
    rules = """
ex:r a fab:RestrictionRule ; rdfs:label "r" ; fab:condition ex:loop .
ex:loop a fab:Not ; fab:operand ex:loop .
"""
    e = _refused(tmp_path, policies.REFERENCE + rules)
    assert "64" in e.message


def test_exactly_one_policy(tmp_path: Path, policies: SimpleNamespace) -> None:
    no_policy = policies.REFERENCE.replace(
        'ex:policy a fab:Policy ; dcterms:title "Test policy" ; fab:policyVersion "1.0" .', ""
    )
    assert no_policy != policies.REFERENCE
    _refused(tmp_path, no_policy)
    two = policies.REFERENCE + 'ex:policy2 a fab:Policy ; dcterms:title "Another" .\n'
    e = _refused(tmp_path, two)
    assert "exactly one fab:Policy" in e.message


def test_a_non_integer_rank_is_refused(tmp_path: Path, policies: SimpleNamespace) -> None:
    e = _refused(
        tmp_path, policies.REFERENCE + 'ex:L25 a fab:AuthorityLevel ; fab:code "L2.5" ; fab:rank 2.5 .\n'
    )
    assert "integer" in e.message
