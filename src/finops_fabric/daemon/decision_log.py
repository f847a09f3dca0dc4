"""The daemon's append-only decision log: SQLite (WAL) in ``<store>/daemon-<env>.db``.

Every decision is one row, written in its own transaction (or inside a group commit whose
COMMIT happens before any of its responses is sent), with the transaction id, the exact
transaction JSON, the outcome, the rules that fired, the enforcer hash and the generation
receipt hash that made it, and a timestamp. UPDATE and DELETE are refused by triggers.

Each row is also a leaf of a hash chain and of an RFC 9162 Merkle tree
(:mod:`finops_fabric.transparency`): ``leaf_hash`` is the leaf hash of the RFC 8785 record of
every logged column, id included (:data:`COLUMNS`), ``prev_chain_hash`` the chain hash of the
row before. The writer assigns ids (one more than the last) and keeps the chain head in memory;
:func:`log_rows` gives the rows to :func:`~finops_fabric.transparency.verify_log`. A log written
before the chain existed is chained when first opened for writing, in one transaction, and the
upgrade is recorded in ``log_chain`` (how many rows existed then, and when).

Other parts of the daemon (the outbox) add rows of their own in the SAME SQLite transaction
as the decision: :func:`commit_decision` (and the group-commit :class:`DecisionWriter`) call
each ``extra_writers`` callable with the open connection and the new decision's row id, so a
decision and its outbox entries are durable together or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

from finops_fabric.errors import CheckFailed, FabricError, InputError, Location
from finops_fabric.files import private_file
from finops_fabric.transparency import GENESIS, CompactRange, LogRow, chain_hash, record_writer

__all__ = [
    "COLUMNS",
    "PROCESS_COLUMNS",
    "SCHEMA",
    "DecisionWriter",
    "ExtraWriter",
    "LoggedDecision",
    "adoption",
    "commit_decision",
    "connect",
    "db_path",
    "dumps_exact",
    "follow_links",
    "log_rows",
    "query",
    "record",
    "sync_wal",
    "transaction_json",
]

#: Called inside the decision's transaction with the connection (sqlite3 or psycopg) and the row id.
ExtraWriter = Callable[[Any, int], None]

#: Upgrades that chained rows written before the chain existed: which log, how many rows, when.
LOG_CHAIN_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_chain (
    log          TEXT PRIMARY KEY,
    adopted_rows INTEGER NOT NULL,
    adopted_at   TEXT NOT NULL
);
"""

_NO_UPDATE = """CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END"""

SCHEMA = (
    """
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
    generation_receipt_hash TEXT NOT NULL,
    leaf_hash               BLOB,
    prev_chain_hash         BLOB
);
CREATE INDEX IF NOT EXISTS decisions_tx ON decisions (transaction_id);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions (decided_at);
CREATE INDEX IF NOT EXISTS decisions_outcome ON decisions (outcome, id);
"""
    + _NO_UPDATE
    + """;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
"""
    + LOG_CHAIN_SCHEMA
)

#: Everything logged for a decision, in the order of the table; the leaf's record.
COLUMNS = (
    "id",
    "decided_at",
    "env",
    "transaction_id",
    "transaction_json",
    "outcome",
    "fired",
    "decision_json",
    "enforcer_hash",
    "generation_receipt_hash",
)
#: A row written with the daemon process that answered it: its record also holds ``process``
#: (rows without one keep the record of :data:`COLUMNS`, so logs written before still verify).
PROCESS_COLUMNS = (*COLUMNS, "process")
_SELECT = f"SELECT {', '.join(COLUMNS)}, leaf_hash, prev_chain_hash, process FROM decisions"  # noqa: S608
_SELECT_OLD = f"SELECT {', '.join(COLUMNS)}, leaf_hash, prev_chain_hash, NULL FROM decisions"  # noqa: S608
_INSERT = (
    f"INSERT INTO decisions ({', '.join(COLUMNS)}, leaf_hash, prev_chain_hash, process)"  # noqa: S608
    f" VALUES ({', '.join('?' * (len(COLUMNS) + 3))})"
)


