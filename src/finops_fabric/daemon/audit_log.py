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

Across ledgers, every row (in ``seq`` order) is also a leaf of one table-wide hash chain and
RFC 9162 Merkle tree (:mod:`finops_fabric.transparency`): ``leaf_hash`` is the leaf hash of the
RFC 8785 record of every column above, ``seq`` and ``appended_at`` included (:data:`COLUMNS`),
``prev_chain_hash`` the chain hash of the row before. The daemon signs tree heads of it and
keeps them outside the database, so cutting entries off the end is found as well.
:func:`verify` walks every chain and names every broken row (its ``seq``). A ledger written
before the table-wide chain is chained when the database is opened for writing (recorded in
``log_chain``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from finops_fabric.canonical import canonical_json, sha256_hex
from finops_fabric.errors import CheckFailed
from finops_fabric.transparency import (
    GENESIS as CHAIN_GENESIS,
)
from finops_fabric.transparency import (
    KnownHead,
    LogReport,
    LogRow,
    chain_hash,
    record_writer,
    verify_log,
)

__all__ = [
    "COLUMNS",
    "GENESIS",
    "SCHEMA",
    "Heads",
    "VerifyReport",
    "append",
    "append_item",
    "entry_hash",
    "log_rows",
    "upgrade",
    "verify",
    "verify_empty",
    "verify_rows",
]

GENESIS = "sha256:" + "0" * 64

_NO_UPDATE = """CREATE TRIGGER IF NOT EXISTS audit_ledger_no_update BEFORE UPDATE ON audit_ledger
BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END"""

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS audit_ledger (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    ledger           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    entry            TEXT NOT NULL,
    prev_hash        TEXT NOT NULL,
    entry_hash       TEXT NOT NULL UNIQUE,
    appended_at      REAL NOT NULL,
    leaf_hash        BLOB,
    prev_chain_hash  BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_ledger_link ON audit_ledger (ledger, prev_hash);
"""
    + _NO_UPDATE
    + """;
CREATE TRIGGER IF NOT EXISTS audit_ledger_no_delete BEFORE DELETE ON audit_ledger
BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
"""
)

#: Everything logged for an audit entry: the record of its leaf.
COLUMNS = ("seq", "ledger", "idempotency_key", "entry", "prev_hash", "entry_hash", "appended_at")
_SELECT = f"SELECT {', '.join(COLUMNS)}, leaf_hash, prev_chain_hash FROM audit_ledger"  # noqa: S608


class Heads(dict[str, str]):
    """The heads a transaction has appended so far: each ledger's last entry hash, and the
    table-wide chain's tail (``(seq, chain hash)``, ``None`` until read)."""

    tail: tuple[int, bytes] | None = None


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
    up to date, so a batch reads each ledger's head once (a :class:`Heads` also keeps the
    table-wide chain's tail). An existing key adds nothing."""
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
    tail = heads.tail if isinstance(heads, Heads) and heads.tail is not None else _tail(conn)
    values = (tail[0] + 1, ledger, idempotency_key, data.decode("utf-8"), prev, digest, time.time())
    leaf = hashlib.sha256(b"\x00" + _record(values)).digest()
    conn.execute(
        "INSERT INTO audit_ledger (seq, ledger, idempotency_key, entry, prev_hash, entry_hash, appended_at,"
        " leaf_hash, prev_chain_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*values, leaf, tail[1]),
    )
    if heads is not None:
        heads[ledger] = digest
        if isinstance(heads, Heads):
            heads.tail = (values[0], chain_hash(tail[1], leaf))
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
    ``{"seq", "ledger", "reason"}`` for the first bad row in ``seq`` order; ``log`` is the
    table-wide chain and Merkle tree checked against the signed heads given."""

    verified: bool = True
    entries: int = 0
    ledgers: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_broken: dict[str, Any] | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    log: LogReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "entries": self.entries,
            "ledgers": self.ledgers,
            "heads": {name: info["head"] for name, info in self.ledgers.items()},
            "first_broken": self.first_broken,
            "problems": self.problems,
            "log": self.log.to_dict() if self.log is not None else None,
        }


def _check_row(
    seq: int, ledger: str, key: str, entry: str, prev: str, digest: str, expected_prev: str
) -> str | None:
    if prev != expected_prev:
        return f"prev_hash {prev} does not link to the previous entry of ledger {ledger!r} ({expected_prev})"
    if not isinstance(entry, str) or not isinstance(digest, str) or not isinstance(prev, str):
        return "a column holds a value of the wrong type (the row was rewritten)"
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


def verify(
    conn: sqlite3.Connection,
    heads: Sequence[KnownHead] = (),
    head_findings: Iterable[Any] = (),
) -> VerifyReport:
    """Recompute every ledger's chain and the table-wide chain and Merkle tree, against the
    signed ``heads`` (and what was found about them, ``head_findings``:
    :class:`~finops_fabric.transparency.Finding`); the report names every broken row."""
    if _unchained(conn):
        raise CheckFailed(
            "the audit ledger was written before its entries were chained table-wide; start its daemon "
            "once to chain the entries it holds (the upgrade is recorded as such)",
            code="audit.unchained",
        )
    return verify_rows(log_rows(conn), heads, head_findings)


def verify_rows(
    stored: Iterable[StoredRow],
    heads: Sequence[KnownHead] = (),
    head_findings: Iterable[Any] = (),
) -> VerifyReport:
    """:func:`verify` of the ledger's rows in ``seq`` order, from any database."""
    report = VerifyReport()
    ledger_of: dict[int, str] = {}

    def rows() -> Iterator[LogRow]:
        chains: dict[str, str] = {}
        for r in stored:
            yield r.row
            seq, ledger, key, entry, prev, digest = r.values[:6]
            name = str(ledger)
            report.entries += 1
            ledger_of[r.row.id] = name
            reason = _check_row(seq, name, key, entry, prev, digest, chains.get(name, GENESIS))
            info = report.ledgers.setdefault(name, {"entries": 0, "head": GENESIS})
            info["entries"] += 1
            info["head"] = digest
            chains[name] = str(digest)
            if reason is not None:
                report.problems.append(
                    {"seq": seq, "ledger": name, "problem": "ledger_link", "reason": reason}
                )

    report.log = verify_log(rows(), heads, noun="audit entry", plural="audit entries", id_key="seq")
    report.log.findings[:0] = head_findings
    for f in report.log.findings:
        report.problems.append(
            {
                "seq": f.id,
                "ledger": ledger_of.get(f.id) if f.id is not None else None,
                "problem": f.problem,
                "reason": f.message,
            }
        )
    report.problems.sort(key=lambda p: (p["seq"] is None, p["seq"] or 0))
    report.verified = not report.problems
    report.first_broken = report.problems[0] if report.problems else None
    return report


def verify_empty(heads: Sequence[KnownHead] = (), head_findings: Iterable[Any] = ()) -> VerifyReport:
    """The report for a database without an audit ledger table (no entry ever appended)."""
    report = VerifyReport()
    report.log = verify_log(iter(()), heads, noun="audit entry", plural="audit entries", id_key="seq")
    report.log.findings[:0] = head_findings
    for f in report.log.findings:
        report.problems.append({"seq": f.id, "ledger": None, "problem": f.problem, "reason": f.message})
    report.verified = not report.problems
    report.first_broken = report.problems[0] if report.problems else None
    return report


# --- the table-wide chain ------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredRow:
    """One audit ledger row: its column values (:data:`COLUMNS`) and its chain row."""

    values: tuple[Any, ...]
    row: LogRow


_write_record = record_writer(COLUMNS)


def _record(values: Sequence[Any]) -> bytes:
    try:
        return _write_record(values)
    except Exception:  # a value no writer of this ledger stores: the leaf cannot match
        return b"\xff" + repr(tuple(values)).encode("utf-8", "replace")


def _hash32(value: object) -> bytes | None:
    if value is None:
        return None
    return value if isinstance(value, bytes) and len(value) == 32 else b""


def _stored(r: Sequence[Any]) -> StoredRow:
    values = tuple(r[: len(COLUMNS)])
    seq = values[0] if isinstance(values[0], int) else -1
    return StoredRow(values, LogRow(seq, _record(values), _hash32(r[7]), _hash32(r[8])))


def log_rows(conn: sqlite3.Connection, *, after: int = 0) -> Iterator[StoredRow]:
    """The rows after ``seq`` ``after``, in ``seq`` order."""
    for r in conn.execute(_SELECT + " WHERE seq > ? ORDER BY seq", (after,)):
        yield _stored(r)


def _tail(conn: sqlite3.Connection) -> tuple[int, bytes]:
    """(the last seq, the chain hash after it), from the last row's stored hashes."""
    r = conn.execute(_SELECT + " ORDER BY seq DESC LIMIT 1").fetchone()
    if r is None:
        return 0, CHAIN_GENESIS
    row = _stored(r).row
    leaf = row.leaf or hashlib.sha256(b"\x00" + row.record).digest()
    return row.id, chain_hash(row.prev or CHAIN_GENESIS, leaf)


def upgrade(conn: sqlite3.Connection) -> None:
    """Chain a ledger written before the table-wide chain existed: add the columns, compute
    every row's leaf and link in ``seq`` order, record the upgrade in ``log_chain``; one
    transaction. Must not be called inside an open transaction."""
    if not _unchained(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _unchained(conn):
            conn.execute("ALTER TABLE audit_ledger ADD COLUMN leaf_hash BLOB")
            conn.execute("ALTER TABLE audit_ledger ADD COLUMN prev_chain_hash BLOB")
            conn.execute("DROP TRIGGER IF EXISTS audit_ledger_no_update")
            chain, rows = CHAIN_GENESIS, 0
            for r in conn.execute(_SELECT + " ORDER BY seq").fetchall():
                leaf = hashlib.sha256(b"\x00" + _stored(r).row.record).digest()
                conn.execute(
                    "UPDATE audit_ledger SET leaf_hash = ?, prev_chain_hash = ? WHERE seq = ?",
                    (leaf, chain, r[0]),
                )
                chain, rows = chain_hash(chain, leaf), rows + 1
            conn.execute(_NO_UPDATE)
            from finops_fabric.daemon.decision_log import LOG_CHAIN_SCHEMA

            conn.execute(LOG_CHAIN_SCHEMA.strip())
            conn.execute(
                "INSERT OR REPLACE INTO log_chain (log, adopted_rows, adopted_at) VALUES ('audit', ?, ?)",
                (rows, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            )
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _unchained(conn: sqlite3.Connection) -> bool:
    columns = {r[1] for r in conn.execute("PRAGMA table_info(audit_ledger)")}
    return bool(columns) and "leaf_hash" not in columns
