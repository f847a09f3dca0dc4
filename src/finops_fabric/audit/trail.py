"""The whole audit trail: every check over the ledger (or a range of it) in order, and its result.

:func:`audit_trail` reads the ledger (:mod:`.ledger`), checks every row alone
(:func:`~finops_fabric.audit.ledger.check_row`), then the hash chain (:mod:`.chain`), then every
transition of O (:mod:`.transitions`), optionally rebuilding O from ΔO, and computes the ledger's
Merkle tree (:mod:`.tree_head`). :class:`AuditResult` holds what it found: its summary line and
the JSON document the command prints and the report renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finops_fabric.audit.chain import chain_gaps
from finops_fabric.audit.ledger import Gap, Ledger, Row, check_row, read_ledger
from finops_fabric.audit.overview import annotate, by_kind, counts_line, environments, relabel
from finops_fabric.audit.transitions import Progress, _Objects, quiet, rebuild, transitions
from finops_fabric.audit.tree_head import ledger_tree
from finops_fabric.audit.trust import Trust
from finops_fabric.canonical import is_sha256
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.merkle import MerkleTree
from finops_fabric.receipts import load_receipt
from finops_fabric.store import Store

__all__ = ["AuditResult", "audit_trail", "resolve_receipt"]


def resolve_receipt(ref: str, flag: str) -> str:
    """A receipt given as a file or as its hash → its ``sha256:`` hash."""
    if is_sha256(ref):
        return ref
    p = Path(ref)
    if p.is_file():
        doc = load_receipt(p)
        h = doc.get("receipt_hash")
        if not is_sha256(h):
            raise InputError(f"{flag}={ref}: the receipt has no valid receipt_hash", code="audit.bad_receipt")
        return str(h)
    raise InputError(
        f"{flag}={ref} is neither a receipt file nor a receipt hash (sha256:<64 hex>)",
        code="cli.usage",
    )


@dataclass
class AuditResult:
    """What one audit found: the rows checked, every gap, the chain, the transitions and the tree
    (the command adds the signed tree head and any inclusion or consistency proof)."""

    ledger: Ledger
    start: int
    end: int
    trust: Trust
    chain: list[dict[str, Any]]
    gaps: list[Gap]
    transitions: list[dict[str, Any]]
    tree: MerkleTree
    rebuild: list[dict[str, Any]] | None = None
    by_kind: dict[str, int] = field(default_factory=dict)
    environments: list[dict[str, Any]] = field(default_factory=list)
    tree_head: dict[str, Any] | None = None
    inclusion: dict[str, Any] | None = None
    consistency: dict[str, Any] | None = None

    @property
    def rows(self) -> list[Row]:
        return self.ledger.rows[self.start : self.end]

    @property
    def changes(self) -> int:
        return sum(1 for t in self.transitions if t["kind"] == "generation" and t["changed_o"])

    @property
    def verified(self) -> bool:
        ok = not self.gaps
        if self.inclusion is not None:
            ok = ok and bool(self.inclusion.get("verified"))
        if self.consistency is not None:
            ok = ok and bool(self.consistency.get("consistent"))
        return ok

    def summary(self) -> str:
        m = len(self.rows)
        head = f"{counts_line(self.by_kind, self.changes)}, {m} receipt{'s' if m != 1 else ''}"
        if self.verified:
            return f"{head}, all verified"
        problems = [f"seq {g.seq} {g.problem}" if g.seq is not None else g.problem for g in self.gaps]
        if self.inclusion is not None and not self.inclusion.get("verified"):
            problems.append("inclusion not proven")
        if self.consistency is not None and not self.consistency.get("consistent"):
            problems.append(str(self.consistency.get("problem", "inconsistent log")))
        failed = len({g.seq for g in self.gaps if g.seq is not None})
        shown = ", ".join(problems[:6]) + (f" and {len(problems) - 6} more" if len(problems) > 6 else "")
        return f"{head}, NOT verified: {failed} receipt(s) failed; {len(problems)} problem(s): {shown}"

    def to_dict(self) -> dict[str, Any]:
        rows = self.rows
        return {
            "verified": self.verified,
            "summary": self.summary(),
            "receipts": len(rows),
            "changes": self.changes,
            "by_kind": self.by_kind,
            "environments": self.environments,
            "ledger": {
                "path": str(self.ledger.path),
                "size": len(self.ledger.rows),
                "issued_seq": self.ledger.issued_seq,
            },
            "range": {
                "from": rows[0].hash if rows else None,
                "to": rows[-1].hash if rows else None,
                "first_seq": rows[0].seq if rows else None,
                "last_seq": rows[-1].seq if rows else None,
            },
            "trust": {"source": self.trust.source, "keys": self.trust.to_list()},
            "gaps": [g.to_dict() for g in self.gaps],
            "chain": self.chain,
            "transitions": self.transitions,
            "rebuild": self.rebuild,
            "tree_head": self.tree_head,
            "inclusion": self.inclusion,
            "consistency": self.consistency,
        }


def _position(rows: list[Row], h: str, flag: str) -> int:
    for i, r in enumerate(rows):
        if h in (r.hash, r.column_hash):
            return i
    raise CheckFailed(
        f"{flag}: receipt {h} is not in the ledger",
        code="audit.not_in_ledger",
        hint="a receipt the ledger does not hold is itself a gap in the trail",
    )


def audit_trail(
    store: Store,
    trust: Trust,
    *,
    start_hash: str | None = None,
    end_hash: str | None = None,
    do_rebuild: bool = False,
    progress: Progress = quiet,
) -> AuditResult:
    """Verify the ledger (or the rows from ``start_hash`` to ``end_hash``, inclusive)."""
    progress(f"reading the ledger {store.db_path}")
    ledger = read_ledger(store)
    rows = ledger.rows
    start = _position(rows, start_hash, "--from") if start_hash else 0
    end = _position(rows, end_hash, "--to") + 1 if end_hash else len(rows)
    if start >= end and rows:
        raise InputError("--from names a receipt after --to", code="cli.usage")
    progress(f"checking {end - start} receipts: schema, hash, signature")
    gaps: list[Gap] = []
    chain: list[dict[str, Any]] = []
    for row in rows[start:end]:
        row_gaps, signers = check_row(row, trust)
        gaps += row_gaps
        chain.append(
            {
                "seq": row.seq,
                "receipt_hash": row.hash,
                "kind": row.receipt_kind,
                "time": row.doc.get("time") if row.doc else None,
                "previous_receipt_hash": row.previous,
                "ontology_hash": row.column_ontology,
                "enforcer_hash": row.column_enforcer,
                "signed_by": signers,
            }
        )
    gaps += chain_gaps(rows, ledger.issued_seq, start, end)
    objects = _Objects(store)
    trans, t_gaps = transitions(rows, start, end, objects, progress)
    gaps += t_gaps
    steps = None
    if do_rebuild:
        steps, r_gaps = rebuild(rows, start, end, objects, progress)
        gaps += r_gaps
    gaps.sort(key=lambda g: (g.seq is None, g.seq or 0))
    bad = {g.seq: [x.problem for x in gaps if x.seq == g.seq] for g in gaps if g.seq is not None}
    for entry in chain:
        entry["problems"] = bad.get(entry["seq"], [])
        entry["verified"] = not entry["problems"]
    annotate(chain, rows[start:end], rows[:end])
    relabel(chain, trans)
    progress("computing the Merkle tree head")
    result = AuditResult(ledger, start, end, trust, chain, gaps, trans, ledger_tree(rows), steps)
    result.by_kind, result.environments = by_kind(rows[start:end]), environments(rows[:end])
    return result
