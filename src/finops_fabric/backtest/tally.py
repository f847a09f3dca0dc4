"""What a back-test counts: every row, old outcome against new, batch by batch.

A :class:`Tally` takes each batch with both sides' :class:`Outcomes` and keeps totals (rows,
flips by direction, rows whose fired rules or effects changed), fires gained and lost per rule,
flips per type and level, the amount flipped (exact, as a ``Decimal``), counts per day,
notifications gained and lost per recipient and audit entries per ledger, the first examples of
each group, and (when impact regions are given) each changed row counted under its region.
Tallies of separate partitions merge (:meth:`merge`) into the tally of the whole.
"""

from __future__ import annotations

import decimal
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from finops_fabric.backtest.columns import Batch, plain
from finops_fabric.backtest.kernel import read_amounts
from finops_fabric.backtest.outcomes import Comparable, Mask, Outcomes
from finops_fabric.backtest.regions import Regions

AR = "APPROVE→REJECT"
RA = "REJECT→APPROVE"
DIRECTIONS = (AR, RA)
MISSING = "(missing)"
#: Exact sums: enough digits for any total of amounts a batch can hold.
_SUMS = decimal.Context(prec=200)


def _exact_sum(values: np.ndarray[Any, np.dtype[np.int64]]) -> int:
    """The exact sum of int64 values (split in halves so no partial sum overflows)."""
    if not len(values):
        return 0
    hi = np.sum(values >> 32, dtype=np.int64)
    lo = np.sum(values & 0xFFFFFFFF, dtype=np.int64)
    return (int(hi) << 32) + int(lo)


@dataclass
class Example:
    group: str
    row: int
    transaction: dict[str, Any]
    old: Comparable
    new: Comparable

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "row": self.row, "transaction": self.transaction}


