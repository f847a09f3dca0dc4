"""`mu audit-log verify [--env=ENV] [--head=HEAD.json]`: recompute the daemon's hash-chained audit ledger.

Each environment's ledger lives in ``<store>/daemon-<env>.db`` (see
:mod:`finops_fabric.daemon.audit_log`): every named ledger's chain, and the table-wide chain and
Merkle tree, checked against the newest signed tree head in ``<store>/tree-heads/<env>/audit/``
and any head kept elsewhere (``--head``, with ``--env``). Without ``--env`` every environment of
the store is checked. Exit 0 when everything holds, 1 when an entry was changed, removed,
inserted or reordered, or the ledger is shorter than a signed head (the report names every
problem by ``seq``), 2 when there is no such store or daemon database.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.errors import InputError, Location

ACTIONS = ("verify",)


def daemon_databases(home: Path, env: str | None) -> dict[str, Path]:
    """``{env: path}`` of the daemon databases to look at (one, or every one in the store)."""
    from finops_fabric.daemon.outbox import db_path

    if env is not None:
        try:
            path = db_path(home, env)
        except ValueError as exc:
            raise InputError(f"bad --env={env!r}: {exc}", code="cli.usage") from exc
        if not path.is_file():
            raise InputError(
                f"environment {env!r} has no daemon database in {home}",
                code="daemon.no_database",
                location=Location(file=str(path)),
                hint=f"run `mu daemon --env={env}` first",
            )
        return {env: path}
    found = {p.name[len("daemon-") : -len(".db")]: p for p in sorted(home.glob("daemon-*.db")) if p.is_file()}
    if not found:
        raise InputError(
            f"no daemon database in {home}",
            code="daemon.no_database",
            location=Location(file=str(home)),
            hint="run `mu daemon --env=ENV` first, or point --home at the daemon's store",
        )
    return found


def external_databases(home: Path, env: str | None, database: str | None) -> dict[str, Any]:
    """``{env: Storage}`` of the environments whose logs are in PostgreSQL: ``env`` (with
    ``--database`` or its config.json entry), or every one config.json names."""
    from finops_fabric.storage import external_storage
    from finops_fabric.storage.config import configured_environments

    if database and env is None:
        raise InputError("--database goes with --env=ENV", code="cli.usage")
    out: dict[str, Any] = {}
    for name in [env] if env is not None else configured_environments(home):
        storage = external_storage(home, name, database)
        if storage is not None:
            out[name] = storage
    return out


def sqlite_databases(home: Path, env: str | None, external: dict[str, Any]) -> dict[str, Path]:
    """:func:`daemon_databases` without the environments of ``external`` (none needed when
    those are all there is)."""
    if env is not None and env in external:
        return {}
    try:
        found = daemon_databases(home, env)
    except InputError:
        if external:
            return {}
        raise
    return {e: p for e, p in found.items() if e not in external}


def open_existing(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise InputError(
            f"cannot read {path}: {exc}", code="daemon.database", location=Location(file=str(path))
        ) from exc
    return conn


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def cmd_audit_log(args: argparse.Namespace) -> int:
    from finops_fabric.audit import default_trust
    from finops_fabric.cli import Out
    from finops_fabric.daemon.audit_log import verify, verify_empty
    from finops_fabric.daemon.decision_log import adoption
    from finops_fabric.daemon.tree_heads import audit_heads
    from finops_fabric.store import Store
    from finops_fabric.transparency import gather_heads, read_head

    if args.action not in ACTIONS:
        raise InputError(f"mu audit-log: unknown action {args.action!r}", code="cli.usage")
    if args.head and args.env is None:
        raise InputError(
            "--head goes with --env=ENV (a head is of one environment's ledger)", code="cli.usage"
        )
    store = Store.locate(args.home).require()
    extra = [(p, read_head(p)) for p in args.head or ()]
    keys = default_trust(store).keys
    reports: dict[str, dict[str, Any]] = {}
    external = external_databases(store.home, args.env, args.database)
    for env, storage in external.items():  # ledgers in PostgreSQL
        heads, head_findings = gather_heads(audit_heads(store, env), extra, keys, log="audit", env=env)
        with storage:
            report = storage.audit_verify(heads, head_findings)
            adopted = storage.adoption("audit")
        reports[env] = {**report.to_dict(), "adopted": adopted}
    for env, path in sqlite_databases(store.home, args.env, external).items():
        heads, head_findings = gather_heads(audit_heads(store, env), extra, keys, log="audit", env=env)
        conn = open_existing(path)
        try:
            if _has_table(conn, "audit_ledger"):
                report = verify(conn, heads, head_findings)
            else:
                report = verify_empty(heads, head_findings)
            adopted = adoption(conn, "audit")
        except sqlite3.Error as exc:
            raise InputError(
                f"cannot read the audit ledger in {path}: {exc}",
                code="daemon.database",
                location=Location(file=str(path)),
            ) from exc
        finally:
            conn.close()
        reports[env] = {**report.to_dict(), "adopted": adopted}
    verified = all(r["verified"] for r in reports.values())
    doc: dict[str, Any] = {
        "verified": verified,
        "entries": sum(r["entries"] for r in reports.values()),
        "environments": reports,
    }
    if args.env is not None:
        doc.update(reports[args.env])

    def human() -> list[str]:
        lines = []
        for env, r in reports.items():
            if r["verified"]:
                n_ledgers = len(r["ledgers"])
                log = r.get("log") or {}
                signed = log.get("covered_by_signed_head", 0)
                lines.append(
                    f"audit ledger {env}: {r['entries']} entries in {n_ledgers} ledger(s), chain verified "
                    f"(Merkle tree against the signed head of {signed})"
                )
                continue
            b = r["first_broken"]
            where = f"seq {b['seq']} (ledger {b['ledger']})" if b["seq"] is not None else "the ledger"
            lines.append(f"audit ledger {env}: BROKEN at {where}: {b['reason']}")
            for p in r["problems"][1:]:
                at = f"seq {p['seq']} ({p['ledger']}): " if p["seq"] is not None else ""
                lines.append(f"  {at}{p['reason']}")
        return lines

    Out(args.json).emit(doc, human)
    return 0 if verified else 1


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    sp = cmd("audit-log", cmd_audit_log, "verify the daemon's hash-chained audit ledger")
    sp.add_argument("action", choices=ACTIONS, help="verify: check every entry and the chain")
    sp.add_argument("--env", metavar="ENV", help="one environment (default: every one in the store)")
    sp.add_argument(
        "--database",
        metavar="URL",
        help="ENV's database when not the store's (default: environments.ENV.database of config.json)",
    )
    sp.add_argument(
        "--head",
        action="append",
        metavar="HEAD.json",
        help="also against this signed tree head kept elsewhere (with --env; repeatable)",
    )
