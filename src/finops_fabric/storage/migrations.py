"""Versioned schema migrations of the daemon database, for both backends.

Every database records the migrations applied to it in ``schema_version`` (one row per version,
with when it was applied and what it did). At start the daemon applies the ones missing, in
order, each in one transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: under an advisory
lock, so several daemons starting together migrate once). A database whose version is newer
than this code knows is refused (:class:`SchemaTooNew`, ``storage.schema_newer``): at start
(exit 2), and by a running PostgreSQL daemon whose database a newer one migrated (each decision
then gets HTTP 503 with that code): an older daemon never writes rows a newer schema would not
expect.

SQLite version 1 is the schema the daemon wrote before migrations were versioned (a store
written then is adopted as version 1 once its old-format upgrades have run); version 2 adds the
process that answered each decision, the deployments table and the shadow log. PostgreSQL
starts at version 2 with everything. Version 3 (both) adds ``fleet_processes``: one row per live
daemon process, what it serves and its heartbeat (:mod:`finops_fabric.daemon.fleet`). Version 4
(both) adds ``shadow_sessions``: one row per shadow session, its counts (every process of the
environment adds its own) and how many processes run it (``processes``), so a session started
or stopped through one process reaches every process of the fleet.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from finops_fabric.errors import FabricError

__all__ = [
    "LATEST",
    "POSTGRES_MIGRATIONS",
    "SQLITE_MIGRATIONS",
    "SchemaTooNew",
    "check_sqlite",
    "migrate_sqlite",
    "schema_version",
]

#: The newest schema this code writes (both backends).
LATEST = 4


class SchemaTooNew(FabricError):
    """The database was migrated by a newer version of the daemon."""

    exit_code = 2


def _too_new(found: int, where: str) -> SchemaTooNew:
    return SchemaTooNew(
        f"the database {where} has schema version {found}, newer than this version of mu knows "
        f"({LATEST}): it was upgraded by a newer daemon; run that version (or newer) against it",
        code="storage.schema_newer",
    )


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    applied_at  TEXT NOT NULL,
    description TEXT NOT NULL
)"""

# --- SQLite --------------------------------------------------------------------------------------

DEPLOYMENTS_SQLITE = """
CREATE TABLE IF NOT EXISTS deployments (
    id                      INTEGER PRIMARY KEY,
    env                     TEXT NOT NULL,
    kind                    TEXT NOT NULL,
    enforcer_hash           TEXT NOT NULL,
    generation_receipt_hash TEXT,
    receipt_hash            TEXT,
    process                 TEXT,
    recorded_at             TEXT NOT NULL,
    doc                     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shadow (
    id                   INTEGER PRIMARY KEY,
    recorded_at          TEXT NOT NULL,
    env                  TEXT NOT NULL,
    decision_id          INTEGER,
    transaction_id       TEXT,
    enforcer_hash        TEXT NOT NULL,
    shadow_enforcer_hash TEXT NOT NULL,
    outcome              TEXT NOT NULL,
    shadow_outcome       TEXT NOT NULL,
    detail_json          TEXT NOT NULL,
    leaf_hash            BLOB NOT NULL,
    prev_chain_hash      BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS shadow_no_update BEFORE UPDATE ON shadow
    BEGIN SELECT RAISE(ABORT, 'the shadow log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS shadow_no_delete BEFORE DELETE ON shadow
    BEGIN SELECT RAISE(ABORT, 'the shadow log is append-only'); END;
"""


FLEET_SQLITE = """
CREATE TABLE IF NOT EXISTS fleet_processes (
    process        TEXT PRIMARY KEY,
    pid            INTEGER NOT NULL,
    url            TEXT NOT NULL,
    serving        TEXT,
    deployment_seq INTEGER NOT NULL DEFAULT 0,
    ready          INTEGER NOT NULL DEFAULT 0,
    problem        TEXT,
    heartbeat      REAL NOT NULL,
    started_at     REAL NOT NULL
)"""


def _sqlite_v3(conn: sqlite3.Connection) -> None:
    conn.execute(FLEET_SQLITE)


