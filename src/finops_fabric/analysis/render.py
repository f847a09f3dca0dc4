"""Sets of atoms written as ``when`` constraints (INTERFACES.md, "Impact analysis"), and the
witness value chosen from each.

A field's atom set becomes one or more *pieces*, each a constraint that denotes exactly the
transactions of its atoms (so a region whose set needs two constraints becomes two regions):

- ``{"missing": true}``: absent (no text: absent, null, an array or an object; for ``amount``:
  no decimal at all); ``{"missing": false}``: present;
- ``{"in": [...]}``: the text is one of these; ``{"not_in": [...]}``: it is not (an absent
  value is not one of them either: add ``"missing": false`` to require a value); ``not_in``
  covers every text O does not mention, for ``type`` and ``actor_level`` every undeclared code;
- bounds ``gt``/``ge``/``lt``/``le`` (decimal strings): the decimal view lies within them;
- ``{"decimal": false}``: the value has no decimal view (absent, or a text that is not one);
  ``{"decimal": true}``: it has one;
- ``text_gt``/``text_ge``/``text_lt``/``text_le``: the text lies within these, in code-point
  order (only where O orders a field as text);
- ``{"padded": true}`` (with bounds on the trimmed value), when one side is language 1.0 and the
  other 1.1: a value that is a decimal to 1.0 only (a string that is a plain decimal once its
  surrounding whitespace is trimmed; for ``approver_id``/``executor_id`` also a number whose
  text is not plain); bounds and ``{"decimal": true}`` without it mean a decimal to both;
  ``amount`` also ``{"padded": false}``: a plain decimal.
- ``approver_is_executor``: ``true``/``false`` (both present), ``{"missing": true}`` (either is
  absent); ``approver_id``/``executor_id``: text constraints as above.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from finops_fabric.analysis.fields import ABSENT, ANY, Cuts, TextField, plain, point_of
from finops_fabric.analysis.space import AmountField, PartiesField

Piece = tuple[dict[str, Any], frozenset[int]]


def _runs(cells: Sequence[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for c in sorted(cells):
        if out and out[-1][-1] == c - 1:
            out[-1].append(c)
        else:
            out.append([c])
    return out


def bounds(cuts: Cuts, first: int, last: int) -> dict[str, str]:
    out: dict[str, str] = {}
    lo, hi = cuts.lower(first), cuts.upper(last)
    if lo is not None:
        out["ge" if lo[1] else "gt"] = plain(lo[0])
    if hi is not None:
        out["le" if hi[1] else "lt"] = plain(hi[0])
    return out


def text_pieces(tf: TextField, chosen: frozenset[int], order: Callable[[str], Any] = str) -> list[Piece]:
    """The pieces of a set of atoms of a text field."""
    atoms = tf.atoms
    everything = frozenset(range(len(atoms)))
    if chosen == everything:
        return [({}, chosen)]
    out: list[Piece] = []
    if atoms[0].text == ANY:  # decimal only: "no decimal view" and the cells (plain, then padded)
        nodec = {i for i in chosen if atoms[i].dec is None}
        if nodec:
            out.append(({"decimal": False}, frozenset(nodec)))
        for padded in (False, True) if tf.mixed else (False,):
            extra: dict[str, Any] = {"padded": True} if padded else {}
            cells = {
                atoms[i].dec: i for i in chosen if atoms[i].dec is not None and atoms[i].padded == padded
            }
            if len(cells) == tf.cuts.cells:
                out.append(({"decimal": True, **extra}, frozenset(cells.values())))
            else:
                for run in _runs([c for c in cells if isinstance(c, int)]):
                    out.append(
                        ({**bounds(tf.cuts, run[0], run[-1]), **extra}, frozenset(cells[c] for c in run))
                    )
        return out
    missing = {i for i in chosen if atoms[i].text is None}
    absent = {i for i in everything if atoms[i].text is None}
    pts = {i: code for i, a in enumerate(atoms) if (code := point_of(a.text)) is not None}
    present = everything - absent
    rest = set(chosen) - missing
    c: dict[str, Any]
    if tf.reads.ordered:
        if missing:
            out.append(({"missing": True}, frozenset(missing)))
        order_ix = [i for i in range(len(atoms)) if atoms[i].text is not None]
        for run in _consecutive(order_ix, rest):
            if len(run) == 1 and run[0] in pts:
                out.append(({"in": [pts[run[0]]]}, frozenset(run)))
                continue
            c = {}
            first, last = atoms[run[0]].text, atoms[run[-1]].text
            assert isinstance(first, tuple) and isinstance(last, tuple)
            if first[0] == "pt":
                c["text_ge"] = first[1]
            elif first[1] is not None:
                c["text_gt"] = first[1]
            if last[0] == "pt":
                c["text_le"] = last[1]
            elif last[2] is not None:
                c["text_lt"] = last[2]
            out.append((c or {"missing": False}, frozenset(run)))
        return out
    others = {i for i in present if i not in pts}
    if others <= rest:  # every text O does not mention: "not one of these"
        excluded = sorted((pts[i] for i in present - rest), key=order)
        c = {"not_in": excluded} if excluded else {}
        if absent - missing:
            c["missing"] = False
        return [(c, frozenset(chosen))]
    taken: set[int] = set()
    plain_other = [i for i in others if atoms[i].dec is None]
    if plain_other and plain_other[0] in rest:  # texts that are not numbers
        nodec_pts = {i for i in pts if atoms[i].dec is None}
        excluded = sorted((pts[i] for i in nodec_pts - rest), key=order)
        c = {"decimal": False, **({"not_in": excluded} if excluded else {})}
        if absent - missing:
            c["missing"] = False
        covered = {plain_other[0], *(nodec_pts & rest), *missing}
        out.append((c, frozenset(covered)))
        taken |= covered
    elif missing:
        out.append(({"missing": True}, frozenset(missing)))
        taken |= missing
    for padded in (False, True) if tf.mixed else (False,):  # plain decimals, then padded ones
        by_cell: dict[int, int] = {}
        for i in others:
            cell_of = atoms[i].dec
            if isinstance(cell_of, int) and atoms[i].padded == padded:
                by_cell[cell_of] = i
        for run in _runs([cell for cell, i in by_cell.items() if i in rest]):
            cell_pts = {i for i in pts if atoms[i].dec in run and atoms[i].padded == padded}
            c = dict(bounds(tf.cuts, run[0], run[-1])) or {"decimal": True}
            if padded:
                c["padded"] = True
            left_out = sorted((pts[i] for i in cell_pts - rest), key=order)
            if left_out:
                c["not_in"] = left_out
            covered = {by_cell[cell] for cell in run} | (cell_pts & rest)
            out.append((c, frozenset(covered)))
            taken |= covered
    listed = sorted(rest - taken, key=lambda i: order(pts[i]))
    if listed:
        out.append(({"in": [pts[i] for i in listed]}, frozenset(listed)))
    return out


def _consecutive(order: Sequence[int], chosen: set[int]) -> list[list[int]]:
    out: list[list[int]] = []
    prev = False
    for i in order:
        if i in chosen:
            if prev:
                out[-1].append(i)
            else:
                out.append([i])
            prev = True
        else:
            prev = False
    return out


def amount_pieces(af: AmountField, chosen: frozenset[int]) -> list[Piece]:
    atoms = af.atoms
    if len(chosen) == len(atoms):
        return [({}, chosen)]
    out: list[Piece] = []
    if 0 in chosen:
        out.append(({"missing": True}, frozenset({0})))
    for padded in (False, True) if af.mixed else (False,):
        per_cell: dict[int, list[int]] = {}
        for i, a in enumerate(atoms):
            if a.cell is not None and a.padded == padded:
                per_cell.setdefault(a.cell, []).append(i)
        full = [c for c, ix in per_cell.items() if all(i in chosen for i in ix)]
        extra: dict[str, Any] = {"padded": True} if padded else {}
        for run in _runs(full):
            c: dict[str, Any] = dict(bounds(af.cuts, run[0], run[-1]))
            if not c:
                c = {"padded": False} if af.mixed and not padded else ({} if padded else {"missing": False})
            out.append(({**c, **extra}, frozenset(i for cell in run for i in per_cell[cell])))
        for cell, ix in sorted(per_cell.items()):
            if cell in full:
                continue
            for i in ix:
                if i not in chosen:
                    continue
                a = atoms[i]
                if point_of(a.text) is not None:
                    out.append(({"in": [point_of(a.text)], **extra}, frozenset({i})))
                else:
                    names = [code for j in ix if (code := point_of(atoms[j].text)) is not None]
                    out.append(({**bounds(af.cuts, cell, cell), "not_in": names, **extra}, frozenset({i})))
    return out


def party_pieces(pf: PartiesField, chosen: frozenset[int]) -> list[Piece]:
    if len(chosen) == len(pf.atoms):
        return [({}, chosen)]
    if pf.text is None:
        names: dict[frozenset[int], dict[str, Any]] = {
            frozenset({0}): {"approver_is_executor": {"missing": True}},
            frozenset({1}): {"approver_is_executor": True},
            frozenset({2}): {"approver_is_executor": False},
            frozenset({1, 2}): {"approver_is_executor": {"missing": False}},
        }
        if chosen in names:
            return [(names[chosen], chosen)]
        return [(names[frozenset({i})], frozenset({i})) for i in sorted(chosen)]
    tf = pf.text
    groups: dict[tuple[object, int | None], set[int]] = {}
    for i in chosen:
        a = pf.atoms[i]
        groups.setdefault((a.same, a.executor), set()).add(i)
    out: list[Piece] = []
    for (same, executor), ix in sorted(groups.items(), key=repr):
        approvers = frozenset(who for i in ix if (who := pf.atoms[i].approver) is not None)
        assert executor is not None
        for (ec, _), (ac, sub) in (
            (e, a) for e in text_pieces(tf, frozenset({executor})) for a in text_pieces(tf, approvers)
        ):
            frag: dict[str, Any] = {}
            if ac:
                frag["approver_id"] = ac
            if ec:
                frag["executor_id"] = ec
            frag["approver_is_executor"] = {"missing": True} if same is None else same
            covered = frozenset(i for i in ix if pf.atoms[i].approver in sub)
            out.append((frag, covered))
    return out


def preferred(atoms_of: Sequence[Any], chosen: frozenset[int], kind: str, rank: Callable[[int], Any]) -> int:
    """The atom a witness takes from a set: a present, readable, middle-of-the-range one."""
    ix = sorted(chosen)
    if kind == "amount":
        inner = [i for i in ix if atoms_of[i].cell is not None and not atoms_of[i].padded]
        opens = [i for i in inner if atoms_of[i].cell % 2 == 0]
        pool = opens or inner or ix
        return pool[len(pool) // 2] if opens else pool[0]
    if kind == "parties":
        return max(ix, key=lambda i: (atoms_of[i].same is False, atoms_of[i].same is True))
    present = [i for i in ix if atoms_of[i].witness is not ABSENT]
    if kind == "level":
        return min(present or ix, key=rank)
    unmentioned = [i for i in present if atoms_of[i].text == ("other",) and atoms_of[i].dec in (None, ANY)]
    return (unmentioned or present or ix)[0]
