"""Health says when mail cannot go out: no SMTP configured, SMTP unreachable since T, a backlog
that does not drain; `mu outbox status` says why items wait. The worker records its transport,
the daemon serves the last assessment without I/O per request."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from test_faults_support import ENV, enqueue_burst, free_port, make_store, smtp_server, wait_until

from finops_fabric.cli import main
from finops_fabric.daemon import delivery, outbox
from finops_fabric.daemon.app import create_app
from finops_fabric.daemon.effects import attach
from finops_fabric.daemon.worker import Worker
from finops_fabric.store import Store

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

RECIPIENTS = ["finance@example.com"]


def _conn(home: Path) -> Any:
    return outbox.open_db(outbox.db_path(home, ENV), synchronous="NORMAL")


def test_no_smtp_configured_is_degraded_and_recorded_by_the_worker(tmp_path: Path) -> None:
    make_store(tmp_path, None)
    enqueue_burst(tmp_path, 2, RECIPIENTS)
    conn = _conn(tmp_path)
    try:
        before = delivery.assess(tmp_path, conn)
        assert before["status"] == "degraded" and "no SMTP server configured" in before["detail"]
        assert "2 notification(s) waiting, the oldest since" in before["detail"]
        worker = Worker(tmp_path, ENV, "notification")
        try:
            assert worker.run_once() == 2  # tried, failed for the transport, backed off
        finally:
            worker.conn.close()
            worker.journal.close()
        t = delivery.read_transport(conn, "notification")
        assert t is not None and t["state"] == "down" and "no SMTP server configured" in t["reason"]
    finally:
        conn.close()


def test_smtp_unreachable_since_then_back(tmp_path: Path) -> None:
    port = free_port()
    make_store(tmp_path, port)  # nothing listens there
    enqueue_burst(tmp_path, 1, RECIPIENTS)
    worker = Worker(tmp_path, ENV, "notification")
    conn = _conn(tmp_path)
    try:
        worker.run_once()
        down = delivery.assess(tmp_path, conn)
        assert down["status"] == "degraded" and down["reasons"][0].startswith("SMTP unreachable since ")
        assert (
            "cannot reach SMTP server" in down["reasons"][0] and "1 notification(s) waiting" in down["detail"]
        )
        since = down["transport"]["since"]
        worker.probe_at = time.time()  # due: the next run probes again, still down
        worker.run_once()
        assert delivery.read_transport(conn, "notification")["since"] == since  # type: ignore[index]
        with smtp_server(port) as smtp:
            worker.probe_at = time.time()
            assert wait_until(lambda: worker.run_once() >= 0 and len(smtp.messages()) == 1, 10)
        up = delivery.assess(tmp_path, conn)
        assert up["status"] == "ok" and up["transport"]["state"] == "up" and up["waiting"] == 0
    finally:
        worker.conn.close()
        worker.journal.close()
        conn.close()


def test_a_backlog_that_does_not_drain_is_degraded(tmp_path: Path) -> None:
    make_store(tmp_path, free_port())
    enqueue_burst(tmp_path, 3, RECIPIENTS)
    conn = _conn(tmp_path)
    try:
        (created,) = conn.execute("SELECT MIN(created_at) FROM outbox").fetchone()
        fresh = delivery.assess(tmp_path, conn, now=created + 1)
        assert fresh["status"] == "ok" and "3 notification(s) waiting" in fresh["detail"]
        stale = delivery.assess(tmp_path, conn, now=created + delivery.STALE_AFTER_S + 1)
        assert stale["status"] == "degraded" and stale["reasons"] == [stale["detail"]]
        assert stale["oldest_waiting_since"] in stale["detail"]
    finally:
        conn.close()


def test_health_endpoint_is_degraded_without_smtp_and_ok_with_it(tmp_path: Path) -> None:
    make_store(tmp_path, None)
    store = Store(tmp_path)
    app = create_app(store, ENV, dev=True)
    attach(app, store, ENV)
    with TestClient(app) as client:
        assert wait_until(
            lambda: (
                "mail" in client.get("/v1/health").json()["processes"]["notification"]
                and client.get("/v1/health").json()["processes"]["notification"]["mail"]["detail"]
                != "not checked yet"
            ),
            10,
        )
        doc = client.get("/v1/health").json()
        note = doc["processes"]["notification"]
        assert doc["status"] == "degraded" and note["status"] == "degraded"
        assert "no SMTP server configured" in note["detail"] and note["mail"]["smtp"].startswith("no SMTP")
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)
        app = create_app(store, ENV, dev=True)
        attach(app, store, ENV)
        with TestClient(app) as client:
            assert wait_until(
                lambda: (
                    client.get("/v1/health").json()["processes"]["notification"]["mail"]["status"] == "ok"
                ),
                10,
            )
            mail = client.get("/v1/health").json()["processes"]["notification"]["mail"]
            assert mail["smtp"] == f"SMTP 127.0.0.1:{smtp.port}"


def test_outbox_status_says_why_items_wait(tmp_path: Path, capsys: Any) -> None:
    make_store(tmp_path, None)
    enqueue_burst(tmp_path, 2, RECIPIENTS, ["immutable"])
    worker = Worker(tmp_path, ENV, "notification")
    try:
        worker.run_once()
    finally:
        worker.conn.close()
        worker.journal.close()
    assert main(["outbox", "status", f"--env={ENV}", f"--home={tmp_path}", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    why = doc["environments"][ENV]["notification"]["why"]
    assert why[0].startswith("2 waiting, the oldest since")
    assert any("no daemon of this environment is running" in w for w in why)
    assert any("no SMTP server configured" in w for w in why)
    assert any("failed 1 time(s), last with: no SMTP server configured" in w for w in why)
    audit = doc["environments"][ENV]["audit"]["why"]
    assert audit[0].startswith("2 waiting") and "no SMTP" not in " ".join(audit)
    assert main(["outbox", "status", f"--env={ENV}", f"--home={tmp_path}"]) == 0
    text = capsys.readouterr().out
    assert "  why: no SMTP server configured" in text