SHADOW_SESSIONS_SQLITE = """
CREATE TABLE IF NOT EXISTS shadow_sessions (
    session                 TEXT PRIMARY KEY,
    env                     TEXT NOT NULL,
    enforcer_hash           TEXT NOT NULL,
    generation_receipt_hash TEXT NOT NULL,
    live_enforcer_hash      TEXT,
    started_at              TEXT NOT NULL,
    until                   TEXT,
    ended_at                TEXT,
    end_reason              TEXT,
    end_receipt_hash        TEXT,
    compared                INTEGER NOT NULL DEFAULT 0,
    agreed                  INTEGER NOT NULL DEFAULT 0,
    disagreed               INTEGER NOT NULL DEFAULT 0,
    errors                  INTEGER NOT NULL DEFAULT 0,
    dropped                 INTEGER NOT NULL DEFAULT 0,
    processes               INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS shadow_by_session ON shadow (json_extract(detail_json, '$.session'), id)"""


def _sqlite_v4(conn: sqlite3.Connection) -> None:
    """``shadow_sessions`` (a file whose shadow mode made it before keeps it, and gains the
    ``processes`` column)."""
    for statement in SHADOW_SESSIONS_SQLITE.split(";\n"):
        conn.execute(statement)
    if "processes" not in _columns(conn, "shadow_sessions"):
        conn.execute("ALTER TABLE shadow_sessions ADD COLUMN processes INTEGER NOT NULL DEFAULT 0")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}  # fixed names


def _sqlite_baseline(conn: sqlite3.Connection) -> None:
    """Version 1: the decision log as written before versioned migrations (a log written
    before the chain is chained first). The outbox, audit ledger and transport tables keep
    being created (``IF NOT EXISTS``, unchanged since) by whoever opens them first."""
    from finops_fabric.daemon import decision_log

    decision_log._upgrade(conn)
    conn.executescript(decision_log.SCHEMA)


def _sqlite_v2(conn: sqlite3.Connection) -> None:
    if "process" not in _columns(conn, "decisions"):
        conn.execute("ALTER TABLE decisions ADD COLUMN process TEXT")
    for statement in DEPLOYMENTS_SQLITE.split(";\n"):
        if statement.strip():
            conn.execute(statement)


#: (version, description, apply, runs inside the version's transaction)
SQLITE_MIGRATIONS: Sequence[tuple[int, str, Callable[[sqlite3.Connection], None], bool]] = (
    (1, "decision log (and its chain)", _sqlite_baseline, False),
    (2, "decisions.process, deployments, shadow", _sqlite_v2, True),
    (3, "fleet_processes", _sqlite_v3, True),
    (4, "shadow_sessions", _sqlite_v4, True),
)


def schema_version(conn: sqlite3.Connection) -> int:
    """The newest version applied to a SQLite database (0: none recorded)."""
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row is not None and row[0] is not None else 0


def check_sqlite(conn: sqlite3.Connection, where: str) -> int:
    """The database's version; :class:`SchemaTooNew` when it is newer than :data:`LATEST`."""
    found = schema_version(conn)
    if found > LATEST:
        raise _too_new(found, where)
    return found


def migrate_sqlite(conn: sqlite3.Connection, where: str = "") -> int:
    """Apply the missing migrations to a SQLite database (autocommit connection, no transaction
    open); return the version. Cheap when nothing is missing: one read."""
    where = where or _sqlite_name(conn)
    if check_sqlite(conn, where) == LATEST:
        return LATEST
    conn.execute(VERSION_TABLE)
    for version, description, apply, transactional in SQLITE_MIGRATIONS:
        if not transactional and schema_version(conn) < version:
            apply(conn)  # idempotent statements that commit themselves (executescript)
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = check_sqlite(conn, where)
            if current < version:
                if transactional:
                    apply(conn)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at, description) VALUES (?, ?, ?)",
                    (version, _stamp(), description),
                )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    return LATEST


def _sqlite_name(conn: sqlite3.Connection) -> str:
    with contextlib.suppress(sqlite3.Error):
        row = conn.execute("PRAGMA database_list").fetchone()
        if row is not None and row[2]:
            return str(row[2])
    return "(sqlite)"


