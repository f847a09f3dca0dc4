"""A pre-fork parent: N HTTP processes of one daemon on one port.

    group = ProcessGroup(argv_of, sock, n=2)   # argv_of(index, fd, ready_fd) -> child argv
                                               # (sock None, fd -1: each child listens itself)
    group.start()          # child 0 first (it creates what is missing), then the others; each
                           # says it is ready on a pipe; a child that dies before it is ready
                           # fails the start (ProcessGroup.StartFailed)
    group.run()            # supervise until SIGTERM/SIGINT: a child that exits is restarted
                           # after a back-off (0.1 s doubling to 5 s; reset once it stays up 10 s)
    group.stop()           # SIGTERM to every child, wait, SIGKILL what is left

Where the system has SO_REUSEPORT the parent only holds the port (bound, not listening) and each
child listens on it with a socket of its own: the kernel spreads new connections evenly over
them (a child that dies loses the connections waiting in its own queue; new ones go to the
others). Without it the parent listens once and every child accepts on that socket (the first
awake takes what waits, so the load may be uneven). The parent runs no event loop and holds no database
connection; it forwards SIGTERM and SIGINT to the children, which finish their requests, commit
their decisions and exit.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

__all__ = ["ProcessGroup", "StartFailed"]

ArgvOf = Callable[[int, int, int], Sequence[str]]


class StartFailed(Exception):
    """A child exited (or did not say it was ready in time) while the group started."""

    def __init__(self, index: int, code: int | None) -> None:
        self.index = index
        self.code = code
        super().__init__(
            f"HTTP process {index} "
            + (f"exited with {code}" if code is not None else "did not become ready")
            + " while the daemon started"
        )


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    consecutive: int = 0
    restart_at: float | None = None
    history: list[int] = field(default_factory=list)


class ProcessGroup:
    def __init__(
        self,
        argv_of: ArgvOf,
        sock: socket.socket | None,
        n: int,
        *,
        start_timeout: float = 120.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        stable_seconds: float = 10.0,
        log: Callable[[str], None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv_of = argv_of
        self.sock = sock
        self.children = [_Child(i) for i in range(n)]
        self.start_timeout = start_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stable_seconds = stable_seconds
        self.log = log if log is not None else (lambda m: print(m, file=sys.stderr, flush=True))
        self._stopping = False
        self.env = {**os.environ, **(env or {})}

    # --- start -----------------------------------------------------------------------------

    def _spawn(self, child: _Child) -> int:
        """Start one child; the read end of its ready pipe."""
        r, w = os.pipe()
        fd = self.sock.fileno() if self.sock is not None else -1
        try:
            child.proc = subprocess.Popen(
                list(self.argv_of(child.index, fd, w)),
                stdin=subprocess.DEVNULL,
                pass_fds=(fd, w) if fd >= 0 else (w,),
                env=self.env,
                start_new_session=True,  # a Ctrl-C reaches the parent, which forwards it
            )
        finally:
            os.close(w)
        child.started = time.monotonic()
        child.restart_at = None
        return r

    def _await_ready(self, pending: dict[int, _Child], deadline: float) -> None:
        """Wait until every child in ``pending`` (ready pipe → child) wrote its line."""
        try:
            while pending:
                for child in list(pending.values()):
                    assert child.proc is not None
                    code = child.proc.poll()
                    if code is not None:
                        raise StartFailed(child.index, code)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StartFailed(next(iter(pending.values())).index, None)
                readable, _, _ = select.select(list(pending), [], [], min(left, 0.2))
                for fd in readable:
                    data = os.read(fd, 64)
                    if data:  # "ready"
                        os.close(fd)
                        del pending[fd]
                    # EOF without a line: the child is exiting; poll() above reports it
        finally:
            for fd in pending:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def start(self) -> None:
        """Child 0 first (schema upgrades and first heads happen once), then the rest together."""
        deadline = time.monotonic() + self.start_timeout
        try:
            first = self.children[0]
            self._await_ready({self._spawn(first): first}, deadline)
            rest = {self._spawn(c): c for c in self.children[1:]}
            self._await_ready(rest, deadline)
        except BaseException:
            self.stop()
            raise

    # --- supervise ---------------------------------------------------------------------------

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def run(self, poll: float = 0.05) -> None:
        """Supervise until SIGTERM or SIGINT, then stop every child."""
        previous = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not self._stopping:
                self.tick()
                time.sleep(poll)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.stop()

    def tick(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if child.restart_at is not None:
                if now >= child.restart_at and not self._stopping:
                    fd = self._spawn(child)
                    os.close(fd)  # a restarted child joins when it is ready; nobody waits for it
                    child.restarts += 1
                    self.log(
                        f"mu daemon: HTTP process {child.index} restarted "
                        f"(pid {child.proc.pid if child.proc else '?'}, restart {child.restarts})"
                    )
                continue
            if proc is None:
                continue
            code = proc.poll()
            if code is None:
                if child.consecutive and now - child.started >= self.stable_seconds:
                    child.consecutive = 0
                continue
            child.history.append(code)
            delay = min(self.backoff_cap, self.backoff_base * (2.0**child.consecutive))
            child.consecutive += 1
            child.restart_at = now + delay
            self.log(
                f"mu daemon: HTTP process {child.index} (pid {proc.pid}) exited with {code}; "
                f"restarting in {delay:.1f} s"
            )

    def pids(self) -> list[int | None]:
        return [c.proc.pid if c.proc is not None and c.proc.poll() is None else None for c in self.children]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every child, wait up to ``timeout`` seconds, SIGKILL what is left."""
        self._stopping = True
        procs = [c.proc for c in self.children if c.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=5.0)
