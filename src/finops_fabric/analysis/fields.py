"""The fields of a transaction, each cut into finitely many *atoms* at the constants O mentions.

Every value a field can take falls in exactly one atom, and every leaf of every rule (and the
approval, override, notification and audit checks) gives the same answer for all values of one
atom. That is the whole soundness argument of the analysis: deciding one representative per atom
decides them all. The atoms, field by field (values read exactly as the reference interpreter
reads them):

- a *text field* (an attribute, ``type``, ``actor_level``, ``approver_id``, ``executor_id``) has a
  text view (a string, ``true``/``false`` for a boolean, the digits of an integer or decimal
  number; none for an absent value, null, an array or an object) and a decimal view per
  language: 1.0 reads the text as a plain decimal after trimming whitespace, 1.1 only a text
  that is a plain decimal exactly (an attribute's JSON number is read as the number in both; a
  party's or code's through its text). Its atoms: *absent*; each text constant O compares it
  with (with that constant's decimal views); any other text with no decimal view; any other
  text whose decimal view lies in each cell of the decimal cut points (every decimal constant is
  a point cell, the open intervals between them are cells too); and when one side reads 1.0 and
  the other 1.1, per cell the *padded* texts (a decimal to 1.0 only once trimmed, none to 1.1).
  When O orders it as text (``gt`` with a string), the other texts are cut into the open
  intervals between the text constants instead. Views O never reads are not split.
- ``amount`` is read as a decimal, by each side's language (1.0 trims surrounding whitespace,
  1.1 does not); its atoms: absent-or-unreadable, each decimal cell (split by its exact text when
  O compares the amount as text), and when only one side trims, the *padded* amounts per cell.
  Language 1.1's "negative" check adds the cut point 0.
- the approver/executor pair: either absent, equal, different (times the atoms of each when O
  compares them with constants).

Constructions the analysis cannot cut exactly refuse with :class:`Unsupported` rather than
guess: ordering a field as text while also reading it as a decimal (the amount is always read as
a decimal), ordering the approver or executor as text, and a text constant that a JSON number
can also spell (``1E+3``) on a field that is also read as a decimal.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from finops_fabric import model as m

_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")


class Unsupported(Exception):
    """A construction of O whose decision space this analysis does not cut exactly."""


class _Absent:
    """The witness value meaning "leave this field out of the transaction"."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()
#: An atom's view that O never reads (so it is not split).
ANY = "any"


def point_of(text: object) -> str | None:
    """The constant of a text atom that is one (``("pt", c)``), else None."""
    if isinstance(text, tuple) and len(text) == 2 and text[0] == "pt":
        return str(text[1])
    return None


def lenient_decimal(text: str) -> Decimal | None:
    """The decimal view of a text, as the interpreter reads attributes (whitespace trimmed)."""
    t = text.strip()
    return Decimal(t) if _PLAIN.fullmatch(t) else None


def strict_decimal(text: str) -> Decimal | None:
    """The decimal view of a text as language 1.1 reads it: a plain decimal exactly, or none."""
    return Decimal(text) if _PLAIN.fullmatch(text) else None


def plain(d: Decimal) -> str:
    """A decimal written out without exponent and without trailing fractional zeros."""
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def canon(d: Decimal) -> Decimal:
    return Decimal(plain(d))


def money(d: Decimal) -> str:
    """A witness amount: two decimals when that is exact, else every digit."""
    q = d.quantize(Decimal("0.01"))
    return format(q, "f") if q == d else format(d, "f")


# --- decimal cells ---------------------------------------------------------------------------


