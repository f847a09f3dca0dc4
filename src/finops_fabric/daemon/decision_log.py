"""The daemon's append-only decision log: SQLite (WAL) in ``<store>/daemon-<env>.db``.

Every decision is one row, written in its own transaction (or inside a group commit whose
COMMIT happens before any of its responses is sent), with the transaction id, the exact
transaction JSON, the outcome, the rules that fired, the enforcer hash and the generation
receipt hash that made it, and a timestamp. UPDATE and DELETE are refused by triggers.

Other parts of the daemon (the outbox) add rows of their own in the SAME SQLite transaction
as the decision: :func:`commit_decision` (and the group-commit :class:`DecisionWriter`) call
each ``extra_writers`` callable with the open connection and the new decision's row id, so a
decision and its outbox entries are durable together or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from finops_fabric.errors import InputError, Location
from finops_fabric.files import private_file

__all__ = [
    "SCHEMA",
    "DecisionWriter",
    "ExtraWriter",
    "LoggedDecision",
    "commit_decision",
    "connect",
    "db_path",
    "dumps_exact",
    "query",
    "record",
    "transaction_json",
]

#: Called inside the decision's SQLite transaction with the connection and the decision row id.
ExtraWriter = Callable[[sqlite3.Connection, int], None]

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    decided_at              TEXT NOT NULL,
    env                     TEXT NOT NULL,
    transaction_id          TEXT,
    transaction_json        TEXT NOT NULL,
    outcome                 TEXT NOT NULL,
    fired                   TEXT NOT NULL,
    decision_json           TEXT NOT NULL,
    enforcer_hash           TEXT NOT NULL,
    generation_receipt_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_tx ON decisions (transaction_id);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions (decided_at);
CREATE INDEX IF NOT EXISTS decisions_outcome ON decisions (outcome, id);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
"""

_INSERT = (
    "INSERT INTO decisions (decided_at, env, transaction_id, transaction_json, outcome, fired,"
    " decision_json, enforcer_hash, generation_receipt_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def db_path(home: Path, env: str) -> Path:
    return Path(home) / f"daemon-{env}.db"


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (and create) the decision log; autocommit mode, transactions are explicit."""
    try:
        if readonly:
            if not path.is_file():
                raise InputError(
                    f"no decision log at {path}: no daemon has run for this environment in this store",
                    code="decisions.missing",
                    location=Location(file=str(path)),
                )
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
            return conn
        private_file(path)  # 0600, and so its -wal and -shm (SQLite gives them the file's mode)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        return conn
    except (sqlite3.Error, OSError) as exc:
        raise InputError(
            f"cannot open the decision log {path}: {exc}",
            code="decisions.unreadable",
            location=Location(file=str(path)),
        ) from exc


_second: tuple[int, str] = (-1, "")


def _now() -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds); the formatted second is cached."""
    global _second
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second  # one tuple, read once: safe across threads
    if cached[0] != sec:
        cached = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{cached[1]}.{us:06d}Z"


def dumps_exact(obj: Any) -> str:
    """Canonical JSON (sorted keys, no whitespace) that writes a ``Decimal`` exactly as parsed,
    never through a binary float."""
    if isinstance(obj, dict):
        items = sorted(obj.items())
        return (
            "{"
            + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + dumps_exact(v) for k, v in items)
            + "}"
        )
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps_exact(v) for v in obj) + "]"
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"{obj} is not a finite number")
        return str(obj)
    return json.dumps(obj, ensure_ascii=False)


def _refuse(obj: Any) -> Any:
    raise TypeError(f"{type(obj).__name__} is written by dumps_exact")


def transaction_json(tx: Mapping[str, Any]) -> str:
    """:func:`dumps_exact` of a transaction, through the C encoder when no ``Decimal`` (no JSON
    number with a fraction or exponent) is in it: for the str-keyed dicts, lists, strings, ints,
    bools, ``None`` and floats a JSON parser produces, both write the same text."""
    try:
        return json.dumps(tx, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_refuse)
    except TypeError:
        return dumps_exact(dict(tx))


