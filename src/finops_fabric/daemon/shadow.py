"""Shadow mode: a second enforcer decides live traffic beside the active one, with no effect.

``POST /v1/shadow`` (role deployer) starts a shadow session for a receipted A_new: A_new is
verified exactly like a deployment (its generation receipt in the store's verified ledger,
every artifact hash against its manifest and that receipt, booted, every golden case passed;
an O need not be approved, as A_new decides nothing), and a signed receipt of kind ``shadow``
(``event: start``, PASS or FAIL with why) is appended to the ledger. The active A keeps
deciding every request. After each answered decision the daemon hands (decision id,
transaction, live decision) to a bounded queue (:meth:`ShadowRunner.offer`: never a wait; a full
queue drops the comparison and counts it) and a background thread lets A_new decide the same
transaction: no outbox entry, no audit entry, no notification, nothing but a comparison.

Decisions that differ (the decision, the rules fired, the notifications or the audit entries)
are logged in the decision store's ``shadow`` table (the session, what differed and both
decisions in ``detail_json``), append-only and hash-chained like the decision log
(:mod:`finops_fabric.transparency`: a leaf hash of the RFC 8785 record of every column, the
previous row's chain hash; signed tree heads in ``<store>/tree-heads/<ENV>/shadow/``).
Agreements are counted per session in ``shadow_sessions``. ``POST /v1/shadow/stop``, the
session's ``until`` time, or the deployment of A_new itself ends the session with a ``shadow``
receipt (``event: stop``) that records the final counts and the shadow log's tree head. A
restarted daemon boots the open session again from the store's snapshot of A_new, verified by
hash (a session whose A_new no longer verifies, or whose ``until`` passed while the daemon was
down, is ended with a receipt saying so).

:func:`shadow_report` reads a session back (the chain verified first): totals, flips by
direction, rules gained and lost, notifications and audit entries gained and lost, the amount
flipped, and examples with both enforcers' reasons.

The log and the sessions live in the environment's database, SQLite or PostgreSQL
(:mod:`finops_fabric.storage`). Every process of a fleet (``mu daemon --processes=N``, or daemons
that ``--join``) runs the session: a start or stop through any one of them is recorded in
``shadow_sessions`` and reaches the others (PostgreSQL: NOTIFY; SQLite: polling), which boot A_new
from the store's snapshot, or write their last rows and counts and let it go. Each process adds its
counts to the session's row, and appends its rows under the shadow log's lock after whatever
another process appended, so there is one chain; the session is ended once (whoever ends it
first writes the stop receipt, after the others let it go).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import queue
import sqlite3
import sys
import threading
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from finops_fabric.canonical import sha256_hex
from finops_fabric.daemon import decision_log
from finops_fabric.daemon.runtime import Active, DeployResult, Runtime, enforcer_from_files, now_utc
from finops_fabric.enforcer import Enforcer, load_enforcer
from finops_fabric.errors import CheckFailed, FabricError, InputError
from finops_fabric.golden import run_case
from finops_fabric.intake.strict_json import JsonRefused, Limits, loads
from finops_fabric.storage.base import SHADOW_COLUMNS, shadow_record
from finops_fabric.store import Store
from finops_fabric.transparency import (
    GENESIS,
    CompactRange,
    HeadDirectory,
    LogReport,
    LogRow,
    chain_hash,
    gather_heads,
    make_head,
    sign_head,
    verify_log,
)

if TYPE_CHECKING:
    from finops_fabric.storage import Storage

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "ShadowRunner",
    "attach",
    "differences",
    "heads_directory",
    "log_rows",
    "openapi_paths",
    "openapi_schemas",
    "parse_until",
    "shadow_report",
    "verify_shadow_log",
]

#: How many comparisons may wait for the shadow thread; beyond that they are dropped and counted.
QUEUE_SIZE = 10_000
#: The shadow thread takes the queued comparisons this often (seconds).
POLL_SECONDS = 0.05
#: The shadow thread hands the GIL back after this much work (seconds).
YIELD_SECONDS = 0.0005
#: The shadow thread commits its rows and counts at most this often (seconds) ...
FLUSH_SECONDS = 1.0
#: ... or when this many disagreements wait.
FLUSH_ROWS = 512
#: A signed head of the shadow log at most this often while it grows (and at every session end).
HEAD_SECONDS = 10.0
#: How long one wait for a session begun or ended elsewhere blocks (PostgreSQL: woken at once).
FOLLOW_SECONDS = 2.0
#: How long the process that ends a session waits for the fleet's other processes to write
#: their last rows and counts before its stop receipt reads them.
RELEASE_SECONDS = 5.0

# The shadow log's table is the ``shadow`` table of the daemon's storage schema (version 2 of
# its migrations), created here when missing: one row per disagreement, the session, what
# differed and both decisions in ``detail_json``.
SCHEMA = """
CREATE TABLE IF NOT EXISTS shadow (
    id                   INTEGER PRIMARY KEY,
    recorded_at          TEXT NOT NULL,
    env                  TEXT NOT NULL,
    decision_id          INTEGER,
    transaction_id       TEXT,
    enforcer_hash        TEXT NOT NULL,
    shadow_enforcer_hash TEXT NOT NULL,
    outcome              TEXT NOT NULL,
    shadow_outcome       TEXT NOT NULL,
    detail_json          TEXT NOT NULL,
    leaf_hash            BLOB NOT NULL,
    prev_chain_hash      BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS shadow_no_update BEFORE UPDATE ON shadow
    BEGIN SELECT RAISE(ABORT, 'the shadow log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS shadow_no_delete BEFORE DELETE ON shadow
    BEGIN SELECT RAISE(ABORT, 'the shadow log is append-only'); END;
CREATE TABLE IF NOT EXISTS shadow_sessions (
    session                 TEXT PRIMARY KEY,
    env                     TEXT NOT NULL,
    enforcer_hash           TEXT NOT NULL,
    generation_receipt_hash TEXT NOT NULL,
    live_enforcer_hash      TEXT,
    started_at              TEXT NOT NULL,
    until                   TEXT,
    ended_at                TEXT,
    end_reason              TEXT,
    end_receipt_hash        TEXT,
    compared                INTEGER NOT NULL DEFAULT 0,
    agreed                  INTEGER NOT NULL DEFAULT 0,
    disagreed               INTEGER NOT NULL DEFAULT 0,
    errors                  INTEGER NOT NULL DEFAULT 0,
    dropped                 INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS shadow_by_session ON shadow (json_extract(detail_json, '$.session'), id);
"""

#: Everything logged for a disagreement, in the order of the table; the leaf's record (one
#: definition with the storage backends, which chain the same rows).
COLUMNS = SHADOW_COLUMNS
_SELECT = f"SELECT {', '.join(COLUMNS)}, leaf_hash, prev_chain_hash FROM shadow"  # noqa: S608
_INSERT = (
    f"INSERT INTO shadow ({', '.join(COLUMNS)}, leaf_hash, prev_chain_hash)"  # noqa: S608
    f" VALUES ({', '.join('?' * (len(COLUMNS) + 2))})"
)
_SESSION_COLUMNS = (
    "session",
    "env",
    "enforcer_hash",
    "generation_receipt_hash",
    "live_enforcer_hash",
    "started_at",
    "until",
    "ended_at",
    "end_reason",
    "end_receipt_hash",
    "compared",
    "agreed",
    "disagreed",
    "errors",
    "dropped",
)
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


def _stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime(_STAMP)


def parse_until(value: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``--until``: an ISO 8601 time (UTC unless it says otherwise) or a duration from now
    (``90s``, ``30m``, ``12h``, ``7d``); it must lie in the future. :class:`InputError` otherwise."""
    now = now or now_utc()
    text = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) > 1 and text[-1] in units and text[:-1].isdigit():
        t = now + dt.timedelta(seconds=int(text[:-1]) * units[text[-1]])
    else:
        try:
            t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(
                f"until={value[:64]!r} is neither an ISO 8601 time (2025-01-31T18:00:00Z) nor a "
                "duration (90s, 30m, 12h, 7d)",
                code="shadow.bad_until",
            ) from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
    if t <= now:
        raise InputError(f"until={value[:64]!r} is not in the future", code="shadow.bad_until")
    return t.astimezone(dt.UTC)


def heads_directory(store: Store, env: str) -> HeadDirectory:
    return HeadDirectory(store.tree_heads_dir / env / "shadow")


def open_db(path: Path) -> sqlite3.Connection:
    """The decision store with the shadow tables (created when missing)."""
    conn = decision_log.connect(path)
    try:
        conn.executescript(SCHEMA)
    except sqlite3.Error as exc:
        conn.close()
        raise InputError(f"cannot open the shadow log in {path}: {exc}", code="shadow.unreadable") from exc
    return conn


def _has_tables(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'shadow'").fetchone()
        is not None
    )


# --- comparing ----------------------------------------------------------------------------------


def _fired(d: Mapping[str, Any]) -> list[str]:
    return sorted(str(f.get("rule")) for f in d.get("fired") or [])


def _canon(items: object) -> list[str]:
    return sorted(json.dumps(i, sort_keys=True, default=str) for i in (items or []))  # type: ignore[attr-defined]


def differences(live: Mapping[str, Any], shadow: Mapping[str, Any]) -> list[str]:
    """What differs between two decisions of one transaction: ``decision``, ``fired`` (the rules,
    not their reasons), ``notifications``, ``audit`` (in that order; empty: they agree)."""
    out = []
    if live.get("decision") != shadow.get("decision"):
        out.append("decision")
    if _fired(live) != _fired(shadow):
        out.append("fired")
    if _canon(live.get("notifications")) != _canon(shadow.get("notifications")):
        out.append("notifications")
    if _canon(live.get("audit")) != _canon(shadow.get("audit")):
        out.append("audit")
    return out


# --- the chain ----------------------------------------------------------------------------------


def _hash32(value: Any) -> bytes | None:
    if value.__class__ is bytes and len(value) == 32:
        return bytes(value)
    return None if value is None else b""


def _log_row(r: Sequence[Any]) -> LogRow:
    rid = r[0] if r[0].__class__ is int else -1
    try:
        rec = shadow_record(r[: len(COLUMNS)])
    except Exception:  # a value no writer of this log stores: the leaf cannot match
        rec = b"\xff" + repr(tuple(r)).encode("utf-8", "replace")
    return LogRow(rid, rec, _hash32(r[len(COLUMNS)]), _hash32(r[len(COLUMNS) + 1]))


def log_rows(conn: sqlite3.Connection, *, after: int = 0) -> Iterator[LogRow]:
    """The shadow log's rows after id ``after``, in id order, for :func:`verify_log`."""
    if not _has_tables(conn):
        return
    for r in conn.execute(_SELECT + " WHERE id > ? ORDER BY id", (after,)):
        yield _log_row(r)


def _leaf(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def _rows_of(source: sqlite3.Connection | Storage) -> Iterator[LogRow]:
    """The shadow log's rows from a SQLite connection or a storage (SQLite: read as before)."""
    if isinstance(source, sqlite3.Connection):
        yield from log_rows(source)
        return
    if source.backend == "sqlite":
        conn = decision_log.connect(Path(source.where), readonly=True)
        try:
            yield from log_rows(conn)
        finally:
            conn.close()
        return
    yield from source.shadow_log_rows()


def verify_shadow_log(
    store: Store,
    env: str,
    conn: sqlite3.Connection | Storage,
    *,
    extra_heads: Sequence[tuple[str, dict[str, Any]]] = (),
) -> tuple[LogReport, CompactRange]:
    """Every row's leaf, every link and the Merkle root, against the newest signed head of the
    shadow log (and ``extra_heads``); the report and the tree over every row. An empty log
    without a head verifies (nothing was ever logged)."""
    from finops_fabric.audit import default_trust

    directory = heads_directory(store, env)
    heads, findings = gather_heads(directory, extra_heads, default_trust(store).keys, log="shadow", env=env)
    tree = CompactRange()

    def rows() -> Iterator[LogRow]:
        for row in _rows_of(conn):
            tree.append(_leaf(row.record))
            yield row

    report = verify_log(rows(), heads, noun="shadow row")
    if report.size == 0 and not extra_heads and [f.problem for f in findings] == ["no_tree_head"]:
        findings = []
    report.findings[:0] = findings
    return report, tree


# --- a session ------------------------------------------------------------------------------------


@dataclass
class Session:
    """One shadow session: A_new and its counts (the thread's; ``dropped``: the event loop's)."""

    receipt_hash: str
    env: str
    enforcer: Enforcer
    generation_receipt_hash: str
    live_enforcer_hash: str | None
    started_at: str
    until: dt.datetime | None
    compared: int = 0
    agreed: int = 0
    disagreed: int = 0
    errors: int = 0
    dropped: int = 0
    flushed: dict[str, int] = field(default_factory=dict)  # counts already in shadow_sessions
    by_direction: Tally[str] = field(default_factory=Tally)

    def counts(self) -> dict[str, int]:
        return {
            "compared": self.compared,
            "agreed": self.agreed,
            "disagreed": self.disagreed,
            "errors": self.errors,
            "dropped": self.dropped,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "session": self.receipt_hash,
            "env": self.env,
            "enforcer_hash": self.enforcer.hash,
            "generation_receipt_hash": self.generation_receipt_hash,
            "live_enforcer_hash": self.live_enforcer_hash,
            "started_at": self.started_at,
            "until": _stamp(self.until) if self.until is not None else None,
            **self.counts(),
            "flips": dict(sorted(self.by_direction.items())),
        }


class _Control:
    """A request to the shadow thread: end the session (after every comparison queued before);
    ``release``: only let it go (another process ended it)."""

    def __init__(self, session: Session, reason: str, *, release: bool = False) -> None:
        self.session = session
        self.reason = reason
        self.release = release
        self.done = threading.Event()
        self.receipt: dict[str, Any] | None = None
        self.error: BaseException | None = None


_Item = tuple[Session, int, dict[str, Any], dict[str, Any], str]


class ShadowRunner:
    """The shadow side of one daemon: the session, the queue, the thread, the log."""

    def __init__(
        self,
        store: Store,
        env: str,
        runtime: Runtime,
        *,
        registry: Any = None,
        queue_size: int = QUEUE_SIZE,
        storage: Storage | None = None,
    ) -> None:
        self.store = store
        self.env = env
        self.runtime = runtime
        self.path = decision_log.db_path(store.home, env)
        # the environment's database (PostgreSQL: the daemon's); None: the store's SQLite file,
        # opened here on first use (and closed with the runner)
        self._storage = storage
        self._owns_storage = storage is None
        self._ended: set[str] = set()  # sessions this process ended or let go: never booted again
        self._follower: threading.Thread | None = None
        #: How many other live processes serve this environment (None: not known); the daemon
        #: sets it from its fleet rows
        self.others: Callable[[], int | None] = lambda: None
        self.session: Session | None = None
        self.problem: str | None = None  # why no session runs although one should
        self.last_end: dict[str, Any] | None = None
        self._ending: Session | None = None
        # the hand-off: a deque (append and len are atomic, no lock, no wake-up per decision),
        # taken from by the thread every POLL_SECONDS; controls (stop, close) have a queue of their own
        self._items: deque[_Item] = deque()
        self._max_items = queue_size
        self._controls: queue.Queue[_Control | None] = queue.Queue()
        self._lock = threading.Lock()  # starting / ending sessions
        self._thread: threading.Thread | None = None
        self._tree = CompactRange()
        self._last_id = 0
        self._chain = GENESIS
        self._signed = -1
        self._last_head = 0.0
        self._pending: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._closed = False
        kw: dict[str, Any] = {"registry": registry if registry is not None else CollectorRegistry()}
        self.m_compared = Counter("shadow_comparisons", "Shadow comparisons, by result", ["result"], **kw)
        self.m_dropped = Counter("shadow_dropped", "Comparisons dropped: the shadow queue was full", **kw)
        self._m_agree = self.m_compared.labels(result="agreed")
        self._m_disagree = self.m_compared.labels(result="disagreed")
        self._m_error = self.m_compared.labels(result="error")

    # -- the hand-off (the event loop) --------------------------------------------------------

    def offer(self, row_id: int, tx: dict[str, Any], decision: dict[str, Any], active: Active) -> None:
        """Queue one answered decision for A_new; never blocks (a full queue drops and counts)."""
        session = self.session
        if session is None:
            return
        if len(self._items) >= self._max_items:
            session.dropped += 1
            self.m_dropped.inc()
            return
        self._items.append((session, row_id, tx, decision, active.hash))

    # -- the log --------------------------------------------------------------------------------

    def _db(self) -> Storage:
        if self._storage is None:
            from finops_fabric.storage.sqlite import SqliteStorage

            try:  # synchronous NORMAL: the WAL is fsynced before a head covers it
                self._storage = SqliteStorage(self.store.home, self.env, synchronous="NORMAL")
            except sqlite3.Error as exc:
                raise InputError(
                    f"cannot open the shadow log in {self.path}: {exc}", code="shadow.unreadable"
                ) from exc
        return self._storage

    def boot_log(self) -> None:
        """Verify the shadow log against its newest signed head and take up its tree; sign a
        head when rows came after it. :class:`CheckFailed` when it does not verify."""
        conn = self._db()
        report, tree = verify_shadow_log(self.store, self.env, conn)
        if not report.verified:
            raise CheckFailed(
                f"the {self.env} shadow log does not verify: {report.summary()}", code="shadow.log_unverified"
            )
        self._tree, self._last_id, self._chain = tree, report.last_id or 0, report.chain
        newest = heads_directory(self.store, self.env).newest()
        self._signed = newest.size if newest is not None and newest.head is not None else -1
        self._sign_head(force=True)

    def _sign_head(self, *, force: bool = False) -> None:
        if self._tree.size == 0 or self._tree.size <= self._signed:
            return
        if not force and self._signed >= 0 and time.monotonic() - self._last_head < HEAD_SECONDS:
            return  # the first row gets a head at once, later rows within HEAD_SECONDS
        storage = self._db()
        if storage.backend == "sqlite":
            decision_log.sync_wal(Path(storage.where))  # no head covers a row a power cut could undo
        head = sign_head(
            make_head("shadow", self._tree, env=self.env, chain=self._chain),
            self.store.operator_private_key(),
        )
        heads_directory(self.store, self.env).write(head)
        self._signed = self._tree.size
        self._last_head = time.monotonic()

    def _follow(self, upto: int | None = None) -> None:
        """Rows another writer appended since our last one (up to id ``upto``): re-hash,
        re-link, extend the tree."""
        for stored in self._db().shadow_log_rows(after=self._last_id):
            if upto is not None and stored.id > upto:
                break
            if stored.id != self._last_id + 1:
                raise FabricError(
                    f"the {self.env} shadow log has row {stored.id} after row {self._last_id}: rows "
                    "were deleted",
                    code="shadow.truncated",
                )
            leaf = _leaf(stored.record)
            self._last_id, self._chain = stored.id, chain_hash(self._chain, leaf)
            self._tree.append(leaf)

    def _flush(self, session: Session | None) -> None:
        """Commit the waiting disagreements (chained after the log's last row, whoever wrote it)
        and the session's counts, in one transaction (:meth:`Storage.record_shadow_batch`: the
        records and hashes are computed before the log's lock, which the decision log's writer
        may wait for on SQLite, so it is held as briefly as possible)."""
        rows, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        counts = session.counts() if session is not None else {}
        delta = {k: v - (session.flushed.get(k, 0) if session else 0) for k, v in counts.items()}
        if not rows and not any(delta.values()):
            return
        appended = self._db().record_shadow_batch(
            rows,
            session=session.receipt_hash if session is not None else None,
            counts=delta if session is not None else None,
        )
        if appended and appended[0].id != self._last_id + 1:  # another writer appended first
            self._follow(upto=appended[0].id - 1)
        for row in appended:
            assert row.leaf is not None
            self._last_id, self._chain = row.id, chain_hash(self._chain, row.leaf)
            self._tree.append(row.leaf)
        if session is not None:
            session.flushed = counts

    # -- the thread -------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=f"shadow-{self.env}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                control = self._controls.get(timeout=POLL_SECONDS)
            except queue.Empty:
                control = None
            try:
                self._drain()  # every comparison queued before the control
                if control is None and self._closed:
                    break
                if control is not None:
                    try:
                        if control.release:
                            self._release(control.session)
                        else:
                            control.receipt = self._end(control.session, control.reason)
                            if control.receipt is None:
                                raise CheckFailed(
                                    f"the {self.env} shadow session was ended by another process",
                                    code="shadow.none",
                                )
                    except BaseException as exc:
                        control.error = exc
                    finally:
                        control.done.set()
                session = self.session
                if session is not None and session.until is not None and now_utc() >= session.until:
                    with self._lock:
                        if self.session is session:
                            self._end(session, f"its until time {_stamp(session.until)} passed")
                elif time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                    self._flush(self.session)
                    self._sign_head()
            except Exception as exc:  # the shadow side never takes the daemon with it
                self.problem = f"the shadow thread failed: {exc}"
                print(f"mu daemon: shadow: {exc}", file=sys.stderr, flush=True)
                self._pending.clear()

    def _drain(self) -> None:
        items = self._items
        clock = time.perf_counter
        since = clock()
        while items:
            self._compare(items.popleft())
            if clock() - since >= YIELD_SECONDS:
                # hand the GIL to the event loop: it never waits for a switch interval (5 ms)
                # behind a run of comparisons (a sleep(0) costs about a comparison: not each time)
                time.sleep(0)
                since = clock()
            if len(self._pending) >= FLUSH_ROWS:
                self._flush(self.session)

    def _compare(self, item: _Item) -> None:
        session, row_id, tx, live, live_hash = item
        if session is not self.session:
            return  # queued before its session ended
        session.compared += 1
        try:
            shadow = session.enforcer.decide(tx).to_dict()
            # the same decision dict but for the enforcer hash agrees (and is quick to see)
            same = {**shadow, "enforcer_hash": None} == {**live, "enforcer_hash": None}
            diff = [] if same else differences(live, shadow)
            shadow_outcome = str(shadow["decision"])
        except Exception as exc:  # A_new cannot decide what A did: a disagreement, named
            shadow = {"error": f"{type(exc).__name__}: {exc}"}
            diff = ["error"]
            shadow_outcome = "ERROR"
            session.errors += 1
            self._m_error.inc()
        if not diff:
            session.agreed += 1
            self._m_agree.inc()
            return
        session.disagreed += 1
        self._m_disagree.inc()
        live_outcome = str(live.get("decision"))
        session.by_direction[f"{live_outcome}→{shadow_outcome}"] += 1
        tx_id = tx.get("id")
        self._pending.append(
            {
                "recorded_at": decision_log._now(),
                "env": self.env,
                "decision_id": row_id,
                "transaction_id": None if tx_id is None else str(tx_id),
                "enforcer_hash": live_hash,
                "shadow_enforcer_hash": session.enforcer.hash,
                "outcome": live_outcome,
                "shadow_outcome": shadow_outcome,
                "detail_json": json.dumps(
                    {"session": session.receipt_hash, "differences": diff, "live": live, "shadow": shadow},
                    sort_keys=True,
                    separators=(",", ":"),
                    default=str,
                ),
            }
        )

    # -- starting ---------------------------------------------------------------------------------

    def start(self, path: Path, generation_receipt_hash: str, until: dt.datetime | None) -> dict[str, Any]:
        """Verify, boot and health-check A_new; receipt the attempt; begin the session. Returns
        ``{"status": "shadowing"|"failed", "reason", "receipt", ...}``. Raises
        :class:`FabricError` (nothing receipted) when the request names no receipted A, nothing
        is live, or a session runs already."""
        with self._lock:
            if self.problem is not None and self.problem.startswith("the shadow log"):
                raise CheckFailed(self.problem, code="shadow.log_unverified")
            running = self._db().open_shadow_session() if self.session is None else None
            if self.session is not None or running is not None:
                what: tuple[object, object]
                if self.session is not None:
                    what = (self.session.enforcer.hash, self.session.receipt_hash)
                else:  # started through another process of the fleet
                    what = ((running or {}).get("enforcer_hash"), (running or {}).get("session"))
                raise CheckFailed(
                    f"{self.env} already shadows {what[0]} (session "
                    f"{what[1]}); stop it first (mu shadow stop --env={self.env})",
                    code="shadow.running",
                )
            active = self.runtime.active
            if active is None:
                raise CheckFailed(
                    f"nothing is deployed to {self.env}: a shadow needs a live A to compare with",
                    code="shadow.nothing_live",
                )
            from finops_fabric.audit import require_verified_ledger

            require_verified_ledger(self.store, f"the shadow deployment to {self.env} is refused")
            gen = self.store.find(generation_receipt_hash)
            if gen is None or gen.get("kind") != "generation":
                raise CheckFailed(
                    f"{generation_receipt_hash} is not a generation receipt in the store {self.store.home}",
                    code="deploy.no_receipt",
                )
            expected = str((gen.get("outputs") or {}).get("enforcer_hash"))
            evidence: dict[str, Any] = {"enforcer": str(path)}
            enforcer: Enforcer | None = None
            reason: str | None = None
            try:
                enforcer = _verify_and_boot(path, gen, evidence, self.runtime)
            except Exception as exc:
                reason = f"{evidence.pop('_step', 'verify')} failed: {exc}"
            evidence.pop("_step", None)
            if enforcer is not None and enforcer.hash == active.hash:
                reason, enforcer = f"verify failed: {self.env} already runs {active.hash} live", None
            t = now_utc()
            body: dict[str, Any] = {
                "kind": "shadow",
                "event": "start",
                "time": _stamp(t),
                "env": self.env,
                "inputs": {
                    "enforcer_hash": expected,
                    "generation_receipt_hash": generation_receipt_hash,
                    "ontology_hash": (gen.get("inputs") or {}).get("ontology_hash"),
                    "live_enforcer_hash": active.hash,
                    "live_deployment_receipt_hash": active.deployment_receipt_hash,
                },
                "gates": {
                    "operational": {
                        "status": "PASS" if reason is None else "FAIL",
                        "evidence": {**evidence, **({"reason": reason} if reason else {})},
                    }
                },
                "outputs": {
                    "shadow": expected if reason is None else None,
                    "serving": active.hash,
                    "until": _stamp(until) if until is not None else None,
                },
            }
            sealed = self.store.append(body)
            if reason is not None or enforcer is None:
                return {
                    "status": "failed",
                    "reason": reason,
                    "receipt_hash": sealed["receipt_hash"],
                    "receipt": sealed,
                }
            session = Session(
                receipt_hash=sealed["receipt_hash"],
                env=self.env,
                enforcer=enforcer,
                generation_receipt_hash=generation_receipt_hash,
                live_enforcer_hash=active.hash,
                started_at=body["time"],
                until=until,
            )
            self._begin(session)
            return {
                "status": "shadowing",
                "reason": None,
                "receipt_hash": sealed["receipt_hash"],
                "receipt": sealed,
                "session": session.describe(),
            }

    def _begin(self, session: Session) -> None:
        row = self._db().begin_shadow_session(
            {
                "session": session.receipt_hash,
                "env": session.env,
                "enforcer_hash": session.enforcer.hash,
                "generation_receipt_hash": session.generation_receipt_hash,
                "live_enforcer_hash": session.live_enforcer_hash,
                "started_at": session.started_at,
                "until": _stamp(session.until) if session.until is not None else None,
            }
        )
        # a restored session (or one another process runs) goes on counting where it is
        session.compared, session.agreed, session.disagreed, session.errors, session.dropped = (
            int(row[k]) for k in ("compared", "agreed", "disagreed", "errors", "dropped")
        )
        session.flushed = session.counts()
        session.by_direction.update(self._db().shadow_flips(session.receipt_hash))
        self.problem = None
        self.session = session
        self._ensure_thread()

    # -- ending -----------------------------------------------------------------------------------

    def stop(self, reason: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """End the running session after every comparison queued before this call; the stop
        receipt. :class:`CheckFailed` (``shadow.none``) when no session runs."""
        session = self.session
        if session is None:
            raise CheckFailed(f"{self.env} runs no shadow session", code="shadow.none")
        control = _Control(session, reason)
        thread = self._thread
        if thread is None or not thread.is_alive():
            with self._lock:
                ended = self._end(session, reason)
            if ended is None:
                raise CheckFailed(
                    f"{self.env}'s shadow session was ended by another process", code="shadow.none"
                )
            return ended
        self._controls.put(control)
        if not control.done.wait(timeout):
            raise CheckFailed("the shadow thread did not answer in time", code="shadow.busy")
        if control.error is not None:
            raise control.error
        assert control.receipt is not None
        return control.receipt

    def _end(self, session: Session, reason: str) -> dict[str, Any] | None:
        """Flush, end the session in the database (once: None when another process ended it
        first), wait for the fleet's other processes to let it go, sign a head, receipt the end
        with the counts of every process. Runs on the shadow thread (or with the thread gone)."""
        if self.session is not session:
            raise CheckFailed(f"{self.env} runs no shadow session", code="shadow.none")
        self._ending = session  # still shown as running until its end is receipted
        self.session = None
        self._ended.add(session.receipt_hash)
        try:
            self._flush(session)
            storage = self._db()
            won = storage.end_shadow_session(session.receipt_hash, ended_at=_stamp(now_utc()), reason=reason)
            storage.release_shadow_session(session.receipt_hash)
            if not won:
                return None
            try:
                others = self.others()
            except Exception:  # the fleet's rows cannot be read now: wait as if there were others
                others = None
            deadline = time.monotonic() + (RELEASE_SECONDS if others != 0 else 0.0)
            while time.monotonic() < deadline:
                row = storage.shadow_session(session.receipt_hash)
                if row is None or row["processes"] <= 0:
                    break
                time.sleep(0.05)
            self._follow()  # the rows the others wrote last
            self._sign_head(force=True)
            return self._end_receipt(session, reason, counts=self._stored_counts(session), claimed=True)
        finally:
            self._ending = None

    def _release(self, session: Session) -> None:
        """Another process ended the session: write this process's last rows and counts, let it
        go (no receipt: the one that ended it writes it). Runs on the shadow thread."""
        if session.receipt_hash in self._ended:
            return
        if self.session is session:
            self.session = None
        self._ended.add(session.receipt_hash)
        self._flush(session)
        self._db().release_shadow_session(session.receipt_hash)
        self._sign_head()

    def _end_receipt(
        self,
        session: Session,
        reason: str,
        *,
        counts: Mapping[str, int] | None = None,
        claimed: bool = False,
    ) -> dict[str, Any] | None:
        """The stop receipt (None: another process ended the session first)."""
        t = now_utc()
        storage = self._db()
        if not claimed and not storage.end_shadow_session(
            session.receipt_hash, ended_at=_stamp(t), reason=reason
        ):
            return None
        row = storage.shadow_session(session.receipt_hash)
        sealed = self.store.append(
            {
                "kind": "shadow",
                "event": "stop",
                "time": _stamp(t),
                "env": self.env,
                "reason": reason,
                "inputs": {
                    "start_receipt_hash": session.receipt_hash,
                    "enforcer_hash": session.enforcer.hash,
                    "generation_receipt_hash": session.generation_receipt_hash,
                    "live_enforcer_hash": session.live_enforcer_hash,
                },
                "outputs": {
                    **(dict(counts) if counts is not None else session.counts()),
                    "flips": dict(sorted(storage.shadow_flips(session.receipt_hash).items()))
                    if row is not None
                    else dict(sorted(session.by_direction.items())),
                    "shadow_log": {
                        "tree_size": self._tree.size,
                        "root_hash": "sha256:" + self._tree.root().hex(),
                        "chain_hash": "sha256:" + self._chain.hex(),
                    },
                },
            }
        )
        storage.finish_shadow_session(session.receipt_hash, sealed["receipt_hash"])
        self.last_end = sealed
        return sealed

    def on_deployed(self, result: DeployResult) -> None:
        """A deployment that switched ENV to A_new itself ends the session (it was promoted)."""
        session = self.session
        active = self.runtime.active
        if not result.ok or session is None or active is None or active.hash != session.enforcer.hash:
            return
        with contextlib.suppress(FabricError):
            self.stop(f"promoted: deployment {result.receipt['receipt_hash']} switched {self.env} to it")

    # -- restoring ----------------------------------------------------------------------------------

    def restore(self) -> str | None:
        """Boot the open session of this env from the ledger (its A_new from the store's verified
        snapshot). Returns A_new's hash, or None. A session that cannot be booted again is ended
        with a receipt saying why, and :attr:`problem` says it too."""
        start = open_session_receipt(self.store, self.env)
        if start is None:
            return None
        return self._boot(start, at_boot=True)

    def _boot(self, start: Mapping[str, Any], *, at_boot: bool) -> str | None:
        """Boot the session of start receipt ``start`` (A_new from the store's verified
        snapshot). At the daemon's boot a session that cannot be booted again is ended with a
        receipt; a session begun through another process is only refused here (:attr:`problem`)."""
        inputs = start.get("inputs") or {}
        until_text = (start.get("outputs") or {}).get("until")
        until = dt.datetime.strptime(until_text, _STAMP).replace(tzinfo=dt.UTC) if until_text else None
        expected = str(inputs.get("enforcer_hash"))
        gen = self.store.find(str(inputs.get("generation_receipt_hash")))
        try:
            if gen is None or gen.get("kind") != "generation":
                raise CheckFailed("its generation receipt is not in the ledger", code="deploy.no_receipt")
            listing = (gen.get("outputs") or {}).get("artifacts")
            if not isinstance(listing, dict):
                raise CheckFailed("its generation receipt lists no artifacts", code="deploy.artifacts")
            enforcer = enforcer_from_files(self.store.get_tree(listing), f"snapshot of {expected}")
            if enforcer.hash != expected:
                raise CheckFailed(
                    f"the snapshot has hash {enforcer.hash}, not {expected}", code="deploy.hash_mismatch"
                )
            results = [run_case(enforcer, case) for case in enforcer.golden_cases()]
            failed = [c["scenario"] for c in results if not c["ok"]]
            if failed:
                raise CheckFailed(f"golden cases failed: {', '.join(failed[:5])}", code="deploy.health")
        except FabricError as exc:
            enforcer = None
            why = f"its A {expected} cannot be booted again: {exc.message}"
        session = Session(
            receipt_hash=start["receipt_hash"],
            env=self.env,
            enforcer=enforcer if enforcer is not None else _Missing(expected),  # type: ignore[arg-type]
            generation_receipt_hash=str(inputs.get("generation_receipt_hash")),
            live_enforcer_hash=inputs.get("live_enforcer_hash"),
            started_at=str(start.get("time")),
            until=until,
        )
        if enforcer is None and not at_boot:
            self.problem = f"the shadow session {start['receipt_hash']} cannot run in this process: {why}"
            self._ended.add(session.receipt_hash)
            return None
        if enforcer is None:
            self.problem = f"the shadow session {start['receipt_hash']} was ended at boot: {why}"
            self._ended.add(session.receipt_hash)
            self._end_receipt(session, f"refused at boot: {why}", counts=self._stored_counts(session))
            return None
        if until is not None and until <= now_utc():
            self._ended.add(session.receipt_hash)
            self._end_receipt(
                session,
                f"its until time {until_text} passed while the daemon was down",
                counts=self._stored_counts(session),
            )
            return None
        self._begin(session)
        return enforcer.hash

    def _stored_counts(self, session: Session) -> dict[str, int]:
        row = self._db().shadow_session(session.receipt_hash)
        keys = ("compared", "agreed", "disagreed", "errors", "dropped")
        return {k: int(row[k]) for k in keys} if row is not None else dict.fromkeys(keys, 0)

    # -- the fleet ------------------------------------------------------------------------------------

    def follow(self) -> None:
        """Follow sessions begun or ended through the environment's other processes (a thread)."""
        if self._follower is None or not self._follower.is_alive():
            self._follower = threading.Thread(
                target=self._follow_sessions, name=f"shadow-follow-{self.env}", daemon=True
            )
            self._follower.start()

    def _follow_sessions(self) -> None:
        seen: str | None = self.session.receipt_hash if self.session is not None else None
        complained = False
        while not self._closed:
            try:
                row = self._db().wait_for_shadow(seen, FOLLOW_SECONDS)
                if self._closed:
                    break
                seen = row["session"] if row is not None else None
                self._apply(row)
                complained = False
            except Exception as exc:  # the database is busy or gone: try again shortly
                if self._closed:
                    break
                if not complained:
                    print(f"mu daemon: shadow: cannot follow sessions: {exc}", file=sys.stderr, flush=True)
                    complained = True
                time.sleep(0.25)

    def _apply(self, row: Mapping[str, Any] | None) -> None:
        """Make this process run the database's open session (``row``), or none."""
        with self._lock:
            mine = self.session
            wanted = str(row["session"]) if row is not None else None
            if mine is not None and mine.receipt_hash != wanted:
                self._controls.put(_Control(mine, "ended by another process", release=True))
                self._ensure_thread()
            if wanted is None or wanted in self._ended or (mine is not None and mine.receipt_hash == wanted):
                return
            start = self.store.find(wanted)
            if start is None or start.get("kind") != "shadow" or start.get("event") != "start":
                self.problem = f"the shadow session {wanted} has no start receipt in the store's ledger"
                self._ended.add(wanted)
                return
            self._boot(start, at_boot=False)

    # -- state --------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        session = self.session or self._ending
        doc: dict[str, Any] = {
            "env": self.env,
            "shadowing": session is not None,
            "queued": len(self._items),
        }
        if session is not None:
            doc["session"] = session.describe()
        if self.problem is not None:
            doc["problem"] = self.problem
        if self.last_end is not None:
            doc["last_end_receipt_hash"] = self.last_end["receipt_hash"]
        return doc

    def health(self) -> dict[str, Any]:
        session = self.session
        if self.problem is not None:
            return {"status": "degraded", "detail": self.problem}
        if session is None:
            return {"status": "ok", "detail": "no shadow session"}
        return {
            "status": "ok",
            "detail": f"shadowing {session.enforcer.hash}",
            "queued": len(self._items),
            **session.counts(),
        }

    def close(self) -> None:
        """Stop the thread: every queued comparison is made and committed, a last head signed
        (the session stays open: a restarted daemon boots it again)."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._controls.put(None)  # after every comparison queued before it
            thread.join(timeout=30)
        with contextlib.suppress(Exception):
            session = self.session
            self._flush(session)
            if session is not None:  # it stays open; this process no longer runs it
                self._db().release_shadow_session(session.receipt_hash)
            self._sign_head(force=True)
        if self._storage is not None and self._owns_storage:
            self._storage.close()
            self._storage = None


class _Missing:
    """Stands for an A_new that could not be booted again (only its hash is known)."""

    def __init__(self, digest: str) -> None:
        self.hash = digest


def open_session_receipt(store: Store, env: str) -> dict[str, Any] | None:
    """The start receipt of ``env``'s open shadow session in the ledger (a PASS start with no
    stop after it), or None."""
    for r in reversed(store.receipts("shadow")):
        if r.get("env") != env:
            continue
        if r.get("event") != "start":
            return None
        if ((r.get("gates") or {}).get("operational") or {}).get("status") != "PASS":
            continue
        return dict(r)
    return None


def _verify_and_boot(
    path: Path, gen: Mapping[str, Any], evidence: dict[str, Any], runtime: Runtime
) -> Enforcer:
    """What a deployment checks before it switches (:meth:`Runtime.deploy`): A's hash against
    its generation receipt, exactly its artifacts, the boot, every golden case."""
    evidence["_step"] = "verify"
    expected = str((gen.get("outputs") or {}).get("enforcer_hash"))
    enforcer = load_enforcer(path)
    if enforcer.hash != expected:
        raise CheckFailed(
            f"A at {path} has hash {enforcer.hash}, but its generation receipt {gen['receipt_hash']} "
            f"names {expected}",
            code="deploy.hash_mismatch",
        )
    listing = (gen.get("outputs") or {}).get("artifacts")
    if isinstance(listing, dict):
        actual = {p: sha256_hex(b) for p, b in enforcer.files.items()}
        if actual != listing:
            raise CheckFailed(
                f"A at {path} does not hold exactly the artifacts its receipt lists", code="deploy.artifacts"
            )
    evidence["verify"] = f"every artifact hash matches the manifest and receipt {gen['receipt_hash']}"
    evidence["_step"] = "boot"
    if runtime.boot_hook is not None:
        runtime.boot_hook(enforcer)
    evidence["boot"] = f"loaded {len(enforcer.rule_artifacts())} rule modules in-process"
    evidence["_step"] = "health"
    results = [run_case(enforcer, c) for c in enforcer.golden_cases()]
    failed = [c for c in results if not c["ok"]]
    evidence["health"] = {
        "golden_cases": len(results),
        "passed": len(results) - len(failed),
        "failed": [{"scenario": c["scenario"], "problems": c["problems"]} for c in failed],
    }
    if failed:
        raise CheckFailed(
            f"health check failed: {len(failed)} of {len(results)} golden cases failed", code="deploy.health"
        )
    return enforcer


# --- HTTP ---------------------------------------------------------------------------------------


def _json(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc, sort_keys=True, default=str), status, media_type="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error": {"code": code, "message": message}}, status)


_STATUS = {
    "shadow.running": 409,
    "shadow.nothing_live": 409,
    "shadow.log_unverified": 409,
    "shadow.none": 404,
    "shadow.busy": 503,
}


def attach(app: Starlette, store: Store, env: str, runtime: Runtime) -> ShadowRunner | None:
    """Shadow mode for ``app``: ``GET /v1/shadow``, ``POST /v1/shadow``, ``POST /v1/shadow/stop``,
    the after-decision hook, the health source ``shadow``, the open session booted again."""
    runner = ShadowRunner(
        store, env, runtime, registry=app.state.metrics.registry, storage=getattr(app.state, "storage", None)
    )
    try:
        runner.boot_log()
        runner.restore()
    except FabricError as exc:
        runner.problem = (
            exc.message if exc.message.startswith("the shadow") else f"the shadow log: {exc.message}"
        )
    limits = Limits(max_bytes=_body_limit(store))
    refusal = app.state.refusal

    def deny(request: Request, permission: str) -> Response | None:
        refused = refusal(request.headers.get("authorization", ""), permission)
        if refused is None:
            return None
        status, body, headers = refused
        return Response(
            body, status, headers={k.decode(): v.decode() for k, v in headers}, media_type="application/json"
        )

    async def body_of(request: Request) -> Any:
        content_type = request.headers.get("content-type")
        media = (content_type or "application/json").partition(";")[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            return _error(415, "shadow.unsupported_media_type", "the body must be JSON (application/json)")
        try:
            raw = await request.body()
        except ClientDisconnect:
            return Response(b"", 400)
        if limits.max_bytes is not None and len(raw) > limits.max_bytes:
            return _error(413, "shadow.too_large", f"the body is larger than {limits.max_bytes} bytes")
        try:
            return loads(raw or b"{}", limits)
        except JsonRefused as exc:
            return _error(400, "shadow.invalid_json", str(exc))

    async def status(request: Request) -> Response:
        if (denied := deny(request, "read")) is not None:
            return denied
        return _json(runner.describe())

    async def start(request: Request) -> Response:
        if (denied := deny(request, "deploy")) is not None:
            return denied
        req = await body_of(request)
        if isinstance(req, Response):
            return req
        if not isinstance(req, dict) or not isinstance(req.get("enforcer"), str) or not req["enforcer"]:
            return _error(400, "shadow.bad_request", 'give {"enforcer": PATH, "generation_receipt_hash": H}')
        if "\x00" in req["enforcer"] or not isinstance(req.get("generation_receipt_hash"), str):
            return _error(
                400, "shadow.bad_request", "enforcer is a path; generation_receipt_hash a receipt hash"
            )
        if req.get("env", env) != env:
            return _error(400, "deploy.wrong_env", f"this daemon serves {env}, not {str(req['env'])[:64]}")
        until = req.get("until")
        if until is not None and not isinstance(until, str):
            return _error(400, "shadow.bad_until", "until is an ISO 8601 time")
        try:
            until_t = parse_until(until) if until is not None else None
        except InputError as exc:
            return _error(400, exc.code, exc.message)
        try:
            doc = await run_in_threadpool(
                runner.start, Path(req["enforcer"]), req["generation_receipt_hash"], until_t
            )
        except FabricError as exc:
            return _error(_STATUS.get(exc.code, 422), exc.code, exc.message)
        return _json(doc, 200 if doc["status"] == "shadowing" else 422)

    async def stop(request: Request) -> Response:
        if (denied := deny(request, "deploy")) is not None:
            return denied
        try:
            receipt = await run_in_threadpool(runner.stop, "stopped by the operator")
        except FabricError as exc:
            return _error(_STATUS.get(exc.code, 422), exc.code, exc.message)
        return _json({"status": "stopped", "receipt_hash": receipt["receipt_hash"], "receipt": receipt})

    app.router.routes.extend(
        [
            Route("/v1/shadow", status, methods=["GET"]),
            Route("/v1/shadow", start, methods=["POST"]),
            Route("/v1/shadow/stop", stop, methods=["POST"]),
        ]
    )
    app.state.after_decision.append(runner.offer)
    app.state.health_sources["shadow"] = runner.health

    def others() -> int | None:
        member = getattr(app.state, "fleet", None)
        if member is None:
            return None
        return sum(1 for p in member.state.processes() if p["alive"] and p["process"] != member.process)

    runner.others = others
    app.state.on_startup.append(runner.follow)  # sessions begun or ended through other processes
    app.state.on_shutdown.append(runner.close)
    runtime.on_deployed.append(runner.on_deployed)
    app.state.shadow = runner
    return runner


def _body_limit(store: Store) -> int:
    from finops_fabric.intake.transaction import body_limit

    return body_limit(store.home, None)


# --- the report ---------------------------------------------------------------------------------


def _amount(tx_json: str | None) -> Decimal | None:
    if tx_json is None:
        return None
    try:
        value = json.loads(tx_json, parse_float=Decimal).get("amount")
        return Decimal(str(value)) if value is not None and not isinstance(value, bool) else None
    except (ValueError, InvalidOperation, AttributeError):
        return None


def _tx(tx_json: str | None) -> dict[str, Any]:
    try:
        doc = json.loads(tx_json) if tx_json is not None else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _reasons(d: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"rule": f.get("rule"), "reason": f.get("reason")} for f in d.get("fired") or []]


def shadow_report(
    store: Store,
    env: str,
    *,
    session: str | None = None,
    examples: int = 3,
    database_url: str | None = None,
) -> dict[str, Any]:
    """The report of one shadow session (the newest of ``env`` unless ``session`` names one):
    the shadow log verified first (when it does not, only ``{"verified": false, "chain": ...}``
    naming every row found changed, removed, inserted or reordered), then totals, flips by direction, rules
    gained and lost, effects gained and lost, the amount flipped, examples with both reasons.
    ``env``'s database: ``database_url``, else config.json's, else the store's SQLite file."""
    from finops_fabric.storage import external_storage

    storage = external_storage(store.home, env, database_url)
    if storage is not None:
        with storage:
            return _storage_report(store, env, storage, session, examples)
    path = decision_log.db_path(store.home, env)
    conn = decision_log.connect(path, readonly=True)
    try:
        report, _tree = verify_shadow_log(store, env, conn)
        if not report.verified:  # nothing is reported from a log that does not verify
            return {"env": env, "verified": False, "chain": report.to_dict()}
        if not _has_tables(conn):
            raise CheckFailed(f"{env} has never run a shadow session", code="shadow.none")
        cols = ", ".join(_SESSION_COLUMNS)
        if session is None:
            row = conn.execute(
                f"SELECT {cols} FROM shadow_sessions WHERE env = ?"  # noqa: S608
                " ORDER BY started_at DESC, rowid DESC LIMIT 1",
                (env,),
            ).fetchone()
        else:
            row = conn.execute(f"SELECT {cols} FROM shadow_sessions WHERE session = ?", (session,)).fetchone()  # noqa: S608
        if row is None:
            raise CheckFailed(
                f"{env} has no shadow session" + (f" {session}" if session else ""), code="shadow.none"
            )
        info = dict(zip(_SESSION_COLUMNS, row, strict=True))
        rows = conn.execute(
            "SELECT s.id, s.recorded_at, s.decision_id, s.transaction_id, s.outcome, s.shadow_outcome,"
            " s.detail_json, d.transaction_json FROM shadow s LEFT JOIN decisions d ON d.id = s.decision_id"
            " WHERE json_extract(s.detail_json, '$.session') = ? ORDER BY s.id",
            (info["session"],),
        )
        return _tally(env, info, rows, report, examples)
    except sqlite3.Error as exc:
        raise InputError(f"cannot read the shadow log {path}: {exc}", code="shadow.unreadable") from exc
    finally:
        conn.close()


def _storage_report(
    store: Store, env: str, storage: Storage, session: str | None, examples: int
) -> dict[str, Any]:
    from finops_fabric.storage.migrations import LATEST

    if storage.schema_version() < LATEST:
        raise CheckFailed(f"{env} has never run a shadow session ({storage.where})", code="shadow.none")
    report, _tree = verify_shadow_log(store, env, storage)
    if not report.verified:  # nothing is reported from a log that does not verify
        return {"env": env, "verified": False, "chain": report.to_dict()}
    info = storage.shadow_session(session)
    if info is None:
        raise CheckFailed(
            f"{env} has no shadow session" + (f" {session}" if session else ""), code="shadow.none"
        )
    return _tally(env, info, storage.shadow_session_rows(str(info["session"])), report, examples)


def _tally(
    env: str,
    info: Mapping[str, Any],
    rows: Iterator[Sequence[Any]],
    report: LogReport,
    examples: int,
) -> dict[str, Any]:
    """The report of session ``info`` from its rows (id, recorded_at, decision_id,
    transaction_id, outcome, shadow_outcome, detail_json, the decision's transaction_json)."""
    flips: Tally[str] = Tally(dict.fromkeys(("APPROVE→REJECT", "REJECT→APPROVE"), 0))
    amounts: dict[str, Decimal] = {}
    by_type_level: dict[str, Tally[str]] = {}
    per_day: dict[str, Tally[str]] = {}
    changed_effects = 0
    by_difference: Tally[str] = Tally()
    by_rule: dict[str, Tally[str]] = {}
    notified: dict[str, Tally[str]] = {}
    audited: dict[str, Tally[str]] = {}
    changed_fired = 0
    amount_flipped = Decimal(0)
    shown: dict[str, list[dict[str, Any]]] = {}
    first = last = None
    for (
        sid,
        at,
        decision_id,
        tx_id,
        live_out,
        shadow_out,
        detail_json,
        tx_json,
    ) in rows:
        first = first or at
        last = at
        detail = json.loads(detail_json)
        diff, live, shadow = detail["differences"], detail["live"], detail["shadow"]
        for d in diff:
            by_difference[d] += 1
        direction = f"{live_out}→{shadow_out}"
        if live_out != shadow_out:
            group = direction
            amount = _amount(tx_json)
            if amount is not None:
                amount_flipped += abs(amount)
                amounts[direction] = amounts.get(direction, Decimal(0)) + abs(amount)
        elif "fired" in diff:
            group = "changed_fired"
            changed_fired += 1
        else:
            group = "changed_effects"
            changed_effects += 1
        flips[direction] += 1 if live_out != shadow_out else 0
        tx = _tx(tx_json)
        kind = f"{tx.get('type', '(missing)')}/{tx.get('actor_level', '(missing)')}"
        by_type_level.setdefault(kind, Tally())[group] += 1
        per_day.setdefault(str(at)[:10], Tally())[group] += 1
        if "error" not in diff:
            old, new = set(_fired(live)), set(_fired(shadow))
            for rule in new - old:
                by_rule.setdefault(rule, Tally())["gained"] += 1
            for rule in old - new:
                by_rule.setdefault(rule, Tally())["lost"] += 1
            for key, table, name in (
                ("notifications", notified, "recipient"),
                ("audit", audited, "ledger"),
            ):
                before, after = Tally(_canon(live.get(key))), Tally(_canon(shadow.get(key)))
                for item, n in (after - before).items():
                    table.setdefault(str(json.loads(item).get(name)), Tally())["gained"] += n
                for item, n in (before - after).items():
                    table.setdefault(str(json.loads(item).get(name)), Tally())["lost"] += n
        bucket = shown.setdefault(group, [])
        if len(bucket) < examples:
            bucket.append(
                {
                    "shadow_row": sid,
                    "decision_id": decision_id,
                    "transaction_id": tx_id,
                    "recorded_at": at,
                    "differences": diff,
                    "group": group,
                    "transaction": _tx(tx_json) if tx_json is not None else None,
                    "live": {"decision": live_out, "fired": _reasons(live)},
                    "shadow": {
                        "decision": shadow_out,
                        "fired": _reasons(shadow),
                        **({"error": shadow["error"]} if "error" in shadow else {}),
                    },
                }
            )

    def tallies(t: Mapping[str, Tally[str]]) -> dict[str, dict[str, int]]:
        return {k: {"gained": v["gained"], "lost": v["lost"]} for k, v in sorted(t.items())}

    return {
        "env": env,
        "verified": True,
        "session": info["session"],
        "enforcer_hash": info["enforcer_hash"],
        "live_enforcer_hash": info["live_enforcer_hash"],
        "started_at": info["started_at"],
        "until": info["until"],
        "ended_at": info["ended_at"],
        "end_reason": info["end_reason"],
        "end_receipt_hash": info["end_receipt_hash"],
        "running": info["ended_at"] is None,
        "period": {"from": info["started_at"], "to": info["ended_at"] or last, "first_disagreement": first},
        "chain": report.to_dict(),
        "rows": info["compared"],
        "compared": info["compared"],
        "agreed": info["agreed"],
        "disagreed": info["disagreed"],
        "errors": info["errors"],
        "dropped": info["dropped"],
        "flips": dict(sorted(flips.items())),
        "changed_fired": changed_fired,
        "changed_effects": changed_effects,
        "by_type_level": {k: dict(sorted(v.items())) for k, v in sorted(by_type_level.items())},
        "per_day": {k: dict(sorted(v.items())) for k, v in sorted(per_day.items())},
        "amount_by_direction": {k: str(v) for k, v in sorted(amounts.items())},
        "by_difference": dict(sorted(by_difference.items())),
        "by_rule": tallies(by_rule),
        "notifications": tallies(notified),
        "audit": tallies(audited),
        "amount_flipped": str(amount_flipped),
        "examples": [e for group in sorted(shown) for e in shown[group]],
    }


# --- OpenAPI --------------------------------------------------------------------------------------


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _with(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _failure(description: str) -> dict[str, Any]:
    return {"description": description, **_with(_schema_ref("Error"))}


def openapi_paths(auth_errors: Mapping[str, Any]) -> dict[str, Any]:
    """The shadow endpoints of the daemon's OpenAPI document (``auth_errors``: its 400/401/403)."""
    return {
        "/v1/shadow": {
            "get": {
                "summary": "The shadow session, if any, and its counts (role any)",
                "responses": {
                    "200": {"description": "the shadow state", **_with(_schema_ref("ShadowState"))},
                    **auth_errors,
                },
            },
            "post": {
                "summary": "Run a receipted A beside the live one, with no effect (role deployer)",
                "description": "A is verified against its generation receipt, booted and health-checked "
                "as for a deployment; the live A keeps deciding. After each decision A decides the same "
                "transaction off the request path; disagreements are logged in the hash-chained shadow "
                "log. A shadow receipt (PASS or FAIL) is appended to the store's ledger.",
                "requestBody": {"required": True, **_with(_schema_ref("ShadowRequest"))},
                "responses": {
                    "200": {"description": "shadowing", **_with(_schema_ref("ShadowResult"))},
                    **auth_errors,
                    "400": _failure(
                        "malformed request (shadow.bad_request, shadow.bad_until, shadow.invalid_json, "
                        "deploy.wrong_env)"
                    ),
                    "409": _failure(
                        "a shadow runs already (shadow.running), nothing is live (shadow.nothing_live), "
                        "or the shadow log does not verify (shadow.log_unverified)"
                    ),
                    "413": _failure("the body is larger than the limit (shadow.too_large)"),
                    "415": _failure("the Content-Type is not JSON (shadow.unsupported_media_type)"),
                    "422": {
                        "description": "refused (no generation receipt) or failed (the receipt says why)",
                        **_with({"oneOf": [_schema_ref("ShadowResult"), _schema_ref("Error")]}),
                    },
                },
            },
        },
        "/v1/shadow/stop": {
            "post": {
                "summary": "End the shadow session with a receipt of its counts (role deployer)",
                "responses": {
                    "200": {"description": "stopped", **_with(_schema_ref("ShadowStopped"))},
                    **auth_errors,
                    "404": _failure("no shadow session runs (shadow.none)"),
                    "422": _failure("the session could not be ended"),
                },
            }
        },
    }


def openapi_schemas() -> dict[str, Any]:
    hash_ = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
    counts = {k: {"type": "integer"} for k in ("compared", "agreed", "disagreed", "errors", "dropped")}
    session = {
        "type": "object",
        "properties": {
            "session": hash_,
            "env": {"type": "string"},
            "enforcer_hash": hash_,
            "generation_receipt_hash": hash_,
            "live_enforcer_hash": {"oneOf": [hash_, {"type": "null"}]},
            "started_at": {"type": "string"},
            "until": {"type": ["string", "null"]},
            **counts,
            "flips": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    }
    return {
        "ShadowRequest": {
            "type": "object",
            "required": ["enforcer", "generation_receipt_hash"],
            "properties": {
                "enforcer": {"type": "string", "description": "absolute path of A on the daemon's host"},
                "generation_receipt_hash": hash_,
                "env": {"type": "string"},
                "until": {"type": ["string", "null"], "description": "ISO 8601 time at which it ends"},
            },
        },
        "ShadowState": {
            "type": "object",
            "required": ["env", "shadowing"],
            "properties": {
                "env": {"type": "string"},
                "shadowing": {"type": "boolean"},
                "queued": {"type": "integer"},
                "session": session,
                "problem": {"type": "string"},
                "last_end_receipt_hash": hash_,
            },
        },
        "ShadowResult": {
            "type": "object",
            "required": ["status", "receipt_hash", "receipt"],
            "properties": {
                "status": {"enum": ["shadowing", "failed"]},
                "reason": {"type": ["string", "null"]},
                "receipt_hash": hash_,
                "receipt": {"type": "object"},
                "session": session,
            },
        },
        "ShadowStopped": {
            "type": "object",
            "required": ["status", "receipt_hash", "receipt"],
            "properties": {
                "status": {"const": "stopped"},
                "receipt_hash": hash_,
                "receipt": {"type": "object"},
            },
        },
    }
