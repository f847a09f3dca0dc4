"""Helpers for the daemon worker tests (no tests here): a real SMTP server on loopback
(aiosmtpd), a store with its config, decision bursts, bounded waits.

pytest puts this folder on sys.path (tests/ is not a package), so the tests import it as
``from test_faults_support import ...``.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from finops_fabric.daemon import outbox
from finops_fabric.store import Store

ENV = "test"
RULE_NOTIFY = "https://example.com/test#NotifyFinance"
RULE_AUDIT = "https://example.com/test#AuditLarge"
ENFORCER = "sha256:" + "ab" * 32


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class _Collector:
    def __init__(self, refuse: set[str], pipelining: bool) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], Message]] = []
        self.raw: list[bytes] = []
        self.refuse = refuse
        self.pipelining = pipelining

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        # aiosmtpd reads commands in order and so accepts pipelined ones (RFC 2920), but does
        # not say so; most mail servers do.
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
            self.raw.append(bytes(envelope.original_content))
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1:<port>; collects every message; can be stopped and started again on
    the same port (an outage). It offers PIPELINING unless ``pipelining=False``."""

    def __init__(
        self, port: int | None = None, refuse: set[str] | None = None, *, pipelining: bool = True
    ) -> None:
        self.port = port or free_port()
        self.collector = _Collector(refuse or set(), pipelining)
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        deadline = time.monotonic() + 10
        while True:
            controller = Controller(self.collector, hostname="127.0.0.1", port=self.port)
            try:
                controller.start()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # the port may linger for a moment after a stop
                continue
            self._controller = controller
            return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def messages(self) -> list[tuple[list[str], Message]]:
        with self.collector.lock:
            return list(self.collector.messages)

    def keys(self) -> Counter[str]:
        """How many times each idempotency key arrived."""
        return Counter(str(m["X-Fabric-Idempotency-Key"]) for _, m in self.messages())

    def raw_messages(self) -> list[bytes]:
        """The message bytes as received (dot-stuffing undone), in arrival order."""
        with self.collector.lock:
            return list(self.collector.raw)

    def message_ids(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]) for _, m in self.messages())


@contextlib.contextmanager
def smtp_server(
    port: int | None = None, refuse: set[str] | None = None, *, pipelining: bool = True
) -> Iterator[SmtpServer]:
    server = SmtpServer(port, refuse, pipelining=pipelining)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_store(home: Path, smtp_port: int | None, **extra: Any) -> Path:
    """An initialised store whose config.json points the notifier at ``smtp_port``."""
    Store(home).init()
    config: dict[str, Any] = dict(extra)
    if smtp_port is not None:
        config["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "from": "fabric@localhost", "timeout": 5}
    (home / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return home


def decision_for(
    i: int, recipients: list[str], ledgers: list[str] | None = None, *, tx_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (decision, transaction) pair with one notification per recipient and one audit entry
    per ledger."""
    tid = tx_id if tx_id is not None else f"tx-{i}"
    tx = {
        "id": tid,
        "type": "purchase",
        "amount": f"{100000 + i}.00",
        "currency": "USD",
        "actor_id": "u-7",
        "actor_level": "L2",
    }
    decision = {
        "transaction_id": tid,
        "decision": "REJECT" if i % 2 else "APPROVE",
        "fired": [{"rule": "https://example.com/test#Limit", "reason": "amount over limit"}],
        "notifications": [{"rule": RULE_NOTIFY, "recipient": r} for r in recipients],
        "audit": [{"rule": RULE_AUDIT, "ledger": led, "flags": ["L3_override"]} for led in ledgers or []],
        "enforcer_hash": ENFORCER,
    }
    return decision, tx


def enqueue_burst(
    home: Path, n: int, recipients: list[str], ledgers: list[str] | None = None, *, start: int = 0
) -> set[str]:
    """Simulate ``n`` decision transactions (decision row + outbox rows, one commit each) and
    return the idempotency keys that must be delivered."""
    conn = outbox.open_db(outbox.db_path(home, ENV))
    keys: set[str] = set()
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS decisions (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        for i in range(start, start + n):
            decision, tx = decision_for(i, recipients, ledgers)
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute("INSERT INTO decisions (body) VALUES (?)", (json.dumps(decision),))
            decision_id = int(cur.lastrowid or 0)
            outbox.enqueue_for_decision(conn, decision_id, decision, tx)
            conn.execute("COMMIT")
            keys |= {k for kind, k, _ in outbox.items_for_decision(decision_id, decision, tx)}
    finally:
        conn.close()
    return keys


def notification_keys(keys: set[str], home: Path) -> set[str]:
    """The subset of ``keys`` that are notification items."""
    conn = sqlite3.connect(outbox.db_path(home, ENV))
    try:
        rows = conn.execute("SELECT idempotency_key FROM outbox WHERE kind = 'notification'").fetchall()
    finally:
        conn.close()
    return keys & {r[0] for r in rows}


def outbox_depth(home: Path) -> dict[str, Any]:
    conn = sqlite3.connect(outbox.db_path(home, ENV), timeout=30)
    try:
        return outbox.depth(conn)
    finally:
        conn.close()


def supervision_receipts(home: Path) -> list[dict[str, Any]]:
    return Store(home).receipts("supervision")
