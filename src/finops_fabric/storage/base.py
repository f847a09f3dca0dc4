"""The storage interface: what a daemon persists, whatever the database behind it.

A :class:`Storage` is one environment's database: the decision log (hash-chained, Merkle tree
leaves), the outbox, the audit ledger, the deployments, the shadow log and (PostgreSQL) the
token hashes. Two backends implement it: :class:`~finops_fabric.storage.sqlite.SqliteStorage`
(``<store>/daemon-<env>.db``, the default) and
:class:`~finops_fabric.storage.postgres.PostgresStorage` (psycopg 3 with a connection pool).
:func:`open_storage` picks one from ``--database`` or the store's config.json.

Every append to a chained log (decisions, audit entries, shadow rows) reads the chain's head
inside the transaction that appends, under a lock every writer takes, so any number of writer
processes produce one chain that verifies.
"""

from __future__ import annotations

import hashlib
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from finops_fabric.daemon.audit_log import StoredRow, VerifyReport
from finops_fabric.daemon.decision_log import ExtraWriter, LoggedDecision
from finops_fabric.daemon.outbox import Item
from finops_fabric.errors import FabricError
from finops_fabric.transparency import CompactRange, KnownHead, LogRow, record_writer

__all__ = [
    "SHADOW_COLUMNS",
    "SHADOW_COUNTS",
    "SHADOW_SESSION_COLUMNS",
    "DecisionLog",
    "Storage",
    "StorageUnavailable",
    "default_process",
    "shadow_record",
]


class StorageUnavailable(FabricError):
    """The database cannot be reached (or went away): nothing was written. HTTP 503."""

    exit_code = 2
    default_code = "storage.unavailable"


