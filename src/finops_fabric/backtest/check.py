"""Every back-test checks its kernel against the real enforcers while it runs.

In each batch, every row whose amount lies within 0.01 of a constant either policy compares
amounts with, every row the kernel handed to the interpreter, and a seeded random sample of the
rest are decided again by the generated enforcer of each side (loaded and hash-verified); any
row on which the kernel's outcome (decision, fired rules, notifications, audit entries) differs
from the enforcer's is a disagreement, and the back-test fails (exit 1) naming it. Nothing is
reported as counted when the kernel that counted it disagrees with the enforcer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from finops_fabric.backtest.columns import Batch
from finops_fabric.backtest.kernel import Kernel, read_amounts
from finops_fabric.backtest.outcomes import Mask, Outcomes, comparable_of
from finops_fabric.errors import CheckFailed

NEAR = Decimal("0.01")
DEFAULT_SAMPLE_RATE = 0.001
#: The first rows (by number) are always among those re-decided, however small the sample.
ALWAYS = 64


def sampled(batch: Batch, seed: int, rate: float) -> Mask:
    """The rows of the seeded sample: a hash of (seed, row number) below ``rate``, so a row is
    sampled or not whatever the batches, partitions or workers it is decided in."""
    numbers = (
        batch.row_numbers
        if batch.row_numbers is not None
        else np.arange(batch.first_row, batch.first_row + batch.n)
    )
    with np.errstate(over="ignore"):  # SplitMix64: wrapping arithmetic on purpose
        z = numbers.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    out: Mask = (z < np.uint64(min(int(rate * 2**64), 2**64 - 1))) | (numbers <= ALWAYS)
    return out


@dataclass
class Checked:
    """One side: its kernel, its enforcer, and what was checked."""

    name: str
    kernel: Kernel
    enforcer: Any


@dataclass
class Checker:
    sides: Sequence[Checked]
    seed: int = 0
    rate: float = DEFAULT_SAMPLE_RATE
    near_threshold: int = 0
    sampled: int = 0
    slow: int = 0
    rows_checked: int = 0
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    def rows_to_check(self, batch: Batch) -> tuple[np.ndarray[Any, Any], Mask, Mask, Mask]:
        n = batch.n
        near = np.zeros(n, dtype=bool)
        slow = batch.slow().copy()
        for side in self.sides:
            am = read_amounts(batch, side.kernel.language)
            slow |= am.slow
            for t in side.kernel.thresholds():
                near |= am.near(t, NEAR)
        sample = sampled(batch, self.seed, self.rate)
        chosen = np.flatnonzero(near | slow | sample)
        return chosen, near, slow, sample

    def check(self, batch: Batch, outcomes: Sequence[Outcomes]) -> None:
        """Re-decide the chosen rows of ``batch`` with each side's enforcer (``outcomes`` in the
        order of :attr:`sides`); :class:`CheckFailed` at the first batch with a disagreement."""
        chosen, near, slow, sample = self.rows_to_check(batch)
        self.near_threshold += int(np.count_nonzero(near))
        self.slow += int(np.count_nonzero(slow))
        self.sampled += int(np.count_nonzero(sample & ~near & ~slow))
        self.rows_checked += len(chosen)
        for j, tx in zip(chosen.tolist(), batch.transactions(chosen.tolist()), strict=True):
            for side, got in zip(self.sides, outcomes, strict=True):
                try:
                    want = comparable_of(side.enforcer.decide(dict(tx)).to_dict())
                except Exception as exc:  # an enforcer that raises on a row the kernel decided
                    want = ("error", (f"{type(exc).__name__}: {exc}",), (), ())
                mine = got.row(j)
                if mine != want and len(self.disagreements) < 20:
                    self.disagreements.append(
                        {
                            "row": batch.row(j),
                            "side": side.name,
                            "transaction": tx,
                            "kernel": mine,
                            "enforcer": want,
                        }
                    )
        if self.disagreements:
            first = self.disagreements[0]
            raise CheckFailed(
                f"the batch kernel disagrees with the {first['side']} enforcer on row {first['row']} "
                f"({len(self.disagreements)} disagreement(s) in the rows re-decided): kernel "
                f"{_short(first['kernel'])}, enforcer {_short(first['enforcer'])}; transaction "
                f"{_shown(first['transaction'])}. No count of this back-test can be relied on",
                code="backtest.kernel_disagrees",
                hint="this is a defect of the batch kernel; decide the transactions with `mu test` meanwhile",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_rechecked": self.rows_checked,
            "near_threshold": self.near_threshold,
            "decided_row_by_row": self.slow,
            "sampled": self.sampled,
            "sample_rate": self.rate,
            "seed": self.seed,
            "within": str(NEAR),
            "disagreements": len(self.disagreements),
        }


def _short(c: Any) -> str:
    return f"{c[0]} fired {list(c[1])}"


def _shown(tx: Any) -> str:
    import json

    text = json.dumps(tx, default=str, sort_keys=True)
    return text if len(text) <= 300 else text[:300] + "…"
