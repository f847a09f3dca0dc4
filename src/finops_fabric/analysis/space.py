"""The decision space of one transaction type: its variables (authority level, amount, the
approver/executor pair, the attributes O reads) and their atoms, for one or two sides.

A *side* is a policy with the language version it is decided by. Both sides of an impact
analysis share one space, cut at the constants of both, so "a rule decides alike on both sides"
is the identity of two diagrams.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from finops_fabric import model as m
from finops_fabric.analysis.fields import (
    ABSENT,
    ANY,
    Atom,
    Cuts,
    Reads,
    TextField,
    Unsupported,
    _words,
    money,
)

CORE = ("type", "amount", "actor_level", "approver_id", "executor_id")
LEVEL, AMOUNT, PARTIES = "actor_level", "amount", "parties"


@dataclass(frozen=True)
class Side:
    policy: m.Policy
    language: str

    @property
    def ranks(self) -> dict[str, int]:
        return {lv.code: lv.rank for lv in self.policy.levels}

    @property
    def type_codes(self) -> frozenset[str]:
        return frozenset(t.code for t in self.policy.types)

    @property
    def strict(self) -> bool:
        return self.language != "1.0"


def applies(rule: m.Rule, type_text: object) -> bool:
    """Whether a rule concerns a transaction of this type atom's text (None: no type)."""
    if not rule.applies_to:
        return True
    return isinstance(type_text, tuple) and type_text[0] == "pt" and type_text[1] in rule.applies_to


def leaves_of(rule: m.Rule) -> Iterable[m.Comparison | m.Membership]:
    if isinstance(rule, m.RestrictionRule):
        yield from m.condition_leaves(rule.condition)


def type_field(sides: Sequence[Side]) -> TextField:
    reads = Reads.empty()
    for s in sides:
        reads.texts.update(s.type_codes)
        for r in s.policy.rules:
            reads.texts.update(r.applies_to)
            for leaf in leaves_of(r):
                if leaf.attribute == "type":
                    reads.add_leaf(leaf)
    return TextField(
        "type", reads, strings_only=True, always_text=True, languages=[s.language for s in sides]
    )


# --- amount ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AmountAtom:
    cell: int | None  # None: no amount (absent or not a decimal even trimmed)
    text: object  # ANY, ("pt", c) or ("other",): the amount's exact decimal text, when O reads it
    padded: bool  # a string that is a plain decimal only once trimmed (only when the sides differ)
    witness: object