def _select(conn: sqlite3.Connection) -> str:
    """The SELECT of every logged column (``NULL`` as ``process`` in a log not yet migrated)."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
    return _SELECT if "process" in columns else _SELECT_OLD


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
            from finops_fabric.storage.migrations import check_sqlite

            try:
                check_sqlite(conn, str(path))
            except BaseException:
                conn.close()
                raise
            return conn
        private_file(path)  # 0600, and so its -wal and -shm (SQLite gives them the file's mode)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        _upgrade(conn)
        conn.executescript(SCHEMA)
        from finops_fabric.storage.migrations import migrate_sqlite

        migrate_sqlite(conn)
        return conn
    except (sqlite3.Error, OSError) as exc:
        raise InputError(
            f"cannot open the decision log {path}: {exc}",
            code="decisions.unreadable",
            location=Location(file=str(path)),
        ) from exc


def _upgrade(conn: sqlite3.Connection) -> None:
    """Chain a log written before the chain existed: add the columns, compute every row's leaf
    and link in id order, record the upgrade in ``log_chain``; one transaction."""
    if not _unchained(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _unchained(conn):
            conn.execute("ALTER TABLE decisions ADD COLUMN leaf_hash BLOB")
            conn.execute("ALTER TABLE decisions ADD COLUMN prev_chain_hash BLOB")
            conn.execute("DROP TRIGGER IF EXISTS decisions_no_update")
            chain, rows, last = GENESIS, 0, -1
            while True:
                batch = conn.execute(
                    _SELECT_OLD + " WHERE id > ? ORDER BY id LIMIT 10000", (last,)
                ).fetchall()
                if not batch:
                    break
                for r in batch:
                    leaf = _leaf_of(_log_row(r))
                    conn.execute(
                        "UPDATE decisions SET leaf_hash = ?, prev_chain_hash = ? WHERE id = ?",
                        (leaf, chain, r[0]),
                    )
                    chain, rows, last = chain_hash(chain, leaf), rows + 1, r[0]
            conn.execute(_NO_UPDATE)
            conn.execute(LOG_CHAIN_SCHEMA.strip())
            conn.execute(
                "INSERT OR REPLACE INTO log_chain (log, adopted_rows, adopted_at) VALUES ('decisions', ?, ?)",
                (rows, _now()),
            )
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _unchained(conn: sqlite3.Connection) -> bool:
    """A decisions table without the chain columns."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
    return bool(columns) and "leaf_hash" not in columns


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
    #: The daemon process that answered (``host:pid`` or an instance id); part of the record.
    process: str | None = None

    @classmethod
    def of(
        cls,
        env: str,
        tx: Mapping[str, Any],
        decision: Mapping[str, Any],
        enforcer_hash: str,
        receipt_hash: str,
        process: str | None = None,
    ) -> LoggedDecision:
        tx_id = tx.get("id")
        entry = cls(
            env=env,
            transaction_id=None if tx_id is None else str(tx_id),
            transaction_json=transaction_json(tx),
            outcome=str(decision["decision"]),
            fired=json.dumps([f["rule"] for f in decision.get("fired", [])]),
            decision_json=json.dumps(decision, sort_keys=True, separators=(",", ":"), default=str),
            enforcer_hash=enforcer_hash,
            generation_receipt_hash=receipt_hash,
            decided_at=_now(),
            process=process,
        )
        entry._record_parts  # noqa: B018 - the record's bytes, written before the log's lock
        return entry

    def params(self) -> tuple[str | None, ...]:
        """The logged columns after ``id`` (:data:`COLUMNS`)."""
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

    @cached_property
    def _record_parts(self) -> tuple[Any, bytes]:
        """The leaf hash's state over the record's canonical bytes before its id, and the bytes
        after it (keys are sorted, so ``"id"`` sits between ``generation_receipt_hash`` and
        ``outcome``; ``,"id":0,`` occurs once, as a quote inside a JSON string is escaped)."""
        if self.process is None:
            data = _write_record((0, *self.params()))
        else:
            data = _write_record_process((0, *self.params(), self.process))
        head, sep, tail = data.partition(b',"id":0,')
        assert sep, "the record has an id"
        return hashlib.sha256(b"\x00" + head + b',"id":'), b"," + tail

    def leaf(self, row_id: int) -> bytes:
        """The leaf hash of this decision logged as ``row_id`` (:func:`record_leaf` of its row)."""
        head, tail = self._record_parts
        h = head.copy()
        h.update(str(row_id).encode("ascii") + tail)
        return h.digest()  # type: ignore[no-any-return]


