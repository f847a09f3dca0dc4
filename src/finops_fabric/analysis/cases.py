"""A case set complete for one O: a witness for every cell of O's decision space, plus its
boundaries.

For each type atom, the engine folds O's full outcome (the fired rules, the notifications and
audit entries) into one diagram; each path is a box of atoms on which the outcome is constant (a
*cell*). :func:`complete_cases` yields one transaction per cell, then, for every variable of the
cell, one per other atom the cell admits (every level code, each decimal cell, each compared
value, "absent"), and for amounts also the values one cent inside each open interval next to a
threshold. Every outcome O can produce is produced by some case (the cells cover the space), and
every threshold and compared value is met exactly and one cent on either side.

Two implementations of O's language that decide every case alike can still differ only on
inputs the language itself does not distinguish from some case (the atoms are the classes of
values no rule of O can tell apart). The set grows with the product of O's independent
conditions; past ``max_cases`` it stops with :class:`.mdd.BudgetExceeded`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from finops_fabric import model as m
from finops_fabric.analysis.encode import Encoder
from finops_fabric.analysis.engine import Entry, full_box
from finops_fabric.analysis.fields import ABSENT, money
from finops_fabric.analysis.impact import Writer
from finops_fabric.analysis.mdd import BudgetExceeded, Manager
from finops_fabric.analysis.space import AMOUNT, Side, build_space, type_field

CENT = Decimal("0.01")
DEFAULT_MAX_CASES = 200_000

Outcome = tuple[tuple[str, ...], tuple[Entry, ...]]


def _add_fired(iri: str) -> Any:
    def add(acc: Outcome, fires: bool) -> Outcome:
        return ((*acc[0], iri), acc[1]) if fires else acc

    return add


def _add_entries(entries: frozenset[Entry]) -> Any:
    def add(acc: Outcome, q: tuple[tuple[bool, bool], bool]) -> Outcome:
        (on_approve, on_reject), rejects = q
        if on_reject if rejects else on_approve:
            return (acc[0], tuple(sorted({*acc[1], *entries}, key=repr)))
        return acc

    return add


def _pair(a: Any, b: Any) -> tuple[Any, Any]:
    return (a, b)


def cells(
    policy: m.Policy, language: str = "1.0"
) -> Iterator[tuple[Writer, Any, dict[str, frozenset[int]], Outcome]]:
    """(writer, type atom, box of atoms, outcome) for every cell of O's decision space."""
    side = Side(policy, language)
    tf = type_field([side])
    for atom in tf.atoms:
        space = build_space(atom, [side])
        mgr = Manager(space.sizes)
        enc = Encoder(mgr, space, side, tf)
        rules = enc.decision_rules()
        rejects = mgr.any_of([n for _, n in rules])
        acc = mgr.terminal(((), ()))
        for iri, n in sorted(rules):
            acc = mgr.apply(("fired", iri), _add_fired(iri), acc, n)
        for iri, entries, on_a, on_r in enc.effect_rules():
            q = mgr.apply("pair", _pair, mgr.apply("pair", _pair, on_a, on_r), rejects)
            acc = mgr.apply(("effect", iri), _add_entries(entries), acc, q)
        writer = Writer(space, [side])
        keys = space.keys
        for box, outcome in mgr.paths(acc, lambda _: True):
            yield writer, atom, full_box(space, {keys[v]: frozenset(a) for v, a in box.items()}), outcome


def complete_cases(
    policy: m.Policy, language: str = "1.0", *, max_cases: int = DEFAULT_MAX_CASES
) -> list[dict[str, Any]]:
    """The case set (transactions, in a deterministic order, without duplicates)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(tx: dict[str, Any]) -> None:
        key = json.dumps(tx, sort_keys=True, default=repr)
        if key not in seen:
            seen.add(key)
            out.append({"id": f"cell-{len(out) + 1}", **tx})
            if len(out) > max_cases:
                raise BudgetExceeded("cases of the complete case set", len(out), max_cases)

    for writer, type_atom, box, _ in cells(policy, language):
        head = {} if type_atom.witness is ABSENT else {"type": type_atom.witness}
        add({**head, **writer.witness_values(box)})
        for key, atoms in box.items():
            for a in sorted(atoms):
                add({**head, **writer.witness_values({**box, key: frozenset({a})})})
                if key == AMOUNT:
                    for value in _near_cuts(writer, a):
                        base = writer.witness_values({**box, key: frozenset({a})})
                        add({**head, **base, "amount": value})
    return out


def _near_cuts(writer: Writer, atom: int) -> list[str]:
    """One cent inside an open amount cell, next to each threshold that bounds it."""
    af = writer.space.amount
    assert af is not None
    a = af.atoms[atom]
    if a.cell is None or af.cuts.is_point(a.cell) or a.padded or a.text not in ("any", ("other",)):
        return []
    lo, hi = af.cuts.lower(a.cell), af.cuts.upper(a.cell)
    values = []
    if lo is not None and (hi is None or lo[0] + CENT < hi[0]):
        values.append(money(lo[0] + CENT))
    if hi is not None and (lo is None or hi[0] - CENT > lo[0]):
        values.append(money(hi[0] - CENT))
    return values
