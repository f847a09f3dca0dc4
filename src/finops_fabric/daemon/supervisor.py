"""Supervision of the notification and audit worker processes (one-for-one, OTP style).

    sup = Supervisor(home, env, kinds=("notification", "audit"), on_event=callback)
    sup.start()            # spawn one worker per kind and a watcher thread
    sup.status()           # {kind: {pid, state, restarts, last_exit, ...}}
    sup.health()           # {"status": "ok" | "degraded" | "stopped", "processes": sup.status()}
    sup.stop()             # SIGTERM, wait, SIGKILL what is left

The watcher thread polls every worker. A worker that exits while it should be running is a
crash: it is restarted after a back-off (0.1 s doubling to 5 s for consecutive crashes), unless
the restart intensity is exceeded (more than ``max_restarts`` restarts within ``window_seconds``,
5 in 60 s by default). Then the worker is marked ``failed``, nothing restarts it (until
:meth:`Supervisor.restart`), and :meth:`health` says ``degraded``: decisions go on, their side
effects wait in the outbox. A restarted worker that stays up ``stable_seconds`` has recovered.

Every crash, restart, recovery and give-up is a signed receipt of kind ``supervision`` in the
store's ledger (:meth:`finops_fabric.store.Store.append`) and is passed to ``on_event`` (a dict
with ``event``, ``process``, ``pid``, ``exit_code``, ``restarts``, ``receipt_hash``, …).
Worker output goes to ``<store>/logs/worker-<env>-<kind>.log``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from finops_fabric.daemon import outbox
from finops_fabric.files import private_dir

__all__ = ["EVENTS", "ProcessState", "Supervisor"]

EVENTS = ("crash", "restart", "recovery", "give_up")
WORKER_MODULE = "finops_fabric.daemon.worker"

EventCallback = Callable[[dict[str, Any]], None]


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ProcessState:
    """What the supervisor knows about one worker."""

    kind: str
    proc: subprocess.Popen[bytes] | None = None
    state: str = "stopped"  # running | restarting | failed | stopped
    restarts: int = 0
    last_exit: int | None = None
    started_at: float | None = None
    restart_at: float | None = None
    consecutive: int = 0
    recovered: bool = True
    restart_times: deque[float] = field(default_factory=deque)
    log: IO[bytes] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.proc.pid if self.proc is not None and self.state == "running" else None,
            "state": self.state,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "uptime_s": round(time.time() - self.started_at, 3)
            if self.started_at is not None and self.state == "running"
            else None,
        }


class Supervisor:
    """Keeps one worker process per kind alive; see the module documentation."""

    def __init__(
        self,
        home: str | os.PathLike[str],
        env: str,
        kinds: Sequence[str] = outbox.KINDS,
        on_event: EventCallback | None = None,
        *,
        max_restarts: int = 5,
        window_seconds: float = 60.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        stable_seconds: float = 2.0,
        poll_interval: float = 0.05,
        worker_module: str = WORKER_MODULE,
        worker_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        record_receipts: bool = True,
    ) -> None:
        for kind in kinds:
            if kind not in outbox.KINDS:
                raise ValueError(f"unknown worker kind {kind!r}")
        self.home = Path(home).expanduser().absolute()
        self.env = env
        outbox.db_path(self.home, env)  # validates the name
        self.kinds = tuple(kinds)
        self.on_event = on_event
        self.max_restarts = max_restarts
        self.window_seconds = window_seconds
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stable_seconds = stable_seconds
        self.poll_interval = poll_interval
        self.worker_module = worker_module
        self.worker_args = tuple(worker_args)
        self.extra_env = dict(extra_env or {})
        self.record_receipts = record_receipts
        self.events: list[dict[str, Any]] = []
        self._procs = {kind: ProcessState(kind) for kind in self.kinds}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn every worker and the watcher thread (idempotent while running)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            # The workers open the database themselves; create it (and the schema) once here.
            if "FABRIC_DATABASE_URL" not in self.extra_env:  # else they share that database
                outbox.open_db(outbox.db_path(self.home, self.env)).close()
            for ps in self._procs.values():
                self._spawn(ps)
            self._thread = threading.Thread(target=self._watch, name=f"supervisor-{self.env}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every worker, wait up to ``timeout`` seconds, SIGKILL what is left."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=max(1.0, self.poll_interval * 10))
        with self._lock:
            for ps in self._procs.values():
                if ps.proc is not None and ps.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        ps.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for ps in self._procs.values():
                if ps.proc is None:
                    continue
                try:
                    ps.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        ps.proc.kill()
                    ps.proc.wait(timeout=5.0)
                ps.last_exit = ps.proc.returncode
                if ps.state != "failed":
                    ps.state = "stopped"
                if ps.log is not None:
                    ps.log.close()
                    ps.log = None
        self._thread = None

    def restart(self, kind: str) -> None:
        """Start a ``failed`` (or stopped) worker again by hand, with a fresh intensity window."""
        with self._lock:
            ps = self._procs[kind]
            if ps.state == "running" and ps.proc is not None and ps.proc.poll() is None:
                return
            ps.restart_times.clear()
            ps.consecutive = 0
            self._spawn(ps)

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the daemon reports ----------------------------------------------------------------

    def status(self) -> dict[str, dict[str, Any]]:
        """Per worker kind: ``pid``, ``state`` (running/restarting/failed/stopped), ``restarts``,
        ``last_exit``, ``uptime_s``."""
        with self._lock:
            return {kind: ps.to_dict() for kind, ps in self._procs.items()}

    def degraded(self) -> bool:
        with self._lock:
            return any(ps.state in ("failed", "restarting") for ps in self._procs.values())

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded"|"stopped", "processes": status()}``: degraded while any
        worker is failed or waiting to restart."""
        processes = self.status()
        states = {p["state"] for p in processes.values()}
        if states & {"failed", "restarting"}:
            overall = "degraded"
        elif states == {"running"}:
            overall = "ok"
        else:
            overall = "stopped"
        return {"status": overall, "processes": processes}

    def pids(self) -> dict[str, int | None]:
        with self._lock:
            return {
                kind: (ps.proc.pid if ps.proc is not None and ps.proc.poll() is None else None)
                for kind, ps in self._procs.items()
            }

    # --- internals ------------------------------------------------------------------------------

    def _argv(self, kind: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            self.worker_module,
            f"--env={self.env}",
            f"--kind={kind}",
            f"--home={self.home}",
            f"--parent-pid={os.getpid()}",
            *self.worker_args,
        ]

    def _spawn(self, ps: ProcessState) -> None:
        if ps.log is None:
            logs = private_dir(self.home / "logs")
            fd = os.open(
                logs / f"worker-{self.env}-{ps.kind}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
            ps.log = os.fdopen(fd, "ab")
        env = dict(os.environ)
        env.update(self.extra_env)
        ps.proc = subprocess.Popen(
            self._argv(ps.kind),
            stdin=subprocess.DEVNULL,
            stdout=ps.log,
            stderr=subprocess.STDOUT,
            env=env,
            close_fds=True,
            start_new_session=True,  # a Ctrl-C at the daemon's terminal reaches the daemon only
        )
        ps.state = "running"
        ps.started_at = time.time()
        ps.restart_at = None

    def _watch(self) -> None:
        while not self._stopping.wait(self.poll_interval):
            try:
                self._tick()
            except Exception as exc:  # never let the watcher die
                print(f"supervisor: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _tick(self) -> None:
        pending: list[dict[str, Any]] = []
        with self._lock:
            if self._stopping.is_set():
                return
            now = time.monotonic()
            for ps in self._procs.values():
                if ps.state == "running" and ps.proc is not None:
                    code = ps.proc.poll()
                    if code is None:
                        if (
                            not ps.recovered
                            and ps.started_at is not None
                            and time.time() - ps.started_at >= self.stable_seconds
                        ):
                            ps.recovered = True
                            ps.consecutive = 0
                            pending.append(self._event("recovery", ps))
                        continue
                    ps.last_exit = code
                    while ps.restart_times and now - ps.restart_times[0] > self.window_seconds:
                        ps.restart_times.popleft()
                    if len(ps.restart_times) >= self.max_restarts:
                        ps.state = "failed"
                        pending.append(self._event("crash", ps, exit_code=code))
                        pending.append(self._event("give_up", ps, exit_code=code))
                        continue
                    delay = min(self.backoff_cap, self.backoff_base * (2.0**ps.consecutive))
                    ps.consecutive += 1
                    ps.state = "restarting"
                    ps.restart_at = now + delay
                    pending.append(self._event("crash", ps, exit_code=code, restart_in_s=round(delay, 3)))
                elif ps.state == "restarting" and ps.restart_at is not None and now >= ps.restart_at:
                    ps.restart_times.append(now)
                    ps.restarts += 1
                    ps.recovered = False
                    old_pid = ps.proc.pid if ps.proc is not None else None
                    self._spawn(ps)
                    pending.append(self._event("restart", ps, previous_pid=old_pid))
        for event in pending:  # outside the lock: signing and SQLite take time
            self._emit(event)

    def _event(self, name: str, ps: ProcessState, **extra: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event": name,
            "environment": self.env,
            "process": ps.kind,
            "pid": ps.proc.pid if ps.proc is not None else None,
            "restarts": ps.restarts,
            "state": ps.state,
            "time": _now_iso(),
            "intensity": {"max_restarts": self.max_restarts, "window_seconds": self.window_seconds},
        }
        event.update(extra)
        return event

    def _emit(self, event: dict[str, Any]) -> None:
        if self.record_receipts:
            try:
                from finops_fabric.store import Store

                receipt = Store(self.home).append({"kind": "supervision", **event})
                event["receipt_hash"] = receipt["receipt_hash"]
            except Exception as exc:  # the store may be unavailable: the event still counts
                event["receipt_error"] = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.events.append(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception as exc:
                print(f"supervisor: on_event failed: {type(exc).__name__}: {exc}", file=sys.stderr)
