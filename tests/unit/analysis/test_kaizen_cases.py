"""The case set `mu kaizen` compares on is complete: two implementations of O that decide each
rule by itself, from the atoms of the fields it reads, and agree on every case agree on every
transaction. Checked here with the reference interpreter against itself on a policy with one
rule changed in a way that keeps to O's constants (an operator flipped, a condition negated, a
rank, an event or a minimum authority changed, a rule dropped), in one or two languages: when
they differ on some random transaction, they differ on some case."""

from __future__ import annotations

import os
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from policygen import ORDERED, policy_pair, transaction

from finops_fabric import model as m
from finops_fabric.analysis.cases import kaizen_cases
from finops_fabric.analysis.fields import Unsupported
from finops_fabric.interpreter import Interpreter
from finops_fabric.kaizen import random_cases
from finops_fabric.pipeline import load_ontology
from finops_fabric.rdf.reader import read_policy

DATA = Path(__file__).parent / "data"
EXAMPLES = int(os.environ.get("KAIZEN_EXAMPLES", "150"))
OPS: tuple[m.OperatorName, ...] = ("gt", "ge", "lt", "le", "eq", "ne")


def policy(name: str) -> m.Policy:
    return read_policy(load_ontology(DATA / name).raw.triples)


def example() -> m.Policy:
    from harness import EXAMPLE

    return read_policy(load_ontology(EXAMPLE).raw.triples)


def test_the_plane_meets_every_threshold_exactly_and_a_cent_either_side_at_every_level() -> None:
    p = example()
    made = kaizen_cases(p)
    seen = {(c.get("type"), c.get("amount"), c.get("actor_level")) for c in made.cases}
    levels = [lv.code for lv in p.levels] + [None]
    for tx_type, thresholds in (("purchase", (100000,)), ("wire", (25000, 50000, 1000000))):
        for k in thresholds:
            for amount in (f"{k - 1}.99", str(k), f"{k}.01"):
                for lv in levels:
                    assert any(
                        t == tx_type and a is not None and Decimal(a) == Decimal(amount) and level == lv
                        for t, a, level in seen
                    ), (tx_type, amount, lv)
    assert any(t == "wire" and a is None for t, a, _ in seen)  # a missing amount
    assert any(lv not in levels for _, _, lv in seen)  # an undeclared level
    assert {t for t, _, _ in seen} >= {"purchase", "wire", None} and len({t for t, _, _ in seen}) == 4
    d = made.describe()
    assert d["kind"] == "complete" and d["cases"] == len(made.cases) == len({c["id"] for c in made.cases})
    assert d["parts"]["plane"] > 0 and d["combinations"]["rules"] > 0 and d["combinations"]["effects"] > 0


def test_every_rule_meets_every_combination_of_what_it_reads() -> None:
    """Sanctions (country): each listed country, another, none; the fraud check (vendor risk,
    amount, override CFO): each of its combinations at every level; both parties alike."""
    made = kaizen_cases(example())
    wires = [c for c in made.cases if c.get("type") == "wire"]
    countries = {c["attributes"].get("country", "<none>") for c in wires}
    assert {"IR", "KP", "SY", "CU", "<none>"} <= countries and len(countries) >= 6
    fraud = {
        (c["attributes"].get("vendor_risk", "<none>"), c.get("amount"), c.get("actor_level", "<none>"))
        for c in wires
    }
    for risk in ("high", "<none>"):
        for lv in ("L1", "L2", "L3", "CFO", "Board", "<none>"):
            for sign in (-1, 0, 1, None):  # below 25000, exactly, above, no amount
                assert any(
                    r == risk and v == lv and (a is None if sign is None else a and _sign(a) == sign)
                    for r, a, v in fraud
                ), (risk, lv, sign)
    assert any(c.get("approver_id") == c.get("executor_id") for c in wires)


def _sign(amount: str) -> int:
    d = Decimal(amount) - 25000
    return (d > 0) - (d < 0)


def test_two_languages_add_what_only_one_of_them_reads() -> None:
    p = example()
    one, both = kaizen_cases(p, ["1.0"]), kaizen_cases(p, ["1.0", "1.1"])
    assert both.languages == ("1.0", "1.1") and len(both.cases) > len(one.cases)
    amounts = [c.get("amount") for c in both.cases]
    assert any(isinstance(a, str) and a != a.strip() for a in amounts)  # padded: 1.0 trims, 1.1 refuses
    assert any(isinstance(a, str) and a.startswith("-") for a in amounts)  # negative: 1.1 refuses


def test_a_large_policy_stays_small() -> None:
    """The set grows with the rules, not with the product of their conditions (the joint cells of
    `complete_cases` for t2 are far more)."""
    made = kaizen_cases(policy("t2"), ["1.0", "1.1"])
    assert 0 < len(made.cases) < 20_000


# --- the property: a changed rule that keeps to O's constants is always caught ---------------------