@dataclass
class Tally:
    examples_per_group: int = 3
    rows: int = 0
    flips: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    changed_fired: int = 0
    changed_effects: int = 0
    changed_rows: int = 0
    by_rule: dict[str, dict[str, int]] = field(default_factory=dict)
    by_type_level: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    amount: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, Decimal(0)))
    flipped_without_amount: int = 0
    per_day: dict[str, dict[str, int]] = field(default_factory=dict)
    rows_without_day: int = 0
    notifications: dict[str, dict[str, int]] = field(default_factory=dict)
    audit: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: dict[str, list[Example]] = field(default_factory=dict)
    regions: list[int] | None = None  # changed rows per impact region
    outside_regions: int = 0

    # --- one batch -----------------------------------------------------------------------------
    def add(
        self,
        batch: Batch,
        old: Outcomes,
        new: Outcomes,
        amount_language: str,
        regions: Regions | None = None,
    ) -> None:
        n = batch.n
        self.rows += n
        ar = ~old.reject & new.reject
        ra = old.reject & ~new.reject
        fired_diff = np.zeros(n, dtype=bool)
        for k in sorted(set(old.fired) | set(new.fired)):
            a, b = old.fired.get(k), new.fired.get(k)
            gained = b & ~a if a is not None and b is not None else b
            lost = a & ~b if a is not None and b is not None else a
            g = int(np.count_nonzero(gained)) if gained is not None else 0
            lo = int(np.count_nonzero(lost)) if lost is not None else 0
            if g or lo:
                entry = self.by_rule.setdefault(k, {"gained": 0, "lost": 0})
                entry["gained"] += g
                entry["lost"] += lo
                if gained is not None:
                    fired_diff |= gained
                if lost is not None:
                    fired_diff |= lost
                self._examples(f"rule gained {k}", batch, gained, old, new, 1)
                self._examples(f"rule lost {k}", batch, lost, old, new, 1)
        effects_diff = np.zeros(n, dtype=bool)
        pairs: list[tuple[Mapping[Any, Mask], Mapping[Any, Mask], dict[str, dict[str, int]], int]] = [
            (old.notes, new.notes, self.notifications, 1),
            (old.audit, new.audit, self.audit, 1),
        ]
        for table_old, table_new, sink, name in pairs:
            for key in sorted(set(table_old) | set(table_new), key=repr):
                a, b = table_old.get(key), table_new.get(key)
                gained = b & ~a if a is not None and b is not None else b
                lost = a & ~b if a is not None and b is not None else a
                g = int(np.count_nonzero(gained)) if gained is not None else 0
                lo = int(np.count_nonzero(lost)) if lost is not None else 0
                if g or lo:
                    who = str(key[name])
                    entry = sink.setdefault(who, {"gained": 0, "lost": 0})
                    entry["gained"] += g
                    entry["lost"] += lo
                    if gained is not None:
                        effects_diff |= gained
                    if lost is not None:
                        effects_diff |= lost
        same = ~(ar | ra)
        self.flips[AR] += int(np.count_nonzero(ar))
        self.flips[RA] += int(np.count_nonzero(ra))
        cf = same & fired_diff
        self.changed_fired += int(np.count_nonzero(cf))
        self.changed_effects += int(np.count_nonzero(effects_diff))
        changed = ar | ra | fired_diff | effects_diff
        self.changed_rows += int(np.count_nonzero(changed))
        for group, mask in (
            (AR, ar),
            (RA, ra),
            ("changed_fired", cf),
            ("changed_effects", effects_diff & same & ~fired_diff),
        ):
            self._examples(group, batch, mask, old, new, self.examples_per_group)
        self._by_type_level(batch, ar, ra, cf)
        self._amounts(batch, ar, ra, amount_language)
        self._days(batch, ar, ra, cf)
        if regions is not None:
            if self.regions is None:
                self.regions = []
            idx = np.flatnonzero(changed).tolist()
            for i, tx in zip(idx, batch.transactions(idx), strict=True):
                r = regions.find(tx, bool(old.reject[i]), bool(new.reject[i]))
                if r is None:
                    self.outside_regions += 1
                else:
                    while len(self.regions) <= r:
                        self.regions.append(0)
                    self.regions[r] += 1

    def _examples(
        self, group: str, batch: Batch, mask: Mask | None, old: Outcomes, new: Outcomes, limit: int
    ) -> None:
        if mask is None:
            return
        have = self.examples.setdefault(group, [])
        if len(have) >= limit:
            return
        for i in np.flatnonzero(mask)[: limit - len(have)]:
            j = int(i)
            have.append(Example(group, batch.row(j), batch.transaction(j), old.row(j), new.row(j)))

    def _by_type_level(self, batch: Batch, ar: Mask, ra: Mask, cf: Mask) -> None:
        idx = np.flatnonzero(ar | ra | cf)
        if not len(idx):
            return
        code = np.where(ar[idx], 0, np.where(ra[idx], 1, 2)).astype(np.int8)
        t = pa.table(
            {
                "type": plain(batch.column("type").take(pa.array(idx))).cast(pa.string()),
                "level": plain(batch.column("actor_level").take(pa.array(idx))).cast(pa.string()),
                "dir": pa.array(code),
            }
        )
        grouped = t.group_by(["type", "level", "dir"]).aggregate([([], "count_all")]).to_pylist()
        names = (AR, RA, "changed_fired")
        for g in grouped:
            key = (
                g["type"] if g["type"] is not None else MISSING,
                g["level"] if g["level"] is not None else MISSING,
            )
            entry = self.by_type_level.setdefault(key, {AR: 0, RA: 0, "changed_fired": 0})
            entry[names[g["dir"]]] += int(g["count_all"])

    def _amounts(self, batch: Batch, ar: Mask, ra: Mask, language: str) -> None:
        am = read_amounts(batch, language)
        exact = am.valid & ~am.slow
        for name, mask in ((AR, ar), (RA, ra)):
            total = Decimal(_exact_sum(am.scaled[mask & exact])).scaleb(-am.scale, _SUMS)
            for i in np.flatnonzero(mask & am.slow):  # amounts too long for the columns
                raw = batch.transaction(int(i)).get("amount")
                try:
                    d = (
                        Decimal(str(raw).strip())
                        if raw is not None and not isinstance(raw, bool | float)
                        else None
                    )
                except decimal.InvalidOperation:
                    d = None
                if d is not None and d.is_finite():
                    total = _SUMS.add(total, d)
            self.amount[name] = _SUMS.add(self.amount[name], total)
            self.flipped_without_amount += int(np.count_nonzero(mask & ~am.valid & ~am.slow))

    def _days(self, batch: Batch, ar: Mask, ra: Mask, cf: Mask) -> None:
        day = plain(batch.column("day")).cast(pa.string())
        has = day.is_valid().to_numpy(zero_copy_only=False)
        self.rows_without_day += int(np.count_nonzero(~has))
        if not has.any():
            return
        t = pa.table(
            {
                "day": day,
                "a": pa.array(ar.astype(np.int64)),
                "r": pa.array(ra.astype(np.int64)),
                "c": pa.array(cf.astype(np.int64)),
            }
        ).filter(pa.array(has))
        grouped = t.group_by(["day"]).aggregate([([], "count_all"), ("a", "sum"), ("r", "sum"), ("c", "sum")])
        for g in grouped.to_pylist():
            entry = self.per_day.setdefault(g["day"], {"rows": 0, AR: 0, RA: 0, "changed_fired": 0})
            entry["rows"] += int(g["count_all"])
            entry[AR] += int(g["a_sum"])
            entry[RA] += int(g["r_sum"])
            entry["changed_fired"] += int(g["c_sum"])

    # --- partitions --------------------------------------------------------------------------
    def merge(self, other: Tally) -> None:
        """Add ``other`` (the tally of rows after this one's) to this tally."""
        self.rows += other.rows
        for k in DIRECTIONS:
            self.flips[k] += other.flips[k]
            self.amount[k] = _SUMS.add(self.amount[k], other.amount[k])
        self.changed_fired += other.changed_fired
        self.changed_effects += other.changed_effects
        self.changed_rows += other.changed_rows
        self.flipped_without_amount += other.flipped_without_amount
        self.rows_without_day += other.rows_without_day
        self.outside_regions += other.outside_regions
        for mine, theirs in (
            (self.by_rule, other.by_rule),
            (self.per_day, other.per_day),
            (self.notifications, other.notifications),
            (self.audit, other.audit),
        ):
            for key, counts in theirs.items():
                entry = mine.setdefault(key, dict.fromkeys(counts, 0))
                for c, v in counts.items():
                    entry[c] = entry.get(c, 0) + v
        for tl, counts in other.by_type_level.items():
            entry = self.by_type_level.setdefault(tl, dict.fromkeys(counts, 0))
            for c, v in counts.items():
                entry[c] += v
        for group, exs in other.examples.items():
            have = self.examples.setdefault(group, [])
            limit = 1 if group.startswith("rule ") else self.examples_per_group
            have.extend(exs[: max(0, limit - len(have))])
        if other.regions is not None:
            if self.regions is None:
                self.regions = []
            for i, v in enumerate(other.regions):
                while len(self.regions) <= i:
                    self.regions.append(0)
                self.regions[i] += v

    # --- the document --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def table(d: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
            return {k: dict(v) for k, v in sorted(d.items())}

        return {
            "rows": self.rows,
            "flips": dict(self.flips),
            "changed_fired": self.changed_fired,
            "changed_effects": self.changed_effects,
            "changed_rows": self.changed_rows,
            "by_rule": table(self.by_rule),
            "by_type_level": [
                {"type": t, "actor_level": lv, **counts}
                for (t, lv), counts in sorted(self.by_type_level.items())
            ],
            "amount_flipped": str(_SUMS.add(self.amount[AR], self.amount[RA])),
            "amount_flipped_by_direction": {k: str(v) for k, v in self.amount.items()},
            "flipped_without_amount": self.flipped_without_amount,
            "per_day": table(self.per_day),
            "rows_without_day": self.rows_without_day,
            "notifications": table(self.notifications),
            "audit": table(self.audit),
        }


def example_groups(examples: Mapping[str, Sequence[Example]]) -> list[Example]:
    """Every example, the direction groups first, then by rule, in row order within a group."""
    order = {AR: 0, RA: 1, "changed_fired": 2, "changed_effects": 3}
    out: list[Example] = []
    for group in sorted(examples, key=lambda g: (order.get(g, 4), g)):
        out.extend(sorted(examples[group], key=lambda e: e.row))
    return out


def group_counts(examples: Mapping[str, Sequence[Example]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for g, exs in examples.items():
        counts[g] += len(exs)
    return dict(counts)