class AmountField:
    name = AMOUNT

    def __init__(self, reads: Reads, languages: Sequence[str]) -> None:
        if reads.ordered:
            raise Unsupported("amount is compared with a text by an order; the analysis does not cut that")
        points = set(reads.decimals)
        if any(lang != "1.0" for lang in languages):
            points.add(Decimal(0))
        self.cuts = Cuts(points)
        self.mixed = len(set(languages)) > 1
        texts: dict[int, list[tuple[str, str]]] = {}  # cell -> [(text, plain spelling)]
        for c in sorted(reads.texts):
            try:
                d = Decimal(c)
            except ArithmeticError:
                continue
            if not d.is_finite() or str(d) != c:
                continue  # no amount is written this way: the comparison never holds
            exp = d.as_tuple().exponent
            if isinstance(exp, int) and exp > 0:
                raise Unsupported(
                    f"amount is compared with the text {c!r}, which only a JSON number can spell"
                )
            texts.setdefault(self.cuts.cell_of(d), []).append((c, format(d, "f")))
        self.texts = sorted(t for pairs in texts.values() for t, _ in pairs)
        atoms: list[AmountAtom] = [AmountAtom(None, ANY, False, ABSENT)]
        for padded in (False, True) if self.mixed else (False,):
            for cell in range(self.cuts.cells):
                here = texts.get(cell, [])
                wrap = (lambda s: f" {s} ") if padded else (lambda s: s)
                if reads.text:
                    for c, spelled in here:
                        atoms.append(AmountAtom(cell, ("pt", c), padded, wrap(spelled)))
                    atoms.append(AmountAtom(cell, ("other",), padded, wrap(self._other(cell))))
                else:
                    atoms.append(AmountAtom(cell, ANY, padded, wrap(money(self.cuts.sample(cell)))))
        self.atoms = atoms

    def _other(self, cell: int) -> str:
        """A plain spelling of an amount in ``cell`` whose decimal text no rule compares with."""
        v = self.cuts.sample(cell)
        spellings = [money(v), format(v, "f")]
        for places in range(3, 40):
            try:
                spellings.append(format(v.quantize(Decimal(1).scaleb(-places)), "f"))
            except ArithmeticError:
                break
        for s in spellings:
            if Decimal(s) == v and str(Decimal(s)) not in self.texts:
                return s
        raise Unsupported("no spelling of an amount avoids every compared text")  # pragma: no cover

    def cells(self, side: Side) -> list[int | None]:
        """Per atom, the decimal cell this side reads (None: missing to this side)."""
        return [None if a.padded and side.strict else a.cell for a in self.atoms]

    def leaf_values(self, leaf: m.Comparison | m.Membership, side: Side) -> list[bool | None]:
        out: list[bool | None] = []
        for a, cell in zip(self.atoms, self.cells(side), strict=True):
            if cell is None:
                out.append(None)
            elif isinstance(leaf, m.Membership) and all(isinstance(v, Decimal) for v in leaf.values):
                out.append(any(cell == self.cuts.point(v) for v in leaf.values if isinstance(v, Decimal)))
            elif isinstance(leaf, m.Membership):
                members = {str(v) for v in leaf.values}
                out.append(isinstance(a.text, tuple) and a.text[0] == "pt" and a.text[1] in members)
            elif isinstance(leaf.value, Decimal):
                out.append(self.cuts.compare(cell, leaf.operator, leaf.value))
            else:
                same = isinstance(a.text, tuple) and a.text[0] == "pt" and a.text[1] == leaf.value
                out.append(same if leaf.operator == "eq" else not same)
        return out


# --- approver and executor -------------------------------------------------------------------


@dataclass(frozen=True)
class PartyAtom:
    approver: int | None  # index into the shared text field's atoms (None in the simple mode)
    executor: int | None
    same: bool | None  # None: approver or executor missing
    witness: tuple[object, object]


class PartiesField:
    """The approver/executor pair. Simple mode (no rule compares them with constants): either
    missing, the same, different. Otherwise each one's atoms, and same/different where both fit."""

    name = PARTIES

    def __init__(self, reads: Reads | None, languages: Sequence[str] = ("1.0",)) -> None:
        self.text: TextField | None = None
        if reads is None:
            self.atoms = [
                PartyAtom(None, None, None, (ABSENT, "b")),
                PartyAtom(None, None, True, ("a", "a")),
                PartyAtom(None, None, False, ("a", "b")),
            ]
            return
        if reads.ordered:
            raise Unsupported("approver_id/executor_id are ordered as text; the analysis does not cut that")
        tf = TextField(
            "approver_id/executor_id",
            reads,
            strings_only=False,
            base="a",
            always_text=True,
            languages=languages,
        )
        self.text = tf
        atoms: list[PartyAtom] = []
        for i, a in enumerate(tf.atoms):
            for j, e in enumerate(tf.atoms):
                if a.text is None or e.text is None:
                    atoms.append(PartyAtom(i, j, None, (a.witness, e.witness)))
                elif a.text[0] == "pt" and e.text[0] == "pt":  # type: ignore[index]
                    atoms.append(PartyAtom(i, j, i == j, (a.witness, e.witness)))
                elif i == j:
                    atoms.append(PartyAtom(i, j, True, (a.witness, a.witness)))
                    atoms.append(PartyAtom(i, j, False, (a.witness, _second(a, tf.texts))))
                else:
                    atoms.append(PartyAtom(i, j, False, (a.witness, e.witness)))
        self.atoms = atoms

    def sod_fires(self) -> list[bool]:
        return [a.same is not False for a in self.atoms]

    def leaf_values(self, leaf: m.Comparison | m.Membership, strict: bool = False) -> list[bool | None]:
        assert self.text is not None
        tf = self.text
        out: list[bool | None] = []
        for a in self.atoms:
            who = a.approver if leaf.attribute == "approver_id" else a.executor
            assert who is not None
            out.append(tf.leaf_value(tf.atoms[who], leaf, strict))
        return out