def _flip(c: m.Condition, target: int, op: str | None, counter: list[int]) -> m.Condition:
    if isinstance(c, m.Comparison | m.Membership):
        counter[0] += 1
        if counter[0] - 1 != target:
            return c
        if isinstance(c, m.Membership) or op is None:
            return m.Not(c)
        return replace(c, operator=op)
    if isinstance(c, m.Not):
        return m.Not(_flip(c.operand, target, op, counter))
    return type(c)(tuple(_flip(o, target, op, counter) for o in c.operands))


def _operators(leaf: m.Comparison | m.Membership) -> list[str | None]:
    """The operators a leaf may take without comparing with anything O does not (None: negate)."""
    if isinstance(leaf, m.Membership):
        return [None]
    ordered = isinstance(leaf.value, Decimal) or leaf.attribute in ("actor_level", ORDERED)
    if leaf.attribute == "actor_level" and isinstance(leaf.value, Decimal):
        ordered = False
    return [None, *(OPS if ordered else ("eq", "ne"))]


@st.composite
def changed(draw: st.DrawFn, p: m.Policy) -> m.Policy:
    i = draw(st.integers(min_value=0, max_value=len(p.rules) - 1))
    r = p.rules[i]
    levels = list(p.levels)
    new: m.Rule | None = r
    what = draw(st.sampled_from(("drop", "change", "change", "change")))
    if what == "drop":
        new = None
    elif isinstance(r, m.ApprovalRule):
        new = replace(r, required=draw(st.sampled_from(levels)))
    elif isinstance(r, m.RestrictionRule):
        leaves = list(m.condition_leaves(r.condition))
        j = draw(st.integers(min_value=0, max_value=len(leaves) - 1))
        if draw(st.booleans()):
            op = draw(st.sampled_from(_operators(leaves[j])))
            new = replace(r, condition=_flip(r.condition, j, op, [0]))
        else:
            new = replace(r, override=draw(st.sampled_from([None, *levels])))
    elif isinstance(r, m.NotificationRule | m.AuditLogRule):
        if draw(st.booleans()):
            new = replace(r, event=draw(st.sampled_from(("Approved", "Rejected", "AnyDecision"))))
        else:
            new = replace(r, min_authority=draw(st.sampled_from([None, *levels])))
    rules = [x for x in (*p.rules[:i], new, *p.rules[i + 1 :]) if x is not None]
    return replace(p, rules=tuple(rules))


def _outcome(interp: Interpreter, tx: dict[str, Any]) -> Any:
    return interp.decide(tx).comparable()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.data(),
    policy_pair(),
    st.sampled_from([("1.0", "1.0"), ("1.1", "1.1"), ("1.0", "1.1")]),
    st.lists(transaction(), min_size=40, max_size=40),
)
def test_a_rule_changed_within_the_constants_of_o_is_caught_by_the_cases(
    data: st.DataObject, pair: tuple[m.Policy, m.Policy], langs: tuple[str, str], txs: list[dict[str, Any]]
) -> None:
    p = pair[0]
    q = data.draw(changed(p))
    try:
        made = kaizen_cases(p, sorted(set(langs)))
    except Unsupported:
        assume(False)
        return
    a, b = Interpreter(p, langs[0]), Interpreter(q, langs[1])
    sample = txs + random_cases(p, 300, seed=len(txs))
    differs = [tx for tx in sample if _outcome(a, tx) != _outcome(b, tx)]
    caught = any(_outcome(a, tx) != _outcome(b, tx) for tx in made.cases)
    assert caught or not differs, (differs[:3], [r.iri for r in p.rules])


@pytest.mark.parametrize("name", ["t0", "t1", "t2"])
def test_the_acceptance_policies_against_their_own_changes(name: str) -> None:
    """Every single-rule change of the kind above, on the impact test policies: caught."""
    p = policy(name)
    made = kaizen_cases(p, ["1.0"])
    a = Interpreter(p, "1.0")
    expected = [_outcome(a, tx) for tx in made.cases]
    sample = random_cases(p, 1500, seed=11)
    baseline = [_outcome(a, tx) for tx in sample]
    for i, r in enumerate(p.rules):
        variants: list[m.Rule | None] = [None]
        if isinstance(r, m.ApprovalRule):
            variants += [replace(r, required=lv) for lv in p.levels if lv != r.required]
        if isinstance(r, m.RestrictionRule):
            leaves = list(m.condition_leaves(r.condition))
            for j, leaf in enumerate(leaves):
                variants += [replace(r, condition=_flip(r.condition, j, op, [0])) for op in _operators(leaf)]
        for v in variants:
            q = replace(p, rules=tuple(x for x in (*p.rules[:i], v, *p.rules[i + 1 :]) if x is not None))
            b = Interpreter(q, "1.0")
            differs = any(_outcome(b, tx) != o for tx, o in zip(sample, baseline, strict=True))
            caught = any(_outcome(b, tx) != o for tx, o in zip(made.cases, expected, strict=True))
            assert caught or not differs, (r.iri, v)