# --- PostgreSQL ----------------------------------------------------------------------------------

_PG_V2 = """
CREATE TABLE IF NOT EXISTS fabric_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION fabric_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the % is append-only', TG_ARGV[0];
END
$$;
CREATE TABLE decisions (
    id                      BIGINT PRIMARY KEY,
    decided_at              TEXT NOT NULL,
    env                     TEXT NOT NULL,
    transaction_id          TEXT,
    transaction_json        TEXT NOT NULL,
    outcome                 TEXT NOT NULL,
    fired                   TEXT NOT NULL,
    decision_json           TEXT NOT NULL,
    enforcer_hash           TEXT NOT NULL,
    generation_receipt_hash TEXT NOT NULL,
    leaf_hash               BYTEA,
    prev_chain_hash         BYTEA,
    process                 TEXT
);
CREATE INDEX decisions_tx ON decisions (transaction_id);
CREATE INDEX decisions_time ON decisions (decided_at);
CREATE INDEX decisions_outcome ON decisions (outcome, id);
CREATE TRIGGER decisions_append_only BEFORE UPDATE OR DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION fabric_append_only('decision log');
CREATE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions
    FOR EACH STATEMENT EXECUTE FUNCTION fabric_append_only('decision log');
CREATE TABLE log_chain (
    log          TEXT PRIMARY KEY,
    adopted_rows BIGINT NOT NULL,
    adopted_at   TEXT NOT NULL
);
CREATE TABLE outbox (
    id               BIGSERIAL PRIMARY KEY,
    decision_id      BIGINT,
    kind             TEXT NOT NULL CHECK (kind IN ('notification', 'audit')),
    idempotency_key  TEXT NOT NULL UNIQUE,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  DOUBLE PRECISION NOT NULL,
    last_error       TEXT,
    created_at       DOUBLE PRECISION NOT NULL,
    delivered_at     DOUBLE PRECISION,
    lease_owner      TEXT
);
CREATE INDEX outbox_due ON outbox (kind, state, next_attempt_at);
CREATE INDEX outbox_decision ON outbox (decision_id);
CREATE TABLE outbox_delivered (
    idempotency_key  TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    delivered_at     DOUBLE PRECISION NOT NULL
);
CREATE TABLE audit_ledger (
    seq              BIGINT PRIMARY KEY,
    ledger           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    entry            TEXT NOT NULL,
    prev_hash        TEXT NOT NULL,
    entry_hash       TEXT NOT NULL UNIQUE,
    appended_at      DOUBLE PRECISION NOT NULL,
    leaf_hash        BYTEA,
    prev_chain_hash  BYTEA
);
CREATE UNIQUE INDEX audit_ledger_link ON audit_ledger (ledger, prev_hash);
CREATE TRIGGER audit_ledger_append_only BEFORE UPDATE OR DELETE ON audit_ledger
    FOR EACH ROW EXECUTE FUNCTION fabric_append_only('audit ledger');
CREATE TRIGGER audit_ledger_no_truncate BEFORE TRUNCATE ON audit_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION fabric_append_only('audit ledger');
CREATE TABLE transport_state (
    kind        TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('up', 'down')),
    reason      TEXT,
    since       DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
CREATE TABLE deployments (
    id                      BIGSERIAL PRIMARY KEY,
    env                     TEXT NOT NULL,
    kind                    TEXT NOT NULL,
    enforcer_hash           TEXT NOT NULL,
    generation_receipt_hash TEXT,
    receipt_hash            TEXT,
    process                 TEXT,
    recorded_at             TEXT NOT NULL,
    doc                     TEXT NOT NULL
);
CREATE TABLE shadow (
    id                   BIGINT PRIMARY KEY,
    recorded_at          TEXT NOT NULL,
    env                  TEXT NOT NULL,
    decision_id          BIGINT,
    transaction_id       TEXT,
    enforcer_hash        TEXT NOT NULL,
    shadow_enforcer_hash TEXT NOT NULL,
    outcome              TEXT NOT NULL,
    shadow_outcome       TEXT NOT NULL,
    detail_json          TEXT NOT NULL,
    leaf_hash            BYTEA NOT NULL,
    prev_chain_hash      BYTEA NOT NULL
);
CREATE TRIGGER shadow_append_only BEFORE UPDATE OR DELETE ON shadow
    FOR EACH ROW EXECUTE FUNCTION fabric_append_only('shadow log');
CREATE TABLE tokens (
    token_hash  TEXT PRIMARY KEY,
    roles       TEXT NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    local_env   TEXT,
    created_at  TEXT NOT NULL
)
"""

