"""The supervisor with real worker processes: delivery, clean stop, restart intensity, receipts."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from test_faults_support import (
    ENV,
    enqueue_burst,
    make_store,
    outbox_depth,
    smtp_server,
    supervision_receipts,
    wait_until,
)

from finops_fabric.daemon.supervisor import Supervisor
from finops_fabric.receipts import verify_receipt
from finops_fabric.store import Store


def test_workers_deliver_a_burst_exactly_once_and_stop_cleanly(tmp_path: Path) -> None:
    with smtp_server() as smtp:
        make_store(tmp_path, smtp.port)
        sup = Supervisor(tmp_path, ENV)
        try:
            sup.start()
            status = sup.status()
            assert {k: v["state"] for k, v in status.items()} == {
                "notification": "running",
                "audit": "running",
            }
            assert all(isinstance(v["pid"], int) for v in status.values())
            assert sup.health()["status"] == "ok"
            keys = enqueue_burst(tmp_path, 60, ["a@example.com", "b@example.com"], ["immutable"])
            assert wait_until(lambda: outbox_depth(tmp_path)["audit"]["delivered"] == 60, 60)
            assert wait_until(lambda: len(smtp.messages()) >= 120, 60)
            got = smtp.keys()
            assert len(got) == 120 and all(n == 1 for n in got.values()) and set(got) <= keys
            pids = sup.pids()
        finally:
            sup.stop()
        assert {k: v["state"] for k, v in sup.status().items()} == {
            "notification": "stopped",
            "audit": "stopped",
        }
        assert {v["last_exit"] for v in sup.status().values()} == {0}  # SIGTERM: clean exit
        for pid in pids.values():
            assert pid is not None
        assert sup.health()["status"] == "stopped"
        assert supervision_receipts(tmp_path) == []  # nothing crashed


def test_crash_is_restarted_receipted_and_recovers(tmp_path: Path) -> None:
    make_store(tmp_path, None)
    events: list[dict[str, Any]] = []
    sup = Supervisor(tmp_path, ENV, kinds=("audit",), on_event=events.append, stable_seconds=0.5)
    try:
        sup.start()
        pid = sup.status()["audit"]["pid"]
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: any(e["event"] == "recovery" for e in events), 20)
        status = sup.status()["audit"]
        assert status["state"] == "running" and status["restarts"] == 1 and status["pid"] != pid
        assert status["last_exit"] == -signal.SIGKILL
        assert [e["event"] for e in events] == ["crash", "restart", "recovery"]
        assert sup.health()["status"] == "ok"
    finally:
        sup.stop()
    receipts = supervision_receipts(tmp_path)
    assert [r["event"] for r in receipts] == ["crash", "restart", "recovery"]
    public = Store(tmp_path).operator_public_key()
    for r, e in zip(receipts, events, strict=True):
        verify_receipt(r, public)
        assert r["receipt_hash"] == e["receipt_hash"]
        assert r["process"] == "audit" and r["environment"] == ENV
    assert receipts[0]["exit_code"] == -signal.SIGKILL and receipts[0]["pid"] == pid


def test_restart_intensity_exceeded_marks_failed_and_degraded(tmp_path: Path) -> None:
    make_store(tmp_path, None)
    events: list[dict[str, Any]] = []
    sup = Supervisor(
        tmp_path,
        ENV,
        on_event=events.append,
        max_restarts=3,
        window_seconds=60,
        backoff_base=0.01,
        extra_env={"FABRIC_WORKER_FAULT": "exit-on-start"},
    )
    try:
        sup.start()
        assert wait_until(lambda: sup.status()["notification"]["state"] == "failed", 30)
        assert wait_until(lambda: sup.status()["audit"]["state"] == "failed", 30)
        health = sup.health()
        assert health["status"] == "degraded" and sup.degraded()
        for proc in health["processes"].values():
            assert proc["restarts"] == 3 and proc["last_exit"] == 1 and proc["pid"] is None
        assert wait_until(lambda: sum(e["event"] == "give_up" for e in events) == 2, 10)
    finally:
        sup.stop()
    receipts = supervision_receipts(tmp_path)
    per_kind = {k: [r["event"] for r in receipts if r["process"] == k] for k in ("notification", "audit")}
    for seq in per_kind.values():
        assert seq == ["crash", "restart"] * 3 + ["crash", "give_up"]
    # failed stays failed after stop; health keeps saying so
    assert sup.status()["audit"]["state"] == "failed"


def test_bad_worker_module_gives_up_and_manual_restart(tmp_path: Path) -> None:
    make_store(tmp_path, None)
    sup = Supervisor(
        tmp_path,
        ENV,
        kinds=("audit",),
        max_restarts=1,
        backoff_base=0.01,
        worker_module="finops_fabric.daemon.no_such_worker",
        record_receipts=False,
    )
    try:
        sup.start()
        assert wait_until(lambda: sup.status()["audit"]["state"] == "failed", 30)
        assert sup.health()["status"] == "degraded"
        assert all("receipt_hash" not in e for e in sup.events)
        sup.worker_module = "finops_fabric.daemon.worker"  # the configuration is fixed
        sup.restart("audit")
        assert sup.status()["audit"]["state"] == "running"
        assert wait_until(lambda: sup.health()["status"] == "ok", 5)
    finally:
        sup.stop()
    # 0, or -SIGTERM when the signal came before the fresh worker had installed its handler
    assert sup.status()["audit"]["last_exit"] in (0, -signal.SIGTERM)
    log = (tmp_path / "logs" / f"worker-{ENV}-audit.log").read_text()
    assert "No module named" in log
