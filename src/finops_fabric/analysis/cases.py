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

import functools
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from finops_fabric import model as m
from finops_fabric.analysis.encode import Encoder
from finops_fabric.analysis.engine import DEFAULT_NODE_BUDGET, Entry, full_box
from finops_fabric.analysis.fields import ABSENT, TextField, money, point_of
from finops_fabric.analysis.impact import Writer
from finops_fabric.analysis.mdd import BudgetExceeded, Manager
from finops_fabric.analysis.render import preferred
from finops_fabric.analysis.space import (
    AMOUNT,
    LEVEL,
    PARTIES,
    AmountField,
    Side,
    Space,
    applies,
    build_space,
    type_field,
)

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


# --- the case set kaizen compares: complete for every rule, per type, in both languages ----------
#
# The joint cells above grow with the product of O's independent conditions (a thousand rules
# make millions). Kaizen needs less: a generated enforcer decides each rule by itself. So the
# set below covers, per type atom, every combination of the atoms *one rule* reads (never the
# product over all rules), packed into as few transactions as fit, plus the whole amount ×
# authority-level plane with every threshold met exactly and one cent on either side. The
# argument, and what it assumes of a generator, is in the README (section "mu kaizen") and in
# :func:`kaizen_cases`.

#: The parts of the set, in the order their cases are made.
PARTS = ("plane", "rules", "effects")
DEFAULT_KAIZEN_CASES = 400_000


@dataclass
class CaseSet:
    """The cases (transactions with ids ``complete-N``) and what they cover."""

    cases: list[dict[str, Any]]
    languages: tuple[str, ...]
    type_atoms: int
    #: cases per part: the amount × level plane, rules' combinations that did not fit into it,
    #: decisions an effect rule needs that no earlier case had
    parts: dict[str, int]
    #: combinations of atoms covered: each rule's (decision rules) and each effect rule's with
    #: each decision that can occur there
    combinations: dict[str, int]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "complete",
            "languages": list(self.languages),
            "type_atoms": self.type_atoms,
            "cases": len(self.cases),
            "parts": dict(self.parts),
            "combinations": dict(self.combinations),
        }


class _Row:
    """One transaction being made: an atom per variable key (absent: not fixed yet) and, for the
    amount, a value other than its atom's witness (a cent next to a threshold)."""

    __slots__ = ("amount", "atoms")

    def __init__(self, atoms: dict[str, int], amount: object = None) -> None:
        self.atoms = atoms
        self.amount = amount


def _sign(a: int, b: int) -> int:
    return (a > b) - (a < b)


def _reads(rule: m.Rule, type_text: object, keys: Sequence[str]) -> dict[str, list[Any]]:
    """The variables one rule reads on this type atom, each with the constants it compares the
    variable with (decimals and texts; level and the parties are never merged, so no constants).

    Every restriction, notification and audit rule counts as reading the actor's level, with
    an override or a minimum authority or without: an implementation that applies one where O
    has none (or another one) differs only in how the rule's combinations meet the levels."""
    out: dict[str, list[Any]] = {}

    def add(key: str, *consts: Any) -> None:
        assert key in keys, (rule.iri, key)
        out.setdefault(key, []).extend(consts)

    if rule.kind in m.DECISION_KINDS and rule.applies_to and type_text is None:
        return out  # fails closed whatever else the transaction holds
    if isinstance(rule, m.ApprovalRule):
        add(AMOUNT, rule.threshold)
        add(LEVEL)
    elif isinstance(rule, m.SegregationOfDutyRule):
        add(PARTIES)
    elif isinstance(rule, m.RestrictionRule):
        if LEVEL in keys:
            add(LEVEL)
        for leaf in m.condition_leaves(rule.condition):
            a = leaf.attribute
            values = leaf.values if isinstance(leaf, m.Membership) else (leaf.value,)
            if a == "type":
                continue
            if a == "amount":
                add(AMOUNT, *values)
            elif a == "actor_level":
                add(LEVEL)
            elif a in ("approver_id", "executor_id"):
                add(PARTIES)
            else:
                add("attr:" + a, *values)
    else:
        assert isinstance(rule, m.NotificationRule | m.AuditLogRule)
        if LEVEL in keys:
            add(LEVEL)
        if isinstance(rule, m.NotificationRule) and rule.threshold is not None:
            add(AMOUNT, rule.threshold)
    return out