#: (version, description, SQL): PostgreSQL begins at version 2 (nothing older exists there).
POSTGRES_MIGRATIONS: Sequence[tuple[int, str, str]] = (
    (2, "decision log, outbox, audit ledger, transport state, deployments, shadow, tokens", _PG_V2),
    (
        3,
        "fleet_processes",
        """CREATE TABLE fleet_processes (
    process        TEXT PRIMARY KEY,
    pid            INTEGER NOT NULL,
    url            TEXT NOT NULL,
    serving        TEXT,
    deployment_seq BIGINT NOT NULL DEFAULT 0,
    ready          BOOLEAN NOT NULL DEFAULT false,
    problem        TEXT,
    heartbeat      DOUBLE PRECISION NOT NULL,
    started_at     DOUBLE PRECISION NOT NULL
)""",
    ),
    (
        4,
        "shadow_sessions",
        """CREATE TABLE shadow_sessions (
    session                 TEXT PRIMARY KEY,
    env                     TEXT NOT NULL,
    enforcer_hash           TEXT NOT NULL,
    generation_receipt_hash TEXT NOT NULL,
    live_enforcer_hash      TEXT,
    started_at              TEXT NOT NULL,
    until                   TEXT,
    ended_at                TEXT,
    end_reason              TEXT,
    end_receipt_hash        TEXT,
    compared                BIGINT NOT NULL DEFAULT 0,
    agreed                  BIGINT NOT NULL DEFAULT 0,
    disagreed               BIGINT NOT NULL DEFAULT 0,
    errors                  BIGINT NOT NULL DEFAULT 0,
    dropped                 BIGINT NOT NULL DEFAULT 0,
    processes               BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX shadow_by_session ON shadow ((detail_json::jsonb ->> 'session'), id)""",
    ),
)

#: pg_advisory_xact_lock keys (per database): migrations, decision log, audit ledger, shadow.
LOCK_MIGRATE = 0x0F1_0001
LOCK_DECISIONS = 0x0F1_0002
LOCK_AUDIT = 0x0F1_0003
LOCK_SHADOW = 0x0F1_0004


def migrate_postgres(conn: Any, where: str, env: str) -> int:
    """Apply the missing migrations to a PostgreSQL database (``conn``: a psycopg connection
    in autocommit mode) in one transaction under an advisory lock; record ``env`` in
    ``fabric_meta`` and refuse a database of another environment; return the version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
        conn.execute(VERSION_TABLE)
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        found = int(row[0]) if row is not None and row[0] is not None else 0
        if found > LATEST:
            raise _too_new(found, where)
        for version, description, sql in POSTGRES_MIGRATIONS:
            if found < version:
                conn.execute(sql)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at, description) VALUES (%s, %s, %s)",
                    (version, _stamp(), description),
                )
        conn.execute("INSERT INTO fabric_meta (key, value) VALUES ('env', %s) ON CONFLICT DO NOTHING", (env,))
        owner = conn.execute("SELECT value FROM fabric_meta WHERE key = 'env'").fetchone()
        if owner is not None and owner[0] != env:
            raise FabricError(
                f"the database {where} holds the {owner[0]} environment's log, not {env}'s: give each "
                "environment a database (or a schema) of its own",
                code="storage.other_env",
            )
    return LATEST


def check_postgres(conn: Any, where: str) -> int:
    """The version of a PostgreSQL database (0: never migrated); refuses a newer one."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    found = int(row[0]) if row is not None and row[0] is not None else 0
    if found > LATEST:
        raise _too_new(found, where)
    return found
