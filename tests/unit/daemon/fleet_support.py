"""A tiny TCP proxy for the partition tests: a daemon reaches its database through it, and the
test cuts the link (every byte dropped, nothing answered, no reset: a network partition as a
daemon sees it) and heals it again."""

from __future__ import annotations

import contextlib
import select
import socket
import threading


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
        except OSError:
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