def _classes(space: Space, sides: Sequence[Side], key: str, consts: Sequence[Any]) -> list[frozenset[int]]:
    """The atoms of ``key`` grouped by what one rule's comparisons with ``consts`` (and each
    language's reading of the field) can tell apart: every constant met exactly, below and above,
    each compared text, any other text, absent."""
    n = space.sizes[space.keys.index(key)]
    sig: list[Any]
    if key == AMOUNT:
        af = space.amount
        assert af is not None
        decs = sorted({c for c in consts if isinstance(c, Decimal)})
        texts = sorted({c for c in consts if isinstance(c, str)})
        per_side = [af.cells(s) for s in sides]
        zero = af.cuts.point(Decimal(0)) if any(s.strict for s in sides) else None
        points = [af.cuts.point(k) for k in decs]
        sig = []
        for i, a in enumerate(af.atoms):
            views: list[tuple[tuple[int, ...], int] | None] = []
            for s, cells in zip(sides, per_side, strict=True):
                c = cells[i]
                if c is None:
                    views.append(None)
                else:
                    marks = tuple(_sign(c, p) for p in points)
                    views.append((marks, _sign(c, zero) if s.strict and zero is not None else 0))
            sig.append((tuple(views), tuple(point_of(a.text) == t for t in texts)))
    elif key.startswith("attr:"):
        tf = space.attributes[key.removeprefix("attr:")]
        if tf.reads.ordered:
            return [frozenset({i}) for i in range(n)]
        decs = sorted({c for c in consts if isinstance(c, Decimal)})
        texts = sorted({c for c in consts if isinstance(c, str)})
        sig = []
        points = [tf.cuts.point(k) for k in decs]
        for t in tf.atoms:
            per_lang: list[tuple[bool, tuple[int, ...] | None]] = []
            for s in sides:  # each language's decimal view (a padded decimal is one to 1.0 only)
                view = t.view(s.strict)
                dec = view if isinstance(view, int) else None
                per_lang.append((view is None, None if dec is None else tuple(_sign(dec, p) for p in points)))
            sig.append((t.text is None, tuple(point_of(t.text) == x for x in texts), tuple(per_lang)))
    else:  # the level and the approver/executor pair: every atom by itself
        return [frozenset({i}) for i in range(n)]
    groups: dict[Any, set[int]] = {}
    for i, s in enumerate(sig):
        groups.setdefault(s, set()).add(i)
    return [frozenset(g) for g in sorted(groups.values(), key=min)]


def _pick(space: Space, key: str, atoms: frozenset[int]) -> int:
    """The atom a new row takes from a set: a present, readable, unremarkable one."""
    sp = space
    if key == LEVEL:
        assert sp.level is not None
        return preferred(sp.level.atoms, atoms, "level", lambda i: i)
    if key == AMOUNT:
        assert sp.amount is not None
        return preferred(sp.amount.atoms, atoms, "amount", int)
    if key == PARTIES:
        assert sp.parties is not None
        return preferred(sp.parties.atoms, atoms, "parties", int)
    return preferred(sp.attributes[key.removeprefix("attr:")].atoms, atoms, "attr", int)


def _amount_values(space: Space) -> list[tuple[int, object]]:
    """(atom, value) for the plane: every amount atom; an open cell next to a threshold by the
    values one cent inside it (its boundaries), any other atom by its witness (value None)."""
    af = space.amount
    assert af is not None
    out: list[tuple[int, object]] = []
    for i in range(len(af.atoms)):
        near = [v for v in _near_cell(af, i) if v not in af.texts]
        out += [(i, v) for v in near] if near else [(i, None)]
    return out


def _near_cell(af: AmountField, atom: int) -> list[str]:
    a = af.atoms[atom]
    if a.cell is None or af.cuts.is_point(a.cell) or a.padded or a.text not in ("any", ("other",)):
        return []
    lo, hi = af.cuts.lower(a.cell), af.cuts.upper(a.cell)
    values = []
    if lo is not None and (hi is None or lo[0] + CENT < hi[0]):
        values.append(money(lo[0] + CENT))
    if hi is not None and (lo is None or hi[0] - CENT > lo[0]):
        values.append(money(hi[0] - CENT))
    return list(dict.fromkeys(values))


def _evaluate(mgr: Manager, node: int, vec: Sequence[int]) -> Any:
    while not mgr.is_terminal(node):
        atom = vec[mgr.var[node]]
        for end, child in mgr.runs[node]:
            if atom < end:
                node = child
                break
    return mgr.value[node]


def _find(mgr: Manager, node: int, box: dict[int, frozenset[int]], want: object) -> dict[int, int] | None:
    """Atoms (for the variables the diagram tests on the way) inside ``box`` where ``node`` is
    ``want``, or None when there are none."""
    dead: set[int] = set()
    path: dict[int, int] = {}

    def walk(n: int) -> bool:
        if n in dead:
            return False
        if mgr.is_terminal(n):
            if mgr.value[n] == want:
                return True
            dead.add(n)
            return False
        v = mgr.var[n]
        allowed = box.get(v)
        start = 0
        for end, child in mgr.runs[n]:
            atoms = range(start, end) if allowed is None else [a for a in range(start, end) if a in allowed]
            start = end
            if atoms and walk(child):
                path[v] = atoms[0]
                return True
        dead.add(n)
        return False

    return path if walk(node) else None


