"""Helpers of the fleet and fault tests: `mu daemon` and `mu` subprocesses on a store, a load
generator that records every answer, and a tiny TCP proxy a daemon reaches its database through,
which the partition test cuts (every byte dropped, nothing answered, no reset: a network
partition as a daemon sees it) and heals again."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
from test_faults_support import wait_until

ENV = "test"


def tx(i: int | str) -> dict[str, str]:
    """A purchase above the approval threshold: a REJECT with a notification to finance."""
    return {
        "id": f"f{i}",
        "type": "purchase",
        "amount": "105000",
        "currency": "USD",
        "actor_id": "u-1",
        "actor_level": "L2",
    }


@contextlib.contextmanager
def daemon(home: Path, log: Path, *args: str, **extra_env: str) -> Iterator[subprocess.Popen[bytes]]:
    """A `mu daemon --env=test` subprocess, once it said it serves (its line in ``log``)."""
    log.touch()
    start = log.stat().st_size
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finops_fabric.cli", "daemon", f"--env={ENV}", *args],
            stdout=out,
            stderr=out,
            env={**os.environ, "FABRIC_HOME": str(home), **extra_env},
        )
    try:

        def up() -> bool:
            return "serving" in log.read_text()[start:] or proc.poll() is not None

        assert wait_until(up, 90), log.read_text()
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def mu(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "finops_fabric.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "FABRIC_HOME": str(home)},
        timeout=timeout,
        check=False,
    )


class Load:
    """Decisions sent to ``port`` from a thread, one after another, until :meth:`stop`: which
    were answered (decision id → transaction id), which statuses and error codes came back, and
    whether any connection failed."""

    def __init__(self, port: int, token: str, name: str) -> None:
        self.port = port
        self.token = token
        self.name = name
        self.answered: dict[str, str] = {}
        self.statuses: Counter[int] = Counter()
        self.codes: Counter[str] = Counter()
        self.connection_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=headers, timeout=30) as c:
            i = 0
            while not self._stop.is_set():
                i += 1
                body = tx(f"{self.name}-{i}")
                try:
                    r = c.post("/v1/decisions", json=body)
                except httpx.HTTPError:
                    self.connection_errors += 1
                    time.sleep(0.02)
                    continue
                self.statuses[r.status_code] += 1
                if r.status_code == 200:
                    self.answered[r.headers["X-Decision-Id"]] = body["id"]
                else:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        self.codes[r.json()["error"]["code"]] += 1
                    time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


class TcpProxy:
    """Forward 127.0.0.1:``port`` to ``upstream``; :meth:`partition` blackholes every connection
    (open or new: accepted, never answered), :meth:`heal` forwards again (new connections; the
    blackholed ones are closed, as a partition that lasted longer than TCP's patience would)."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = int(self.listener.getsockname()[1])
        self.partitioned = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self.listener], [], [], 0.1)
            if not readable:
                continue
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.partitioned.is_set():
                with self._lock:
                    self._pairs.append((client, None))  # held open, never answered
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                if self.partitioned.is_set():
                    for s in readable:  # read and drop: nothing gets through, either way
                        with contextlib.suppress(OSError):
                            s.recv(65536)
                    continue
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except (OSError, ValueError):  # closed by heal() or close() meanwhile
            return
        finally:
            if not self.partitioned.is_set():
                for s in (client, server):
                    with contextlib.suppress(OSError):
                        s.close()

    def partition(self) -> None:
        self.partitioned.set()

    def heal(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for s in (client, server):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()
        self.partitioned.clear()

    def close(self) -> None:
        self._stop.set()
        self.heal()
        with contextlib.suppress(OSError):
            self.listener.close()
        self._thread.join(timeout=5)
