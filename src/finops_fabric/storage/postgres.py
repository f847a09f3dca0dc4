"""The PostgreSQL backend: one database (or schema) per environment, psycopg 3 with a pool.

The tables, the records and the chains are those of the SQLite backend, so the same verifier
checks either. What differs is how several processes on several hosts share them:

- **decisions**: each group commit takes ``pg_advisory_xact_lock`` and reads the log's last row
  inside the same transaction before it chains its rows to it, so writers on any number of
  hosts extend one chain (a writer follows rows others appended, for its Merkle tree too);
- **outbox**: items are claimed with ``FOR UPDATE SKIP LOCKED`` and leased (``lease_owner``,
  ``next_attempt_at`` as the lease's end): concurrent workers never claim the same item, and an
  item whose worker died is due again when its lease expires; delivery is recorded with the
  item's idempotency key (the notification's Message-ID), as in SQLite;
- **audit ledger** and **shadow log**: appends are serialised by their own advisory locks;
- **deployments**: ``record_deployment`` sends ``NOTIFY fabric_deployments``;
  :meth:`PostgresStorage.wait_for_deployment` LISTENs (and polls as the fallback).

Commits are durable when they return (the server's ``synchronous_commit``, on by default).
A lost connection is :class:`~finops_fabric.storage.base.StorageUnavailable` (HTTP 503,
``storage.unavailable``); the pool and the decision writer reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import queue
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from finops_fabric.daemon import audit_log, decision_log, outbox
from finops_fabric.daemon.audit_log import StoredRow, VerifyReport
from finops_fabric.daemon.decision_log import (
    ExtraWriter,
    LoggedDecision,
    _Job,
    _Tail,
)
from finops_fabric.daemon.outbox import Item
from finops_fabric.errors import CheckFailed, FabricError, InputError
from finops_fabric.storage.base import (
    DecisionLog,
    Storage,
    StorageUnavailable,
    chain_shadow,
    default_process,
    session_row,
    shadow_leaf,
    shadow_values,
)
from finops_fabric.storage.config import redact
from finops_fabric.storage.migrations import (
    LOCK_AUDIT,
    LOCK_DECISIONS,
    LOCK_SHADOW,
    SchemaTooNew,
    check_postgres,
    migrate_postgres,
)
from finops_fabric.storage.sqlite import (
    _DEPLOY_SELECT,
    _SESSION_COUNTS,
    _SESSION_FLIPS,
    _SESSION_INSERT,
    _SESSION_ROWS,
    _SESSION_SELECT,
    _SHADOW_INSERT,
    _SHADOW_SELECT,
    _TABLES,
    _deployment_values,
    _tail_of,
    count_values,
    deployment_row,
    session_values,
    shadow_log_row,
    shadow_row,
    stamp,
)
from finops_fabric.transparency import GENESIS, CompactRange, KnownHead, LogRow, chain_hash

__all__ = ["CHANNEL", "PgDecisionWriter", "PostgresStorage"]

#: The NOTIFY channel of new deployments.
CHANNEL = "fabric_deployments"
#: The NOTIFY channel of shadow sessions begun and ended.
SHADOW_CHANNEL = "fabric_shadow"
_PG_SESSION = "(s.detail_json::jsonb ->> 'session')"


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


_COLUMNS = ", ".join(decision_log.COLUMNS)
_SELECT = f"SELECT {_COLUMNS}, leaf_hash, prev_chain_hash, process FROM decisions"  # noqa: S608
_INSERT = (
    f"INSERT INTO decisions ({_COLUMNS}, leaf_hash, prev_chain_hash, process)"  # noqa: S608
    f" VALUES ({', '.join(['%s'] * (len(decision_log.COLUMNS) + 3))})"
)
_AUDIT_SELECT = f"SELECT {', '.join(audit_log.COLUMNS)}, leaf_hash, prev_chain_hash FROM audit_ledger"  # noqa: S608
_ENQUEUE = (
    "INSERT INTO outbox (decision_id, kind, idempotency_key, payload, state, attempts, next_attempt_at,"
    " created_at) VALUES (%s, %s, %s, %s, 'pending', 0, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING"
)
_CLAIM = """
WITH due AS (
    SELECT id FROM outbox
    WHERE kind = %s AND state IN ('pending', 'delivering') AND next_attempt_at <= %s
    ORDER BY next_attempt_at, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox AS o
SET state = 'delivering', attempts = o.attempts + 1, next_attempt_at = %s, lease_owner = %s
FROM due WHERE o.id = due.id
RETURNING o.id, o.decision_id, o.idempotency_key, o.payload, o.attempts, o.created_at
"""


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(t)))


def _unavailable(exc: BaseException, where: str, url: str) -> StorageUnavailable:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    password = psycopg.conninfo.conninfo_to_dict(url).get("password") if "://" in url else None
    if password:
        text = text.replace(str(password), "***")
    return StorageUnavailable(f"the database {where} is unavailable: {text}", code="storage.unavailable")


class PostgresStorage(Storage):
    """One environment's PostgreSQL database."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        env: str,
        *,
        readonly: bool = False,
        process: str | None = None,
        pool_size: int = 8,
    ) -> None:
        self.url = url
        self.env = env
        self.where = redact(url)
        self.readonly = readonly
        self.process = process or default_process()
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                if readonly:
                    if check_postgres(conn, self.where) == 0:
                        raise InputError(
                            f"no decision log in {self.where}: no daemon has run for {env} on this database",
                            code="decisions.missing",
                        )
                else:
                    migrate_postgres(conn, self.where, env)
        except psycopg.OperationalError as exc:
            raise _unavailable(exc, self.where, url) from None
        except psycopg.Error as exc:
            raise FabricError(
                f"the database {self.where} refused the schema: {_unavailable(exc, self.where, url).message}",
                code="storage.migration",
            ) from None
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=False,
            name=f"fabric-{env}",
            timeout=10.0,
            reconnect_timeout=30.0,
        )
        self.pool.open(wait=False)
        self._shadow_tail: tuple[int, bytes] | None = None

    @contextlib.contextmanager
    def _db(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (autocommit); a lost database is :class:`StorageUnavailable`."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise _unavailable(exc, self.where, self.url) from None

    # --- decision log --------------------------------------------------------------------------

    def decision_writer(self) -> DecisionLog:
        return PgDecisionWriter(self)

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
        where: list[str] = []
        params: list[object] = []
        for clause, value in (
            ("id = %s", decision_id),
            ("transaction_id = %s", transaction_id),
            ("decided_at >= %s", since),
            ("decided_at < %s", until),
            ("outcome = %s", outcome),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            "SELECT id, decided_at, env, transaction_id, transaction_json, outcome, fired, decision_json,"
            " enforcer_hash, generation_receipt_hash, process FROM decisions"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT %s) AS newest"  # noqa: S608 - fixed text
            params.append(limit)
        sql += " ORDER BY id"
        with self._db() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [decision_log._row(r) for r in rows]

    def decision_rows(self, after: int = 0) -> Iterator[LogRow]:
        last = after
        while True:
            with self._db() as conn:
                batch = conn.execute(_SELECT + " WHERE id > %s ORDER BY id LIMIT 10000", (last,)).fetchall()
            if not batch:
                return
            for r in batch:
                yield decision_log._log_row(r)
            last = int(batch[-1][0])

    def adoption(self, log: str = "decisions") -> dict[str, Any] | None:
        with self._db() as conn:
            row = conn.execute(
                "SELECT adopted_rows, adopted_at FROM log_chain WHERE log = %s", (log,)
            ).fetchone()
        return {"rows": int(row[0]), "at": str(row[1])} if row is not None else None

    def effects_writer(self, decision: Mapping[str, Any], tx: Mapping[str, Any]) -> ExtraWriter:
        return _Enqueue(decision, tx)

    # --- outbox --------------------------------------------------------------------------------

    def claim(self, kind: str, now: float, limit: int = 32, lease_seconds: float = 30.0) -> list[Item]:
        if kind not in outbox.KINDS:
            raise ValueError(f"unknown outbox kind {kind!r}")
        lease_until = now + lease_seconds
        with self._db() as conn:
            rows = conn.execute(_CLAIM, (kind, now, limit, lease_until, self.process)).fetchall()
        rows.sort(key=lambda r: int(r[0]))
        return [
            Item(
                id=int(row_id),
                decision_id=decision_id,
                kind=kind,
                idempotency_key=key,
                payload=outbox._payload_or_empty(payload),
                attempts=int(attempts),
                lease_until=lease_until,
                created_at=float(created_at),
            )
            for row_id, decision_id, key, payload, attempts, created_at in rows
        ]

    def ack_many(self, delivered: Sequence[tuple[Item, float]]) -> None:
        if not delivered:
            return
        with self._db() as conn, conn.transaction(), conn.cursor() as cur:
            _mark_delivered(cur, delivered)

    def fail_many(self, failures: Sequence[tuple[Item, str, bool]], now: float) -> None:
        if not failures:
            return
        rows = []
        for item, error, permanent in failures:
            dead = permanent or item.attempts >= outbox.MAX_ATTEMPTS
            at = now if dead else now + outbox.backoff_delay(item.attempts, rng=random.random)
            rows.append(("dead" if dead else "pending", at, error[:2000], item.id))
        with self._db() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "UPDATE outbox SET state = %s, next_attempt_at = %s, last_error = %s, lease_owner = NULL"
                " WHERE id = %s AND state != 'delivered'",
                rows,
            )

    def release(self, items: Sequence[Item]) -> None:
        if not items:
            return
        t = time.time()
        with self._db() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "UPDATE outbox SET state = 'pending', attempts = attempts - 1, next_attempt_at = %s,"
                " lease_owner = NULL WHERE id = %s AND state = 'delivering' AND lease_owner = %s",
                [(t, item.id, self.process) for item in items],
            )

    def delivered_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        with self._db() as conn:
            rows = conn.execute(
                "SELECT idempotency_key FROM outbox_delivered WHERE idempotency_key = ANY(%s)", (list(keys),)
            ).fetchall()
        return {str(r[0]) for r in rows}

    def depth(self, *, now: float | None = None) -> dict[str, Any]:
        t = time.time() if now is None else now
        blank = {s: 0 for s in outbox.STATES} | {"oldest_pending_s": 0.0}
        out: dict[str, Any] = {k: dict(blank) for k in outbox.KINDS}
        with self._db() as conn:
            for kind, state, count in conn.execute(
                "SELECT kind, state, COUNT(*) FROM outbox GROUP BY kind, state"
            ):
                out.setdefault(kind, dict(blank))[state] = int(count)
            for kind, oldest in conn.execute(
                "SELECT kind, MIN(created_at) FROM outbox WHERE state IN ('pending', 'delivering')"
                " GROUP BY kind"
            ):
                if oldest is not None:
                    out[kind]["oldest_pending_s"] = round(max(0.0, t - float(oldest)), 3)
        return out

    def enqueue(self, decision_id: int, decision: Mapping[str, Any], tx: Mapping[str, Any]) -> int:
        with self._db() as conn, conn.transaction():
            return _enqueue(conn, decision_id, decision, tx)

    def ack_keys(self, delivered: Sequence[tuple[str, float]]) -> None:
        if not delivered:
            return
        with self._db() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "UPDATE outbox SET state = 'delivered', delivered_at = %s, last_error = NULL"
                " WHERE idempotency_key = %s AND state != 'delivered'",
                [(at, key) for key, at in delivered],
            )
            cur.executemany(
                "INSERT INTO outbox_delivered (idempotency_key, kind, delivered_at)"
                " SELECT idempotency_key, kind, %s FROM outbox WHERE idempotency_key = %s"
                " ON CONFLICT (idempotency_key) DO NOTHING",
                [(at, key) for key, at in delivered],
            )

    def mark_sent(self, key: str, kind: str, at: float) -> None:
        with self._db() as conn:
            conn.execute(
                "INSERT INTO outbox_delivered (idempotency_key, kind, delivered_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (idempotency_key) DO NOTHING",
                (key, kind, at),
            )

    def requeue_backed_off(self, kind: str, now: float) -> None:
        with self._db() as conn:
            conn.execute(
                "UPDATE outbox SET next_attempt_at = %s WHERE kind = %s AND state = 'pending'"
                " AND next_attempt_at > %s",
                (now, kind, now),
            )

    def requeue_dead(self, kind: str | None = None) -> int:
        t = time.time()
        with self._db() as conn:
            if kind is None:
                cur = conn.execute(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = %s"
                    " WHERE state = 'dead'",
                    (t,),
                )
            else:
                cur = conn.execute(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = %s"
                    " WHERE state = 'dead' AND kind = %s",
                    (t, kind),
                )
            return int(cur.rowcount)

    def backlog(self, kind: str) -> tuple[int, float | None]:
        with self._db() as conn:
            row = conn.execute(
                "SELECT COUNT(*), MIN(created_at) FROM outbox"
                " WHERE kind = %s AND state IN ('pending', 'delivering')",
                (kind,),
            ).fetchone()
        assert row is not None
        return int(row[0]), (float(row[1]) if row[1] is not None else None)

    def record_transport(self, kind: str, reason: str | None, now: float | None = None) -> None:
        t = time.time() if now is None else now
        with self._db() as conn:
            if reason is None:
                conn.execute(
                    "INSERT INTO transport_state (kind, state, reason, since, updated_at)"
                    " VALUES (%s, 'up', NULL, %s, %s)"
                    " ON CONFLICT (kind) DO UPDATE SET state = 'up', reason = NULL, since = excluded.since,"
                    " updated_at = excluded.updated_at",
                    (kind, t, t),
                )
            else:
                conn.execute(
                    "INSERT INTO transport_state (kind, state, reason, since, updated_at)"
                    " VALUES (%s, 'down', %s, %s, %s)"
                    " ON CONFLICT (kind) DO UPDATE SET reason = excluded.reason,"
                    " updated_at = excluded.updated_at,"
                    " since = CASE WHEN transport_state.state = 'down' THEN transport_state.since"
                    " ELSE excluded.since END, state = 'down'",
                    (kind, reason, t, t),
                )

    def read_transport(self, kind: str) -> dict[str, Any] | None:
        with self._db() as conn:
            row = conn.execute(
                "SELECT state, reason, since, updated_at FROM transport_state WHERE kind = %s", (kind,)
            ).fetchone()
        if row is None:
            return None
        return {"state": row[0], "reason": row[1], "since": _iso(row[2]), "updated_at": _iso(row[3])}

    # --- what the tree-head keeper reads -------------------------------------------------------

    def log_size(self, log: str) -> int:
        table = _TABLES[log][0]
        with self._db() as conn:
            row = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608 - fixed names
        return int(row[0]) if row is not None else 0

    def log_chain_at(self, log: str, n: int) -> bytes | None:
        if n == 0:
            return GENESIS
        table, id_col = _TABLES[log]
        with self._db() as conn:
            row = conn.execute(
                f"SELECT leaf_hash, prev_chain_hash FROM {table} WHERE {id_col} = %s",  # noqa: S608
                (n,),
            ).fetchone()
        if row is None or not isinstance(row[0], bytes) or not isinstance(row[1], bytes):
            return None
        return chain_hash(row[1], row[0])

    def heads_began(self, log: str) -> str | None:
        with self._db() as conn:
            row = conn.execute(
                "SELECT adopted_at FROM log_chain WHERE log = %s", (f"{log}:heads",)
            ).fetchone()
        return str(row[0]) if row is not None else None

    def mark_heads_began(self, log: str, at: str) -> None:
        with self._db() as conn:
            conn.execute(
                "INSERT INTO log_chain (log, adopted_rows, adopted_at) VALUES (%s, 0, %s)"
                " ON CONFLICT (log) DO NOTHING",
                (f"{log}:heads", at),
            )

    # --- audit ledger --------------------------------------------------------------------------

    def audit_append_item(self, item: Item, *, now: float | None = None) -> str:
        ledger, data = audit_log.entry_of(item.idempotency_key, item.payload)
        t = time.time() if now is None else now
        with self._db() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_AUDIT,))
            digest = _audit_append(cur, ledger, item.idempotency_key, data)
            _mark_delivered(cur, [(item, t)])
        return digest

    def audit_rows(self, after: int = 0) -> Iterator[StoredRow]:
        last = after
        while True:
            with self._db() as conn:
                batch = conn.execute(
                    _AUDIT_SELECT + " WHERE seq > %s ORDER BY seq LIMIT 10000", (last,)
                ).fetchall()
            if not batch:
                return
            for r in batch:
                yield audit_log._stored(r)
            last = int(batch[-1][0])

    def audit_verify(
        self, heads: Sequence[KnownHead] = (), head_findings: Sequence[Any] = ()
    ) -> VerifyReport:
        return audit_log.verify_rows(self.audit_rows(), heads, head_findings)

    # --- deployments ---------------------------------------------------------------------------

    def record_deployment(self, doc: Mapping[str, Any], *, process: str | None = None) -> int:
        values = _deployment_values(self.env, doc, process or self.process)
        with self._db() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO deployments (env, kind, enforcer_hash, generation_receipt_hash, receipt_hash,"
                " process, recorded_at, doc) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                values,
            ).fetchone()
            assert row is not None
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(row[0])))
        return int(row[0])

    def deployments(self, after: int = 0) -> list[dict[str, Any]]:
        with self._db() as conn:
            rows = conn.execute(_DEPLOY_SELECT + " WHERE id > %s ORDER BY id", (after,)).fetchall()
        return [deployment_row(r) for r in rows]

    def deployment_version(self) -> int:
        with self._db() as conn:
            row = conn.execute("SELECT MAX(id) FROM deployments").fetchone()
        return int(row[0]) if row is not None and row[0] is not None else 0

    def wait_for_deployment(self, after: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                while True:
                    row = conn.execute("SELECT MAX(id) FROM deployments").fetchone()
                    newest = int(row[0]) if row is not None and row[0] is not None else 0
                    left = deadline - time.monotonic()
                    if newest > after or left <= 0:
                        return newest
                    # woken by the NOTIFY; the poll (at most a second apart) is the fallback
                    for _ in conn.notifies(timeout=min(left, 1.0), stop_after=1):
                        pass
        except psycopg.OperationalError as exc:
            raise _unavailable(exc, self.where, self.url) from None

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
        with self._db() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_SHADOW,))
            last = conn.execute(_SHADOW_SELECT + " ORDER BY id DESC LIMIT 1").fetchone()
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
            conn.execute(
                "INSERT INTO shadow (id, recorded_at, env, decision_id, transaction_id, enforcer_hash,"
                " shadow_enforcer_hash, outcome, shadow_outcome, detail_json, leaf_hash, prev_chain_hash)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
        # records and hashes before the lock (again only when another writer appended)
        assumed = self._shadow_tail
        chained = chain_shadow(values, *assumed) if assumed is not None else None
        with self._db() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_SHADOW,))
            tail = _tail_of(conn.execute(_SHADOW_SELECT + " ORDER BY id DESC LIMIT 1").fetchone())
            if chained is None or tail != assumed:
                chained = chain_shadow(values, *tail)
            params, appended, new_tail = chained
            if params:
                with conn.cursor() as cur:
                    cur.executemany(_pg(_SHADOW_INSERT), params)
            if add:
                assert session is not None and counts is not None
                conn.execute(_pg(_SESSION_COUNTS), count_values(session, counts))
        self._shadow_tail = new_tail
        return appended

    def begin_shadow_session(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        values = session_values(doc, self.env)
        with self._db() as conn, conn.transaction():
            conn.execute(_pg(_SESSION_INSERT), values)
            conn.execute(
                "UPDATE shadow_sessions SET processes = processes + 1 WHERE session = %s", (values[0],)
            )
            row = conn.execute(_pg(_SESSION_SELECT + " WHERE session = ?"), (values[0],)).fetchone()
            conn.execute("SELECT pg_notify(%s, %s)", (SHADOW_CHANNEL, values[0]))
        assert row is not None
        return session_row(row)

    def end_shadow_session(self, session: str, *, ended_at: str, reason: str) -> bool:
        with self._db() as conn, conn.transaction():
            cur = conn.execute(
                "UPDATE shadow_sessions SET ended_at = %s, end_reason = %s"
                " WHERE session = %s AND ended_at IS NULL",
                (ended_at, reason, session),
            )
            if cur.rowcount == 1:
                conn.execute("SELECT pg_notify(%s, %s)", (SHADOW_CHANNEL, session))
                return True
            row = conn.execute("SELECT 1 FROM shadow_sessions WHERE session = %s", (session,)).fetchone()
        return row is None

    def finish_shadow_session(self, session: str, receipt_hash: str) -> None:
        with self._db() as conn:
            conn.execute(
                "UPDATE shadow_sessions SET end_receipt_hash = %s WHERE session = %s", (receipt_hash, session)
            )

    def release_shadow_session(self, session: str) -> None:
        with self._db() as conn:
            conn.execute(
                "UPDATE shadow_sessions SET processes = processes - 1 WHERE session = %s AND processes > 0",
                (session,),
            )

    def _session_query(self, conn: Any, where: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        row = conn.execute(_pg(_SESSION_SELECT + where), params).fetchone()
        return session_row(row) if row is not None else None

    def shadow_session(self, session: str | None = None) -> dict[str, Any] | None:
        with self._db() as conn:
            if session is not None:
                return self._session_query(conn, " WHERE session = ?", (session,))
            return self._session_query(
                conn, " WHERE env = ? ORDER BY started_at DESC, session DESC LIMIT 1", (self.env,)
            )

    _OPEN = " WHERE env = ? AND ended_at IS NULL ORDER BY started_at DESC, session DESC LIMIT 1"

    def open_shadow_session(self) -> dict[str, Any] | None:
        with self._db() as conn:
            return self._session_query(conn, self._OPEN, (self.env,))

    def wait_for_shadow(self, current: str | None, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"LISTEN {SHADOW_CHANNEL}")
                while True:
                    row = self._session_query(conn, self._OPEN, (self.env,))
                    left = deadline - time.monotonic()
                    if (row["session"] if row is not None else None) != current or left <= 0:
                        return row
                    # woken by the NOTIFY; the poll (at most a second apart) is the fallback
                    for _ in conn.notifies(timeout=min(left, 1.0), stop_after=1):
                        pass
        except psycopg.OperationalError as exc:
            raise _unavailable(exc, self.where, self.url) from None

    def shadow_session_rows(self, session: str) -> Iterator[tuple[Any, ...]]:
        with self._db() as conn, conn.transaction(), conn.cursor(name="shadow_report") as cur:
            cur.execute(_pg(_SESSION_ROWS.format(session=_PG_SESSION)), (session,))
            for r in cur:
                yield tuple(r)

    def shadow_flips(self, session: str) -> dict[str, int]:
        with self._db() as conn:
            rows = conn.execute(_pg(_SESSION_FLIPS.format(session=_PG_SESSION)), (session,)).fetchall()
        return {f"{a}→{b}": int(n) for a, b, n in rows}

    def shadow_rows(self, after: int = 0) -> list[dict[str, Any]]:
        with self._db() as conn:
            rows = conn.execute(_SHADOW_SELECT + " WHERE id > %s ORDER BY id", (after,)).fetchall()
        return [shadow_row(r) for r in rows]

    def shadow_log_rows(self, after: int = 0) -> Iterator[LogRow]:
        with self._db() as conn:
            rows = conn.execute(_SHADOW_SELECT + " WHERE id > %s ORDER BY id", (after,)).fetchall()
        for r in rows:
            yield shadow_log_row(r)

    # --- tokens: shared by every daemon of the environment ------------------------------------------

    def token_entries(self) -> list[dict[str, Any]]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT token_hash, roles, label, local_env, created_at FROM tokens"
                " ORDER BY created_at, token_hash"
            ).fetchall()
        out = []
        for digest, roles, label, local_env, created in rows:
            entry: dict[str, Any] = {
                "sha256": digest,
                "roles": json.loads(roles),
                "label": label,
                "created": created,
            }
            if local_env is not None:
                entry["local_env"] = local_env
            out.append(entry)
        return out

    def put_token(self, entry: Mapping[str, Any]) -> None:
        with self._db() as conn:
            conn.execute(
                "INSERT INTO tokens (token_hash, roles, label, local_env, created_at)"
                " VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (token_hash) DO UPDATE SET roles = excluded.roles, label = excluded.label",
                (
                    str(entry["sha256"]),
                    json.dumps(sorted(str(r) for r in entry.get("roles", []))),
                    str(entry.get("label", "")),
                    entry.get("local_env"),
                    str(entry.get("created", "")),
                ),
            )

    def delete_token(self, sha256: str) -> bool:
        with self._db() as conn:
            cur = conn.execute("DELETE FROM tokens WHERE token_hash = %s", (sha256,))
            return bool(cur.rowcount)

    # --- the database --------------------------------------------------------------------------

    def schema_version(self) -> int:
        with self._db() as conn:
            return check_postgres(conn, self.where)

    def close(self) -> None:
        self.pool.close()


# --- statements shared by the storage and its decision writer ---------------------------------------


def _outbox_rows(
    decision_id: int, decision: Mapping[str, Any], tx: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    t = time.time()
    return [
        (decision_id, kind, key, outbox.canonical_text(payload), t, t)
        for kind, key, payload in outbox.items_for_decision(decision_id, decision, tx)
    ]


def _enqueue(conn: Any, decision_id: int, decision: Mapping[str, Any], tx: Mapping[str, Any]) -> int:
    rows = _outbox_rows(decision_id, decision, tx)
    if not rows:
        return 0
    with conn.cursor() as cur:
        cur.executemany(_ENQUEUE, rows)
        return int(cur.rowcount)


class _Enqueue:
    """The outbox writer of one decision: called like any extra writer, or, in the decision
    writer's group, asked for its rows so a whole group's items go in one statement batch."""

    __slots__ = ("decision", "tx")

    def __init__(self, decision: Mapping[str, Any], tx: Mapping[str, Any]) -> None:
        self.decision = decision
        self.tx = tx

    def __call__(self, conn: Any, decision_id: int) -> None:
        _enqueue(conn, decision_id, self.decision, self.tx)

    def rows(self, decision_id: int) -> list[tuple[Any, ...]]:
        return _outbox_rows(decision_id, self.decision, self.tx)


def _mark_delivered(cur: Any, delivered: Sequence[tuple[Item, float]]) -> None:
    cur.executemany(
        "UPDATE outbox SET state = 'delivered', delivered_at = %s, last_error = NULL WHERE id = %s",
        [(t, item.id) for item, t in delivered],
    )
    cur.executemany(
        "INSERT INTO outbox_delivered (idempotency_key, kind, delivered_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (idempotency_key) DO NOTHING",
        [(item.idempotency_key, item.kind, t) for item, t in delivered],
    )


def _audit_append(cur: Any, ledger: str, key: str, data: bytes) -> str:
    """:func:`audit_log.append_canonical` in PostgreSQL, under the caller's audit lock."""
    row = cur.execute("SELECT entry_hash FROM audit_ledger WHERE idempotency_key = %s", (key,)).fetchone()
    if row is not None:
        return str(row[0])
    last = cur.execute(
        "SELECT entry_hash FROM audit_ledger WHERE ledger = %s ORDER BY seq DESC LIMIT 1", (ledger,)
    ).fetchone()
    prev = str(last[0]) if last else audit_log.GENESIS
    digest = audit_log.entry_hash(prev, data)
    tail_row = cur.execute(_AUDIT_SELECT + " ORDER BY seq DESC LIMIT 1").fetchone()
    if tail_row is None:
        tail: tuple[int, bytes] = (0, GENESIS)
    else:
        stored = audit_log._stored(tail_row).row
        leaf = stored.leaf or hashlib.sha256(b"\x00" + stored.record).digest()
        tail = (stored.id, chain_hash(stored.prev or GENESIS, leaf))
    values = (tail[0] + 1, ledger, key, data.decode("utf-8"), prev, digest, time.time())
    leaf = hashlib.sha256(b"\x00" + audit_log._record(values)).digest()
    cur.execute(
        "INSERT INTO audit_ledger (seq, ledger, idempotency_key, entry, prev_hash, entry_hash, appended_at,"
        " leaf_hash, prev_chain_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (*values, leaf, tail[1]),
    )
    return digest


# --- the decision writer -----------------------------------------------------------------------------


class PgDecisionWriter:
    """Group commit of decisions into PostgreSQL from a writer thread (as
    :class:`~finops_fabric.daemon.decision_log.DecisionWriter` does into SQLite). Each group is
    one transaction: the decision log's advisory lock, the log's last row read (rows other
    writers appended are followed), the rows chained to it, the extra writers' rows (the
    outbox), COMMIT without waiting for the flush (the lock is released at once), then a
    synchronous commit of its own that returns once the WAL is flushed past the group. A caller
    is told only after that (durable, as with ``synchronous_commit=on``; other connections may
    read the group a moment before it is flushed, as with the SQLite writer). When a group
    fails for one decision's sake, each of its decisions is retried alone; a lost connection
    fails the group with ``storage.unavailable`` and the next group reconnects."""

    def __init__(self, storage: PostgresStorage, *, max_batch: int = 256) -> None:
        self.storage = storage
        self.path = storage.where
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._conn: psycopg.Connection[Any] | None = None
        conn = self._connection()
        self._tail_lock = threading.Lock()
        try:
            last = conn.execute(_SELECT + " ORDER BY id DESC LIMIT 1").fetchone()
        except psycopg.OperationalError as exc:
            raise _unavailable(exc, self.path, storage.url) from None
        if last is None:
            self._tail = _Tail(0, GENESIS)
        else:
            stored = decision_log._log_row(last)
            leaf = stored.leaf or decision_log._leaf_of(stored)
            self._tail = _Tail(stored.id, chain_hash(stored.prev or GENESIS, leaf))
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._closed = False
        self._thread.start()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.connect(self.storage.url, autocommit=True, connect_timeout=10)
                check_postgres(conn, self.storage.where)  # migrated by a newer daemon meanwhile?
            except psycopg.OperationalError as exc:
                raise _unavailable(exc, self.storage.where, self.storage.url) from None
            self._conn = conn
        return self._conn

    def submit(self, entry: LoggedDecision, writers: Sequence[ExtraWriter], done: Any) -> None:
        if self._closed:
            done(None, RuntimeError("the decision log is closed"))
            return
        self._queue.put(_Job(entry, writers, done))

    async def write(self, entry: LoggedDecision, writers: Sequence[ExtraWriter] = ()) -> int:
        if self._closed:
            raise RuntimeError("the decision log is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._queue.put(_Job(entry, writers, loop=loop, future=fut))
        return await fut

    def write_sync(self, entry: LoggedDecision, writers: Sequence[ExtraWriter] = ()) -> int:
        ev = threading.Event()
        out: list[Any] = [None, None]

        def done(row_id: int | None, exc: BaseException | None) -> None:
            out[0], out[1] = row_id, exc
            ev.set()

        self.submit(entry, writers, done)
        ev.wait()
        if out[1] is not None:
            raise out[1]
        return int(out[0])

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            decision_log.DecisionWriter._tell(batch, self._commit(batch))
            if stop:
                break
        if self._conn is not None:
            self._conn.close()

    def _commit(self, batch: list[_Job]) -> list[tuple[int | None, BaseException | None]]:
        try:
            return self._commit_group(batch)
        except (psycopg.OperationalError, StorageUnavailable, SchemaTooNew) as exc:
            if self._conn is not None:
                self._conn.close()
            err = exc if isinstance(exc, FabricError) else _unavailable(exc, self.path, self.storage.url)
            return [(None, err)] * len(batch)
        except Exception as exc:
            try:  # a schema a newer daemon migrated to refuses this one's rows: say so
                if self._conn is not None:
                    check_postgres(self._conn, self.path)
            except SchemaTooNew as newer:
                return [(None, newer)] * len(batch)
            except psycopg.Error:
                pass
            if len(batch) == 1:
                return [(None, exc)]
        out: list[tuple[int | None, BaseException | None]] = []
        for job in batch:  # one decision failed the group: each alone
            try:
                out.extend(self._commit_group([job]))
            except Exception as exc:
                out.append((None, exc))
        return out

    def _commit_group(self, batch: list[_Job]) -> list[tuple[int | None, BaseException | None]]:
        conn = self._connection()
        leaves: list[bytes] = []
        ids: list[int] = []
        # Pipeline mode: BEGIN, the lock and the read of the log's last row go in one round trip,
        # the rows and COMMIT in another. The COMMIT does not wait for the WAL flush (the lock is
        # released as soon as the rows are in: the log's lock is never held through a flush, so
        # several processes' groups interleave); the flush is awaited right after, outside the
        # lock, by a commit that does wait (below). Nobody is told before that.
        with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit = off")
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_DECISIONS,))
            tail = self._follow(conn)
            last_id, chain = tail.last_id, tail.chain
            rows = []
            for job in batch:
                row_id = last_id + 1
                leaf = job.entry.leaf(row_id)
                rows.append((row_id, *job.entry.params(), leaf, chain, job.entry.process))
                leaves.append(leaf)
                ids.append(row_id)
                last_id, chain = row_id, chain_hash(chain, leaf)
            cur.executemany(_INSERT, rows)
            queued: list[tuple[Any, ...]] = []
            for job, row_id in zip(batch, ids, strict=True):
                for writer in job.writers:
                    if isinstance(writer, _Enqueue):  # the group's outbox rows in one batch
                        queued.extend(writer.rows(row_id))
                    else:
                        writer(conn, row_id)
            if queued:
                cur.executemany(_ENQUEUE, queued)
        # The durability barrier: a transaction with an id commits synchronously, so it returns
        # only once the WAL is flushed up to its commit record, which comes after the group's:
        # every row of the group (and every row before it, whoever wrote it) is on disk. Only
        # then does the chain head (and the tree a head keeper signs) move on, and are the
        # callers told. A server that crashes in between loses the group with everything after
        # it in the WAL, so the log loses a suffix, never a row in the middle of the chain.
        conn.execute("SELECT txid_current()")
        with self._tail_lock:
            tail.last_id, tail.chain = last_id, chain
            if tail.tree is not None:
                tail.tree.extend(leaves)
        return [(row_id, None) for row_id in ids]

    def _follow(self, conn: psycopg.Connection[Any]) -> _Tail:
        """The chain head, after the rows other writers appended since this one last wrote
        (read inside the caller's transaction, under the log's lock)."""
        tail = self._tail
        row = conn.execute("SELECT id FROM decisions ORDER BY id DESC LIMIT 1").fetchone()
        last = int(row[0]) if row is not None else 0
        if last == tail.last_id:
            return tail
        if last < tail.last_id:
            raise CheckFailed(
                f"the decision log {self.path} ends at decision {last}, but this writer logged up to "
                f"decision {tail.last_id}: rows were deleted while the daemon ran",
                code="decisions.truncated",
            )
        # Under the log's lock: the other writers' rows by their stored leaf hashes and links (not
        # re-hashed from their records: verification does that, at boot and in `mu decisions
        # verify`), so following them costs little of the time the lock is held.
        rows = conn.execute(
            "SELECT id, leaf_hash, prev_chain_hash FROM decisions WHERE id > %s ORDER BY id", (tail.last_id,)
        ).fetchall()
        with self._tail_lock:
            decision_log.follow_links(tail, rows, self.path)
        return tail

    def follow_tree(self, tree: CompactRange) -> None:
        with self._tail_lock:
            self._tail.tree = tree

    def head(self) -> tuple[int, bytes, CompactRange | None]:
        with self._tail_lock:
            tail = self._tail
            return tail.last_id, tail.chain, tail.tree.copy() if tail.tree is not None else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