def kaizen_cases(
    policy: m.Policy,
    languages: Sequence[str] = ("1.0",),
    *,
    max_cases: int = DEFAULT_KAIZEN_CASES,
    node_budget: int = DEFAULT_NODE_BUDGET,
) -> CaseSet:
    """Transactions that decide, for two implementations of O, whether they agree on every
    transaction (under the assumptions the README states), in each of ``languages``.

    Per type atom (each declared type, any other text, none): the *plane*, every amount atom
    (each threshold exactly and a cent on either side, padded amounts when the languages read
    them differently, none) × every level atom (each declared code, any other, none); then, for
    every rule concerning that type, every combination of the atoms of the variables it reads
    (each grouped by what that rule's own comparisons can tell apart), placed into an existing
    case where it fits and in a new one where none does; then, for every notification and audit
    rule, every combination of its variables with each decision that can occur there in each
    language (found in the decision diagram of O's rules), where no case had it yet.

    Constructions the engine does not cut exactly raise :class:`.fields.Unsupported`; past
    ``max_cases`` cases :class:`.mdd.BudgetExceeded`."""
    sides = [Side(policy, lang) for lang in sorted(set(languages))]
    tf = type_field(sides)
    parts = dict.fromkeys(PARTS, 0)
    combos = {"rules": 0, "effects": 0}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for type_atom in tf.atoms:
        space = build_space(type_atom, sides)
        rows, made, covered = _type_rows(space, sides, tf, node_budget)
        for part, n in made.items():
            parts[part] += n
        for part, n in covered.items():
            combos[part] += n
        writer = Writer(space, sides)
        head = {} if type_atom.witness is ABSENT else {"type": type_atom.witness}
        keys = space.keys
        for row in rows:
            tx = {**head, **writer.witness_values({k: frozenset({row.atoms[k]}) for k in keys})}
            if row.amount is not None:
                tx["amount"] = row.amount
            key = json.dumps(tx, sort_keys=True, default=repr)
            if key not in seen:
                seen.add(key)
                out.append({"id": f"complete-{len(out) + 1}", **tx})
                if len(out) > max_cases:
                    raise BudgetExceeded("cases of the complete case set", len(out), max_cases)
    return CaseSet(out, tuple(s.language for s in sides), len(tf.atoms), parts, combos)


