"""Many daemon processes serving one environment: who is alive, what each serves, and deploys
that reach every one of them.

Two tables of the environment's database (SQLite ``<store>/daemon-<env>.db`` or PostgreSQL,
:mod:`finops_fabric.storage`):

``deployments``
    one row per successful deployment or rollback, in order (``seq``): the receipt hash in the
    store's ledger, the enforcer hash, the generation receipt hash, the process that made it. The
    process that deployed writes it right after the receipt, before it answers the deployment
    request (PostgreSQL: with a NOTIFY).
``fleet_processes``
    one row per live daemon process: its id (``host:pid``), URL, the enforcer hash it serves,
    the deployment it reached (``deployment_seq``), whether it is ready, why not (``problem``),
    and a heartbeat (Unix time, renewed every :data:`HEARTBEAT_S`). A process whose heartbeat is
    older than :data:`PROCESS_TTL_S` is dead and is not waited for; a clean shutdown marks its
    row so at once.

Every process runs a :class:`FleetMember`: a thread that waits for a newer deployment (LISTEN on
PostgreSQL, polling as the fallback and on SQLite), boots and health-checks that A
(:meth:`Runtime.follow`) and switches, and reports it. Each decision is still made by exactly
one A (the request reads ``runtime.active`` once) and logged with that A's hash, so no decision
is ever partial across a switch.
:func:`wait_for` is what ``mu deploy`` and ``mu rollback`` wait on: every live process serving the
new hash, or the list of those that do not (and why).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finops_fabric.daemon import decision_log

if TYPE_CHECKING:
    from finops_fabric.storage import Storage

__all__ = [
    "HEARTBEAT_S",
    "POLL_S",
    "PROCESS_TTL_S",
    "FleetMember",
    "FleetState",
    "Lagging",
    "process_id",
    "wait_for",
]

HEARTBEAT_S = 0.5
POLL_S = 0.25
#: How long one wait for a new deployment blocks (it returns at once when one is recorded).
WAIT_S = 2.0
PROCESS_TTL_S = 3.0
#: Rows of processes that stopped or died longer ago than this are no longer listed.
RECENT_S = 600.0


def process_id(pid: int | None = None) -> str:
    """``host:pid``: unique among the live processes of a fleet (a restarted process is new)."""
    import os

    return f"{socket.gethostname()}:{pid if pid is not None else os.getpid()}"


@dataclass(frozen=True)
class Deployment:
    seq: int
    receipt_hash: str
    enforcer_hash: str
    generation_receipt_hash: str
    kind: str


_PROCESS_COLUMNS = "process, pid, url, serving, deployment_seq, ready, problem, heartbeat, started_at"
_UPSERT = (
    f"INSERT INTO fleet_processes ({_PROCESS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, {{now}}, {{now}})"  # noqa: S608
    " ON CONFLICT (process) DO UPDATE SET url = excluded.url, serving = excluded.serving,"
    " deployment_seq = excluded.deployment_seq, ready = excluded.ready, problem = excluded.problem,"
    " heartbeat = excluded.heartbeat"
)


class FleetState:
    """The fleet's rows in an environment's database, whichever backend it is: deployments
    through the :class:`~finops_fabric.storage.Storage` (PostgreSQL wakes waiters with
    LISTEN/NOTIFY; SQLite polls), process rows in ``fleet_processes``. On PostgreSQL heartbeats
    are stamped with the database's clock, so hosts whose clocks differ still agree on who is
    alive."""

    def __init__(self, storage: Storage, *, owned: bool = False) -> None:
        self.storage = storage
        self._owned = owned
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pg = storage.backend == "postgresql"
        self._now = "extract(epoch from clock_timestamp())" if self._pg else "?"
        self._upsert = _UPSERT.format(now=self._now)
        if self._pg:
            self._upsert = self._upsert.replace("?", "%s")

    @classmethod
    def open(cls, home: Path, env: str, database_url: str | None = None) -> FleetState:
        """The fleet state of ``env`` in the database it uses (``--database`` or config.json)."""
        from finops_fabric.storage import open_storage

        return cls(open_storage(Path(home), env, database_url), owned=True)

    def _db(self) -> Any:
        if self._conn is None:
            if self._pg:
                import psycopg

                self._conn = psycopg.connect(
                    self.storage.url,  # type: ignore[attr-defined]
                    autocommit=True,
                    connect_timeout=5,
                )
            else:
                conn = decision_log.connect(Path(self.storage.where))
                conn.execute("PRAGMA synchronous=NORMAL")
                self._conn = conn
        return self._conn

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement (autocommit) on the process table's connection; a connection that
        broke is dropped, so the next call reconnects."""
        with self._lock:
            try:
                cur = self._db().execute(sql.replace("?", "%s") if self._pg else sql, params)
                return list(cur.fetchall()) if cur.description is not None else []
            except Exception:
                conn, self._conn = self._conn, None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
        if self._owned:
            self.storage.close()

    # --- deployments -------------------------------------------------------------------------

    def record(
        self, receipt_hash: str, enforcer_hash: str, generation_receipt_hash: str, kind: str, process: str
    ) -> int:
        """Record a successful deployment (after its receipt is in the ledger); its ``seq``."""
        return self.storage.record_deployment(
            {
                "kind": kind,
                "enforcer_hash": enforcer_hash,
                "generation_receipt_hash": generation_receipt_hash,
                "receipt_hash": receipt_hash,
            },
            process=process,
        )

    def latest(self) -> Deployment | None:
        row = self.storage.current_deployment()
        if row is None:
            return None
        return Deployment(
            int(row["id"]),
            str(row.get("receipt_hash")),
            str(row["enforcer_hash"]),
            str(row.get("generation_receipt_hash")),
            str(row["kind"]),
        )

    def wait(self, after: int, timeout: float) -> int:
        """Block until a deployment newer than ``after`` is recorded (or ``timeout``); the newest."""
        return self.storage.wait_for_deployment(after, timeout)

    # --- processes ---------------------------------------------------------------------------

    def beat(
        self,
        process: str,
        pid: int,
        url: str,
        serving: str | None,
        seq: int,
        ready: bool,
        problem: str | None,
    ) -> None:
        params: tuple[Any, ...] = (
            process,
            pid,
            url,
            serving,
            seq,
            ready if self._pg else int(ready),
            problem,
        )
        if not self._pg:
            now = time.time()
            params = (*params, now, now)
        self._execute(self._upsert, params)

    def leave(self, process: str) -> None:
        """A clean stop: the row says so and is dead at once (no DELETE: the daemon's role
        needs only SELECT, INSERT and UPDATE)."""
        self._execute(
            "UPDATE fleet_processes SET heartbeat = heartbeat - ?, ready = ?, problem = 'stopped'"
            " WHERE process = ?",
            (PROCESS_TTL_S + 1, False if self._pg else 0, process),
        )

    def processes(self, *, ttl: float = PROCESS_TTL_S, recent: float = RECENT_S) -> list[dict[str, Any]]:
        """The process rows that beat within ``recent`` seconds (stopped or dead ones for a while
        after), with ``alive`` (heartbeat within ``ttl`` seconds)."""
        now_sql = self._now if self._pg else "?"
        params: tuple[Any, ...] = (recent,) if self._pg else (time.time(), time.time(), recent)
        rows = self._execute(
            f"SELECT {_PROCESS_COLUMNS}, {now_sql} - heartbeat FROM fleet_processes"  # noqa: S608
            f" WHERE {now_sql} - heartbeat <= ? ORDER BY process",
            params,
        )
        return [
            {
                "process": r[0],
                "pid": r[1],
                "url": r[2],
                "serving": r[3],
                "deployment_seq": r[4],
                "ready": bool(r[5]),
                "problem": r[6],
                "heartbeat_age_s": round(float(r[9]), 3),
                "alive": float(r[9]) <= ttl,
            }
            for r in rows
        ]


