"""The durable outbox: side effects of a decision (notifications, audit entries), queued in the
daemon's SQLite database in the same transaction as the decision, delivered by supervised workers.

Database: ``<store>/daemon-<env>.db`` (WAL). The daemon core calls :func:`ensure_schema` once at
start and :func:`enqueue_for_decision` INSIDE its decision transaction (it never commits), so a
decision and its side effects are recorded together or not at all. A worker then loops::

    items = claim(conn, kind, now, limit, lease_seconds)   # pending/expired leases -> delivering
    for item in items: deliver; ack(conn, item) or fail(conn, item, error, now)

(:func:`ack_many`, :func:`fail_many` and :func:`release` do the same for several items in one
transaction; :func:`delivered_keys` is :func:`already_delivered` for a batch.)

Delivery is at least once (a worker killed between sending and :func:`ack` leaves a lease that
expires and is claimed again). Every row carries an idempotency key, unique in the table, so a
decision that is retried cannot queue a side effect twice; :func:`ack` also records the key in
``outbox_delivered``, and a worker skips an item whose key is recorded there, so a redelivered
item is acknowledged without being sent again. Notifications carry the key as their Message-ID,
which lets the receiving side drop the (rare) copy sent just before a crash.

While an item is ``delivering``, ``next_attempt_at`` holds the end of its lease; an item whose
lease has run out is due again. :func:`fail` schedules the next attempt with exponential
back-off (base 0.5 s, doubling, cap 30 s) and ±20 % jitter, or marks the item ``dead`` when it
cannot succeed (a permanent error, or ``max_attempts`` reached); :func:`requeue_dead` revives
dead items.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from finops_fabric.canonical import canonical_json, sha256_hex
from finops_fabric.files import private_file

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_CAP_S",
    "JITTER",
    "KINDS",
    "MAX_ATTEMPTS",
    "SCHEMA",
    "STATES",
    "Item",
    "ack",
    "ack_many",
    "already_delivered",
    "any_due",
    "backoff_delay",
    "canonical_text",
    "claim",
    "db_path",
    "delivered_keys",
    "depth",
    "enqueue_for_decision",
    "ensure_schema",
    "fail",
    "fail_many",
    "idempotency_key",
    "items_for_decision",
    "load_payload",
    "mark_delivered",
    "open_db",
    "release",
    "release_leases",
    "requeue_dead",
    "transaction",
    "waiting",
]

KINDS = ("notification", "audit")
STATES = ("pending", "delivering", "delivered", "dead")
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
JITTER = 0.2
#: Attempts before an item is dead-lettered (about 50 minutes of retries at the 30 s cap).
MAX_ATTEMPTS = 100
_BUSY_TIMEOUT_S = 30.0
_ENV = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id               INTEGER PRIMARY KEY,
    decision_id      INTEGER,
    kind             TEXT NOT NULL CHECK (kind IN ('notification', 'audit')),
    idempotency_key  TEXT NOT NULL UNIQUE,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    last_error       TEXT,
    created_at       REAL NOT NULL,
    delivered_at     REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (kind, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_decision ON outbox (decision_id);
CREATE TABLE IF NOT EXISTS outbox_delivered (
    idempotency_key  TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    delivered_at     REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Item:
    """One claimed outbox row. ``attempts`` counts this attempt; ``lease_until`` is when another
    worker may claim it again if this one neither acks nor fails it."""

    id: int
    decision_id: int | None
    kind: str
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int
    lease_until: float
    created_at: float


# --- the database -------------------------------------------------------------------------------


def db_path(home: str | Path, env: str) -> Path:
    """``<home>/daemon-<env>.db``; ``env`` must be a plain name (letters, digits, ``_``, ``-``)."""
    if not _ENV.fullmatch(env):
        raise ValueError(f"bad environment name {env!r}")
    return Path(home).expanduser().absolute() / f"daemon-{env}.db"


def open_db(path: str | Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode (``isolation_level=None``: transactions are explicit),
    WAL, a busy timeout; the outbox schema is ensured.

    ``synchronous`` is per connection: the decision path keeps ``FULL``; the workers use
    ``NORMAL`` (no fsync per ack: a power cut can only undo the latest acks together with their
    effects in this file, and an undone ack means a redelivery, never a loss)."""
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    private_file(Path(path))  # 0600, and so its -wal and -shm (SQLite gives them the file's mode)
    conn = sqlite3.connect(str(path), timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
    ensure_schema(conn)
    from finops_fabric.storage.migrations import check_sqlite

    try:
        check_sqlite(conn, str(path))  # the decision log's connect() applies the migrations
    except BaseException:
        conn.close()
        raise
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the outbox tables if absent (also the audit ledger's and the workers' transport
    state, which live in the same file).
    Must not be called inside an open transaction (``executescript`` commits)."""
    from finops_fabric.daemon.audit_log import SCHEMA as AUDIT_SCHEMA
    from finops_fabric.daemon.audit_log import upgrade
    from finops_fabric.daemon.delivery import SCHEMA as TRANSPORT_SCHEMA

    upgrade(conn)  # a ledger written before the table-wide chain is chained first
    conn.executescript(SCHEMA + AUDIT_SCHEMA + TRANSPORT_SCHEMA)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception). Refuses to nest."""
    if conn.in_transaction:
        raise RuntimeError("a transaction is already open on this connection")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# --- enqueueing (inside the decision transaction) -------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Decimals as strings (amounts are never floats), tuples as lists, recursively."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


_SAFE_INT = 2**53 - 1


def _plain(value: Any) -> bool:
    """True when ``value`` holds only str-keyed dicts, lists, strings, bools, ``None`` and
    integers within +/-(2**53 - 1): values that RFC 8785 and the stdlib's compact, key-sorted
    JSON write alike (once the text has no \\u escape: then it is ASCII, and code point and
    UTF-16 key order agree)."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if t is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if t is list:
        return all(_plain(v) for v in value)
    return False


def canonical_text(value: Any) -> str:
    """:func:`finops_fabric.canonical.canonical_json` of ``value`` as text, byte for byte, through
    the stdlib's C encoder when that provably writes the same (see :func:`_plain`), else through
    the RFC 8785 library. An outbox row costs a fraction of the time this way, and it is written
    while the decision log holds SQLite's write lock."""
    if _plain(value):
        # The text is ASCII (ensure_ascii); a \u escape (of a control, DEL or non-ASCII
        # character, where the two may differ) sends the value the slow way.
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        if "\\u" not in text:
            return text
    return canonical_json(value).decode("utf-8")


def idempotency_key(kind: str, subject: str, rule: str, target: str) -> str:
    """``sha256:<hex>`` of the canonical JSON ``[kind, subject, rule, target]``: ``subject`` is
    ``tx:<transaction id>`` (or ``decision:<id>`` when the transaction has none), ``target`` the
    recipient or the ledger."""
    return sha256_hex(canonical_text([kind, subject, rule, target]).encode("utf-8"))


def items_for_decision(
    decision_id: int, decision: Mapping[str, Any], transaction: Mapping[str, Any]
) -> list[tuple[str, str, dict[str, Any]]]:
    """The side effects of one decision as ``(kind, idempotency key, payload)``, in decision order."""
    tx_id = transaction.get("id") or decision.get("transaction_id")
    subject = f"tx:{tx_id}" if isinstance(tx_id, str) and tx_id else f"decision:{decision_id}"
    common: dict[str, Any] = {
        "decision_id": decision_id,
        "transaction_id": tx_id if isinstance(tx_id, str) else None,
        "decision": decision.get("decision"),
        "enforcer_hash": decision.get("enforcer_hash"),
    }
    fired = _jsonable(decision.get("fired") or [])  # shared by the payloads, converted once
    tx = _jsonable(transaction)
    out: list[tuple[str, str, dict[str, Any]]] = []
    for n in decision.get("notifications") or ():
        rule, recipient = str(n["rule"]), str(n["recipient"])
        key = idempotency_key("notification", subject, rule, recipient)
        payload = {
            **common,
            "kind": "notification",
            "rule": rule,
            "recipient": recipient,
            "fired": fired,
            "transaction": tx,
            "idempotency_key": key,
        }
        out.append(("notification", key, payload))
    for a in decision.get("audit") or ():
        rule, ledger = str(a["rule"]), str(a["ledger"])
        key = idempotency_key("audit", subject, rule, ledger)
        payload = {
            **common,
            "kind": "audit",
            "rule": rule,
            "ledger": ledger,
            "flags": [str(f) for f in a.get("flags") or ()],
            "fired": fired,
            "transaction": tx,
            "idempotency_key": key,
        }
        out.append(("audit", key, payload))
    return out


def enqueue_for_decision(
    conn: sqlite3.Connection,
    decision_id: int,
    decision: Mapping[str, Any],
    transaction: Mapping[str, Any],
    *,
    now: float | None = None,
) -> int:
    """Queue one item per notification recipient and per audit entry of ``decision``.

    Runs inside the caller's transaction and does not commit. A side effect whose idempotency
    key is already queued (a retried decision) is skipped. Returns how many items were queued.
    """
    t = time.time() if now is None else now
    items = items_for_decision(decision_id, decision, transaction)
    if not items:
        return 0
    rows = [(decision_id, kind, key, canonical_text(payload), t, t) for kind, key, payload in items]
    cur = conn.executemany(
        "INSERT OR IGNORE INTO outbox (decision_id, kind, idempotency_key, payload, state, attempts,"
        " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
        rows,
    )
    return cur.rowcount


# --- the worker side ------------------------------------------------------------------------------


def claim(
    conn: sqlite3.Connection, kind: str, now: float, limit: int = 32, lease_seconds: float = 30.0
) -> list[Item]:
    """Atomically take up to ``limit`` due items of ``kind`` (pending ones whose time has come,
    and delivering ones whose lease has expired) and lease them until ``now + lease_seconds``."""
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    if conn.in_transaction:
        raise RuntimeError("a transaction is already open on this connection")
    lease_until = now + lease_seconds
    # A read first (no lock): an idle worker polling an empty queue must never take the write
    # lock the decision path needs.
    if not any_due(conn, kind, now):
        return []
    with transaction(conn):
        rows = conn.execute(
            "SELECT id, decision_id, idempotency_key, payload, attempts, created_at FROM outbox"
            " WHERE kind = ? AND state IN ('pending', 'delivering') AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (kind, now, limit),
        ).fetchall()
        conn.executemany(
            "UPDATE outbox SET state = 'delivering', attempts = ?, next_attempt_at = ? WHERE id = ?",
            [(row[4] + 1, lease_until, row[0]) for row in rows],
        )
    # Parsed after the COMMIT: the write lock is held for the UPDATE only. A payload that is not
    # a JSON object becomes {} (its delivery then fails as malformed and dead-letters it).
    return [
        Item(
            id=row_id,
            decision_id=decision_id,
            kind=kind,
            idempotency_key=key,
            payload=_payload_or_empty(payload),
            attempts=attempts + 1,
            lease_until=lease_until,
            created_at=created_at,
        )
        for row_id, decision_id, key, payload, attempts, created_at in rows
    ]


def _payload_or_empty(text: str) -> dict[str, Any]:
    try:
        return load_payload(text)
    except ValueError:
        return {}


def any_due(conn: sqlite3.Connection, kind: str, now: float) -> bool:
    """True when an item of ``kind`` is due (a read: it takes no lock)."""
    due = conn.execute(
        "SELECT 1 FROM outbox WHERE kind = ? AND state IN ('pending', 'delivering') AND next_attempt_at <= ?"
        " LIMIT 1",
        (kind, now),
    ).fetchone()
    return due is not None


def release_leases(conn: sqlite3.Connection, kind: str, now: float | None = None) -> int:
    """Make every ``delivering`` item of ``kind`` due again at once; return how many.

    A worker calls this when it starts: the supervisor runs one worker per kind and environment,
    so a lease still held at that moment belongs to a predecessor that died mid-batch, and
    waiting for it to expire would only delay delivery."""
    t = time.time() if now is None else now
    with transaction(conn):
        cur = conn.execute(
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?"
            " WHERE kind = ? AND state = 'delivering'",
            (t, kind),
        )
        return cur.rowcount


def load_payload(text: str) -> dict[str, Any]:
    """An outbox row's payload (a JSON object)."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("outbox payload is not a JSON object")
    return doc


def already_delivered(conn: sqlite3.Connection, key: str) -> bool:
    """True when an item with this idempotency key has been delivered (and acknowledged)."""
    return (
        conn.execute("SELECT 1 FROM outbox_delivered WHERE idempotency_key = ?", (key,)).fetchone()
        is not None
    )


def mark_delivered(conn: sqlite3.Connection, item: Item, now: float) -> None:
    """The statements of :func:`ack` without a transaction of their own (for a caller that
    delivers into the same database, e.g. the audit ledger, in one transaction)."""
    conn.execute(
        "UPDATE outbox SET state = 'delivered', delivered_at = ?, last_error = NULL WHERE id = ?",
        (now, item.id),
    )
    conn.execute(
        "INSERT OR IGNORE INTO outbox_delivered (idempotency_key, kind, delivered_at) VALUES (?, ?, ?)",
        (item.idempotency_key, item.kind, now),
    )


def ack(conn: sqlite3.Connection, item: Item, *, now: float | None = None) -> None:
    """``item`` was delivered: mark it so and record its idempotency key."""
    with transaction(conn):
        mark_delivered(conn, item, time.time() if now is None else now)


def ack_many(conn: sqlite3.Connection, delivered: Sequence[tuple[Item, float]]) -> None:
    """:func:`ack` of every ``(item, delivered at)`` of ``delivered``, in one transaction."""
    if not delivered:
        return
    with transaction(conn):
        conn.executemany(
            "UPDATE outbox SET state = 'delivered', delivered_at = ?, last_error = NULL WHERE id = ?",
            [(t, item.id) for item, t in delivered],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO outbox_delivered (idempotency_key, kind, delivered_at) VALUES (?, ?, ?)",
            [(item.idempotency_key, item.kind, t) for item, t in delivered],
        )


def delivered_keys(conn: sqlite3.Connection, keys: Sequence[str]) -> set[str]:
    """The keys of ``keys`` recorded as delivered (:func:`already_delivered` for a batch)."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):  # well under SQLite's limit of bound parameters
        chunk = list(keys[start : start + 500])
        marks = ",".join("?" * len(chunk))
        found.update(
            row[0]
            for row in conn.execute(
                f"SELECT idempotency_key FROM outbox_delivered WHERE idempotency_key IN ({marks})",  # noqa: S608 - only placeholders
                chunk,
            )
        )
    return found


def release(conn: sqlite3.Connection, items: Sequence[Item], *, now: float | None = None) -> None:
    """Hand claimed items back untried: due at once, the claim's attempt not counted."""
    if not items:
        return
    t = time.time() if now is None else now
    with transaction(conn):
        conn.executemany(
            "UPDATE outbox SET state = 'pending', attempts = attempts - 1, next_attempt_at = ?"
            " WHERE id = ? AND state = 'delivering'",
            [(t, item.id) for item in items],
        )


def backoff_delay(
    attempts: int,
    *,
    rng: Callable[[], float] = random.random,
    base: float = BACKOFF_BASE_S,
    cap: float = BACKOFF_CAP_S,
    jitter: float = JITTER,
) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: ``base * 2**(attempts-1)`` with
    ±``jitter`` (``rng()`` in [0, 1) maps to [-jitter, +jitter)), never above ``cap``."""
    raw = base * (2.0 ** min(max(attempts - 1, 0), 32))
    factor = 1.0 + jitter * (2.0 * rng() - 1.0)
    return max(0.0, min(cap, raw * factor))


def fail(
    conn: sqlite3.Connection,
    item: Item,
    error: str,
    now: float,
    *,
    permanent: bool = False,
    rng: Callable[[], float] = random.random,
    max_attempts: int = MAX_ATTEMPTS,
    base: float = BACKOFF_BASE_S,
    cap: float = BACKOFF_CAP_S,
) -> float | None:
    """Delivery of ``item`` failed: schedule a retry after the back-off and return its time, or
    mark the item ``dead`` (permanent error, or ``max_attempts`` used up) and return ``None``.
    An item delivered meanwhile (by another worker after a lease expired) is left delivered."""
    dead = permanent or item.attempts >= max_attempts
    at = None if dead else now + backoff_delay(item.attempts, rng=rng, base=base, cap=cap)
    with transaction(conn):
        conn.execute(
            "UPDATE outbox SET state = ?, next_attempt_at = ?, last_error = ?"
            " WHERE id = ? AND state != 'delivered'",
            ("dead" if dead else "pending", now if at is None else at, error[:2000], item.id),
        )
    return at


def fail_many(
    conn: sqlite3.Connection,
    failures: Sequence[tuple[Item, str, bool]],
    now: float,
    *,
    rng: Callable[[], float] = random.random,
    max_attempts: int = MAX_ATTEMPTS,
    base: float = BACKOFF_BASE_S,
    cap: float = BACKOFF_CAP_S,
) -> None:
    """:func:`fail` of every ``(item, error, permanent)`` of ``failures``, in one transaction."""
    if not failures:
        return
    rows = []
    for item, error, permanent in failures:
        dead = permanent or item.attempts >= max_attempts
        at = now if dead else now + backoff_delay(item.attempts, rng=rng, base=base, cap=cap)
        rows.append(("dead" if dead else "pending", at, error[:2000], item.id))
    with transaction(conn):
        conn.executemany(
            "UPDATE outbox SET state = ?, next_attempt_at = ?, last_error = ?"
            " WHERE id = ? AND state != 'delivered'",
            rows,
        )


def requeue_dead(conn: sqlite3.Connection, kind: str | None = None, *, now: float | None = None) -> int:
    """Give dead items (of ``kind``) a fresh start; return how many."""
    t = time.time() if now is None else now
    with transaction(conn):
        if kind is None:
            cur = conn.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ? WHERE state = 'dead'",
                (t,),
            )
        else:
            cur = conn.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?"
                " WHERE state = 'dead' AND kind = ?",
                (t, kind),
            )
        return cur.rowcount


def waiting(conn: sqlite3.Connection) -> dict[str, int]:
    """Per kind, how many items are pending or being delivered: what :func:`depth` reports as
    ``pending + delivering``, read from the due index's (kind, state) ranges, so its cost follows
    the backlog, not every item ever delivered."""
    out = dict.fromkeys(KINDS, 0)
    for kind, count in conn.execute(
        "SELECT kind, COUNT(*) FROM outbox WHERE kind IN ('notification', 'audit')"
        " AND state IN ('pending', 'delivering') GROUP BY kind"
    ):
        out[kind] = int(count)
    return out


def depth(conn: sqlite3.Connection, *, now: float | None = None) -> dict[str, Any]:
    """Per kind: how many items are in each state, and the age in seconds of the oldest
    undelivered one (``oldest_pending_s``, 0 when none)."""
    t = time.time() if now is None else now
    out: dict[str, Any] = {k: {s: 0 for s in STATES} | {"oldest_pending_s": 0.0} for k in KINDS}
    for kind, state, count in conn.execute("SELECT kind, state, COUNT(*) FROM outbox GROUP BY kind, state"):
        out.setdefault(kind, {s: 0 for s in STATES} | {"oldest_pending_s": 0.0})[state] = count
    for kind, oldest in conn.execute(
        "SELECT kind, MIN(created_at) FROM outbox WHERE state IN ('pending', 'delivering') GROUP BY kind"
    ):
        if oldest is not None:
            out[kind]["oldest_pending_s"] = round(max(0.0, t - oldest), 3)
    return out