def _type_rows(
    space: Space, sides: Sequence[Side], tf: TextField, node_budget: int
) -> tuple[list[_Row], dict[str, int], dict[str, int]]:
    """The rows of one type atom (see :func:`kaizen_cases`), with how many each part made and
    how many combinations each covered."""
    keys = space.keys
    index = {k: i for i, k in enumerate(keys)}
    type_text = space.type_atom.text
    made = dict.fromkeys(PARTS, 0)
    covered = {"rules": 0, "effects": 0}
    everything = {k: frozenset(range(n)) for k, n in zip(keys, space.sizes, strict=True)}
    defaults = {k: _pick(space, k, atoms) for k, atoms in everything.items()}
    plane = [k for k in (AMOUNT, LEVEL) if k in keys]

    # the plane: every amount value × every level atom; rows are found by their plane atoms
    amounts: list[tuple[int, object]] = _amount_values(space) if AMOUNT in keys else [(-1, None)]
    levels = list(range(len(space.level.atoms))) if space.level is not None else [-1]
    rows: list[_Row] = []
    by_plane: dict[tuple[int, int], list[_Row]] = {}

    def add(row: _Row) -> None:
        rows.append(row)
        by_plane.setdefault((row.atoms.get(AMOUNT, -1), row.atoms.get(LEVEL, -1)), []).append(row)

    for a, value in amounts:
        for lv in levels:
            atoms = {}
            if a >= 0:
                atoms[AMOUNT] = a
            if lv >= 0:
                atoms[LEVEL] = lv
            add(_Row(atoms, value))
    made["plane"] = len(rows)

    # every decision rule's combinations, each into the first row that has its plane atoms and
    # leaves its other variables free (or fixed inside it), else into a new row
    rules = [
        r
        for r in sides[0].policy.rules
        if applies(r, type_text) or (type_text is None and r.kind in m.DECISION_KINDS)
    ]
    done: set[tuple[tuple[str, frozenset[int]], ...]] = set()
    effects: list[dict[str, list[Any]]] = []
    classes: dict[tuple[str, tuple[Any, ...]], list[frozenset[int]]] = {}

    def classes_of(k: str, consts: list[Any]) -> list[frozenset[int]]:
        ck = (k, tuple(sorted(set(consts), key=repr)))
        got = classes.get(ck)
        if got is None:
            got = classes[ck] = _classes(space, sides, k, consts)
        return got

    for rule in rules:
        reads = _reads(rule, type_text, keys)
        if rule.kind not in m.DECISION_KINDS:
            effects.append(reads)
            continue
        if set(reads) <= set(plane):
            continue  # the plane has every combination of these atoms
        per_key = [(k, classes_of(k, reads[k])) for k in sorted(reads)]
        for combo in itertools.product(*(cls for _, cls in per_key)):
            want = tuple(zip((k for k, _ in per_key), combo, strict=True))
            if want in done:
                continue
            done.add(want)
            covered["rules"] += 1
            by_key = dict(want)
            free = [(k, allowed) for k, allowed in want if k not in plane]
            a_set = sorted(by_key.get(AMOUNT, everything.get(AMOUNT, frozenset({-1}))))
            l_set = sorted(by_key.get(LEVEL, everything.get(LEVEL, frozenset({-1}))))
            target = _first_fit(by_plane, a_set, l_set, free)
            if target is None:
                atoms = {k: _pick(space, k, allowed) for k, allowed in want}
                for k in plane:
                    atoms.setdefault(k, defaults[k])
                add(_Row(atoms))
                made["rules"] += 1
            else:
                for k, allowed in free:
                    target.atoms.setdefault(k, _pick(space, k, allowed))

    # every variable fixed; then each effect rule's combinations with each decision that can occur
    for row in rows:
        for k, atom in defaults.items():
            row.atoms.setdefault(k, atom)
    if not effects:
        return rows, made, covered
    mgr = Manager(space.sizes, node_budget)
    rejects = [mgr.any_of([n for _, n in Encoder(mgr, space, side, tf).decision_rules()]) for side in sides]

    def decide(row: _Row) -> tuple[bool, ...]:
        vec = [row.atoms[k] for k in keys]
        return tuple(bool(_evaluate(mgr, r, vec)) for r in rejects)

    decided = [decide(row) for row in rows]
    # (amount atom, level atom, decision per language) of every row: all an effect rule reads
    projected = {
        (row.atoms.get(AMOUNT, -1), row.atoms.get(LEVEL, -1), d) for row, d in zip(rows, decided, strict=True)
    }
    unique: dict[tuple[Any, ...], list[tuple[str, list[frozenset[int]]]]] = {}
    for reads in effects:
        per_key = [(k, classes_of(k, reads[k])) for k in sorted(reads)]
        unique.setdefault(tuple((k, id(c)) for k, c in per_key), per_key)
    for per_key in unique.values():
        lookup = [{a: j for j, cls in enumerate(c) for a in cls} for _, c in per_key]
        where = [(AMOUNT, LEVEL).index(k) for k, _ in per_key]  # effect rules read no other variable
        combo_of = functools.partial(_combo_of, lookup, where)
        seen = {(combo_of((a, lv)), s, d[s]) for a, lv, d in projected for s in range(len(sides))}
        for combo_ix in itertools.product(*(range(len(c)) for _, c in per_key)):
            wanted = [(k, c[j]) for (k, c), j in zip(per_key, combo_ix, strict=True)]
            for s, node in enumerate(rejects):
                for decision in (False, True):
                    if (combo_ix, s, decision) in seen:
                        covered["effects"] += 1
                        continue
                    path = _find(mgr, node, {index[k]: allowed for k, allowed in wanted}, decision)
                    if path is None:
                        continue  # this decision cannot occur here in this language
                    covered["effects"] += 1
                    atoms = {keys[v]: a for v, a in path.items()}
                    for k, allowed in wanted:
                        atoms.setdefault(k, _pick(space, k, allowed))
                    row = _Row({**defaults, **atoms})
                    add(row)
                    d = decide(row)
                    key = (row.atoms.get(AMOUNT, -1), row.atoms.get(LEVEL, -1), d)
                    projected.add(key)
                    seen.update((combo_of(key[:2]), t, d[t]) for t in range(len(sides)))
                    made["effects"] += 1
    return rows, made, covered


def _combo_of(
    lookup: Sequence[dict[int, int]], where: Sequence[int], plane: Sequence[int]
) -> tuple[int, ...]:
    """The combination (class per variable) of an effect rule that (amount atom, level atom) is in."""
    return tuple(ix[plane[w]] for ix, w in zip(lookup, where, strict=True))


def _first_fit(
    by_plane: dict[tuple[int, int], list[_Row]],
    amounts: Sequence[int],
    levels: Sequence[int],
    free: Sequence[tuple[str, frozenset[int]]],
) -> _Row | None:
    for a in amounts:
        for lv in levels:
            for row in by_plane.get((a, lv), ()):
                got = row.atoms
                for k, allowed in free:
                    v = got.get(k)
                    if v is not None and v not in allowed:
                        break
                else:
                    return row
    return None