@dataclass(frozen=True)
class LoggedDecision:
    """What is written for one decision (computed off the database lock)."""

    env: str
    transaction_id: str | None
    transaction_json: str
    outcome: str
    fired: str
    decision_json: str
    enforcer_hash: str
    generation_receipt_hash: str
    decided_at: str

    @classmethod
    def of(
        cls,
        env: str,
        tx: Mapping[str, Any],
        decision: Mapping[str, Any],
        enforcer_hash: str,
        receipt_hash: str,
    ) -> LoggedDecision:
        tx_id = tx.get("id")
        return cls(
            env=env,
            transaction_id=None if tx_id is None else str(tx_id),
            transaction_json=transaction_json(tx),
            outcome=str(decision["decision"]),
            fired=json.dumps([f["rule"] for f in decision.get("fired", [])]),
            decision_json=json.dumps(decision, sort_keys=True, separators=(",", ":"), default=str),
            enforcer_hash=enforcer_hash,
            generation_receipt_hash=receipt_hash,
            decided_at=_now(),
        )

    def params(self) -> tuple[object, ...]:
        return (
            self.decided_at,
            self.env,
            self.transaction_id,
            self.transaction_json,
            self.outcome,
            self.fired,
            self.decision_json,
            self.enforcer_hash,
            self.generation_receipt_hash,
        )


def record(conn: sqlite3.Connection, entry: LoggedDecision, extra_writers: Sequence[ExtraWriter] = ()) -> int:
    """Insert one decision inside the caller's open transaction; run ``extra_writers`` with
    its row id; return the row id."""
    cur = conn.execute(_INSERT, entry.params())
    row_id = cur.lastrowid
    assert row_id is not None
    for writer in extra_writers:
        writer(conn, row_id)
    return row_id


def commit_decision(
    db: sqlite3.Connection, entry: LoggedDecision, extra_writers: Sequence[ExtraWriter] = ()
) -> int:
    """One decision (and the extra writers' rows) in ONE SQLite transaction: BEGIN, INSERT,
    writers, COMMIT. Rolls everything back if any part fails."""
    db.execute("BEGIN IMMEDIATE")
    try:
        row_id = record(db, entry, extra_writers)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return row_id


# --- group commit -----------------------------------------------------------------------------


Done = Callable[[int | None, BaseException | None], None]


class _Job:
    """One queued decision: told its row id (or error) through ``done``, or, for
    :meth:`DecisionWriter.write`, through ``future`` on ``loop``."""

    __slots__ = ("done", "entry", "future", "loop", "writers")

    def __init__(
        self,
        entry: LoggedDecision,
        writers: Sequence[ExtraWriter],
        done: Done | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[int] | None = None,
    ) -> None:
        self.entry = entry
        self.writers = writers
        self.done = done
        self.loop = loop
        self.future = future


class _WalSync:
    """fsync of a database's WAL file through a descriptor of our own, reopened (and its
    directory synced) whenever the file at the path is not the one we hold."""

    def __init__(self, db: Path) -> None:
        self.path = Path(f"{db}-wal")
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None

    def __call__(self) -> None:
        st = os.stat(self.path)
        if self._fd is None or self._ino != (st.st_dev, st.st_ino):
            self.close()
            fd = os.open(self.path, os.O_RDONLY)
            fst = os.fstat(fd)
            self._fd, self._ino = fd, (fst.st_dev, fst.st_ino)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the WAL file's name is durable too
            finally:
                os.close(dir_fd)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._ino = None


