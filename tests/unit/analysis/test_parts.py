"""The parts of the engine on their own: decision diagrams, decimal cells, text atoms, the meaning
of a ``when`` constraint."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from finops_fabric import model as m
from finops_fabric.analysis.fields import Cuts, Reads, TextField, Unsupported, _between
from finops_fabric.analysis.mdd import BudgetExceeded, Manager
from finops_fabric.analysis.region import amount_class, contains


def test_diagrams_are_canonical_and_paths_are_disjoint() -> None:
    mgr = Manager([3, 4])
    a = mgr.of_bools(0, [True, False, True])
    b = mgr.of_bools(1, [False, True, True, False])
    both = mgr.and_(a, b)
    assert mgr.and_(b, a) == both  # the same function is the same node
    assert mgr.or_(both, mgr.not_(both)) == mgr.true
    boxes = list(mgr.paths(both, lambda v: v is True))
    cells = [c for box, _ in boxes for c in itertools.product(box.get(0, range(3)), box.get(1, range(4)))]
    assert sorted(cells) == [(0, 1), (0, 2), (2, 1), (2, 2)] and len(cells) == len(set(cells))
    assert mgr.count_paths(both, lambda v: v is True) == len(boxes)
    assert mgr.values_in(both, {0: frozenset({1})}) == {False}
    assert mgr.values_in(both, {0: frozenset({0})}) == {True, False}


def test_a_diagram_budget_stops_the_work() -> None:
    mgr = Manager([50] * 6, node_budget=400)
    with pytest.raises(BudgetExceeded) as err:  # every combination its own terminal: 50**6 of them
        acc = mgr.terminal(())
        for v in range(6):
            acc = mgr.apply("append", lambda t, x: (*t, x), acc, mgr.of_values(v, list(range(50))))
    assert err.value.budget == 400 and "budget" in str(err.value)


def test_decimal_cells() -> None:
    cuts = Cuts([Decimal("100"), Decimal("50"), Decimal("50.0")])
    assert cuts.points == (Decimal("50"), Decimal("100")) and cuts.cells == 5
    assert [cuts.cell_of(Decimal(x)) for x in ("-1", "50", "75", "100.00", "1e9")] == [0, 1, 2, 3, 4]
    assert cuts.compare(2, "gt", Decimal("50")) and not cuts.compare(2, "ge", Decimal("100"))
    for cell in range(cuts.cells):
        assert cuts.cell_of(cuts.sample(cell)) == cell


def test_text_and_decimal_views_are_cut_apart() -> None:
    reads = Reads.empty()
    reads.add_leaf(m.Comparison("x", "eq", "1.0"))
    reads.add_leaf(m.Comparison("x", "ge", Decimal("1")))
    tf = TextField("x", reads, strings_only=False)
    texts = {a.text for a in tf.atoms}
    assert ("pt", "1.0") in texts and ("other",) in texts and None in texts
    # "1.0" (the constant) and "1" (another spelling of the same decimal) are different atoms
    one = [a for a in tf.atoms if a.text == ("other",) and a.dec == tf.cuts.cell_of(Decimal(1))]
    assert len(one) == 1 and one[0].witness not in ("1.0",)
    for a in tf.atoms:
        eq = tf.leaf_value(a, m.Comparison("x", "eq", "1.0"))
        ge = tf.leaf_value(a, m.Comparison("x", "ge", Decimal("1")))
        if a.text is None:
            assert eq is None and ge is None
        if a.text == ("pt", "1.0"):
            assert eq is True and ge is True


def test_a_text_order_with_a_decimal_reading_is_refused() -> None:
    reads = Reads.empty()
    reads.add_leaf(m.Comparison("x", "gt", "m"))
    reads.add_leaf(m.Comparison("x", "lt", Decimal("5")))
    with pytest.raises(Unsupported):
        TextField("x", reads, strings_only=False)


@pytest.mark.parametrize(("lo", "hi"), [(None, "b"), ("a", "b"), ("a", "a\x00\x00"), ("a", None), ("", "a")])
def test_a_string_between_two_constants(lo: str | None, hi: str | None) -> None:
    s = _between(lo, hi, set(), "w")
    assert s is not None and (lo is None or s > lo) and (hi is None or s < hi)


def test_no_string_lies_between_adjacent_strings() -> None:
    assert _between("a", "a\x00", set(), "w") is None
    assert _between(None, "", set(), "w") is None


def test_amount_readings() -> None:
    assert amount_class(" 5 ", "trimmed") == ("plain", Decimal(5))
    assert amount_class(" 5 ", "plain") == ("missing", None)
    assert amount_class(" 5 ", "mixed") == ("padded", Decimal(5))
    assert amount_class(True, "trimmed") == ("missing", None)
    assert amount_class(Decimal("1E+3"), "plain") == ("plain", Decimal(1000))
    assert amount_class("1e3", "trimmed") == ("missing", None)


@pytest.mark.parametrize(
    ("when", "tx", "reading", "inside"),
    [
        ({"amount": {"gt": "50000", "le": "100000"}}, {"amount": "75000.00"}, "trimmed", True),
        ({"amount": {"gt": "50000", "le": "100000"}}, {"amount": 100000}, "trimmed", True),
        ({"amount": {"gt": "50000", "le": "100000"}}, {"amount": " 75000 "}, "plain", False),
        ({"amount": {"gt": "50000"}}, {"amount": " 75000 "}, "mixed", False),
        ({"amount": {"gt": "50000", "padded": True}}, {"amount": " 75000 "}, "mixed", True),
        ({"amount": {"missing": True}}, {"amount": "abc"}, "trimmed", True),
        ({"amount": {"in": ["100.0"]}}, {"amount": "100.0"}, "trimmed", True),
        ({"amount": {"in": ["100.0"]}}, {"amount": "100"}, "trimmed", False),
        ({"actor_level": {"not_in": ["L2", "L3"]}}, {}, "trimmed", True),  # absent is not one of them
        ({"actor_level": {"not_in": ["L2"], "missing": False}}, {}, "trimmed", False),
        ({"actor_level": {"in": ["L1"]}}, {"actor_level": 1}, "trimmed", False),
        ({"type": {"missing": True}}, {"type": 7}, "trimmed", True),
        ({"approver_is_executor": True}, {"approver_id": "a", "executor_id": "a"}, "trimmed", True),
        ({"approver_is_executor": True}, {"approver_id": 1, "executor_id": "1"}, "trimmed", True),
        ({"approver_is_executor": {"missing": True}}, {"approver_id": "a"}, "trimmed", True),
        ({"attributes": {"c": {"in": ["1.0"]}}}, {"attributes": {"c": "1"}}, "trimmed", False),
        ({"attributes": {"c": {"ge": "1", "le": "1"}}}, {"attributes": {"c": "1.0"}}, "trimmed", True),
        ({"attributes": {"c": {"ge": "1", "le": "1"}}}, {"attributes": {"c": True}}, "trimmed", False),
        ({"attributes": {"c": {"decimal": False}}}, {"attributes": ["x"]}, "trimmed", True),
        ({"attributes": {"c": {"text_gt": "m"}}}, {"attributes": {"c": "z"}}, "trimmed", True),
    ],
)
def test_the_meaning_of_when(
    when: dict[str, object], tx: dict[str, object], reading: str, inside: bool
) -> None:
    assert contains(when, tx, reading) is inside


def test_an_unknown_constraint_is_an_error_not_a_match() -> None:
    with pytest.raises(ValueError):
        contains({"attributes": {"c": {"like": "x"}}}, {"attributes": {"c": "x"}})
