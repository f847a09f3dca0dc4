"""The decision of each side on the amount × authority level grid of one transaction type, for the
picture in the impact report: per (level, amount cell), APPROVE or REJECT for every transaction
there, or "mixed" when other fields (attributes, approver/executor) decide."""

from __future__ import annotations

from dataclasses import dataclass

from finops_fabric.analysis.encode import Encoder
from finops_fabric.analysis.fields import Cuts, point_of
from finops_fabric.analysis.mdd import Manager
from finops_fabric.analysis.space import AMOUNT, LEVEL, Side, build_space, type_field

APPROVE, REJECT, MIXED = "APPROVE", "REJECT", "mixed"


@dataclass
class Grid:
    type_code: str
    levels: list[str]  # row labels, lowest rank first, then "undeclared", "none"
    columns: list[tuple[str, str]]  # (label, kind: "point" | "interval" | "none")
    old: list[list[str]]  # [row][column]
    new: list[list[str]]

    def changed(self, row: int, col: int) -> bool:
        return self.old[row][col] != self.new[row][col]


def _column_label(cuts: Cuts, cell: int) -> tuple[str, str]:
    from finops_fabric.analysis.summary import dollars

    lo, hi = cuts.lower(cell), cuts.upper(cell)
    if cuts.is_point(cell):
        assert lo is not None
        return dollars(str(lo[0])), "point"
    left = dollars(str(lo[0])) if lo is not None else "−∞"
    right = dollars(str(hi[0])) if hi is not None else "∞"
    return f"{left} … {right}", "interval"


def decision_grid(old: Side, new: Side, type_code: str) -> Grid | None:
    """The grid of one declared type (None when the type has neither amount nor level to draw)."""
    tf = type_field([old, new])
    index = next((i for i, a in enumerate(tf.atoms) if point_of(a.text) == type_code), None)
    if index is None:
        return None
    space = build_space(tf.atoms[index], [old, new])
    if space.level is None and space.amount is None:
        return None
    mgr = Manager(space.sizes)
    keys = space.keys
    decisions = []
    for side in (old, new):
        enc = Encoder(mgr, space, side, tf)
        decisions.append(mgr.any_of([n for _, n in enc.decision_rules()]))
    rows: list[tuple[str, frozenset[int] | None]] = [("all levels", None)]
    if space.level is not None:
        ranks = {**old.ranks, **new.ranks}
        lv = space.level
        coded = sorted(
            (
                (code, i)
                for i, a in enumerate(lv.atoms)
                if (code := point_of(a.text)) is not None and code in ranks
            ),
            key=lambda p: (ranks[p[0]], p[0]),
        )
        rows = [(code, frozenset({i})) for code, i in coded]
        others = frozenset(
            i for i, a in enumerate(lv.atoms) if a.text is not None and i not in {j for _, j in coded}
        )
        rows += [
            ("undeclared", others),
            ("none", frozenset(i for i, a in enumerate(lv.atoms) if a.text is None)),
        ]
    columns: list[tuple[str, str]] = [("any amount", "interval")]
    cols: list[frozenset[int] | None] = [None]
    if space.amount is not None:
        af = space.amount
        columns, cols = [], []
        for cell in range(af.cuts.cells):
            columns.append(_column_label(af.cuts, cell))
            cols.append(frozenset(i for i, a in enumerate(af.atoms) if a.cell == cell and not a.padded))
        columns.append(("none", "none"))
        cols.append(frozenset({0}))
    grids: list[list[list[str]]] = []
    for d in decisions:
        grid = []
        for _, row_atoms in rows:
            line = []
            for col_atoms in cols:
                box: dict[int, frozenset[int]] = {}
                if row_atoms is not None:
                    box[keys.index(LEVEL)] = row_atoms
                if col_atoms is not None:
                    box[keys.index(AMOUNT)] = col_atoms
                values = mgr.values_in(d, box)
                line.append(MIXED if len(values) > 1 else (REJECT if True in values else APPROVE))
            grid.append(line)
        grids.append(grid)
    return _compact(Grid(type_code, [r for r, _ in rows], columns, grids[0], grids[1]))


def _compact(g: Grid, limit: int = 60) -> Grid:
    """Adjacent amount columns that look alike on both sides drawn as one."""
    keep: list[int] = []
    for c in range(len(g.columns)):
        same = keep and g.columns[c][1] != "none" and g.columns[keep[-1]][1] != "none"
        same = same and all(
            g.old[r][c] == g.old[r][keep[-1]] and g.new[r][c] == g.new[r][keep[-1]]
            for r in range(len(g.levels))
        )
        if same:
            first = g.columns[keep[-1]][0].split(" … ")[0]
            last = g.columns[c][0].split(" … ")[-1]
            g.columns[keep[-1]] = (f"{first} … {last}", "interval")
        else:
            keep.append(c)
    if len(keep) > limit:  # too many to draw: the columns where something changes, and their neighbours
        wanted = {c for c in keep if any(g.old[r][c] != g.new[r][c] for r in range(len(g.levels)))}
        near = {
            keep[i + d]
            for i, c in enumerate(keep)
            if c in wanted
            for d in (-1, 0, 1)
            if 0 <= i + d < len(keep)
        }
        keep = [c for c in keep if c in near][:limit] or keep[:limit]
    return Grid(
        g.type_code,
        g.levels,
        [g.columns[c] for c in keep],
        [[row[c] for c in keep] for row in g.old],
        [[row[c] for c in keep] for row in g.new],
    )


__all__ = ["APPROVE", "MIXED", "REJECT", "Grid", "decision_grid"]