def follow_links(tail: _Tail, rows: Sequence[Sequence[Any]], where: str) -> None:
    """Move ``tail`` (and its tree) over rows ``(id, leaf_hash, prev_chain_hash)`` other writers
    appended after it, checking that each follows the one before (its id and its link); a row
    that does not is refused (``decisions.chain_broken``): nothing is chained onto it."""
    for rid, leaf, prev in rows:
        leaf_b = bytes(leaf) if leaf is not None else b""
        if rid != tail.last_id + 1 or len(leaf_b) != 32 or prev is None or bytes(prev) != tail.chain:
            raise CheckFailed(
                f"decision {rid} of the decision log {where} does not follow decision {tail.last_id} "
                "(its id, leaf hash or link is not what the chain needs): nothing more is logged after it",
                code="decisions.chain_broken",
                hint="`mu decisions verify` names what changed",
            )
        tail.last_id, tail.chain = int(rid), chain_hash(tail.chain, leaf_b)
        if tail.tree is not None:
            tail.tree.append(leaf_b)


class _Tail:
    """The chain head: the last row's id and chain hash (and the Merkle tree's right edge, when
    a tree-head keeper follows the log)."""

    __slots__ = ("chain", "last_id", "tree")

    def __init__(self, last_id: int, chain: bytes, tree: CompactRange | None = None) -> None:
        self.last_id = last_id
        self.chain = chain
        self.tree = tree


