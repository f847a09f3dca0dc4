"""`mu decisions [--env=ENV] [--id=TX] [--since=T] [--until=T] [--outcome=APPROVE|REJECT] [--limit=N]`:
query ENV's decision log (``<store>/daemon-<ENV>.db``), read-only; no daemon needed.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import Any

from finops_fabric.cli import Out
from finops_fabric.errors import InputError

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _time(value: str | None, flag: str) -> str | None:
    """An ISO 8601 time (date, or date and time, Z or offset) as the log's UTC form."""
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(
            f"{flag}={value!r} is not an ISO 8601 time (e.g. 2025-01-31T12:00:00Z)", code="cli.usage"
        ) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cmd_decisions(args: argparse.Namespace) -> int:
    from finops_fabric.daemon import decision_log
    from finops_fabric.daemon.environments import check_env
    from finops_fabric.store import Store

    store = Store.open(args.home)
    env = args.env
    if env is None:
        found = sorted(p.name[len("daemon-") : -3] for p in store.home.glob("daemon-*.db"))
        if len(found) != 1:
            raise InputError(
                "give --env=ENV" + (f" (this store has logs for: {', '.join(found)})" if found else ""),
                code="cli.usage",
            )
        env = found[0]
    env = check_env(env)
    if args.outcome is not None and args.outcome not in ("APPROVE", "REJECT"):
        raise InputError("--outcome is APPROVE or REJECT", code="cli.usage")
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1", code="cli.usage")
    conn = decision_log.connect(decision_log.db_path(store.home, env), readonly=True)
    try:
        rows = decision_log.query(
            conn,
            transaction_id=args.id,
            since=_time(args.since, "--since"),
            until=_time(args.until, "--until"),
            outcome=args.outcome,
            limit=args.limit,
        )
    finally:
        conn.close()
    doc: dict[str, Any] = {"env": env, "count": len(rows), "decisions": rows}

    def human() -> list[str]:
        lines = [
            f"{r['id']:>6}  {r['decided_at']}  {r['outcome']:7}  {r['transaction_id'] or '-'}  "
            f"{r['enforcer_hash'].removeprefix('sha256:')[:12]}  {', '.join(r['fired'])}"
            for r in rows
        ]
        lines.append(f"{len(rows)} decision(s) in the {env} log")
        return lines

    Out(args.json).emit(doc, human)
    return 0


def register(cmd: Register) -> None:
    sp = cmd("decisions", cmd_decisions, "query an environment's decision log")
    sp.add_argument("--env", metavar="ENV", help="the environment whose decision log to read")
    sp.add_argument("--id", metavar="TX_ID", help="only this transaction id")
    sp.add_argument("--since", metavar="T", help="decided at or after T (ISO 8601)")
    sp.add_argument("--until", metavar="T", help="decided before T (ISO 8601)")
    sp.add_argument("--outcome", metavar="OUTCOME", help="APPROVE or REJECT")
    sp.add_argument("--limit", type=int, metavar="N", help="the newest N only")