def default_process() -> str:
    """``host:pid``: the process a decision records as the one that answered it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class DecisionLog(Protocol):
    """The decision log's writer: group commit, the chain head and the Merkle tree's edge."""

    async def write(self, entry: LoggedDecision, writers: Sequence[ExtraWriter] = ()) -> int: ...

    def write_sync(self, entry: LoggedDecision, writers: Sequence[ExtraWriter] = ()) -> int: ...

    def head(self) -> tuple[int, bytes, CompactRange | None]: ...

    def follow_tree(self, tree: CompactRange) -> None: ...

    def close(self) -> None: ...


#: The record of a shadow row (leaf = RFC 9162 leaf hash of its RFC 8785 record).
SHADOW_COLUMNS = (
    "id",
    "recorded_at",
    "env",
    "decision_id",
    "transaction_id",
    "enforcer_hash",
    "shadow_enforcer_hash",
    "outcome",
    "shadow_outcome",
    "detail_json",
)
_shadow_writer = record_writer(SHADOW_COLUMNS)


def shadow_record(values: Sequence[Any]) -> bytes:
    return _shadow_writer(values)


def shadow_leaf(values: Sequence[Any]) -> bytes:
    return hashlib.sha256(b"\x00" + shadow_record(values)).digest()


#: A shadow session's row in ``shadow_sessions`` (schema version 4).
SHADOW_SESSION_COLUMNS = (
    "session",
    "env",
    "enforcer_hash",
    "generation_receipt_hash",
    "live_enforcer_hash",
    "started_at",
    "until",
    "ended_at",
    "end_reason",
    "end_receipt_hash",
    "compared",
    "agreed",
    "disagreed",
    "errors",
    "dropped",
    "processes",
)
#: The counts every process adds to its session's row.
SHADOW_COUNTS = ("compared", "agreed", "disagreed", "errors", "dropped")


def shadow_values(row: Mapping[str, Any], env: str, now: str) -> tuple[Any, ...]:
    """A shadow row's values after its id (``SHADOW_COLUMNS[1:]``) from a mapping with
    ``decision_id``, ``transaction_id``, ``enforcer_hash``, ``shadow_enforcer_hash``,
    ``outcome``, ``shadow_outcome`` and ``detail_json`` (text, kept as given) or ``detail``;
    ``recorded_at`` and ``env`` default to ``now`` and ``env``."""
    from finops_fabric.daemon.decision_log import dumps_exact

    detail_json = row.get("detail_json")
    if not isinstance(detail_json, str):
        detail_json = dumps_exact(dict(row.get("detail") or {}))
    return (
        row.get("recorded_at") or now,
        row.get("env") or env,
        row.get("decision_id"),
        row.get("transaction_id"),
        str(row["enforcer_hash"]),
        str(row["shadow_enforcer_hash"]),
        str(row["outcome"]),
        str(row["shadow_outcome"]),
        detail_json,
    )


def chain_shadow(
    values: Sequence[tuple[Any, ...]], last_id: int, chain: bytes
) -> tuple[list[tuple[Any, ...]], list[LogRow], tuple[int, bytes]]:
    """The INSERT parameters of shadow rows ``values`` appended after row ``last_id`` whose
    chain hash is ``chain``; the rows as :class:`LogRow`; the new tail (last id, chain hash)."""
    from finops_fabric.transparency import chain_hash

    params: list[tuple[Any, ...]] = []
    rows: list[LogRow] = []
    for v in values:
        last_id += 1
        record_values = (last_id, *v)
        record = shadow_record(record_values)
        leaf = hashlib.sha256(b"\x00" + record).digest()
        params.append((*record_values, leaf, chain))
        rows.append(LogRow(last_id, record, leaf, chain))
        chain = chain_hash(chain, leaf)
    return params, rows, (last_id, chain)


def session_row(r: Sequence[Any]) -> dict[str, Any]:
    doc = dict(zip(SHADOW_SESSION_COLUMNS, r, strict=True))
    for key in (*SHADOW_COUNTS, "processes"):
        doc[key] = int(doc[key] or 0)
    return doc


class Storage(ABC):
    """One environment's database. Methods are blocking and thread-safe; the daemon calls them
    from worker threads, never on its event loop."""

    backend: str
    env: str
    #: The SQLite file, or the PostgreSQL URL with its password redacted.
    where: str

    # --- decision log --------------------------------------------------------------------------

    @abstractmethod
    def decision_writer(self) -> DecisionLog:
        """A group-commit writer of decisions (one per daemon process)."""

    @abstractmethod
    def decisions(
        self,
        *,
        decision_id: int | None = None,
        transaction_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Decisions in log order, filtered (as ``mu decisions`` shows them)."""

    @abstractmethod
    def decision_rows(self, after: int = 0) -> Iterator[LogRow]:
        """The decision log's rows after id ``after``, as :func:`verify_log` reads them."""

    @abstractmethod
    def adoption(self, log: str = "decisions") -> dict[str, Any] | None:
        """The upgrade that chained rows written before the chain, if any."""

    @abstractmethod
    def effects_writer(self, decision: Mapping[str, Any], tx: Mapping[str, Any]) -> ExtraWriter:
        """The writer of ``decision``'s outbox items, run inside the decision's transaction."""

    # --- outbox --------------------------------------------------------------------------------

    @abstractmethod
    def claim(self, kind: str, now: float, limit: int = 32, lease_seconds: float = 30.0) -> list[Item]:
        """Lease up to ``limit`` due items of ``kind`` to this process until ``now + lease``;
        an item is leased to one claimer at a time (expired leases are due again)."""

    @abstractmethod
    def ack_many(self, delivered: Sequence[tuple[Item, float]]) -> None: ...

    @abstractmethod
    def fail_many(self, failures: Sequence[tuple[Item, str, bool]], now: float) -> None: ...

    @abstractmethod
    def release(self, items: Sequence[Item]) -> None: ...

    @abstractmethod
    def delivered_keys(self, keys: Sequence[str]) -> set[str]: ...

    @abstractmethod
    def depth(self, *, now: float | None = None) -> dict[str, Any]: ...

    @abstractmethod
    def enqueue(self, decision_id: int, decision: Mapping[str, Any], tx: Mapping[str, Any]) -> int:
        """Queue a decision's side effects in a transaction of their own (tests, tools)."""

    @abstractmethod
    def ack_keys(self, delivered: Sequence[tuple[str, float]]) -> None:
        """Acknowledge items by idempotency key (what a dead worker's ack journal names)."""

    @abstractmethod
    def mark_sent(self, key: str, kind: str, at: float) -> None:
        """Record ``key`` as delivered without an item (the mail part of a notification whose
        webhook comes next)."""

    @abstractmethod
    def requeue_backed_off(self, kind: str, now: float) -> None:
        """Make every pending item of ``kind`` due now (its transport is back)."""

    @abstractmethod
    def requeue_dead(self, kind: str | None = None) -> int: ...

    @abstractmethod
    def backlog(self, kind: str) -> tuple[int, float | None]:
        """(how many items of ``kind`` wait, when the first of them was queued)."""

    @abstractmethod
    def record_transport(self, kind: str, reason: str | None, now: float | None = None) -> None:
        """The worker's transport is down for ``reason`` (``None``: up again)."""

    @abstractmethod
    def read_transport(self, kind: str) -> dict[str, Any] | None: ...

    # --- what the tree-head keeper reads -------------------------------------------------------

    @abstractmethod
    def log_size(self, log: str) -> int:
        """How many rows the chained ``log`` (``decisions`` or ``audit``) holds."""

    @abstractmethod
    def log_chain_at(self, log: str, n: int) -> bytes | None:
        """The chain hash after row ``n`` of ``log`` as stored (``None``: no such row)."""

    @abstractmethod
    def heads_began(self, log: str) -> str | None:
        """When signed tree heads of ``log`` began (recorded in the database), if they did."""

    @abstractmethod
    def mark_heads_began(self, log: str, at: str) -> None: ...

    # --- audit ledger --------------------------------------------------------------------------

    @abstractmethod
    def audit_append_item(self, item: Item, *, now: float | None = None) -> str:
        """Append an audit outbox item's entry and acknowledge the item, in one transaction,
        serialised with every other writer; idempotent by the item's key."""

    @abstractmethod
    def audit_rows(self, after: int = 0) -> Iterator[StoredRow]: ...

    @abstractmethod
    def audit_verify(
        self, heads: Sequence[KnownHead] = (), head_findings: Sequence[Any] = ()
    ) -> VerifyReport:
        """:func:`finops_fabric.daemon.audit_log.verify` of this database's ledger."""

    # --- deployments ---------------------------------------------------------------------------

    @abstractmethod
    def record_deployment(self, doc: Mapping[str, Any], *, process: str | None = None) -> int:
        """Record a deployment (``kind``, ``enforcer_hash``, ``generation_receipt_hash``,
        ``receipt_hash`` and anything else in ``doc``); its id. Wakes every
        :meth:`wait_for_deployment`."""

    @abstractmethod
    def deployments(self, after: int = 0) -> list[dict[str, Any]]: ...

    def current_deployment(self) -> dict[str, Any] | None:
        """The newest deployment recorded, or ``None``."""
        rows = self.deployments(after=self.deployment_version() - 1)
        return rows[-1] if rows else None

    @abstractmethod
    def deployment_version(self) -> int:
        """The id of the newest deployment (0: none)."""

    @abstractmethod
    def wait_for_deployment(self, after: int, timeout: float) -> int:
        """Block until a deployment newer than id ``after`` is recorded (or ``timeout`` seconds
        pass); the newest id. PostgreSQL: LISTEN/NOTIFY (with a poll as the fallback);
        SQLite: polling."""

    # --- shadow log ----------------------------------------------------------------------------

    @abstractmethod
    def record_shadow(
        self,
        *,
        decision_id: int | None,
        transaction_id: str | None,
        enforcer_hash: str,
        shadow_enforcer_hash: str,
        outcome: str,
        shadow_outcome: str,
        detail: Mapping[str, Any],
    ) -> int:
        """Append one disagreement between the serving A and a shadow A, chained like the
        decision log; its id."""

    @abstractmethod
    def record_shadow_batch(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        session: str | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> list[LogRow]:
        """Append disagreements (mappings as :func:`shadow_values` reads them) in one
        transaction, under the shadow log's lock, chained after its last row whoever wrote it;
        add ``counts`` (:data:`SHADOW_COUNTS`) to ``session``'s row in the same transaction.
        The rows appended (ids, records, leaves, links)."""

    @abstractmethod
    def begin_shadow_session(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Record a shadow session (``doc``: the columns of :data:`SHADOW_SESSION_COLUMNS` up to
        ``until``) unless it is recorded, count one more process running it and wake every
        :meth:`wait_for_shadow`; its row."""

    @abstractmethod
    def end_shadow_session(self, session: str, *, ended_at: str, reason: str) -> bool:
        """Mark an open session ended (and wake the waiters); True for the one caller that
        ended it (or when it was never recorded), False when it had ended already."""

    @abstractmethod
    def finish_shadow_session(self, session: str, receipt_hash: str) -> None:
        """The receipt of the session's end."""

    @abstractmethod
    def release_shadow_session(self, session: str) -> None:
        """This process no longer runs the session (its rows and counts are written)."""

    @abstractmethod
    def shadow_session(self, session: str | None = None) -> dict[str, Any] | None:
        """A session's row (the newest of the environment unless ``session``), or None."""

    @abstractmethod
    def open_shadow_session(self) -> dict[str, Any] | None:
        """The environment's open session (not ended), or None."""

    def wait_for_shadow(self, current: str | None, timeout: float) -> dict[str, Any] | None:
        """Block until the open session is not ``current`` (or ``timeout`` seconds pass); the
        open session. PostgreSQL: LISTEN/NOTIFY with a poll as the fallback; SQLite: polling."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            row = self.open_shadow_session()
            if (row["session"] if row is not None else None) != current or time.monotonic() >= deadline:
                return row
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    @abstractmethod
    def shadow_session_rows(self, session: str) -> Iterator[tuple[Any, ...]]:
        """The session's shadow rows in id order, for its report: (id, recorded_at,
        decision_id, transaction_id, outcome, shadow_outcome, detail_json, the decision's
        transaction_json or None)."""

    @abstractmethod
    def shadow_flips(self, session: str) -> dict[str, int]:
        """``LIVE→SHADOW``: how many of the session's rows flipped the decision that way."""

    @abstractmethod
    def shadow_rows(self, after: int = 0) -> list[dict[str, Any]]: ...

    @abstractmethod
    def shadow_log_rows(self, after: int = 0) -> Iterator[LogRow]: ...

    # --- tokens ------------------------------------------------------------------------------------

    @abstractmethod
    def token_entries(self) -> list[dict[str, Any]]:
        """The token hashes kept here (as in tokens.json: ``sha256``, ``roles``, ``label``,
        ``created``, ``local_env``), never a token."""

    @abstractmethod
    def put_token(self, entry: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def delete_token(self, sha256: str) -> bool:
        """Remove the token with this hash; whether there was one."""

    # --- the database --------------------------------------------------------------------------

    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def external_storage(home: Path, env: str, database_url: str | None = None) -> Storage | None:
    """``env``'s database opened read-only when it is not the store's SQLite file (PostgreSQL
    from ``database_url`` or config.json), else ``None``: the readers' own SQLite path."""
    from finops_fabric.storage.config import database_for, scheme_of

    url = database_for(home, env, database_url)
    if url is None or scheme_of(url) != "postgresql":
        return None
    return open_storage(home, env, url, readonly=True)


def open_storage(
    home: Path,
    env: str,
    database_url: str | None = None,
    *,
    readonly: bool = False,
    process: str | None = None,
) -> Storage:
    """``env``'s storage: PostgreSQL when ``database_url`` (or config.json's
    ``environments.<env>.database``) names one, else SQLite in ``<home>/daemon-<env>.db``.
    Migrations are applied at open (``readonly``: only checked; a database newer than this
    code is refused either way)."""
    from finops_fabric.storage.config import database_for, scheme_of

    url = database_for(home, env, database_url)
    if url is not None and scheme_of(url) == "postgresql":
        from finops_fabric.storage.postgres import PostgresStorage

        return PostgresStorage(url, env, readonly=readonly, process=process)
    from finops_fabric.storage.sqlite import SqliteStorage

    path = Path(url.partition("://")[2]) if url is not None else None
    return SqliteStorage(home, env, path=path, readonly=readonly, process=process)
