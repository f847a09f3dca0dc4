"""Wire the side effects into a daemon: every decision's notifications and audit entries go
into the durable outbox in the decision's own SQLite transaction, and supervised worker
processes deliver them (restarted on a crash, within an OTP-style restart intensity).

The notification process's health includes whether mail can go out at all
(:func:`finops_fabric.daemon.delivery.assess`: SMTP configured, reachable, backlog), refreshed
once a second beside the queue-depth gauge; it is ``degraded`` with the reason when not.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette

from finops_fabric.daemon import delivery, outbox
from finops_fabric.daemon.app import Metrics
from finops_fabric.daemon.supervisor import Supervisor
from finops_fabric.daemon.worker import DATABASE_ENV, LEASE_S
from finops_fabric.errors import InputError, Location
from finops_fabric.store import Store

KINDS = ("notification", "audit")


def enqueue_writer(decision: dict[str, Any], tx: dict[str, Any]) -> Callable[[Any, int], None]:
    def write(conn: Any, decision_id: int) -> None:
        outbox.enqueue_for_decision(conn, decision_id, decision, tx)

    return write


def attach_outbox(app: Starlette, store: Store, env: str) -> dict[str, Any]:
    """Queue every decision's notifications and audit entries in the outbox, in the decision's
    own SQLite transaction, and keep the queue-depth gauge and the mail health (returned: a dict
    refreshed once a second, which /v1/health serves with no I/O of its own); nothing delivers
    them here (the workers of :func:`attach` do, or those of the next daemon started with
    workers)."""
    storage = getattr(app.state, "storage", None)
    if storage is None:
        outbox.open_db(outbox.db_path(store.home, env)).close()  # the outbox tables exist before any decision
    metrics: Metrics = app.state.metrics
    app.state.effect_writers.append(enqueue_writer if storage is None else storage.effects_writer)
    running: list[threading.Event] = []
    mail: dict[str, Any] = {"status": "ok", "detail": "not checked yet"}

    def refresh(conn: Any) -> None:
        with contextlib.suppress(Exception):
            for kind, waiting in outbox.waiting(conn).items():
                metrics.queue_depth.labels(queue=kind).set(waiting)
        try:
            mail.update(delivery.assess(store.home, conn))
        except Exception as exc:  # a health check that cannot run is itself a finding
            mail.update(status="degraded", detail=f"cannot check the notification path: {exc}", reasons=[])

    def refresh_storage() -> None:
        assert storage is not None
        with contextlib.suppress(Exception):
            for kind, states in storage.depth().items():
                metrics.queue_depth.labels(queue=kind).set(states["pending"] + states["delivering"])
        try:
            mail.update(delivery.assess_storage(store.home, storage))
        except Exception as exc:
            mail.update(status="degraded", detail=f"cannot check the notification path: {exc}", reasons=[])

    def watch_depth(stop: threading.Event) -> None:  # the gauge and the mail health, every second
        if storage is not None:
            refresh_storage()
            while not stop.wait(1.0):
                refresh_storage()
            return
        conn = outbox.open_db(outbox.db_path(store.home, env), synchronous="NORMAL")
        try:
            refresh(conn)
            while not stop.wait(1.0):
                refresh(conn)
        finally:
            conn.close()

    def start() -> None:
        if running and not running[-1].is_set():
            return  # already watching
        stop = threading.Event()
        running.append(stop)
        threading.Thread(target=watch_depth, args=(stop,), name=f"outbox-depth-{env}", daemon=True).start()

    def shutdown() -> None:
        for stop in running:
            stop.set()

    app.state.on_startup.append(start)
    app.state.on_shutdown.insert(0, shutdown)
    return mail


def attach(app: Starlette, store: Store, env: str) -> Supervisor:
    """Add the outbox (:func:`attach_outbox`) and its supervised workers to ``app``; they start
    and stop with it."""
    mail = attach_outbox(app, store, env)
    metrics: Metrics = app.state.metrics
    storage = getattr(app.state, "storage", None)
    supervisor = Supervisor(
        store.home,
        env,
        kinds=KINDS,
        # the workers' database; in their environment, never on a command line `ps` shows
        extra_env={DATABASE_ENV: storage.url} if storage is not None and hasattr(storage, "url") else None,
        worker_args=[f"--lease={lease_seconds(store)}"],
        on_event=lambda e: (
            metrics.restarts.labels(process=str(e.get("process"))).inc()
            if e.get("event") == "restart"
            else None
        ),
    )
    for kind in KINDS:
        app.state.health_sources[kind] = _health_of(
            supervisor, kind, mail if kind == "notification" else None
        )
    app.state.on_startup.append(supervisor.start)
    app.state.on_shutdown.insert(0, supervisor.stop)
    return supervisor


def lease_seconds(store: Store) -> float:
    """``outbox.lease_seconds`` of ``<store>/config.json`` (default 30): how long a worker holds
    the items it claimed; the items of a worker that died are due again once it runs out."""
    path = store.home / "config.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}", code="config.unreadable") from exc
    section = doc.get("outbox", {}) if isinstance(doc, dict) else {}
    value = section.get("lease_seconds", LEASE_S) if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 3600:
        raise InputError(
            f"{path}: outbox.lease_seconds must be a number of seconds from 1 to 3600",
            code="config.outbox",
            location=Location(file=str(path)),
        )
    return float(value)


def _health_of(
    supervisor: Supervisor, kind: str, mail: dict[str, Any] | None = None
) -> Callable[[], dict[str, Any]]:
    def health() -> dict[str, Any]:
        status = dict(supervisor.status().get(kind, {}))
        state = status.get("state")
        status["status"] = {"running": "ok", "restarting": "degraded", "failed": "failed"}.get(
            str(state), "degraded"
        )
        if mail is not None:
            status["mail"] = dict(mail)
            if mail.get("status") == "degraded" and status["status"] == "ok":
                status["status"] = "degraded"
            if mail.get("status") == "degraded":
                status["detail"] = mail.get("detail")
        return status

    return health
