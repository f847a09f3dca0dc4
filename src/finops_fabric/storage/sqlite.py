"""The SQLite backend: ``<store>/daemon-<env>.db`` (WAL), the embedded default.

The file, its tables and their formats are the daemon's as before; this backend adds the
``schema_version`` table (migrations), ``decisions.process``, the ``deployments`` table and
the ``shadow`` log. Writers serialise on SQLite's write lock
(``BEGIN IMMEDIATE``) and read a chain's head inside that transaction, so several processes
appending to one file still make one chain.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from finops_fabric.daemon import audit_log, auth, decision_log, delivery, outbox
from finops_fabric.daemon.audit_log import StoredRow, VerifyReport
from finops_fabric.daemon.decision_log import ExtraWriter
from finops_fabric.daemon.outbox import Item
from finops_fabric.errors import InputError
from finops_fabric.storage.base import (
    SHADOW_COUNTS,
    SHADOW_SESSION_COLUMNS,
    DecisionLog,
    Storage,
    chain_shadow,
    default_process,
    session_row,
    shadow_leaf,
    shadow_record,
    shadow_values,
)
from finops_fabric.storage.migrations import check_sqlite, schema_version
from finops_fabric.transparency import GENESIS, KnownHead, LogRow, chain_hash

__all__ = ["SqliteStorage"]

_SHADOW_SELECT = (
    "SELECT id, recorded_at, env, decision_id, transaction_id, enforcer_hash, shadow_enforcer_hash,"
    " outcome, shadow_outcome, detail_json, leaf_hash, prev_chain_hash FROM shadow"
)
_SHADOW_INSERT = (
    "INSERT INTO shadow (id, recorded_at, env, decision_id, transaction_id, enforcer_hash,"
    " shadow_enforcer_hash, outcome, shadow_outcome, detail_json, leaf_hash, prev_chain_hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SESSION_SELECT = f"SELECT {', '.join(SHADOW_SESSION_COLUMNS)} FROM shadow_sessions"  # noqa: S608
_SESSION_INSERT = (
    "INSERT INTO shadow_sessions (session, env, enforcer_hash, generation_receipt_hash,"
    " live_enforcer_hash, started_at, until) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session) DO NOTHING"
)
_SESSION_COUNTS = (
    "UPDATE shadow_sessions SET "  # noqa: S608 - fixed column names
    + ", ".join(f"{k} = {k} + ?" for k in SHADOW_COUNTS)
    + " WHERE session = ?"
)
#: The session's rows with their decisions' transactions (``{session}``: the session's expression).
_SESSION_ROWS = (
    "SELECT s.id, s.recorded_at, s.decision_id, s.transaction_id, s.outcome, s.shadow_outcome,"
    " s.detail_json, d.transaction_json FROM shadow s LEFT JOIN decisions d ON d.id = s.decision_id"
    " WHERE {session} = ? ORDER BY s.id"
)
_SESSION_FLIPS = (
    "SELECT outcome, shadow_outcome, count(*) FROM shadow s WHERE {session} = ?"
    " AND outcome != shadow_outcome GROUP BY outcome, shadow_outcome"
)
_SQLITE_SESSION = "json_extract(s.detail_json, '$.session')"


def session_values(doc: Mapping[str, Any], env: str) -> tuple[Any, ...]:
    return (
        str(doc["session"]),
        str(doc.get("env") or env),
        str(doc["enforcer_hash"]),
        str(doc["generation_receipt_hash"]),
        doc.get("live_enforcer_hash"),
        str(doc["started_at"]),
        doc.get("until"),
    )


def count_values(session: str, counts: Mapping[str, int]) -> tuple[Any, ...]:
    return (*(int(counts.get(k, 0)) for k in SHADOW_COUNTS), session)


_DEPLOY_SELECT = (
    "SELECT id, env, kind, enforcer_hash, generation_receipt_hash, receipt_hash, process, recorded_at, doc"
    " FROM deployments"
)


#: The chained logs the tree-head keeper signs: (table, id column).
_TABLES = {"decisions": ("decisions", "id"), "audit": ("audit_ledger", "seq")}


def deployment_row(r: Sequence[Any]) -> dict[str, Any]:
    doc = json.loads(r[8]) if isinstance(r[8], str) else {}
    return {
        "id": int(r[0]),
        "env": r[1],
        "kind": r[2],
        "enforcer_hash": r[3],
        "generation_receipt_hash": r[4],
        "receipt_hash": r[5],
        "process": r[6],
        "recorded_at": r[7],
        "doc": doc,
    }


def shadow_row(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": int(r[0]),
        "recorded_at": r[1],
        "env": r[2],
        "decision_id": r[3],
        "transaction_id": r[4],
        "enforcer_hash": r[5],
        "shadow_enforcer_hash": r[6],
        "outcome": r[7],
        "shadow_outcome": r[8],
        "detail": json.loads(r[9]),
    }


def shadow_log_row(r: Sequence[Any]) -> LogRow:
    leaf, prev = r[10], r[11]
    return LogRow(
        int(r[0]),
        shadow_record(tuple(r[:10])),
        bytes(leaf) if leaf is not None else None,
        bytes(prev) if prev is not None else None,
    )


def stamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


class SqliteStorage(Storage):
    """One environment's SQLite database."""

    backend = "sqlite"

    def __init__(
        self,
        home: Path,
        env: str,
        *,
        path: Path | None = None,
        readonly: bool = False,
        process: str | None = None,
        synchronous: str = "FULL",
    ) -> None:
        self.env = env
        self.path = path if path is not None else decision_log.db_path(Path(home), env)
        self.where = str(self.path)
        self.readonly = readonly
        self.process = process or default_process()
        self._lock = threading.RLock()
        if readonly:
            self._conn = decision_log.connect(self.path, readonly=True)
        else:
            decision_log.connect(self.path).close()  # applies the migrations
            self._conn = outbox.open_db(self.path, synchronous=synchronous)
        self._shadow_tail: tuple[int, bytes] | None = None

    # --- decision log --------------------------------------------------------------------------

    def decision_writer(self) -> DecisionLog:
        return decision_log.DecisionWriter(self.path)

    def decisions(
        self,
        *,
        decision_id: int | None = None,
        transaction_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        with self._lock:
            return decision_log.query(
                self._conn,
                decision_id=decision_id,
                transaction_id=transaction_id,
                since=since,
                until=until,
                outcome=outcome,
                limit=limit,
            )

    def decision_rows(self, after: int = 0) -> Iterator[LogRow]:
        # a connection of its own: a long verification does not hold this object's lock
        conn = decision_log.connect(self.path, readonly=True)
        try:
            yield from decision_log.log_rows(conn, after=after)
        finally:
            conn.close()

    def adoption(self, log: str = "decisions") -> dict[str, Any] | None:
        with self._lock:
            return decision_log.adoption(self._conn, log)

    def effects_writer(self, decision: Mapping[str, Any], tx: Mapping[str, Any]) -> ExtraWriter:
        def write(conn: sqlite3.Connection, decision_id: int) -> None:
            outbox.enqueue_for_decision(conn, decision_id, decision, tx)

        return write

    # --- outbox --------------------------------------------------------------------------------

    def claim(self, kind: str, now: float, limit: int = 32, lease_seconds: float = 30.0) -> list[Item]:
        with self._lock:
            return outbox.claim(self._conn, kind, now, limit, lease_seconds)

    def ack_many(self, delivered: Sequence[tuple[Item, float]]) -> None:
        with self._lock:
            outbox.ack_many(self._conn, delivered)

    def fail_many(self, failures: Sequence[tuple[Item, str, bool]], now: float) -> None:
        with self._lock:
            outbox.fail_many(self._conn, failures, now)

    def release(self, items: Sequence[Item]) -> None:
        with self._lock:
            outbox.release(self._conn, items)

    def delivered_keys(self, keys: Sequence[str]) -> set[str]:
        with self._lock:
            return outbox.delivered_keys(self._conn, keys)

    def depth(self, *, now: float | None = None) -> dict[str, Any]:
        with self._lock:
            return outbox.depth(self._conn, now=now)

    def enqueue(self, decision_id: int, decision: Mapping[str, Any], tx: Mapping[str, Any]) -> int:
        with self._lock, outbox.transaction(self._conn):
            return outbox.enqueue_for_decision(self._conn, decision_id, decision, tx)

    def ack_keys(self, delivered: Sequence[tuple[str, float]]) -> None:
        if not delivered:
            return
        with self._lock, outbox.transaction(self._conn):
            for key, at in delivered:
                self._conn.execute(
                    "UPDATE outbox SET state = 'delivered', delivered_at = ?, last_error = NULL"
                    " WHERE idempotency_key = ? AND state != 'delivered'",
                    (at, key),
                )
                self._conn.execute(
                    "INSERT OR IGNORE INTO outbox_delivered (idempotency_key, kind, delivered_at)"
                    " SELECT idempotency_key, kind, ? FROM outbox WHERE idempotency_key = ?",
                    (at, key),
                )

    def mark_sent(self, key: str, kind: str, at: float) -> None:
        with self._lock, outbox.transaction(self._conn):
            self._conn.execute(
                "INSERT OR IGNORE INTO outbox_delivered (idempotency_key, kind, delivered_at)"
                " VALUES (?, ?, ?)",
                (key, kind, at),
            )

    def requeue_backed_off(self, kind: str, now: float) -> None:
        with self._lock, outbox.transaction(self._conn):
            self._conn.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE kind = ? AND state = 'pending'"
                " AND next_attempt_at > ?",
                (now, kind, now),
            )

    def requeue_dead(self, kind: str | None = None) -> int:
        with self._lock:
            return outbox.requeue_dead(self._conn, kind)

    def backlog(self, kind: str) -> tuple[int, float | None]:
        with self._lock:
            return delivery.backlog(self._conn, kind)

    def record_transport(self, kind: str, reason: str | None, now: float | None = None) -> None:
        with self._lock:
            if reason is None:
                delivery.record_up(self._conn, kind, now)
            else:
                delivery.record_down(self._conn, kind, reason, now)

    def read_transport(self, kind: str) -> dict[str, Any] | None:
        with self._lock:
            return delivery.read_transport(self._conn, kind)

    # --- what the tree-head keeper reads -------------------------------------------------------

    def log_size(self, log: str) -> int:
        table = _TABLES[log][0]
        with self._lock:
            (count,) = self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608
        return int(count)

    def log_chain_at(self, log: str, n: int) -> bytes | None:
        if n == 0:
            return GENESIS
        table, id_col = _TABLES[log]
        with self._lock:
            row = self._conn.execute(
                f"SELECT leaf_hash, prev_chain_hash FROM {table} WHERE {id_col} = ?",  # noqa: S608
                (n,),
            ).fetchone()
        if row is None or not isinstance(row[0], bytes) or not isinstance(row[1], bytes):
            return None
        return chain_hash(row[1], row[0])

    def heads_began(self, log: str) -> str | None:
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT adopted_at FROM log_chain WHERE log = ?", (f"{log}:heads",)
                ).fetchone()
            except sqlite3.Error:
                return None
        return str(row[0]) if row is not None else None

    def mark_heads_began(self, log: str, at: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO log_chain (log, adopted_rows, adopted_at) VALUES (?, 0, ?)",
                (f"{log}:heads", at),
            )

    # --- audit ledger --------------------------------------------------------------------------

    def audit_append_item(self, item: Item, *, now: float | None = None) -> str:
        with self._lock:
            return audit_log.append_item(self._conn, item, now=now)

    def audit_rows(self, after: int = 0) -> Iterator[StoredRow]:
        with self._lock:
            rows = list(audit_log.log_rows(self._conn, after=after))
        yield from rows

    def audit_verify(
        self, heads: Sequence[KnownHead] = (), head_findings: Sequence[Any] = ()
    ) -> VerifyReport:
        with self._lock:
            return audit_log.verify(self._conn, heads, head_findings)

    # --- deployments ---------------------------------------------------------------------------

    def record_deployment(self, doc: Mapping[str, Any], *, process: str | None = None) -> int:
        values = _deployment_values(self.env, doc, process or self.process)
        with self._lock, outbox.transaction(self._conn):
            cur = self._conn.execute(
                "INSERT INTO deployments (env, kind, enforcer_hash, generation_receipt_hash, receipt_hash,"
                " process, recorded_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            return int(cur.lastrowid or 0)

    def deployments(self, after: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(_DEPLOY_SELECT + " WHERE id > ? ORDER BY id", (after,)).fetchall()
        return [deployment_row(r) for r in rows]

    def deployment_version(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT MAX(id) FROM deployments").fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0

    def wait_for_deployment(self, after: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            newest = self.deployment_version()
            if newest > after or time.monotonic() >= deadline:
                return newest
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    # --- shadow log ----------------------------------------------------------------------------

    def record_shadow(
        self,
        *,
        decision_id: int | None,
        transaction_id: str | None,
        enforcer_hash: str,
        shadow_enforcer_hash: str,
        outcome: str,
        shadow_outcome: str,
        detail: Mapping[str, Any],
    ) -> int:
        detail_json = decision_log.dumps_exact(dict(detail))
        with self._lock, outbox.transaction(self._conn):
            last = self._conn.execute(_SHADOW_SELECT + " ORDER BY id DESC LIMIT 1").fetchone()
            row_id, chain = _tail_of(last)
            values = (
                row_id + 1,
                stamp(),
                self.env,
                decision_id,
                transaction_id,
                enforcer_hash,
                shadow_enforcer_hash,
                outcome,
                shadow_outcome,
                detail_json,
            )
            self._conn.execute(
                "INSERT INTO shadow (id, recorded_at, env, decision_id, transaction_id, enforcer_hash,"
                " shadow_enforcer_hash, outcome, shadow_outcome, detail_json, leaf_hash, prev_chain_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, shadow_leaf(values), chain),
            )
            return row_id + 1

    def record_shadow_batch(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        session: str | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> list[LogRow]:
        now = stamp()
        values = [shadow_values(r, self.env, now) for r in rows]
        add = session is not None and counts is not None and any(counts.values())
        if not values and not add:
            return []
        with self._lock:
            # records and hashes before the write lock (again only when another writer appended)
            assumed = self._shadow_tail
            chained = chain_shadow(values, *assumed) if assumed is not None else None
            with outbox.transaction(self._conn):
                tail = _tail_of(self._conn.execute(_SHADOW_SELECT + " ORDER BY id DESC LIMIT 1").fetchone())
                if chained is None or tail != assumed:
                    chained = chain_shadow(values, *tail)
                params, appended, new_tail = chained
                if params:
                    self._conn.executemany(_SHADOW_INSERT, params)
                if add:
                    assert session is not None and counts is not None
                    self._conn.execute(_SESSION_COUNTS, count_values(session, counts))
            self._shadow_tail = new_tail
        return appended

    def begin_shadow_session(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        values = session_values(doc, self.env)
        with self._lock, outbox.transaction(self._conn):
            self._conn.execute(_SESSION_INSERT, values)
            self._conn.execute(
                "UPDATE shadow_sessions SET processes = processes + 1 WHERE session = ?", (values[0],)
            )
            row = self._conn.execute(_SESSION_SELECT + " WHERE session = ?", (values[0],)).fetchone()
        return session_row(row)

    def end_shadow_session(self, session: str, *, ended_at: str, reason: str) -> bool:
        with self._lock, outbox.transaction(self._conn):
            cur = self._conn.execute(
                "UPDATE shadow_sessions SET ended_at = ?, end_reason = ?"
                " WHERE session = ? AND ended_at IS NULL",
                (ended_at, reason, session),
            )
            if cur.rowcount == 1:
                return True
            row = self._conn.execute("SELECT 1 FROM shadow_sessions WHERE session = ?", (session,)).fetchone()
        return row is None

    def finish_shadow_session(self, session: str, receipt_hash: str) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE shadow_sessions SET end_receipt_hash = ? WHERE session = ?", (receipt_hash, session)
            )

    def release_shadow_session(self, session: str) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE shadow_sessions SET processes = processes - 1 WHERE session = ? AND processes > 0",
                (session,),
            )

    def _session_query(self, where: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            try:
                row = self._conn.execute(_SESSION_SELECT + where, params).fetchone()
            except sqlite3.OperationalError as exc:  # a file no shadow session was ever run on
                if "no such table" in str(exc):
                    return None
                raise
        return session_row(row) if row is not None else None

    def shadow_session(self, session: str | None = None) -> dict[str, Any] | None:
        if session is not None:
            return self._session_query(" WHERE session = ?", (session,))
        return self._session_query(" WHERE env = ? ORDER BY started_at DESC, rowid DESC LIMIT 1", (self.env,))

    def open_shadow_session(self) -> dict[str, Any] | None:
        return self._session_query(
            " WHERE env = ? AND ended_at IS NULL ORDER BY started_at DESC, rowid DESC LIMIT 1", (self.env,)
        )

    def shadow_session_rows(self, session: str) -> Iterator[tuple[Any, ...]]:
        conn = decision_log.connect(self.path, readonly=True)  # a long report holds no lock
        try:
            yield from conn.execute(_SESSION_ROWS.format(session=_SQLITE_SESSION), (session,))
        finally:
            conn.close()

    def shadow_flips(self, session: str) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(_SESSION_FLIPS.format(session=_SQLITE_SESSION), (session,)).fetchall()
        return {f"{a}→{b}": int(n) for a, b, n in rows}

    def shadow_rows(self, after: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(_SHADOW_SELECT + " WHERE id > ? ORDER BY id", (after,)).fetchall()
        return [shadow_row(r) for r in rows]

    def shadow_log_rows(self, after: int = 0) -> Iterator[LogRow]:
        with self._lock:
            rows = self._conn.execute(_SHADOW_SELECT + " WHERE id > ? ORDER BY id", (after,)).fetchall()
        for r in rows:
            yield shadow_log_row(r)

    # --- tokens: the store's tokens.json, as before ------------------------------------------------

    def token_entries(self) -> list[dict[str, Any]]:
        return auth.read_tokens(self.path.parent)

    def put_token(self, entry: Mapping[str, Any]) -> None:
        auth.add_token_entry(self.path.parent, dict(entry))

    def delete_token(self, sha256: str) -> bool:
        return auth.remove_token_entry(self.path.parent, sha256)

    # --- the database --------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._conn)

    def check(self) -> None:
        with self._lock:
            check_sqlite(self._conn, self.where)

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()


def _tail_of(last: Sequence[Any] | None) -> tuple[int, bytes]:
    """(the last id, the chain hash after it) of a chained table's last row."""
    if last is None:
        return 0, GENESIS
    row = shadow_log_row(last)
    leaf = row.leaf or hashlib.sha256(b"\x00" + row.record).digest()
    return row.id, chain_hash(row.prev or GENESIS, leaf)


def _deployment_values(env: str, doc: Mapping[str, Any], process: str) -> tuple[Any, ...]:
    kind = str(doc.get("kind") or "deployment")
    enforcer_hash = doc.get("enforcer_hash")
    if not isinstance(enforcer_hash, str) or not enforcer_hash:
        raise InputError("a deployment names the enforcer_hash it deploys", code="storage.deployment")
    receipt = doc.get("generation_receipt_hash")
    deployed = doc.get("receipt_hash")
    return (
        env,
        kind,
        enforcer_hash,
        receipt if isinstance(receipt, str) else None,
        deployed if isinstance(deployed, str) else None,
        process,
        stamp(),
        json.dumps(dict(doc), sort_keys=True, separators=(",", ":"), default=str),
    )