def _second(a: Atom, texts: Sequence[str]) -> object:
    """A second value of a text atom ("other" texts have many), different from its witness."""
    if a.dec is None or a.dec == ANY:
        return next(w for w in _words("b") if w not in texts and w != a.witness)
    assert isinstance(a.witness, str)
    w = a.witness.strip()
    pad = " " if a.padded else ""
    for zeros in range(1, 64):
        cand = "0" * zeros + w if not w.startswith("-") else "-" + "0" * zeros + w[1:]
        if pad + cand + pad not in texts:
            return pad + cand + pad
    raise Unsupported("no second spelling avoids every compared text")  # pragma: no cover


# --- the space of one type ---------------------------------------------------------------------


@dataclass
class Space:
    """The variables (in order) of the decision space of one type atom, and their fields."""

    type_atom: Atom
    level: TextField | None = None
    amount: AmountField | None = None
    parties: PartiesField | None = None
    attributes: dict[str, TextField] = field(default_factory=dict)

    @property
    def fields(self) -> list[object]:
        out: list[object] = []
        if self.level is not None:
            out.append(self.level)
        if self.amount is not None:
            out.append(self.amount)
        if self.parties is not None:
            out.append(self.parties)
        out += [self.attributes[k] for k in sorted(self.attributes)]
        return out

    @property
    def keys(self) -> list[str]:
        out: list[str] = []
        if self.level is not None:
            out.append(LEVEL)
        if self.amount is not None:
            out.append(AMOUNT)
        if self.parties is not None:
            out.append(PARTIES)
        out += ["attr:" + k for k in sorted(self.attributes)]
        return out

    @property
    def sizes(self) -> list[int]:
        return [len(f.atoms) for f in self.fields]  # type: ignore[attr-defined]

    def var(self, key: str) -> int:
        return self.keys.index(key)


def build_space(type_atom: Atom, sides: Sequence[Side]) -> Space:
    """The space of transactions of one type atom, cut at the constants of every side's rules
    that concern that type."""
    level = Reads.empty()
    amount = Reads.empty()
    parties: Reads | None = None
    attrs: dict[str, Reads] = {}
    need_level = need_amount = sod = False
    for s in sides:
        level.texts.update(s.ranks)
        if s.strict:
            need_level = need_amount = True
        for r in s.policy.rules:
            if not applies(r, type_atom.text):
                continue  # (with no type, a typed decision rule fails closed and reads nothing)
            if isinstance(r, m.ApprovalRule):
                need_level = need_amount = True
                amount.decimals.add(r.threshold)
            elif isinstance(r, m.SegregationOfDutyRule):
                sod = True
            elif isinstance(r, m.RestrictionRule):
                if r.override is not None:
                    need_level = True
                for leaf in leaves_of(r):
                    a = leaf.attribute
                    if a == "type":
                        continue
                    if a == "amount":
                        need_amount = True
                        amount.add_leaf(leaf)
                    elif a == "actor_level":
                        need_level = True
                        level.add_leaf(leaf, ranked=True)
                    elif a in ("approver_id", "executor_id"):
                        parties = parties or Reads.empty()
                        parties.add_leaf(leaf)
                    else:
                        attrs.setdefault(a, Reads.empty()).add_leaf(leaf)
            else:
                assert isinstance(r, m.NotificationRule | m.AuditLogRule)
                if r.min_authority is not None:
                    need_level = True
                if isinstance(r, m.NotificationRule) and r.threshold is not None:
                    need_amount = True
                    amount.decimals.add(r.threshold)
    sp = Space(type_atom)
    langs = [s.language for s in sides]
    if need_level:
        sp.level = TextField(LEVEL, level, strings_only=True, always_text=True, languages=langs)
    if need_amount:
        sp.amount = AmountField(amount, [s.language for s in sides])
    if sod or parties is not None:
        sp.parties = PartiesField(parties, langs)
    sp.attributes = {
        k: TextField(k, v, strings_only=False, base="other", languages=langs)
        for k, v in sorted(attrs.items())
    }
    return sp