def _read_tail(conn: sqlite3.Connection) -> _Tail:
    """The chain head as stored (the last row's chain hash, recomputed from its columns)."""
    row = conn.execute(_select(conn) + " ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return _Tail(0, GENESIS)
    stored = _log_row(row)
    return _Tail(stored.id, chain_hash(stored.prev or GENESIS, stored.leaf or _leaf_of(stored)))


def _insert(conn: sqlite3.Connection, entry: LoggedDecision, last_id: int, chain: bytes) -> tuple[int, bytes]:
    """Insert ``entry`` as the row after ``last_id`` (whose chain hash is ``chain``); (its id, its
    leaf hash)."""
    row_id = last_id + 1
    leaf = entry.leaf(row_id)
    conn.execute(_INSERT, (row_id, *entry.params(), leaf, chain, entry.process))
    return row_id, leaf


def record(conn: sqlite3.Connection, entry: LoggedDecision, extra_writers: Sequence[ExtraWriter] = ()) -> int:
    """Insert one decision inside the caller's open transaction, chained to the last row; run
    ``extra_writers`` with its row id; return the row id."""
    tail = _read_tail(conn)
    row_id, _leaf = _insert(conn, entry, tail.last_id, tail.chain)
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


def sync_wal(db: Path) -> None:
    """Make every transaction committed so far in ``db`` durable (fsync its WAL file), whatever
    ``synchronous`` its writers use; nothing to do without a WAL file."""
    wal = _WalSync(db)
    try:
        wal()
    except FileNotFoundError:
        pass
    finally:
        wal.close()


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
        self._tail = _read_tail(self._conn)
        self._tail_lock = threading.Lock()
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
        every job of the group (its rows may be in the log, but nobody is told they are durable).

        Each row is chained to the one before it from the chain head this writer keeps; the
        head (and the tree a head keeper signs) moves on only once the group is durable, so no
        signed head covers a row a power cut could undo (after a failed fsync the next group
        follows the committed rows from the log)."""
        results: list[tuple[int | None, BaseException | None]] = []
        leaves: list[bytes] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            tail = self._follow(conn)
            last_id, chain = tail.last_id, tail.chain
            for job in batch:
                conn.execute("SAVEPOINT d")
                try:
                    row_id, leaf = _insert(conn, job.entry, last_id, chain)
                    for writer in job.writers:
                        writer(conn, row_id)
                    conn.execute("RELEASE d")
                except Exception as exc:
                    conn.execute("ROLLBACK TO d")
                    conn.execute("RELEASE d")
                    results.append((None, exc))
                    continue
                results.append((row_id, None))
                last_id, chain = row_id, chain_hash(chain, leaf)
                leaves.append(leaf)
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(None, exc)] * len(batch)
        try:
            self._sync_wal()
        except OSError as exc:
            return [(None, exc)] * len(batch)
        with self._tail_lock:
            tail.last_id, tail.chain = last_id, chain
            if tail.tree is not None:
                tail.tree.extend(leaves)
        return results

    def _follow(self, conn: sqlite3.Connection) -> _Tail:
        """The chain head, checked against the log's last row (one index lookup per group). Rows
        another writer appended meanwhile are followed (their leaves recomputed); a log that
        lost rows behind this writer's back is not written to."""
        tail = self._tail
        row = conn.execute("SELECT id FROM decisions ORDER BY id DESC LIMIT 1").fetchone()
        last = int(row[0]) if row is not None else 0
        if last == tail.last_id:
            return tail
        if last < tail.last_id:
            raise FabricError(
                f"the decision log {self.path} ends at decision {last}, but this writer logged up to "
                f"decision {tail.last_id}: rows were deleted while the daemon ran",
                code="decisions.truncated",
            )
        # Inside the write transaction: the other writers' rows by their stored leaf hashes and
        # links (not re-hashed from their records: verification does that, at boot and in `mu
        # decisions verify`), so following them costs little of the time the lock is held.
        rows = conn.execute(
            "SELECT id, leaf_hash, prev_chain_hash FROM decisions WHERE id > ? ORDER BY id", (tail.last_id,)
        ).fetchall()
        with self._tail_lock:
            follow_links(tail, rows, str(self.path))
        return tail

    def follow_tree(self, tree: CompactRange) -> None:
        """Keep ``tree`` (the Merkle tree's right edge over every row so far) up to date with
        each committed group: a tree-head keeper signs heads from :meth:`head`."""
        with self._tail_lock:
            self._tail.tree = tree

    def head(self) -> tuple[int, bytes, CompactRange | None]:
        """(last id, chain hash, a copy of the tree's right edge) as of the last commit."""
        with self._tail_lock:
            tail = self._tail
            return tail.last_id, tail.chain, tail.tree.copy() if tail.tree is not None else None

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
    (rid, at, env, tx_id, tx_json, outcome, fired, decision_json, enforcer_hash, receipt_hash, process) = (
        tuple(r)
    )
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
        "process": process,
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
    process = (
        "process" if "process" in {r[1] for r in conn.execute("PRAGMA table_info(decisions)")} else "NULL"
    )
    # only fixed SQL text is composed here (a column name or NULL); values are bound parameters
    sql = (
        "SELECT id, decided_at, env, transaction_id, transaction_json, outcome, fired, decision_json,"  # noqa: S608
        f" enforcer_hash, generation_receipt_hash, {process} FROM decisions"
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


# --- the chain, for verification -------------------------------------------------------------


_write_record = record_writer(COLUMNS)
_write_record_process = record_writer(PROCESS_COLUMNS)


def _record(values: Sequence[Any]) -> bytes:
    """The record of a stored row (its columns, then leaf, prev and process): with ``process``
    when the row has one."""
    try:
        if len(values) > 12 and values[12] is not None:
            return _write_record_process((*values[:10], values[12]))
        return _write_record(values)
    except Exception:  # a value no writer of this log stores: the leaf cannot match
        return b"\xff" + repr(tuple(values)).encode("utf-8", "replace")


def _hash32(value: Any) -> bytes | None:
    """A stored hash column: ``None`` when empty, ``b""`` (matches nothing) when not 32 bytes."""
    if value.__class__ is bytes and len(value) == 32:
        return value
    return None if value is None else b""


def _log_row(r: Sequence[Any]) -> LogRow:
    rid = r[0] if r[0].__class__ is int else -1
    return LogRow(rid, _record(r), _hash32(r[10]), _hash32(r[11]))


def _leaf_of(row: LogRow) -> bytes:
    return hashlib.sha256(b"\x00" + row.record).digest()


def log_rows(conn: sqlite3.Connection, *, after: int = 0) -> Iterator[LogRow]:
    """The rows after id ``after``, in id order, as :func:`~finops_fabric.transparency.verify_log`
    reads them. :class:`CheckFailed` (``decisions.unchained``) for a log written before the chain."""
    if _unchained(conn):
        raise CheckFailed(
            "the decision log was written before decisions were hash-chained; start its daemon once "
            "to chain the rows it holds (the upgrade is recorded as such)",
            code="decisions.unchained",
        )
    for r in conn.execute(_select(conn) + " WHERE id > ? ORDER BY id", (after,)):
        yield _log_row(r)


def adoption(conn: sqlite3.Connection, log: str = "decisions") -> dict[str, Any] | None:
    """The upgrade that chained rows written before the chain, if any: ``{"rows", "at"}``."""
    try:
        row = conn.execute("SELECT adopted_rows, adopted_at FROM log_chain WHERE log = ?", (log,)).fetchone()
    except sqlite3.Error:
        return None
    return {"rows": int(row[0]), "at": str(row[1])} if row is not None else None
