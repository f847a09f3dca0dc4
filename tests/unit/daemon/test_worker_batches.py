"""The worker's batches: one acknowledgement transaction per batch with the ack journal as crash
insurance, the transport probe while SMTP is down, audit batches, a clean stop."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_faults_support import (
    ENV,
    enqueue_burst,
    free_port,
    make_store,
    outbox_depth,
    smtp_server,
    wait_until,
)

from finops_fabric.daemon import audit_log, outbox
from finops_fabric.daemon.worker import Worker, journal_path


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Any]:
    made: list[Worker] = []

    def make(kind: str = "notification", **kw: Any) -> Worker:
        w = Worker(tmp_path, ENV, kind, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        if w.notifier is not None:
            w.notifier.close()
        w.journal.close()
        w.conn.close()


def _rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(outbox.db_path(home, ENV))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_batch_is_acknowledged_in_one_transaction(tmp_path: Path, workers: Any) -> None:
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)
        keys = enqueue_burst(tmp_path, 10, ["a@example.com", "b@example.com"])
        worker = workers()
        commits: list[str] = []
        worker.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        assert worker.run_once() == 20
        assert len(commits) == 2  # the claim and the acknowledgement of all 20
        assert set(smtp.keys()) == keys and len(smtp.messages()) == 20
    assert outbox_depth(tmp_path)["notification"]["delivered"] == 20
    assert journal_path(tmp_path, ENV, "notification").read_bytes() == b""  # emptied after the commit
    # each item keeps the time its own message was accepted, in sending order
    times = [t for (t,) in _rows(tmp_path, "SELECT delivered_at FROM outbox ORDER BY id")]
    assert times == sorted(times) and len(set(times)) > 1


def test_journal_of_a_killed_worker_is_acknowledged_not_resent(tmp_path: Path, workers: Any) -> None:
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)
        enqueue_burst(tmp_path, 3, ["a@example.com"])
        dead = workers()
        items = outbox.claim(dead.conn, "notification", time.time(), 10)
        # what a worker killed mid-batch leaves: two messages accepted and journaled, no ack
        dead.journal.record(items[0].idempotency_key, 1234.5)
        dead.journal.record(items[1].idempotency_key, 1235.5)
        with open(journal_path(tmp_path, ENV, "notification"), "ab") as f:
            f.write(items[2].idempotency_key.encode()[:20])  # a torn last line: ignored
        successor = workers()
        successor.take_over()
        rows = _rows(tmp_path, "SELECT state, delivered_at FROM outbox ORDER BY id")
        assert rows == [("delivered", 1234.5), ("delivered", 1235.5), ("pending", None)]
        assert outbox.already_delivered(successor.conn, items[1].idempotency_key)
        assert successor.run_once() == 1
        assert [m["X-Fabric-Idempotency-Key"] for _, m in smtp.messages()] == [items[2].idempotency_key]
    assert journal_path(tmp_path, ENV, "notification").read_bytes() == b""


def test_no_smtp_server_is_probed_without_claiming(tmp_path: Path, workers: Any) -> None:
    make_store(tmp_path, None)  # no SMTP server configured
    enqueue_burst(tmp_path, 4, ["a@example.com"])
    worker = workers()
    assert worker.run_once() == 4  # the first batch learns that the transport is down
    assert worker.probe_at > time.time()
    enqueue_burst(tmp_path, 4, ["a@example.com"], start=4)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # probes only: nothing claimed, no attempt charged
        assert worker.run_once() == 0
        time.sleep(0.02)
    attempts = sorted(a for (a,) in _rows(tmp_path, "SELECT attempts FROM outbox"))
    assert attempts == [0, 0, 0, 0, 1, 1, 1, 1]
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)  # the operator fixes config.json; no restart
        assert wait_until(lambda: worker.run_once() >= 0 and len(smtp.messages()) == 8, 15, interval=0.05)
        assert worker.probe_at == 0.0
        assert all(n == 1 for n in smtp.keys().values())
    assert outbox_depth(tmp_path)["notification"]["delivered"] == 8


def test_server_going_down_mid_stream_backs_off_then_everything_once(tmp_path: Path, workers: Any) -> None:
    port = free_port()
    make_store(tmp_path, port)
    worker = workers()
    with smtp_server(port) as smtp:
        keys = enqueue_burst(tmp_path, 5, ["a@example.com"])
        assert worker.run_once() == 5
        smtp.stop()
        keys |= enqueue_burst(tmp_path, 5, ["a@example.com"], start=5)
        assert worker.run_once() == 5  # the open session breaks: the batch is failed, backed off
        assert worker.probe_at > time.time()
        assert worker.run_once() == 0
        smtp.start()
        assert wait_until(lambda: worker.run_once() >= 0 and len(smtp.keys()) == 10, 15, interval=0.05)
        assert smtp.keys() == dict.fromkeys(keys, 1)


def test_stop_hands_the_batch_back_untried(tmp_path: Path, workers: Any) -> None:
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)
        enqueue_burst(tmp_path, 3, ["a@example.com"])
        worker = workers()
        worker.stop()
        assert worker.run_once() == 3
        assert smtp.messages() == []
    assert _rows(tmp_path, "SELECT state, attempts FROM outbox") == [("pending", 0)] * 3


def test_exit_after_fault_acknowledges_what_was_sent(tmp_path: Path, workers: Any) -> None:
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)
        enqueue_burst(tmp_path, 5, ["a@example.com"])
        worker = workers()
        worker._exit_after = 2
        assert worker.run_once() == -1
        assert len(smtp.messages()) == 2
    states = [s for (s,) in _rows(tmp_path, "SELECT state FROM outbox ORDER BY id")]
    assert states == ["delivered", "delivered", "delivering", "delivering", "delivering"]


def test_audit_batch_builds_the_ledger_append_item_builds(tmp_path: Path, workers: Any) -> None:
    make_store(tmp_path, None)
    enqueue_burst(tmp_path, 12, [], ["immutable", "sox"])
    # a copy of the database, delivered item by item with audit_log.append_item
    reference = tmp_path / "reference"
    make_store(reference, None)
    src = sqlite3.connect(outbox.db_path(tmp_path, ENV))
    dst = sqlite3.connect(outbox.db_path(reference, ENV))
    src.backup(dst)
    src.close()
    dst.close()
    ref = outbox.open_db(outbox.db_path(reference, ENV))
    try:
        for item in outbox.claim(ref, "audit", time.time() + 1, 100):
            audit_log.append_item(ref, item)
        want = ref.execute(
            "SELECT ledger, idempotency_key, entry, prev_hash, entry_hash FROM audit_ledger"
        ).fetchall()
    finally:
        ref.close()
    worker = workers("audit", batch=10)
    commits: list[str] = []
    worker.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    assert worker.run_once() == 10 and worker.run_once() == 10 and worker.run_once() == 4
    assert len(commits) == 3
    got = worker.conn.execute(
        "SELECT ledger, idempotency_key, entry, prev_hash, entry_hash FROM audit_ledger"
    ).fetchall()
    assert sorted(got) == sorted(want) and len(got) == 24
    assert audit_log.verify(worker.conn).verified
    assert outbox_depth(tmp_path)["audit"]["delivered"] == 24
    # a redelivered item (its ack lost) appends nothing
    worker.conn.execute("UPDATE outbox SET state = 'pending', next_attempt_at = 0 WHERE id = 1")
    assert worker.run_once() == 1
    assert worker.conn.execute("SELECT COUNT(*) FROM audit_ledger").fetchone() == (24,)


def test_malformed_audit_item_is_dead_lettered_the_rest_appended(tmp_path: Path, workers: Any) -> None:
    make_store(tmp_path, None)
    enqueue_burst(tmp_path, 3, [], ["immutable"])
    worker = workers("audit")
    worker.conn.execute(
        "UPDATE outbox SET payload = ? WHERE id = 2", ('{"kind": "audit", "no_ledger": true}',)
    )
    assert worker.run_once() == 3
    rows = worker.conn.execute("SELECT state, attempts, last_error FROM outbox ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["delivered", "dead", "delivered"]
    assert rows[1][1] == 1 and "KeyError" in rows[1][2]
    assert audit_log.verify(worker.conn).verified


def test_malformed_config_is_a_transport_outage(tmp_path: Path, workers: Any) -> None:
    make_store(tmp_path, None)
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    enqueue_burst(tmp_path, 2, ["a@example.com"])
    worker = workers()
    assert worker.run_once() == 2
    assert worker.probe_at > time.time()
    errors = [e for (e,) in _rows(tmp_path, "SELECT last_error FROM outbox")]
    assert all("not valid JSON" in e for e in errors)
    enqueue_burst(tmp_path, 2, ["a@example.com"], start=2)
    assert worker.run_once() == 0  # not claimed while the configuration is broken
    assert sorted(a for (a,) in _rows(tmp_path, "SELECT attempts FROM outbox")) == [0, 0, 1, 1]
