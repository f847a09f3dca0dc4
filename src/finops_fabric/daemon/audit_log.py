"""The audit ledger: append-only, hash-chained entries in the daemon database.

Each named ledger (``fab:ledger "immutable"``) is its own chain inside one table::

    audit_ledger(seq, ledger, idempotency_key, entry, prev_hash, entry_hash, appended_at)

``entry`` is the RFC 8785 canonical JSON of the entry object (which names its ledger and its
idempotency key), ``prev_hash`` is the ``entry_hash`` of the previous entry of the same ledger
(``GENESIS``, ``sha256:`` and 64 zeros, for the first), and::

    entry_hash = sha256(prev_hash || entry)      # prev_hash as its ASCII "sha256:<hex>" text

so ``sqlite3 daemon-ENV.db 'SELECT prev_hash, entry FROM audit_ledger'`` and ``sha256sum``
suffice to recompute it. :func:`append` is idempotent by the outbox item's idempotency key and
acknowledges the outbox item in the same transaction: an audit entry is recorded exactly once.
:func:`verify` walks every chain and names the first broken link (its ``seq``). Cutting entries
off the end of a chain leaves a valid shorter chain; compare ``heads`` with a copy kept
elsewhere to detect that.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from finops_fabric.canonical import canonical_json, sha256_hex

__all__ = ["GENESIS", "SCHEMA", "VerifyReport", "append", "append_item", "entry_hash", "verify"]

GENESIS = "sha256:" + "0" * 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_ledger (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    ledger           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    entry            TEXT NOT NULL,
    prev_hash        TEXT NOT NULL,
    entry_hash       TEXT NOT NULL UNIQUE,
    appended_at      REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_ledger_link ON audit_ledger (ledger, prev_hash);
CREATE TRIGGER IF NOT EXISTS audit_ledger_no_update BEFORE UPDATE ON audit_ledger
BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_ledger_no_delete BEFORE DELETE ON audit_ledger
BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
"""


def entry_hash(prev_hash: str, entry_bytes: bytes) -> str:
    """``sha256:<hex>`` of ``prev_hash`` (ASCII) followed by the canonical entry bytes."""
    return sha256_hex(prev_hash.encode("ascii") + entry_bytes)


def append(conn: sqlite3.Connection, ledger: str, entry: dict[str, Any], idempotency_key: str) -> str:
    """Append ``entry`` to ``ledger`` inside the caller's transaction; return its entry hash.
    If an entry with ``idempotency_key`` exists already, nothing is added and its hash is returned.
    """
    body = dict(entry)
    body["ledger"] = ledger
    body["idempotency_key"] = idempotency_key
    return append_canonical(conn, ledger, idempotency_key, canonical_json(body))


def append_canonical(
    conn: sqlite3.Connection,
    ledger: str,
    idempotency_key: str,
    data: bytes,
    heads: dict[str, str] | None = None,
) -> str:
    """Append an entry already in canonical bytes (RFC 8785 of the entry with its ``ledger`` and
    ``idempotency_key``) inside the caller's transaction; return its entry hash. ``heads``: the
    ledger heads this transaction has appended so far (read from the table when absent), kept
    up to date, so a batch reads each ledger's head once. An existing key adds nothing."""
    row = conn.execute(
        "SELECT entry_hash FROM audit_ledger WHERE idempotency_key = ?", (idempotency_key,)
    ).fetchone()
    if row is not None:
        return str(row[0])
    prev = heads.get(ledger) if heads is not None else None
    if prev is None:
        last = conn.execute(
            "SELECT entry_hash FROM audit_ledger WHERE ledger = ? ORDER BY seq DESC LIMIT 1", (ledger,)
        ).fetchone()
        prev = str(last[0]) if last else GENESIS
    digest = entry_hash(prev, data)
    conn.execute(
        "INSERT INTO audit_ledger (ledger, idempotency_key, entry, prev_hash, entry_hash, appended_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (ledger, idempotency_key, data.decode("utf-8"), prev, digest, time.time()),
    )
    if heads is not None:
        heads[ledger] = digest
    return digest


