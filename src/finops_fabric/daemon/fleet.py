"""Many daemon processes serving one environment: who is alive, what each serves, and deploys
that reach every one of them.

Two tables beside the decision log (``<store>/daemon-<env>.db``):

``fleet_deployments``
    one row per successful deployment or rollback, in order (``seq``): the receipt hash in the
    store's ledger, the enforcer hash, the generation receipt hash. The process that deployed
    writes it right after the receipt, before it answers the deployment request.
``fleet_processes``
    one row per live daemon process: its id (``host:pid``), URL, the enforcer hash it serves,
    the deployment it reached (``deployment_seq``), whether it is ready, why not (``problem``),
    and a heartbeat (Unix time, renewed every :data:`HEARTBEAT_S`). A process whose heartbeat is
    older than :data:`PROCESS_TTL_S` is dead and is not waited for; a clean shutdown removes its
    row.

Every process runs a :class:`FleetMember` thread: it polls for a newer deployment every
:data:`POLL_S` (the fallback the issue allows; a PostgreSQL backend can wake it with
LISTEN/NOTIFY instead), boots and health-checks that A (:meth:`Runtime.follow`) and switches, and
reports it. Each decision is still made by exactly one A (the request reads ``runtime.active``
once) and logged with that A's hash, so no decision is ever partial across a switch.
:func:`wait_for` is what ``mu deploy`` and ``mu rollback`` wait on: every live process serving the
new hash, or the list of those that do not (and why).
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finops_fabric.daemon import decision_log

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
PROCESS_TTL_S = 3.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_deployments (
    seq                     INTEGER PRIMARY KEY AUTOINCREMENT,
    receipt_hash            TEXT NOT NULL UNIQUE,
    enforcer_hash           TEXT NOT NULL,
    generation_receipt_hash TEXT NOT NULL,
    kind                    TEXT NOT NULL,
    recorded_at             REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet_processes (
    process        TEXT PRIMARY KEY,
    pid            INTEGER NOT NULL,
    url            TEXT NOT NULL,
    serving        TEXT,
    deployment_seq INTEGER NOT NULL DEFAULT 0,
    ready          INTEGER NOT NULL DEFAULT 0,
    problem        TEXT,
    heartbeat      REAL NOT NULL,
    started_at     REAL NOT NULL
);
"""


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


class FleetState:
    """The fleet tables of one environment's database (SQLite)."""

    def __init__(self, home: Path, env: str, *, timeout: float = 30.0) -> None:
        self.path = decision_log.db_path(home, env)
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = decision_log.connect(self.path)  # the decision log's schema and file mode
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def record(self, receipt_hash: str, enforcer_hash: str, generation_receipt_hash: str, kind: str) -> int:
        """Record a successful deployment (after its receipt is in the ledger); its ``seq``."""
        with self._lock:
            db = self._db()
            db.execute(
                "INSERT OR IGNORE INTO fleet_deployments (receipt_hash, enforcer_hash, "
                "generation_receipt_hash, kind, recorded_at) VALUES (?, ?, ?, ?, ?)",
                (receipt_hash, enforcer_hash, generation_receipt_hash, kind, time.time()),
            )
            row = db.execute(
                "SELECT seq FROM fleet_deployments WHERE receipt_hash = ?", (receipt_hash,)
            ).fetchone()
            return int(row[0])

    def latest(self) -> Deployment | None:
        with self._lock:
            row = (
                self._db()
                .execute(
                    "SELECT seq, receipt_hash, enforcer_hash, generation_receipt_hash, kind "
                    "FROM fleet_deployments ORDER BY seq DESC LIMIT 1"
                )
                .fetchone()
            )
        return Deployment(int(row[0]), *map(str, row[1:])) if row is not None else None

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
        now = time.time()
        with self._lock:
            self._db().execute(
                "INSERT INTO fleet_processes (process, pid, url, serving, deployment_seq, ready, problem,"
                " heartbeat, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (process) DO UPDATE"
                " SET url = excluded.url, serving = excluded.serving, deployment_seq ="
                " excluded.deployment_seq, ready = excluded.ready, problem = excluded.problem,"
                " heartbeat = excluded.heartbeat",
                (process, pid, url, serving, seq, int(ready), problem, now, now),
            )

    def leave(self, process: str) -> None:
        with self._lock:
            self._db().execute("DELETE FROM fleet_processes WHERE process = ?", (process,))

    def processes(self, *, ttl: float = PROCESS_TTL_S) -> list[dict[str, Any]]:
        """Every process row, with ``alive`` (heartbeat within ``ttl`` seconds)."""
        now = time.time()
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT process, pid, url, serving, deployment_seq, ready, problem, heartbeat, started_at"
                    " FROM fleet_processes ORDER BY process"
                )
                .fetchall()
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
                "heartbeat_age_s": round(now - float(r[7]), 3),
                "alive": now - float(r[7]) <= ttl,
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
        seq = self.state.record(receipt["receipt_hash"], str(result.to_dict()["enforcer_hash"]), gen, kind)
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
        while not self._stop.wait(POLL_S):
            try:
                if self.sync():
                    self.report()
            except Exception as exc:  # the database is busy or gone: try again at the next poll
                print(f"mu daemon: cannot follow deployments: {exc}", file=sys.stderr, flush=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.report()
            except Exception as exc:  # the database is busy or gone: try again at the next beat
                print(f"mu daemon: fleet heartbeat failed: {exc}", file=sys.stderr, flush=True)

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
    state: FleetState,
    enforcer_hash: str,
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[dict[str, Any]], list[Lagging]]:
    """Wait until every live process serves ``enforcer_hash`` and is ready: (the live processes,
    those that do not by ``timeout``, empty on success). Dead processes are not waited for; a
    process that reports a problem with this deployment is not waited for either."""
    deadline = clock() + timeout
    while True:
        live = [p for p in state.processes() if p["alive"]]
        lagging = [
            Lagging(p["process"], p["url"], p["serving"], p["problem"])
            for p in live
            if p["serving"] != enforcer_hash or not p["ready"]
        ]
        if not lagging or clock() >= deadline or all(lag.problem for lag in lagging):
            return live, lagging
        time.sleep(interval)
