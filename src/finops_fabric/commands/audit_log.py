"""`mu audit-log verify [--env=ENV]`: recompute the daemon's hash-chained audit ledger.

Each environment's ledger lives in ``<store>/daemon-<env>.db`` (see
:mod:`finops_fabric.daemon.audit_log`). Without ``--env`` every environment of the store is
checked. Exit 0 when every chain holds, 1 when a link is broken (the report names the first
broken ``seq``), 2 when there is no such store or daemon database.
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
    from finops_fabric.cli import Out
    from finops_fabric.daemon.audit_log import VerifyReport, verify
    from finops_fabric.store import Store

    if args.action not in ACTIONS:
        raise InputError(f"mu audit-log: unknown action {args.action!r}", code="cli.usage")
    store = Store.locate(args.home).require()
    reports: dict[str, dict[str, Any]] = {}
    for env, path in daemon_databases(store.home, args.env).items():
        conn = open_existing(path)
        try:
            report = verify(conn) if _has_table(conn, "audit_ledger") else VerifyReport()
        except sqlite3.Error as exc:
            raise InputError(
                f"cannot read the audit ledger in {path}: {exc}",
                code="daemon.database",
                location=Location(file=str(path)),
            ) from exc
        finally:
            conn.close()
        reports[env] = report.to_dict()
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
                lines.append(
                    f"audit ledger {env}: {r['entries']} entries in {n_ledgers} ledger(s), chain verified"
                )
            else:
                b = r["first_broken"]
                lines.append(
                    f"audit ledger {env}: BROKEN at seq {b['seq']} (ledger {b['ledger']}): {b['reason']}"
                )
                lines += [f"  seq {p['seq']} ({p['ledger']}): {p['reason']}" for p in r["problems"][1:]]
        return lines

    Out(args.json).emit(doc, human)
    return 0 if verified else 1


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    sp = cmd("audit-log", cmd_audit_log, "verify the daemon's hash-chained audit ledger")
    sp.add_argument("action", choices=ACTIONS, help="verify: check every entry and the chain")
    sp.add_argument("--env", metavar="ENV", help="one environment (default: every one in the store)")