class FleetMember:
    """One daemon process's part in the fleet: heartbeat, follow deployments, report them.

    ``runtime`` is the process's :class:`~finops_fabric.daemon.runtime.Runtime`; its successful
    deployments are recorded (through ``runtime.on_deployed``) and reported at once."""

    def __init__(self, state: FleetState, runtime: Any, url: str, *, process: str | None = None) -> None:
        import os

        self.state = state
        self.runtime = runtime
        self.url = url
        self.pid = os.getpid()
        self.process = process if process is not None else process_id()
        self.seq = 0
        self.problem: str | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        runtime.on_deployed.append(self._deployed)

    def _serving(self) -> str | None:
        active = self.runtime.active
        return active.hash if active is not None else None

    def report(self) -> None:
        with self._lock:
            serving = self._serving()
            self.state.beat(
                self.process,
                self.pid,
                self.url,
                serving,
                self.seq,
                serving is not None and self.problem is None,
                self.problem,
            )

    def _deployed(self, result: Any) -> None:
        """This process deployed: record it for the others and report, before it answers."""
        if not result.ok:
            return
        receipt = result.receipt
        kind = str(receipt.get("kind", "deployment"))
        gen = str((receipt.get("inputs") or {}).get("generation_receipt_hash"))
        seq = self.state.record(
            receipt["receipt_hash"], str(result.to_dict()["enforcer_hash"]), gen, kind, self.process
        )
        with self._lock:
            self.seq = max(self.seq, seq)
            self.problem = None
        self.report()

    def sync(self) -> bool:
        """Follow the newest recorded deployment when this process does not serve it yet; True
        when something changed."""
        latest = self.state.latest()
        if latest is None or latest.seq <= self.seq:
            return False
        active = self.runtime.active
        if active is not None and active.deployment_receipt_hash == latest.receipt_hash:
            problem = None
        else:
            problem = self.runtime.follow(latest.receipt_hash)
        with self._lock:
            if problem is None:
                self.seq = latest.seq
                self.problem = None
            else:
                self.problem = f"cannot serve deployment {latest.receipt_hash}: {problem}"
        if problem is not None:
            print(f"mu daemon: {self.problem}", file=sys.stderr, flush=True)
            self.seq = latest.seq  # not retried in a loop; the next deployment is tried afresh
        return True

    def start(self) -> None:
        """Catch up (the newest successful deployment in the ledger, which a deployment made
        while this process booted may have changed), report, and follow from here on."""
        from finops_fabric.daemon.runtime import successful_deployments

        latest = self.state.latest()
        newest = next(successful_deployments(self.runtime.store, self.runtime.env), None)
        active = self.runtime.active
        if newest is not None and (
            active is None or active.deployment_receipt_hash != newest["receipt_hash"]
        ):
            problem = self.runtime.follow(newest["receipt_hash"])
            if problem is not None:
                self.problem = f"cannot serve deployment {newest['receipt_hash']}: {problem}"
        self.seq = latest.seq if latest is not None else 0
        self.report()
        # two threads: booting a new A (seconds, maybe) never delays the heartbeat
        self._threads = [
            threading.Thread(target=self._follow, name="fleet-follow", daemon=True),
            threading.Thread(target=self._beat, name="fleet-heartbeat", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _follow(self) -> None:
        complained = False
        while not self._stop.is_set():
            try:
                # PostgreSQL: woken by NOTIFY at once; SQLite: polled
                if self.state.wait(self.seq, WAIT_S) > self.seq and not self._stop.is_set() and self.sync():
                    self.report()
                complained = False
            except Exception as exc:  # the database is busy or gone: try again shortly
                if not complained:
                    print(f"mu daemon: cannot follow deployments: {exc}", file=sys.stderr, flush=True)
                    complained = True
                self._stop.wait(POLL_S)

    def _beat(self) -> None:
        complained = False
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.report()
                complained = False
            except Exception as exc:  # the database is busy or gone: try again at the next beat
                if not complained:
                    print(f"mu daemon: fleet heartbeat failed: {exc}", file=sys.stderr, flush=True)
                    complained = True

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self.state.leave(self.process)
        self.state.close()


@dataclass(frozen=True)
class Lagging:
    process: str
    url: str
    serving: str | None
    problem: str | None

    def describe(self) -> str:
        what = f"serves {self.serving}" if self.serving else "serves nothing"
        return f"{self.process} at {self.url} {what}" + (f": {self.problem}" if self.problem else "")


def wait_for(
    processes: Callable[[], list[dict[str, Any]]],
    enforcer_hash: str,
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[dict[str, Any]], list[Lagging]]:
    """Wait until every live process (``processes()``: the rows of :meth:`FleetState.processes`,
    read directly or through a daemon's ``GET /v1/fleet``) serves ``enforcer_hash`` and is
    ready: (the live processes, those that do not by ``timeout``, empty on success). Dead
    processes are not waited for; a process that reports a problem with this deployment is not
    waited for either."""
    deadline = clock() + timeout
    while True:
        live = [p for p in processes() if p["alive"]]
        lagging = [
            Lagging(p["process"], p["url"], p["serving"], p["problem"])
            for p in live
            if p["serving"] != enforcer_hash or not p["ready"]
        ]
        if not lagging or clock() >= deadline or all(lag.problem for lag in lagging):
            return live, lagging
        time.sleep(interval)
