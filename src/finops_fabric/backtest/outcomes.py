"""A batch's outcomes in columns: one boolean array per fired rule, per notification and per audit
entry, and the decision. Whatever decided them (the kernel, the decision log), two batches of
outcomes compare key by key; a key one side does not have is all false there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Mask = np.ndarray[Any, np.dtype[np.bool_]]
NoteKey = tuple[str, str]  # (rule, recipient)
AuditKey = tuple[str, str, tuple[str, ...]]  # (rule, ledger, flags)
Comparable = tuple[str, tuple[str, ...], tuple[NoteKey, ...], tuple[AuditKey, ...]]


@dataclass
class Outcomes:
    n: int
    fired: dict[str, Mask] = field(default_factory=dict)
    notes: dict[NoteKey, Mask] = field(default_factory=dict)
    audit: dict[AuditKey, Mask] = field(default_factory=dict)
    _reject: Mask | None = None

    @property
    def reject(self) -> Mask:
        if self._reject is None:
            out = np.zeros(self.n, dtype=bool)
            for v in self.fired.values():
                out |= v
            self._reject = out
        return self._reject

    def row(self, i: int) -> Comparable:
        """Row ``i`` as :func:`finops_fabric.interpreter.comparable` writes a decision."""
        fired = tuple(sorted(k for k, v in self.fired.items() if v[i]))
        return (
            "REJECT" if fired else "APPROVE",
            fired,
            tuple(sorted(k for k, v in self.notes.items() if v[i])),
            tuple(sorted(k for k, v in self.audit.items() if v[i])),
        )

    def set_row(self, i: int, c: Comparable) -> None:
        """Overwrite row ``i`` with the outcome ``c``."""
        for table, keys in ((self.fired, c[1]), (self.notes, c[2]), (self.audit, c[3])):
            mine: dict[Any, Mask] = table
            for v in mine.values():
                v[i] = False
            for k in keys:
                arr = mine.get(k)
                if arr is None:
                    arr = mine[k] = np.zeros(self.n, dtype=bool)
                arr[i] = True
        self._reject = None


def from_comparables(rows: Sequence[Comparable]) -> Outcomes:
    """Outcomes of decisions already made (e.g. those a decision log holds)."""
    out = Outcomes(len(rows))
    for i, c in enumerate(rows):
        out.set_row(i, c)
    return out


def from_decisions(decisions: Sequence[Mapping[str, Any]]) -> Outcomes:
    """Outcomes of decision JSON documents (those a decision log holds), one array per key."""
    fired: dict[str, list[int]] = {}
    notes: dict[NoteKey, list[int]] = {}
    audit: dict[AuditKey, list[int]] = {}
    for i, d in enumerate(decisions):
        for f in d.get("fired") or ():
            fired.setdefault(str(f["rule"]), []).append(i)
        for nt in d.get("notifications") or ():
            notes.setdefault((str(nt["rule"]), str(nt["recipient"])), []).append(i)
        for a in d.get("audit") or ():
            key = (str(a["rule"]), str(a["ledger"]), tuple(str(x) for x in a.get("flags") or ()))
            audit.setdefault(key, []).append(i)
    out = Outcomes(len(decisions))
    for src, dst in ((fired, out.fired), (notes, out.notes), (audit, out.audit)):
        table: dict[Any, Mask] = dst
        for k, idx in src.items():
            arr = np.zeros(len(decisions), dtype=bool)
            arr[idx] = True
            table[k] = arr
    return out


def comparable_of(decision: Mapping[str, Any]) -> Comparable:
    """The comparable part of a decision JSON (what any two correct implementations share)."""
    return (
        str(decision["decision"]),
        tuple(sorted(str(f["rule"]) for f in decision.get("fired") or ())),
        tuple(sorted((str(n["rule"]), str(n["recipient"])) for n in decision.get("notifications") or ())),
        tuple(
            sorted(
                (str(a["rule"]), str(a["ledger"]), tuple(str(x) for x in a.get("flags") or ()))
                for a in decision.get("audit") or ()
            )
        ),
    )
