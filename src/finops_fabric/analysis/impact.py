"""`mu impact`'s document: the exact set of transactions whose outcome a ΔO changes, as few,
readable, disjoint regions, each with its outcome on both sides and a witness.

:func:`impact` runs the engine (:mod:`.engine`) per type atom, merges the boxes it finds (adjacent
amount cells, levels, attribute values with the same outcome pair), writes each as a ``when``
conjunction (:mod:`.render`), merges regions that differ only in the type, and picks a witness
transaction per region. The witnesses are checked elsewhere (:mod:`.verify`) before anyone sees
them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from finops_fabric import model as m
from finops_fabric.analysis.engine import (
    DEFAULT_NODE_BUDGET,
    DEFAULT_REGION_BUDGET,
    Signature,
    annotate,
    full_box,
    sides_differ,
)
from finops_fabric.analysis.fields import ABSENT, TextField, point_of
from finops_fabric.analysis.mdd import BudgetExceeded
from finops_fabric.analysis.render import Piece, amount_pieces, party_pieces, preferred, text_pieces
from finops_fabric.analysis.space import AMOUNT, LEVEL, PARTIES, Side, Space, type_field
from finops_fabric.analysis.summary import summary

Box = dict[str, frozenset[int]]


@dataclass(frozen=True)
class SideInfo:
    """One side of an impact analysis: O, its hash, the language it is decided by and (when an
    enforcer decides it) the generator."""

    policy: m.Policy
    ontology_hash: str
    language: str
    generator: dict[str, str] | None = None
    source: str | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ontology_hash": self.ontology_hash, "language": self.language}
        if self.generator is not None:
            out["generator"] = dict(self.generator)
        if self.source is not None:
            out["source"] = self.source
        return out


@dataclass
class Region:
    when: dict[str, Any]
    signature: Signature
    witness: dict[str, Any]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        s = self.signature
        return {
            "when": self.when,
            "old": {"decision": "REJECT" if s.old_rejects else "APPROVE", "fired": list(s.lost)},
            "new": {"decision": "REJECT" if s.new_rejects else "APPROVE", "fired": list(s.gained)},
            **({"fired_in_part": list(s.partial)} if s.partial else {}),
            "effects": {
                "notified_added": [{"rule": e[1], "recipient": e[2]} for e in s.added if e[0] == "notify"],
                "notified_removed": [
                    {"rule": e[1], "recipient": e[2]} for e in s.removed if e[0] == "notify"
                ],
                "audit_added": [
                    {"rule": e[1], "ledger": e[2], "flags": list(e[3])} for e in s.added if e[0] == "audit"
                ],
                "audit_removed": [
                    {"rule": e[1], "ledger": e[2], "flags": list(e[3])} for e in s.removed if e[0] == "audit"
                ],
            },
            "witness": self.witness,
            "summary": self.summary,
        }


@dataclass
class Impact:
    old: SideInfo
    new: SideInfo
    regions: list[Region]
    detail: str = "decision"

    @property
    def equivalent(self) -> bool:
        return not self.regions

    @property
    def amount_reading(self) -> str:
        langs = {self.old.language, self.new.language}
        if langs == {"1.0"}:
            return "trimmed"
        return "plain" if "1.0" not in langs else "mixed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old.describe(),
            "new": self.new.describe(),
            "equivalent": self.equivalent,
            "amount_reading": self.amount_reading,
            "detail": self.detail,
            "regions": [r.to_dict() for r in self.regions],
        }


# --- from boxes to regions ------------------------------------------------------------------------


def _merge(
    boxes: Sequence[tuple[Box, Signature]],
    keys: Sequence[str],
    split: Callable[[str, frozenset[int]], list[frozenset[int]]],
) -> list[tuple[Box, Signature]]:
    """Boxes cut into pieces each written as one constraint per variable, then pieces with the same
    signature that differ in one variable taken together wherever their union is one constraint."""
    current: list[tuple[Box, Signature]] = []
    for box, sig in boxes:
        for combo in itertools.product(*(split(k, box[k]) for k in keys)):
            current.append((dict(zip(keys, combo, strict=True)), sig))
    for _ in range(4):
        before = len(current)
        for k in keys:
            groups: dict[tuple[Any, ...], list[frozenset[int]]] = {}
            for box, sig in current:
                groups.setdefault((sig, tuple(box[x] for x in keys if x != k)), []).append(box[k])
            merged: list[tuple[Box, Signature]] = []
            for (sig, rest), sets in groups.items():
                others = dict(zip([x for x in keys if x != k], rest, strict=True))
                parts = split(k, frozenset().union(*sets)) if len(sets) > 1 else sets
                for part in parts:
                    merged.append(({**others, k: part}, sig))
            current = merged
        if len(current) == before:
            break
    return current


class Writer:
    """Writes the atoms of one space as constraints and picks witness values."""

    def __init__(self, space: Space, sides: Sequence[Side]) -> None:
        self.space = space
        ranks: dict[str, int] = {}
        for s in reversed(sides):
            ranks.update(s.ranks)
        self.ranks = ranks

    def _level_order(self, code: str) -> tuple[int, str]:
        return (self.ranks.get(code, 10**9), code)

    def _level_key(self, i: int) -> tuple[int, str]:
        assert self.space.level is not None
        code = point_of(self.space.level.atoms[i].text)
        return self._level_order(code) if code is not None else (10**10, "")

    def pieces(self, key: str, atoms: frozenset[int]) -> list[Piece]:
        sp = self.space
        if key == LEVEL:
            assert sp.level is not None
            return [({LEVEL: c} if c else {}, a) for c, a in text_pieces(sp.level, atoms, self._level_order)]
        if key == AMOUNT:
            assert sp.amount is not None
            return [({AMOUNT: c} if c else {}, a) for c, a in amount_pieces(sp.amount, atoms)]
        if key == PARTIES:
            assert sp.parties is not None
            return party_pieces(sp.parties, atoms)
        name = key.removeprefix("attr:")
        return [
            ({"attributes": {name: c}} if c else {}, a) for c, a in text_pieces(sp.attributes[name], atoms)
        ]

    def split(self, key: str, atoms: frozenset[int]) -> list[frozenset[int]]:
        return [a for _, a in self.pieces(key, atoms)]

    def witness_values(self, box: Box) -> dict[str, Any]:
        sp = self.space
        tx: dict[str, Any] = {"approver_id": "a", "executor_id": "b", "amount": "100.00"}
        if sp.level is None and self.ranks:
            tx["actor_level"] = min(self.ranks, key=self._level_order)
        for key, atoms in box.items():
            if key == LEVEL:
                assert sp.level is not None
                tx["actor_level"] = sp.level.atoms[
                    preferred(sp.level.atoms, atoms, "level", self._level_key)
                ].witness
            elif key == AMOUNT:
                assert sp.amount is not None
                tx["amount"] = sp.amount.atoms[preferred(sp.amount.atoms, atoms, "amount", int)].witness
            elif key == PARTIES:
                assert sp.parties is not None
                a, e = sp.parties.atoms[preferred(sp.parties.atoms, atoms, "parties", int)].witness
                tx["approver_id"], tx["executor_id"] = a, e
            else:
                name = key.removeprefix("attr:")
                tf = sp.attributes[name]
                tx.setdefault("attributes", {})[name] = tf.atoms[
                    preferred(tf.atoms, atoms, "attr", int)
                ].witness
        attrs = {k: v for k, v in tx.pop("attributes", {}).items() if v is not ABSENT}
        out = {k: v for k, v in tx.items() if v is not ABSENT}
        out["attributes"] = dict(sorted(attrs.items()))
        return out


def _merge_when(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    when: dict[str, Any] = {}
    for p in parts:
        for k, v in p.items():
            if k == "attributes":
                when.setdefault("attributes", {}).update(v)
            else:
                when[k] = v
    return when


def impact(
    old: SideInfo,
    new: SideInfo,
    *,
    node_budget: int = DEFAULT_NODE_BUDGET,
    region_budget: int = DEFAULT_REGION_BUDGET,
    detail: str = "decision",
) -> Impact:
    """The regions where O_new decides otherwise than O_old (see the module documentation)."""
    so, sn = Side(old.policy, old.language), Side(new.policy, new.language)
    tf = type_field([so, sn])
    diffs = sides_differ(so, sn, tf, node_budget=node_budget, region_budget=region_budget, detail=detail)
    # (signature, when without type) -> type atoms, and a witness source per type atom
    grouped: dict[tuple[Signature, str], dict[int, dict[str, Any]]] = {}
    total = 0
    for d in diffs:
        writer = Writer(d.space, [so, sn])
        keys = d.space.keys
        boxes = [(full_box(d.space, b), s) for b, s in d.boxes]
        for box, sig in _merge(boxes, keys, writer.split):
            sig = annotate(d, box, sig)
            when = _merge_when([writer.pieces(k, box[k])[0][0] for k in keys])
            key = (sig, json.dumps(when, sort_keys=True))
            grouped.setdefault(key, {})[d.type_index] = writer.witness_values(box)
            total += 1
            if total > region_budget:
                raise BudgetExceeded("regions", total, region_budget)
    labels = {t.code: t.label for s in (new.policy, old.policy) for t in s.types}
    declared_types = {t.code for s in (old.policy, new.policy) for t in s.types}
    ranks = {lv.code: lv.rank for s in (new.policy, old.policy) for lv in s.levels}
    declared_levels = sorted(ranks, key=lambda c: (ranks[c], c))
    regions: list[tuple[tuple[Any, ...], Region]] = []
    for (sig, when_json), by_type in grouped.items():
        for tcons, tatoms in text_pieces(tf, frozenset(by_type), str):
            when = json.loads(when_json)
            if tcons:
                when = {"type": tcons, **when}
            pick = _type_pick(tf, tatoms)
            witness = {"id": "", **_type_value(tf, pick), **by_type[pick]}
            region = Region(when, sig, witness, summary(when, sig, labels, declared_types, declared_levels))
            flip = 0 if sig.old_rejects != sig.new_rejects else 1
            order = (_type_sort(tf, tatoms), flip, sig.new_rejects, json.dumps(when, sort_keys=True))
            regions.append((order, region))
    regions.sort(key=lambda p: p[0])
    out = []
    for n, (_, r) in enumerate(regions, 1):
        r.witness["id"] = f"w-{n}"
        out.append(r)
    return Impact(old, new, out, detail)


def _type_pick(tf: TextField, atoms: frozenset[int]) -> int:
    declared = [i for i in sorted(atoms) if point_of(tf.atoms[i].text) is not None]
    return (declared or sorted(atoms))[0]


def _type_value(tf: TextField, i: int) -> dict[str, Any]:
    w = tf.atoms[i].witness
    return {} if w is ABSENT else {"type": w}


def _type_sort(tf: TextField, atoms: frozenset[int]) -> tuple[int, str]:
    i = _type_pick(tf, atoms)
    a = tf.atoms[i]
    return (0 if point_of(a.text) is not None else 1, str(a.witness))