class Cuts:
    """Cut points k1 < … < kn: cells (−∞,k1), {k1}, (k1,k2), …, {kn}, (kn,∞) numbered 0 … 2n."""

    def __init__(self, points: Iterable[Decimal]) -> None:
        self.points: tuple[Decimal, ...] = tuple(sorted({canon(p) for p in points}))
        self.cells = 2 * len(self.points) + 1

    def cell_of(self, d: Decimal) -> int:
        i = bisect_left(self.points, d)
        return 2 * i + 1 if i < len(self.points) and self.points[i] == d else 2 * i

    def point(self, k: Decimal) -> int:
        return self.cell_of(k)

    def is_point(self, cell: int) -> bool:
        return cell % 2 == 1

    def lower(self, cell: int) -> tuple[Decimal, bool] | None:
        """(bound, inclusive) below the cell, or None for −∞."""
        if cell % 2 == 1:
            return self.points[cell // 2], True
        return (self.points[cell // 2 - 1], False) if cell > 0 else None

    def upper(self, cell: int) -> tuple[Decimal, bool] | None:
        if cell % 2 == 1:
            return self.points[cell // 2], True
        return (self.points[cell // 2], False) if cell // 2 < len(self.points) else None

    def sample(self, cell: int) -> Decimal:
        """A readable value inside the cell."""
        if cell % 2 == 1:
            return self.points[cell // 2]
        lo, hi = self.lower(cell), self.upper(cell)
        if lo is None and hi is None:
            return Decimal(100)
        if lo is None:
            assert hi is not None
            h = hi[0]
            v = (h / 2).quantize(Decimal(1)) if h > 2 else h - 1
            return v if v < h else h - 1
        if hi is None:
            low = lo[0]
            v = (low + max(Decimal(1), abs(low) / 2)).quantize(Decimal(1))
            return v if v > low else low + 1
        a, b = lo[0], hi[0]
        mid = (a + b) / 2
        for q in (Decimal(1), Decimal("0.01")):
            r = mid.quantize(q)
            if a < r < b:
                return r
        return mid

    def compare(self, cell: int, op: str, k: Decimal) -> bool:
        """Whether every value of ``cell`` satisfies ``value op k`` (k is a cut point)."""
        p = self.point(k)
        return _order(cell, op, p)


def _order(a: int | str, op: str, b: int | str) -> bool:
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if op == "gt":
        return a > b  # type: ignore[operator]
    if op == "ge":
        return a >= b  # type: ignore[operator]
    if op == "lt":
        return a < b  # type: ignore[operator]
    return a <= b  # type: ignore[operator]


# --- text fields -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Atom:
    """One atom of a text field. ``text``: None (absent), ANY, ("pt", c), ("other",) or
    ("iv", lo, hi) (lexicographic interval, bounds None for unbounded); ``dec``: None (no decimal
    view), ANY or a cell index (language 1.0's view when the sides' languages differ, else the
    one language's); ``witness``: a raw value in the atom (ABSENT: leave it out); ``strict``:
    language 1.1's decimal view when the sides' languages differ (else the same as ``dec``)."""

    text: object
    dec: object
    witness: object
    strict: object = ANY

    @property
    def padded(self) -> bool:
        """A decimal to language 1.0 only once trimmed, none to 1.1 (only when the languages differ)."""
        return isinstance(self.dec, int) and self.strict is None

    def view(self, strict: bool) -> object:
        """The decimal view of a side (``strict``: language 1.1)."""
        return self.strict if strict and self.strict != ANY else self.dec


@dataclass
class Reads:
    """What the rules read of one field: constants, and whether as text, decimal, text order."""

    texts: set[str]
    decimals: set[Decimal]
    text: bool = False
    decimal: bool = False
    ordered: bool = False

    @classmethod
    def empty(cls) -> Reads:
        return cls(set(), set())

    def add_leaf(self, leaf: m.Comparison | m.Membership, *, ranked: bool = False) -> None:
        if isinstance(leaf, m.Membership):
            if all(isinstance(v, Decimal) for v in leaf.values):
                self.decimal = True
                self.decimals.update(v for v in leaf.values if isinstance(v, Decimal))
            else:
                self.text = True
                self.texts.update(str(v) for v in leaf.values)
            return
        if ranked and leaf.operator not in ("eq", "ne"):
            return  # actor_level ordered by rank: the level field's atoms carry the ranks
        if isinstance(leaf.value, Decimal):
            self.decimal = True
            self.decimals.add(leaf.value)
        else:
            self.text = True
            self.texts.add(leaf.value)
            if leaf.operator not in ("eq", "ne"):
                self.ordered = True


def _spellings(value: Decimal) -> Iterable[str]:
    base = money(value)
    yield base
    yield format(value, "f")
    for zeros in range(1, 64):
        yield ("0" * zeros + base) if not base.startswith("-") else "-" + "0" * zeros + base[1:]


def _words(base: str) -> Iterable[str]:
    yield base
    for i in range(1, 10_000):
        yield f"{base}-{i}"


class TextField:
    """The atoms of one text-valued field (see the module documentation)."""

    def __init__(
        self,
        name: str,
        reads: Reads,
        *,
        strings_only: bool,
        base: str = "other",
        avoid: Iterable[str] = (),
        always_text: bool = False,
        languages: Sequence[str] = ("1.0",),
    ) -> None:
        self.name = name
        self.reads = reads
        self.strings_only = strings_only
        need_text = reads.text or always_text
        need_dec = reads.decimal
        #: one side reads 1.0 and the other 1.1: padded decimals are atoms of their own
        self.mixed = mixed = need_dec and len(set(languages)) > 1
        strict_only = all(lang != "1.0" for lang in languages)
        texts = sorted(reads.texts)
        self.texts = texts
        self.cuts = Cuts(reads.decimals)
        avoid_all = set(texts) | set(avoid)
        if need_dec and need_text:
            if reads.ordered:
                raise Unsupported(
                    f"{name} is ordered as text and also compared as a decimal; the analysis does not "
                    "cut such a field exactly"
                )
            for c in texts:
                if lenient_decimal(c) is None and not strings_only and _exponent_number(c):
                    raise Unsupported(
                        f"{name} is compared with the text {c!r}, which a JSON number can also spell, "
                        "and as a decimal; the analysis does not cut such a field exactly"
                    )
        atoms: list[Atom] = []
        if need_text:
            atoms.append(Atom(None, None if need_dec else ANY, ABSENT))
            if reads.ordered:
                atoms += self._lexicographic(texts, avoid_all, base)
            else:
                for c in texts:
                    lenient, strict = lenient_decimal(c), strict_decimal(c)
                    d = strict if strict_only else lenient
                    atoms.append(
                        Atom(
                            ("pt", c),
                            (self.cuts.cell_of(d) if d is not None else None) if need_dec else ANY,
                            c,
                            (self.cuts.cell_of(strict) if strict is not None else None) if mixed else ANY,
                        )
                    )
                word = next(w for w in _words(base) if w not in avoid_all and lenient_decimal(w) is None)
                atoms.append(Atom(("other",), None if need_dec else ANY, word))
            if need_dec:
                for padded in (False, True) if mixed else (False,):
                    for cell in range(self.cuts.cells):
                        value = self.cuts.sample(cell)
                        spellings = (f" {s} " if padded else s for s in _spellings(value))
                        spelled = next(s for s in spellings if s not in avoid_all)
                        atoms.append(Atom(("other",), cell, spelled, None if padded else ANY))
        elif need_dec:
            atoms.append(Atom(ANY, None, ABSENT))
            for padded in (False, True) if mixed else (False,):
                for cell in range(self.cuts.cells):
                    spelled = money(self.cuts.sample(cell))
                    atoms.append(
                        Atom(ANY, cell, f" {spelled} " if padded else spelled, None if padded else ANY)
                    )
        else:
            atoms.append(Atom(None, ANY, ABSENT))
            atoms.append(Atom(("other",), ANY, next(w for w in _words(base) if w not in avoid_all)))
        self.atoms = atoms

    @staticmethod
    def _lexicographic(texts: Sequence[str], avoid: set[str], base: str) -> list[Atom]:
        out: list[Atom] = []
        bounds: list[str | None] = [None, *texts, None]
        for i in range(len(bounds) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            w = _between(lo, hi, avoid, base)
            if w is not None:
                out.append(Atom(("iv", lo, hi), ANY, w))
            if hi is not None:
                out.append(Atom(("pt", hi), ANY, hi))
        return out

    # --- reading -----------------------------------------------------------------------------
    def leaf_values(self, leaf: m.Comparison | m.Membership, strict: bool = False) -> list[bool | None]:
        """Per atom: the leaf's value (None: the field is missing for this leaf) to a side
        (``strict``: language 1.1)."""
        return [self.leaf_value(a, leaf, strict) for a in self.atoms]

    def leaf_value(self, a: Atom, leaf: m.Comparison | m.Membership, strict: bool = False) -> bool | None:
        dec = a.view(strict)
        if isinstance(leaf, m.Membership):
            if all(isinstance(v, Decimal) for v in leaf.values):
                if dec is None:
                    return None
                assert isinstance(dec, int)
                return any(dec == self.cuts.point(v) for v in leaf.values if isinstance(v, Decimal))
            if a.text is None:
                return None
            members = {str(v) for v in leaf.values}
            return isinstance(a.text, tuple) and a.text[0] == "pt" and a.text[1] in members
        if isinstance(leaf.value, Decimal):
            if dec is None:
                return None
            assert isinstance(dec, int)
            return self.cuts.compare(dec, leaf.operator, leaf.value)
        return text_compare(a.text, leaf.operator, leaf.value)


def text_compare(text: object, op: str, c: str) -> bool | None:
    """A text atom against constant ``c`` (one of the field's text constants)."""
    if text is None:
        return None
    assert isinstance(text, tuple)
    if text[0] == "pt":
        return _order(text[1], op, c)
    if text[0] == "other":
        if op in ("eq", "ne"):
            return op == "ne"
        raise Unsupported("a text order on a field that is not cut lexicographically")
    lo = text[1]
    above = lo is not None and c <= lo  # every text of the interval is > c
    if op in ("eq", "ne"):
        return op == "ne"
    return above if op in ("gt", "ge") else not above


def _exponent_number(c: str) -> bool:
    try:
        d = Decimal(c)
    except InvalidOperation:
        return False
    return d.is_finite() and str(d) == c


def _between(lo: str | None, hi: str | None, avoid: set[str], base: str) -> str | None:
    """A string s with lo < s < hi (None: unbounded), or None when there is none."""
    if lo is None:
        cands = ["", base, "A", "0", " "]
    else:
        cands = [lo + base, lo + "~", lo + "0", lo + " ", lo + "\x00"]
    if hi is not None:
        cands += [hi[:-1] + chr(ord(hi[-1]) - 1) + "~"] if hi and ord(hi[-1]) > 0 else []
    for s in cands:
        if (lo is None or s > lo) and (hi is None or s < hi) and s not in avoid:
            return s
    if lo is not None and (hi is None or lo + "\x00" < hi):
        return lo + "\x00"
    return None