def entry_of(idempotency_key: str, payload: dict[str, Any]) -> tuple[str, bytes]:
    """The ledger and the canonical bytes of the entry an audit outbox payload appends (RFC 8785
    through :func:`outbox.canonical_text`, which writes exactly what ``canonical_json`` writes,
    only faster). Raises on a malformed payload (no ``ledger``)."""
    from finops_fabric.daemon import outbox

    ledger = str(payload["ledger"])
    body = {
        "rule": payload.get("rule"),
        "flags": payload.get("flags") or [],
        "decision_id": payload.get("decision_id"),
        "transaction_id": payload.get("transaction_id"),
        "decision": payload.get("decision"),
        "enforcer_hash": payload.get("enforcer_hash"),
        "fired": payload.get("fired") or [],
        "transaction": payload.get("transaction"),
        "ledger": ledger,
        "idempotency_key": idempotency_key,
    }
    return ledger, outbox.canonical_text(body).encode("utf-8")


def append_item(conn: sqlite3.Connection, item: Any, *, now: float | None = None) -> str:
    """Deliver an audit outbox item: append its entry and acknowledge the item, in one
    ``BEGIN IMMEDIATE`` transaction. ``item`` is an :class:`~finops_fabric.daemon.outbox.Item`."""
    from finops_fabric.daemon import outbox

    ledger, data = entry_of(item.idempotency_key, item.payload)
    t = time.time() if now is None else now
    with outbox.transaction(conn):
        digest = append_canonical(conn, ledger, item.idempotency_key, data)
        outbox.mark_delivered(conn, item, t)
    return digest


@dataclass
class VerifyReport:
    """What :func:`verify` found. ``first_broken`` is ``None`` when every chain holds, else
    ``{"seq", "ledger", "reason"}`` for the first bad row in ``seq`` order."""

    verified: bool = True
    entries: int = 0
    ledgers: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_broken: dict[str, Any] | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "entries": self.entries,
            "ledgers": self.ledgers,
            "heads": {name: info["head"] for name, info in self.ledgers.items()},
            "first_broken": self.first_broken,
            "problems": self.problems,
        }


def _check_row(
    seq: int, ledger: str, key: str, entry: str, prev: str, digest: str, expected_prev: str
) -> str | None:
    if prev != expected_prev:
        return f"prev_hash {prev} does not link to the previous entry of ledger {ledger!r} ({expected_prev})"
    try:
        doc = json.loads(entry)
    except ValueError:
        return "entry is not valid JSON"
    if not isinstance(doc, dict):
        return "entry is not a JSON object"
    try:
        canonical = canonical_json(doc)
    except Exception:
        return "entry cannot be written as canonical JSON"
    if canonical != entry.encode("utf-8"):
        return "entry is not in canonical form (it was rewritten)"
    if doc.get("ledger") != ledger:
        return f"entry names ledger {doc.get('ledger')!r}, but the row is in {ledger!r}"
    if doc.get("idempotency_key") != key:
        return "entry's idempotency key differs from the row's"
    actual = entry_hash(prev, canonical)
    if actual != digest:
        return f"entry_hash {digest} does not match the entry (recomputed {actual})"
    return None


def verify(conn: sqlite3.Connection) -> VerifyReport:
    """Recompute every chain; the report names the first broken link and every problem."""
    report = VerifyReport()
    heads: dict[str, str] = {}
    for seq, ledger, key, entry, prev, digest in conn.execute(
        "SELECT seq, ledger, idempotency_key, entry, prev_hash, entry_hash FROM audit_ledger ORDER BY seq"
    ):
        report.entries += 1
        expected_prev = heads.get(ledger, GENESIS)
        reason = _check_row(seq, ledger, key, entry, prev, digest, expected_prev)
        info = report.ledgers.setdefault(ledger, {"entries": 0, "head": GENESIS})
        info["entries"] += 1
        info["head"] = digest
        heads[ledger] = digest
        if reason is not None:
            problem = {"seq": seq, "ledger": ledger, "reason": reason}
            report.problems.append(problem)
            if report.first_broken is None:
                report.first_broken = problem
            report.verified = False
    return report
