"""`mu decisions [--env=ENV] [--id=TX] [--since=T] [--until=T] [--outcome=APPROVE|REJECT] [--limit=N]`:
query ENV's decision log (``<store>/daemon-<ENV>.db``, or the PostgreSQL database of
``--database`` or ``environments.<ENV>.database`` in config.json), read-only; no daemon needed.

`mu decisions verify --env=ENV [--head=HEAD.json]`: recompute every decision's leaf hash, the
hash chain and the Merkle tree, and check them against the newest signed tree head in
``<store>/tree-heads/<ENV>/decisions/`` and any head kept elsewhere (``--head``, e.g. a
witness's copy). Every decision that was changed, removed, inserted or reordered is named by
id; a log shorter than a signed head is never called verified. Exit 0 verified, 1 not.
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
        from finops_fabric.storage.config import configured_environments

        found = sorted(
            {p.name[len("daemon-") : -3] for p in store.home.glob("daemon-*.db")}
            | set(configured_environments(store.home))
        )
        if len(found) != 1:
            raise InputError(
                "give --env=ENV" + (f" (this store has logs for: {', '.join(found)})" if found else ""),
                code="cli.usage",
            )
        env = found[0]
    env = check_env(env)
    if args.action == "verify":
        return _verify(args, store, env)
    if args.head:
        raise InputError("--head goes with `mu decisions verify`", code="cli.usage")
    if args.outcome is not None and args.outcome not in ("APPROVE", "REJECT"):
        raise InputError("--outcome is APPROVE or REJECT", code="cli.usage")
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1", code="cli.usage")
    filters: dict[str, Any] = {
        "transaction_id": args.id,
        "since": _time(args.since, "--since"),
        "until": _time(args.until, "--until"),
        "outcome": args.outcome,
        "limit": args.limit,
    }
    from finops_fabric.storage import external_storage

    storage = external_storage(store.home, env, args.database)
    if storage is not None:
        with storage:
            rows = storage.decisions(**filters)
    else:
        conn = decision_log.connect(decision_log.db_path(store.home, env), readonly=True)
        try:
            rows = decision_log.query(conn, **filters)
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


def _verify(args: argparse.Namespace, store: Any, env: str) -> int:
    import sqlite3

    from finops_fabric.audit import default_trust
    from finops_fabric.daemon import decision_log
    from finops_fabric.daemon.tree_heads import decision_heads
    from finops_fabric.transparency import gather_heads, read_head, verify_log

    if any(v is not None for v in (args.id, args.since, args.until, args.outcome, args.limit)):
        raise InputError(
            "`mu decisions verify` checks the whole log: no --id/--since/--until/--outcome/--limit"
        )
    extra = [(path, read_head(path)) for path in args.head or ()]
    path = decision_log.db_path(store.home, env)
    directory = decision_heads(store, env)
    heads, head_findings = gather_heads(directory, extra, default_trust(store).keys, log="decisions", env=env)
    from finops_fabric.storage import external_storage

    storage = external_storage(store.home, env, args.database)
    if storage is not None:
        with storage:
            report = verify_log(storage.decision_rows(), heads, noun="decision")
            adopted = storage.adoption()
        where = storage.where
    else:
        where = str(path)
        conn = decision_log.connect(path, readonly=True)
        try:
            report = verify_log(decision_log.log_rows(conn), heads, noun="decision")
            adopted = decision_log.adoption(conn)
        except sqlite3.Error as exc:
            raise InputError(
                f"cannot read the decision log {path}: {exc}", code="decisions.unreadable"
            ) from exc
        finally:
            conn.close()
    report.findings[:0] = head_findings
    if adopted is not None:
        report.notes.append(
            f"decisions 1–{adopted['rows']} were written before the hash chain and chained at the upgrade "
            f"on {adopted['at']}: the chain vouches for them only from then on"
        )
    doc: dict[str, Any] = {
        "env": env,
        "log": "decisions",
        "database": where,
        "heads_directory": str(directory.path),
        **report.to_dict(),
        "adopted": adopted,
    }

    def human() -> list[str]:
        lines = [f"  {f['message']}" for f in doc["findings"]]
        lines += [f"note: {n}" for n in doc["notes"]]
        lines.append(f"decision log {env}: {doc['summary']}")
        return lines

    Out(args.json).emit(doc, human)
    return 0 if report.verified else 1


def register(cmd: Register) -> None:
    sp = cmd("decisions", cmd_decisions, "query an environment's decision log (or: decisions verify)")
    sp.add_argument(
        "action",
        nargs="?",
        choices=["verify"],
        help="verify: recompute the hash chain and Merkle tree against the signed tree heads",
    )
    sp.add_argument("--env", metavar="ENV", help="the environment whose decision log to read")
    sp.add_argument("--id", metavar="TX_ID", help="only this transaction id")
    sp.add_argument("--since", metavar="T", help="decided at or after T (ISO 8601)")
    sp.add_argument("--until", metavar="T", help="decided before T (ISO 8601)")
    sp.add_argument("--outcome", metavar="OUTCOME", help="APPROVE or REJECT")
    sp.add_argument("--limit", type=int, metavar="N", help="the newest N only")
    sp.add_argument(
        "--database",
        metavar="URL",
        help="the log's database when not the store's (default: environments.ENV.database of config.json)",
    )
    sp.add_argument(
        "--head",
        action="append",
        metavar="HEAD.json",
        help="verify: also against this signed tree head kept elsewhere (repeatable)",
    )
