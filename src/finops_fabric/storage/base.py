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
