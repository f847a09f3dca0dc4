"""Why notifications wait: what the notification worker saw of its transport, the SMTP
configuration, and the backlog. The daemon's health and `mu outbox status` say it from here.

The worker records its transport in ``transport_state`` (in ``<store>/daemon-<env>.db``, beside
the outbox) when it changes: down (since when, and why: no SMTP server configured, connection
refused, …) or up again. :func:`assess` turns that, ``config.json`` and the backlog into one
verdict, ``ok`` or ``degraded`` with the reasons:

- no SMTP server configured (or ``config.json`` unreadable): nothing can be sent;
- SMTP unreachable since T (as the worker last saw it);
- N notifications waiting, the oldest since T, when the oldest has waited more than
  :data:`STALE_AFTER_S` seconds (a queue that is draining normally is not a finding).

:func:`assess` reads one small row, one index range and ``config.json``: the daemon calls it
once a second in a background thread and ``/v1/health`` serves the last result, so polling the
health endpoint costs no I/O.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

from finops_fabric.daemon import outbox

__all__ = [
    "SCHEMA",
    "STALE_AFTER_S",
    "assess",
    "assess_storage",
    "backlog",
    "ensure_schema",
    "read_transport",
    "record_down",
    "record_up",
    "smtp_configuration",
    "why_waiting",
    "why_waiting_storage",
]

#: A notification that has waited longer than this makes the daemon degraded.
STALE_AFTER_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS transport_state (
    kind        TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('up', 'down')),
    reason      TEXT,
    since       REAL NOT NULL,
    updated_at  REAL NOT NULL
);
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- what the worker records ----------------------------------------------------------------------


def record_down(conn: sqlite3.Connection, kind: str, reason: str, now: float | None = None) -> None:
    """The transport is down for ``reason``; ``since`` stays the start of the outage."""
    t = time.time() if now is None else now
    with outbox.transaction(conn):
        conn.execute(
            "INSERT INTO transport_state (kind, state, reason, since, updated_at)"
            " VALUES (?, 'down', ?, ?, ?)"
            " ON CONFLICT (kind) DO UPDATE SET reason = excluded.reason, updated_at = excluded.updated_at,"
            " since = CASE WHEN transport_state.state = 'down' THEN transport_state.since"
            " ELSE excluded.since END, state = 'down'",
            (kind, reason, t, t),
        )


def record_up(conn: sqlite3.Connection, kind: str, now: float | None = None) -> None:
    t = time.time() if now is None else now
    with outbox.transaction(conn):
        conn.execute(
            "INSERT INTO transport_state (kind, state, reason, since, updated_at)"
            " VALUES (?, 'up', NULL, ?, ?)"
            " ON CONFLICT (kind) DO UPDATE SET state = 'up', reason = NULL, since = excluded.since,"
            " updated_at = excluded.updated_at",
            (kind, t, t),
        )


def read_transport(conn: sqlite3.Connection, kind: str) -> dict[str, Any] | None:
    try:
        row = conn.execute(
            "SELECT state, reason, since, updated_at FROM transport_state WHERE kind = ?", (kind,)
        ).fetchone()
    except sqlite3.OperationalError:  # no table yet: no worker has recorded anything
        return None
    if row is None:
        return None
    return {"state": row[0], "reason": row[1], "since": _iso(row[2]), "updated_at": _iso(row[3])}


# --- what is configured, and what waits -------------------------------------------------------------


def smtp_configuration(home: str | Path) -> tuple[bool, str]:
    """(can mail be sent at all, a description): from ``<home>/config.json``."""
    from finops_fabric.daemon.notifier import DeliveryError, load_config

    path = Path(home) / "config.json"
    try:
        cfg = load_config(home)
    except DeliveryError as e:
        return False, str(e)
    smtp = cfg.get("smtp")
    if not isinstance(smtp, dict) or not smtp.get("host"):
        return False, f"no SMTP server configured in {path}"
    return True, f"SMTP {smtp.get('host')}:{smtp.get('port', 25)}"


def backlog(conn: sqlite3.Connection, kind: str) -> tuple[int, float | None]:
    """(how many items of ``kind`` wait, when the first of them was queued). Both come from the
    due index alone (ids grow in queueing order); only that one row is read from the table."""
    count, first = conn.execute(
        "SELECT COUNT(*), MIN(id) FROM outbox WHERE kind = ? AND state IN ('pending', 'delivering')",
        (kind,),
    ).fetchone()
    if first is None:
        return int(count), None
    row = conn.execute("SELECT created_at FROM outbox WHERE id = ?", (first,)).fetchone()
    return int(count), (float(row[0]) if row is not None else None)


def assess(home: str | Path, conn: sqlite3.Connection, *, now: float | None = None) -> dict[str, Any]:
    """The notification path's health: ``{"status": "ok"|"degraded", "detail", "reasons": […],
    "smtp", "transport", "waiting", "oldest_waiting_since"}``."""
    return _assess(home, read_transport(conn, "notification"), backlog(conn, "notification"), now)


def assess_storage(home: str | Path, storage: Any, *, now: float | None = None) -> dict[str, Any]:
    """:func:`assess` over a :class:`~finops_fabric.storage.Storage` (PostgreSQL)."""
    return _assess(home, storage.read_transport("notification"), storage.backlog("notification"), now)


def _assess(
    home: str | Path,
    transport: dict[str, Any] | None,
    waiting_since: tuple[int, float | None],
    now: float | None,
) -> dict[str, Any]:
    t = time.time() if now is None else now
    configured, smtp = smtp_configuration(home)
    waiting, oldest = waiting_since
    reasons: list[str] = []
    if not configured:
        reasons.append(f"{smtp}: notifications cannot be sent")
    elif transport is not None and transport["state"] == "down":
        reasons.append(f"SMTP unreachable since {transport['since']} ({transport['reason']})")
    backlog_text = f"{waiting} notification(s) waiting" + (
        f", the oldest since {_iso(oldest)}" if oldest is not None else ""
    )
    if waiting and (reasons or (oldest is not None and t - oldest > STALE_AFTER_S)):
        reasons.append(backlog_text)
    return {
        "status": "degraded" if reasons else "ok",
        "detail": "; ".join(reasons) if reasons else f"{smtp}; {backlog_text}",
        "reasons": reasons,
        "smtp": smtp,
        "transport": transport,
        "waiting": waiting,
        "oldest_waiting_since": _iso(oldest) if oldest is not None else None,
    }


def why_waiting(
    home: str | Path, conn: sqlite3.Connection, kind: str, *, workers_running: bool, now: float | None = None
) -> list[str]:
    """Why the items of ``kind`` that wait are waiting, in words (empty when none waits and none is
    dead): no daemon (workers) to deliver them, no SMTP, SMTP down, an item backing off after
    errors, dead-lettered items."""
    t = time.time() if now is None else now
    waiting, oldest = backlog(conn, kind)
    reasons: list[str] = []
    if waiting:
        reasons.append(f"{waiting} waiting, the oldest since {_iso(oldest) if oldest is not None else 'now'}")
        if not workers_running:
            reasons.append("no daemon of this environment is running, so no worker delivers them")
        if kind == "notification":
            reasons += assess(home, conn, now=t)["reasons"][:1]  # SMTP not configured, or down
        row = conn.execute(
            "SELECT attempts, last_error, next_attempt_at FROM outbox WHERE kind = ?"
            " AND state IN ('pending', 'delivering') AND attempts > 0 ORDER BY created_at LIMIT 1",
            (kind,),
        ).fetchone()
        if row is not None:
            reasons.append(
                f"the oldest item tried so far failed {row[0]} time(s), last with: {row[1]}; next attempt "
                f"at {_iso(max(float(row[2]), t))}"
            )
    dead = conn.execute("SELECT COUNT(*) FROM outbox WHERE kind = ? AND state = 'dead'", (kind,)).fetchone()[
        0
    ]
    if dead:
        reasons.append(
            f"{dead} dead-lettered (retries exhausted or refused for good): `mu outbox retry-dead`"
        )
    return reasons


def why_waiting_storage(
    home: str | Path,
    storage: Any,
    kind: str,
    depth: dict[str, Any],
    *,
    workers_running: bool,
    now: float | None = None,
) -> list[str]:
    """:func:`why_waiting` over a :class:`~finops_fabric.storage.Storage` (PostgreSQL), from
    its :meth:`depth` of ``kind``. Several daemons may share that database: "no daemon" speaks
    of this store's own daemon only."""
    t = time.time() if now is None else now
    waiting, oldest = storage.backlog(kind)
    reasons: list[str] = []
    if waiting:
        reasons.append(f"{waiting} waiting, the oldest since {_iso(oldest) if oldest is not None else 'now'}")
        if not workers_running:
            reasons.append(
                "no daemon of this environment runs from this store, so none of its workers delivers"
            )
        if kind == "notification":
            reasons += assess_storage(home, storage, now=t)["reasons"][:1]
    if depth.get("dead"):
        reasons.append(
            f"{depth['dead']} dead-lettered (retries exhausted or refused for good): `mu outbox retry-dead`"
        )
    return reasons
