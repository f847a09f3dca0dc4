"""The exact difference between two sides, per type atom, as disjoint boxes with an outcome
signature each.

For one type atom: build both sides' diagrams over one shared space; rules whose diagrams are
identical on both sides (same IRI, same function) cannot make fired sets differ. The difference
lies inside the *support* S: where some other decision rule fires on one side and not the other,
or where a notification/audit rule that differs between the sides could match. Outside S the
fired sets are equal, so the decisions are equal, so identical effect rules match alike and the
differing ones match nowhere: nothing differs. Inside S the engine folds, into one diagram, the
*signature*: (old rejects, new rejects, rules that fire only on the old side, rules that fire
only on the new side, effect entries added, effect entries removed). Each path of that diagram
to a non-empty signature is a box of atoms; the boxes are disjoint and cover exactly the
transactions whose outcome differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from finops_fabric import model as m
from finops_fabric.analysis.encode import Encoder
from finops_fabric.analysis.fields import Atom, TextField, point_of
from finops_fabric.analysis.mdd import BudgetExceeded, Manager
from finops_fabric.analysis.space import Side, Space, applies, build_space

Entry = tuple[Any, ...]  # ("notify", rule, recipient) | ("audit", rule, ledger, flags)


class Signature(NamedTuple):
    """How the outcome differs, constant over a region."""

    old_rejects: bool
    new_rejects: bool
    lost: tuple[str, ...]  # rules that fire on the old side only
    gained: tuple[str, ...]  # rules that fire on the new side only
    added: tuple[Entry, ...]  # notifications/audit entries only the new side makes
    removed: tuple[Entry, ...]  # ... only the old side makes
    fired_differs: bool = False  # (detail "decision": the fired rules differ, which ones varies)
    partial: tuple[str, ...] = ()  # of lost and gained: the rules that differ in part of the region only

    @property
    def differs(self) -> bool:
        return (
            self.old_rejects != self.new_rejects
            or self.fired_differs
            or bool(self.lost or self.gained or self.added or self.removed)
        )


@dataclass
class TypeDiff:
    """The regions of one type atom, as boxes of atom indices per variable key."""

    type_index: int
    space: Space
    boxes: list[tuple[dict[str, frozenset[int]], Signature]]
    manager: Manager | None = None
    #: per rule whose firing differs: (fires only on the old side, fires only on the new side)
    changes: dict[str, tuple[int, int]] = field(default_factory=dict)


DEFAULT_NODE_BUDGET = 3_000_000
DEFAULT_REGION_BUDGET = 20_000


def _pair(a: Any, b: Any) -> tuple[Any, Any]:
    return (a, b)


def diff_type(
    type_field: TextField,
    type_index: int,
    old: Side,
    new: Side,
    *,
    node_budget: int = DEFAULT_NODE_BUDGET,
    region_budget: int = DEFAULT_REGION_BUDGET,
    detail: str = "decision",
) -> TypeDiff:
    """The boxes of one type atom. ``detail="rules"``: the signature names the rules that fire on
    one side only (constant per box); ``"decision"``: only that they differ, so boxes are split by
    decisions and effects alone and far fewer (which rules differ where is in ``changes``)."""
    atom = type_field.atoms[type_index]
    if _alike(atom, old, new):
        return TypeDiff(type_index, Space(atom), [])
    space = build_space(atom, [old, new])
    mgr = Manager(space.sizes, node_budget)
    eo, en = Encoder(mgr, space, old, type_field), Encoder(mgr, space, new, type_field)
    known = eo.decision_diagrams()
    dec_o = dict(eo.decision_rules(known))
    same_reading = old.language == new.language and old.ranks == new.ranks
    dec_n = dict(en.decision_rules(known if same_reading else None))
    shared = [n for iri, n in dec_o.items() if dec_n.get(iri) == n]
    diff = sorted(iri for iri in set(dec_o) | set(dec_n) if dec_o.get(iri) != dec_n.get(iri))
    eff_o = {iri: (entries, a, r) for iri, entries, a, r in eo.effect_rules()}
    eff_n = {iri: (entries, a, r) for iri, entries, a, r in en.effect_rules()}
    eff_all = sorted(set(eff_o) | set(eff_n))
    eff_diff = [iri for iri in eff_all if eff_o.get(iri) != eff_n.get(iri)]
    f = mgr.false
    support = mgr.any_of(
        [mgr.xor(dec_o.get(i, f), dec_n.get(i, f)) for i in diff]
        + [mgr.or_(e[1], e[2]) for i in eff_diff for e in (eff_o.get(i), eff_n.get(i)) if e is not None]
    )
    if support == f:
        return TypeDiff(type_index, space, [])
    within = mgr.any_of([mgr.and_(n, support) for n in shared])
    d_o = mgr.or_(within, mgr.any_of([mgr.and_(dec_o[i], support) for i in diff if i in dec_o]))
    d_n = mgr.or_(within, mgr.any_of([mgr.and_(dec_n[i], support) for i in diff if i in dec_n]))
    sig = mgr.apply(
        "init",
        lambda s, d: Signature(d[0], d[1], (), (), (), ()) if s else None,
        support,
        mgr.apply("pair", _pair, d_o, d_n),
    )
    changes = {
        i: (
            mgr.and_(dec_o.get(i, f), mgr.not_(dec_n.get(i, f))),
            mgr.and_(dec_n.get(i, f), mgr.not_(dec_o.get(i, f))),
        )
        for i in diff
    }
    if detail == "rules":
        for iri in diff:
            pair = mgr.apply("pair", _pair, dec_o.get(iri, f), dec_n.get(iri, f))
            sig = mgr.apply(("rule", iri), _add_rule(iri), sig, pair)
    else:
        differ = mgr.any_of([mgr.or_(lost, gained) for lost, gained in changes.values()])
        sig = mgr.apply("fired_differs", _flag, sig, differ)
    none: tuple[frozenset[Entry], int, int] = (frozenset(), f, f)
    for iri in eff_all:
        eo_, en_ = eff_o.get(iri, none), eff_n.get(iri, none)
        if eo_ == en_ and eo_[1] == eo_[2]:
            continue  # the same entries whatever the decision: never differs
        q = mgr.apply(
            "pair",
            _pair,
            mgr.apply("pair", _pair, eo_[1], eo_[2]),
            mgr.apply("pair", _pair, en_[1], en_[2]),
        )
        sig = mgr.apply(("effect", iri), _add_effect(eo_[0], en_[0]), sig, q)

    def wanted(v: Any) -> bool:
        return v is not None and v.differs

    count = mgr.count_paths(sig, wanted)
    if count > region_budget:
        raise BudgetExceeded("regions of one transaction type", count, region_budget)
    keys = space.keys
    boxes = []
    for box, value in mgr.paths(sig, wanted):
        boxes.append(({keys[v]: frozenset(atoms) for v, atoms in box.items()}, value))
    return TypeDiff(type_index, space, boxes, mgr, changes)


def annotate(d: TypeDiff, box: dict[str, frozenset[int]], sig: Signature) -> Signature:
    """For detail "decision": the rules that fire on one side only somewhere in ``box``, and
    which of them do so only in part of it."""
    if d.manager is None or not sig.fired_differs or sig.lost or sig.gained:
        return sig
    keys = d.space.keys
    vbox = {keys.index(k): atoms for k, atoms in box.items()}
    lost: list[str] = []
    gained: list[str] = []
    partial: list[str] = []
    for iri, (only_old, only_new) in sorted(d.changes.items()):
        for node, into in ((only_old, lost), (only_new, gained)):
            values = d.manager.values_in(node, vbox)
            if True in values:
                into.append(iri)
                if False in values:
                    partial.append(iri)
    return sig._replace(lost=tuple(lost), gained=tuple(gained), partial=tuple(partial))


def _alike(atom: Atom, old: Side, new: Side) -> bool:
    """Both sides decide this type atom by the same rules, levels and language: no difference,
    without building anything (a change to one type leaves the others alone)."""
    if old.language != new.language or old.ranks != new.ranks:
        return False
    code = point_of(atom.text)
    if old.strict and (code in old.type_codes) != (code in new.type_codes):
        return False

    def rules(side: Side) -> list[m.Rule]:
        return [
            r
            for r in side.policy.rules
            if applies(r, atom.text) or (atom.text is None and r.kind in m.DECISION_KINDS)
        ]

    return rules(old) == rules(new)


def _flag(s: Signature | None, differs: bool) -> Signature | None:
    return s._replace(fired_differs=True) if s is not None and differs else s


def _add_rule(iri: str) -> Any:
    def add(s: Signature | None, p: tuple[bool, bool]) -> Signature | None:
        if s is None or p[0] == p[1]:
            return s
        if p[0]:
            return s._replace(lost=(*s.lost, iri))
        return s._replace(gained=(*s.gained, iri))

    return add


def _add_effect(old_entries: frozenset[Entry], new_entries: frozenset[Entry]) -> Any:
    def add(s: Signature | None, q: tuple[tuple[bool, bool], tuple[bool, bool]]) -> Signature | None:
        if s is None:
            return s
        old = old_entries if q[0][1 if s.old_rejects else 0] else frozenset()
        new = new_entries if q[1][1 if s.new_rejects else 0] else frozenset()
        if old == new:
            return s
        return s._replace(
            added=tuple(sorted({*s.added, *(new - old)}, key=repr)),
            removed=tuple(sorted({*s.removed, *(old - new)}, key=repr)),
        )

    return add


def sides_differ(
    old: Side, new: Side, type_field: TextField, *, node_budget: int, region_budget: int, detail: str
) -> list[TypeDiff]:
    """Every type atom's regions (empty lists dropped)."""
    out = []
    for i in range(len(type_field.atoms)):
        d = diff_type(
            type_field, i, old, new, node_budget=node_budget, region_budget=region_budget, detail=detail
        )
        if d.boxes:
            out.append(d)
    return out


def all_atoms(space: Space) -> dict[str, frozenset[int]]:
    return {k: frozenset(range(n)) for k, n in zip(space.keys, space.sizes, strict=True)}


def full_box(space: Space, box: dict[str, frozenset[int]]) -> dict[str, frozenset[int]]:
    return {**all_atoms(space), **box}


__all__ = ["Signature", "TypeDiff", "diff_type", "full_box", "sides_differ"]