class DecisionWriter:
    """A writer thread that commits queued decisions in groups: every decision in a group is
    inside one COMMIT (each in its own SAVEPOINT with its extra writers, so one failing decision
    does not take the others with it); the caller is told only after the group is durable, so
    a response is never sent for a decision that a crash or a power cut could undo.

    Durability: the connection runs ``synchronous=NORMAL`` (in WAL mode a COMMIT then writes the
    WAL without an fsync) and the writer fsyncs the WAL file itself right after the COMMIT,
    before telling anyone: an answered decision is on disk exactly as with ``synchronous=FULL``,
    but SQLite's write lock is no longer held through the ~1 ms fsync, so the outbox workers'
    acknowledgements are not queued behind it (a checkpoint, by any connection of ``NORMAL`` or
    ``FULL``, syncs the WAL before copying it, so frames it moves are durable as well). What
    differs from ``FULL``: other connections can read a group between its COMMIT and its fsync;
    after a power cut in that window (not a crash of the process: the page cache survives that)
    the group is gone, though a worker may already have delivered one of its side effects. No
    client was told of such a decision.

    The waiters of :meth:`write` on one event loop are woken together, once per group (one
    ``call_soon_threadsafe``), not once per decision."""

    def __init__(self, path: Path, *, max_batch: int = 256) -> None:
        self.path = path
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._conn = connect(path)
        self._conn.execute("PRAGMA synchronous=NORMAL")  # the WAL is fsynced by _sync_wal
        self._sync_wal = _WalSync(path)
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, entry: LoggedDecision, writers: Sequence[ExtraWriter], done: Done) -> None:
        if self._closed:
            done(None, RuntimeError("the decision log is closed"))
            return
        self._queue.put(_Job(entry, writers, done))

    async def write(self, entry: LoggedDecision, writers: Sequence[ExtraWriter] = ()) -> int:
        """Queue ``entry`` and wait (without blocking the event loop) until it is committed."""
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
        conn = self._conn
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
            self._tell(batch, self._commit(conn, batch))
            if stop:
                break
        conn.close()
        self._sync_wal.close()

    def _commit(
        self, conn: sqlite3.Connection, batch: list[_Job]
    ) -> list[tuple[int | None, BaseException | None]]:
        """Commit ``batch`` and fsync the WAL; each job's (row id, error). A failed fsync fails
        every job of the group (its rows may be in the log, but nobody is told they are durable)."""
        results: list[tuple[int | None, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT d")
                try:
                    results.append((record(conn, job.entry, job.writers), None))
                    conn.execute("RELEASE d")
                except Exception as exc:
                    conn.execute("ROLLBACK TO d")
                    conn.execute("RELEASE d")
                    results.append((None, exc))
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(None, exc)] * len(batch)
        try:
            self._sync_wal()
        except OSError as exc:
            return [(None, exc)] * len(batch)
        return results

    @staticmethod
    def _tell(batch: list[_Job], results: list[tuple[int | None, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | None, Any]]] = {}
        for job, (row_id, err) in zip(batch, results, strict=True):
            if job.done is not None:
                job.done(row_id, err)
            elif job.loop is not None and job.future is not None:
                by_loop.setdefault(job.loop, []).append((job.future, row_id, err))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile: nobody waits
                loop.call_soon_threadsafe(_settle_all, settled)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)


def _settle_all(settled: list[tuple[asyncio.Future[int], int | None, BaseException | None]]) -> None:
    for fut, row_id, exc in settled:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            assert row_id is not None
            fut.set_result(row_id)


# --- queries ----------------------------------------------------------------------------------


def _row(r: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    (rid, at, env, tx_id, tx_json, outcome, fired, decision_json, enforcer_hash, receipt_hash) = tuple(r)
    return {
        "id": rid,
        "decided_at": at,
        "env": env,
        "transaction_id": tx_id,
        "transaction": json.loads(tx_json, parse_float=Decimal),
        "outcome": outcome,
        "fired": json.loads(fired),
        "decision": json.loads(decision_json),
        "enforcer_hash": enforcer_hash,
        "generation_receipt_hash": receipt_hash,
    }


def query(
    conn: sqlite3.Connection,
    *,
    decision_id: int | None = None,
    transaction_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    outcome: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Decisions in log order, filtered; ``since``/``until`` compare ISO 8601 UTC timestamps
    (``decided_at >= since`` and ``decided_at < until``)."""
    where: list[str] = []
    params: list[object] = []
    if decision_id is not None:
        where.append("id = ?")
        params.append(decision_id)
    if transaction_id is not None:
        where.append("transaction_id = ?")
        params.append(transaction_id)
    if since is not None:
        where.append("decided_at >= ?")
        params.append(since)
    if until is not None:
        where.append("decided_at < ?")
        params.append(until)
    if outcome is not None:
        where.append("outcome = ?")
        params.append(outcome)
    sql = (
        "SELECT id, decided_at, env, transaction_id, transaction_json, outcome, fired, decision_json,"
        " enforcer_hash, generation_receipt_hash FROM decisions"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    if limit is not None:
        # only fixed SQL text is composed here; every value is a bound parameter
        newest = sql.replace(" ORDER BY id", " ORDER BY id DESC")
        sql = f"SELECT * FROM ({newest} LIMIT ?) ORDER BY id"  # noqa: S608
        params.append(limit)
    return [_row(r) for r in conn.execute(sql, params).fetchall()]
