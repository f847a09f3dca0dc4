"""Notification delivery over SMTP (a real aiosmtpd server on loopback) and to a webhook."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_faults_support import (
    ENV,
    RULE_NOTIFY,
    decision_for,
    enqueue_burst,
    free_port,
    make_store,
    outbox_depth,
    smtp_server,
)

from finops_fabric.daemon import outbox
from finops_fabric.daemon.notifier import Notifier, PermanentError, TransientError, build_message
from finops_fabric.daemon.worker import Worker


def _drain(worker: Worker, timeout: float = 20.0) -> None:
    """Run the worker loop in-process until nothing is due (bounded)."""
    deadline = time.monotonic() + timeout
    while worker.run_once() > 0:
        assert time.monotonic() < deadline, "worker did not drain the outbox in time"


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Worker] = []

    def make(kind: str = "notification") -> Worker:
        w = Worker(tmp_path, ENV, kind)
        made.append(w)
        return w

    yield make
    for w in made:
        if w.notifier is not None:
            w.notifier.close()
        w.conn.close()


def test_message_names_decision_rule_and_key() -> None:
    decision, tx = decision_for(1, ["finance@example.com"])
    ((_, key, payload),) = outbox.items_for_decision(9, decision, tx)
    msg = build_message(payload, "fabric@localhost")
    assert msg["To"] == "finance@example.com" and msg["From"] == "fabric@localhost"
    assert "REJECT" in msg["Subject"] and "tx-1" in msg["Subject"] and RULE_NOTIFY in msg["Subject"]
    assert msg["X-Fabric-Idempotency-Key"] == key
    assert msg["Message-ID"] == f"<{key.removeprefix('sha256:')}@finops-fabric>"
    assert msg["X-Fabric-Decision-Id"] == "9"
    assert "amount over limit" in msg.get_content()


def test_burst_in_process_each_recipient_once(tmp_path: Path, worker_factory: Any) -> None:
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)
        keys = enqueue_burst(tmp_path, 40, ["a@example.com", "b@example.com"])
        worker = worker_factory()
        _drain(worker)
        got = smtp.keys()
        assert set(got) == keys and all(n == 1 for n in got.values())
        by_rcpt: dict[str, int] = {}
        for rcpts, _ in smtp.messages():
            assert len(rcpts) == 1
            by_rcpt[rcpts[0]] = by_rcpt.get(rcpts[0], 0) + 1
        assert by_rcpt == {"a@example.com": 40, "b@example.com": 40}
        assert outbox_depth(tmp_path)["notification"]["delivered"] == 80


def test_redelivered_item_with_delivered_key_is_not_sent(tmp_path: Path, worker_factory: Any) -> None:
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)
        enqueue_burst(tmp_path, 1, ["a@example.com"])
        worker = worker_factory()
        (item,) = outbox.claim(worker.conn, "notification", time.time() + 1, lease_seconds=0.01)
        worker.deliver(item)  # sent and acked
        assert len(smtp.messages()) == 1
        # simulate a lost ack: the row is claimable again but its key is recorded as delivered
        worker.conn.execute("UPDATE outbox SET state = 'pending', next_attempt_at = 0")
        _drain(worker)
        assert len(smtp.messages()) == 1
        assert outbox_depth(tmp_path)["notification"]["delivered"] == 1


def test_server_down_backs_off_then_delivers(tmp_path: Path, worker_factory: Any) -> None:
    port = free_port()
    make_store(tmp_path, port)
    keys = enqueue_burst(tmp_path, 5, ["a@example.com"])
    worker = worker_factory()
    assert worker.run_once() == 5  # all fail at once (connection refused): one try, whole batch
    conn = sqlite3.connect(outbox.db_path(tmp_path, ENV))
    try:
        rows = conn.execute("SELECT state, attempts, last_error, next_attempt_at FROM outbox").fetchall()
    finally:
        conn.close()
    assert {r[0] for r in rows} == {"pending"} and {r[1] for r in rows} == {1}
    assert all("127.0.0.1" in r[2] for r in rows)
    assert all(r[3] > time.time() for r in rows)  # backed off
    assert worker.run_once() == 0
    with smtp_server(port) as smtp:
        deadline = time.monotonic() + 10
        while len(smtp.keys()) < 5 and time.monotonic() < deadline:
            worker.run_once()
            time.sleep(0.05)
        assert smtp.keys() == dict.fromkeys(keys, 1)


def test_refused_recipient_is_dead_lettered_others_delivered(tmp_path: Path, worker_factory: Any) -> None:
    with smtp_server(refuse={"nobody@example.com"}) as smtp:
        make_store(tmp_path, smtp.port)
        enqueue_burst(tmp_path, 3, ["a@example.com", "nobody@example.com"])
        _drain(worker_factory())
        assert len(smtp.messages()) == 3
        d = outbox_depth(tmp_path)["notification"]
        assert d["delivered"] == 3 and d["dead"] == 3


def test_no_smtp_configured_is_transient(tmp_path: Path) -> None:
    make_store(tmp_path, None)
    decision, tx = decision_for(1, ["a@example.com"])
    ((_, _, payload),) = outbox.items_for_decision(1, decision, tx)
    with pytest.raises(TransientError):
        Notifier(tmp_path).deliver(payload)
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TransientError):
        Notifier(tmp_path).deliver(payload)


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]]
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Idempotency-Key"], json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_webhook_gets_json_and_mail_is_not_resent_when_hook_fails(
    tmp_path: Path, worker_factory: Any
) -> None:
    class hook(_Hook):
        received: list[tuple[str, dict[str, Any]]] = []  # noqa: RUF012 - one server per test
        status = 503

    httpd = http.server.HTTPServer(("127.0.0.1", 0), hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with smtp_server() as smtp:
            url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
            make_store(tmp_path, smtp.port, webhook={"url": url, "loopback_only": True})
            keys = enqueue_burst(tmp_path, 2, ["a@example.com"])
            worker = worker_factory()
            worker.run_once()  # mail goes out, the hook answers 503
            assert len(smtp.messages()) == 2 and len(hook.received) == 2
            assert outbox_depth(tmp_path)["notification"]["pending"] == 2
            hook.status = 200
            worker.conn.execute("UPDATE outbox SET next_attempt_at = 0 WHERE state = 'pending'")
            _drain(worker)
            assert len(smtp.messages()) == 2  # the mail part was recorded: not sent again
            assert len(hook.received) == 4
            assert {k for k, _ in hook.received} == keys
            assert hook.received[-1][1]["recipient"] == "a@example.com"
            assert outbox_depth(tmp_path)["notification"]["delivered"] == 2
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_webhook_rejects_non_loopback_when_asked(tmp_path: Path) -> None:
    make_store(tmp_path, None, webhook={"url": "http://192.0.2.1/hook", "loopback_only": True})
    n = Notifier(tmp_path)
    n._config = json.loads((tmp_path / "config.json").read_text())
    decision, tx = decision_for(1, ["a@example.com"])
    ((_, _, payload),) = outbox.items_for_decision(1, decision, tx)
    with pytest.raises(PermanentError):
        n.post_webhook(payload)
