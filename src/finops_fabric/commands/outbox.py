"""`mu outbox status [--env=ENV]` and `mu outbox retry-dead [--env=ENV] [--kind=KIND]`.

``status`` shows, per environment and kind (notification, audit), how many outbox items are
pending, being delivered, delivered and dead, the age of the oldest undelivered one, and why
items wait (``why``): no daemon running to deliver them, no SMTP server configured, SMTP
unreachable since T, the errors an item is backing off from, dead-lettered items.
``retry-dead`` gives dead-lettered items a fresh start (a running worker picks them up).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from finops_fabric.errors import InputError

ACTIONS = ("status", "retry-dead")


def cmd_outbox(args: argparse.Namespace) -> int:
    from finops_fabric.cli import Out
    from finops_fabric.commands.audit_log import external_databases, open_existing, sqlite_databases
    from finops_fabric.daemon import delivery, outbox
    from finops_fabric.store import Store

    if args.kind is not None and args.kind not in outbox.KINDS:
        raise InputError(f"mu outbox: --kind must be one of {', '.join(outbox.KINDS)}", code="cli.usage")
    store = Store.locate(args.home).require()
    envs: dict[str, Any] = {}
    requeued = 0
    external = external_databases(store.home, args.env, args.database)
    for env, storage in external.items():  # outboxes in PostgreSQL
        with storage:
            if args.action == "retry-dead":
                requeued += storage.requeue_dead(args.kind)
            envs[env] = storage.depth()
            running = _daemon_running(store, env)
            for kind, d in envs[env].items():
                d["why"] = delivery.why_waiting_storage(store.home, storage, kind, d, workers_running=running)
    for env, path in sqlite_databases(store.home, args.env, external).items():
        conn = open_existing(path)
        try:
            outbox.ensure_schema(conn)
            if args.action == "retry-dead":
                requeued += outbox.requeue_dead(conn, args.kind)
            envs[env] = outbox.depth(conn)
            running = _daemon_running(store, env)
            for kind in envs[env]:
                envs[env][kind]["why"] = delivery.why_waiting(store.home, conn, kind, workers_running=running)
        finally:
            conn.close()
    doc: dict[str, Any] = {"environments": envs}
    if args.action == "retry-dead":
        doc["requeued"] = requeued

    def human() -> list[str]:
        lines = [f"requeued {requeued} dead item(s)"] if args.action == "retry-dead" else []
        for env, kinds in envs.items():
            for kind, d in kinds.items():
                lines.append(
                    f"{env} {kind}: {d['pending']} pending, {d['delivering']} delivering, "
                    f"{d['delivered']} delivered, {d['dead']} dead"
                    + (f" (oldest waiting {d['oldest_pending_s']:.1f} s)" if d["oldest_pending_s"] else "")
                )
                lines += [f"  why: {w}" for w in d.get("why", [])]
        return lines

    Out(args.json).emit(doc, human)
    return 0


def _daemon_running(store: Any, env: str) -> bool:
    """Whether ``env``'s daemon (and so its workers) runs: its discovery file names a live pid."""
    import os

    from finops_fabric.daemon.client import read_discovery

    info = read_discovery(store, env)
    if info is None:
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    sp = cmd("outbox", cmd_outbox, "the daemon's outbox of notifications and audit entries")
    sp.add_argument(
        "action",
        choices=ACTIONS,
        help="status: items pending, delivered and dead; retry-dead: give dead items a fresh start",
    )
    sp.add_argument("--env", metavar="ENV", help="one environment (default: every one in the store)")
    sp.add_argument(
        "--database",
        metavar="URL",
        help="ENV's database when not the store's (default: environments.ENV.database of config.json)",
    )
    sp.add_argument("--kind", metavar="KIND", help="retry-dead: only notification or audit items")
