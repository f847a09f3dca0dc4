"""The daemon's signed tree heads: its decision log and its audit ledger, kept outside the database.

At boot (:meth:`HeadKeeper.boot`) the daemon refuses to start when the store's receipt ledger
does not verify, or when its decision log or audit ledger is shorter than, or was rewritten up
to, the newest signed head (the rows after that head are re-hashed and re-linked too). Then it
signs a head of each log with the operator key every ``interval`` seconds when the log grew,
and once more at shutdown, after the last decision is committed, and writes it to::

    <store>/tree-heads/<env>/decisions/<size>.json   (and latest.json; mode 0600)
    <store>/tree-heads/<env>/audit/<size>.json

and, when ``<store>/config.json`` names one, POSTs it (and each new head of the receipt ledger)
to a witness::

    {"tree_heads": {"interval_seconds": 10, "webhook": "https://witness.example/heads"}}

The decision log's tree is extended by the writer itself, from the leaves it computed
(:meth:`~finops_fabric.daemon.decision_log.DecisionWriter.follow_tree`); the audit ledger,
written by the worker processes, is followed by re-hashing and re-linking its new rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finops_fabric.daemon import audit_log, decision_log
from finops_fabric.errors import CheckFailed, FabricError, InputError, Location
from finops_fabric.store import Store

if TYPE_CHECKING:
    from finops_fabric.storage import DecisionLog, Storage
from finops_fabric.transparency import (
    GENESIS,
    CompactRange,
    HeadDirectory,
    LogRow,
    Verifier,
    chain_hash,
    make_head,
    post_head,
    resume,
    sign_head,
)

__all__ = ["DEFAULT_INTERVAL", "HeadKeeper", "HeadsConfig", "audit_heads", "decision_heads", "heads_config"]

DEFAULT_INTERVAL = 10.0


def decision_heads(store: Store, env: str) -> HeadDirectory:
    return HeadDirectory(store.tree_heads_dir / env / "decisions")


def audit_heads(store: Store, env: str) -> HeadDirectory:
    return HeadDirectory(store.tree_heads_dir / env / "audit")


@dataclass(frozen=True)
class HeadsConfig:
    interval: float = DEFAULT_INTERVAL
    webhook: str | None = None


def heads_config(store: Store) -> HeadsConfig:
    """``tree_heads`` of ``<store>/config.json`` (defaults when absent)."""
    path = store.home / "config.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}", code="config.unreadable") from exc
    section = doc.get("tree_heads", {}) if isinstance(doc, dict) else {}
    where = Location(file=str(path))
    if not isinstance(section, dict):
        raise InputError(f"{path}: tree_heads must be an object", code="config.tree_heads", location=where)
    interval = section.get("interval_seconds", DEFAULT_INTERVAL)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0.05 <= interval <= 3600:
        raise InputError(
            f"{path}: tree_heads.interval_seconds must be a number of seconds from 0.05 to 3600",
            code="config.tree_heads",
            location=where,
        )
    webhook = section.get("webhook")
    if webhook is not None and (
        not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))
    ):
        raise InputError(
            f"{path}: tree_heads.webhook must be an http(s) URL", code="config.tree_heads", location=where
        )
    return HeadsConfig(float(interval), webhook)


@dataclass
class _Log:
    """One log the keeper signs heads of: where they go, the last head signed."""

    name: str
    title: str
    noun: str
    plural: str
    heads: HeadDirectory
    signed: int = -1
    tree: CompactRange = field(default_factory=CompactRange)
    last_id: int = 0
    chain: bytes = GENESIS
    problem: str | None = None


def _rows_after(
    rows: Callable[[int], Iterator[LogRow]], after: int, chain: bytes, noun: str, where: str
) -> tuple[list[bytes], int, bytes]:
    """Re-hash and re-link the rows after id ``after`` (starting from ``chain``): (their leaves,
    the last id, the chain hash). :class:`CheckFailed` names the first row that does not hold."""
    leaves: list[bytes] = []
    last = after
    at = f" ({where})" if where else ""
    for row in rows(after):
        leaf = hashlib.sha256(b"\x00" + row.record).digest()
        if row.id != last + 1:
            raise CheckFailed(f"ids jump from {last} to {row.id}{at}: {noun} missing", code="audit.log_gap")
        if row.leaf != leaf:
            raise CheckFailed(
                f"{noun} {row.id}{at} was changed: its leaf hash no longer matches", code="audit.log_changed"
            )
        if row.prev != chain:
            raise CheckFailed(f"chain break at {noun} {row.id}{at}", code="audit.log_chain")
        leaves.append(leaf)
        last, chain = row.id, chain_hash(chain, leaf)
    return leaves, last, chain


class HeadKeeper:
    """Signs and keeps the tree heads of one daemon's decision log and audit ledger."""

    def __init__(
        self,
        store: Store,
        env: str,
        writer: DecisionLog,
        config: HeadsConfig | None = None,
        *,
        storage: Storage | None = None,
    ) -> None:
        self.store = store
        #: The database when it is not the store's SQLite file (PostgreSQL): read through it.
        self.storage = storage
        self.env = env
        self.writer = writer
        self.config = config if config is not None else heads_config(store)
        self.decisions = _Log(
            "decisions", "decision log", "decision", "decisions", decision_heads(store, env)
        )
        self.audit = _Log("audit", "audit ledger", "audit entry", "audit entries", audit_heads(store, env))
        self._key = store.operator_private_key()
        self._keys: dict[str, Verifier] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._posted_ledger = -1
        self._closed = False
        self._audit_conn: sqlite3.Connection | None = None

    # --- boot ------------------------------------------------------------------------------

    def boot(self) -> None:
        """Refuse (:class:`CheckFailed`) a store whose ledger, decision log or audit ledger does
        not verify against its newest signed head; otherwise resume both trees and sign the
        first heads where none exists or the log grew."""
        from finops_fabric.audit import default_trust, require_verified_ledger

        refused = f"the {self.env} daemon does not start"
        require_verified_ledger(self.store, refused)
        self._keys = dict(default_trust(self.store).keys)
        if self.storage is not None:
            self._boot_storage(self.storage)
            return
        path = decision_log.db_path(self.store.home, self.env)
        conn = decision_log.connect(path)
        try:
            self._resume(
                self.decisions, conn, "decisions", lambda after: decision_log.log_rows(conn, after=after)
            )
        finally:
            conn.close()
        tail_id = self.writer.head()[0]
        if tail_id != self.decisions.last_id:
            raise CheckFailed(
                f"{refused}: the decision log changed while the daemon started (decision {tail_id})",
                code="decisions.changed",
            )
        self.writer.follow_tree(self.decisions.tree)
        from finops_fabric.daemon import outbox

        conn = outbox.open_db(outbox.db_path(self.store.home, self.env), synchronous="NORMAL")
        try:
            self._resume(self.audit, conn, "audit_ledger", lambda after: _audit_rows(conn, after))
        except BaseException:
            conn.close()
            raise
        self._audit_conn = conn
        self.tick()

    def _boot_storage(self, storage: Storage) -> None:
        """:meth:`boot` over a :class:`Storage` (the heads stay files of the store)."""
        refused = f"the {self.env} daemon does not start"
        self._resume_log(
            self.decisions,
            storage.log_size("decisions"),
            lambda n: storage.log_chain_at("decisions", n),
            storage.decision_rows,
            storage.heads_began("decisions"),
        )
        tail_id = self.writer.head()[0]
        if tail_id < self.decisions.last_id:
            raise CheckFailed(
                f"{refused}: the decision log changed while the daemon started (decision {tail_id})",
                code="decisions.changed",
            )
        if tail_id > self.decisions.last_id:  # another daemon of the fleet logged meanwhile
            leaves, last, chain = _rows_after(
                storage.decision_rows, self.decisions.last_id, self.decisions.chain, "decision", ""
            )
            self.decisions.tree.extend(leaves)
            self.decisions.last_id, self.decisions.chain = last, chain
        self.writer.follow_tree(self.decisions.tree)
        self._resume_log(
            self.audit,
            storage.log_size("audit"),
            lambda n: storage.log_chain_at("audit", n),
            lambda after: (r.row for r in storage.audit_rows(after)),
            storage.heads_began("audit"),
        )
        self.tick()

    def _resume(
        self, log: _Log, conn: sqlite3.Connection, table: str, rows: Callable[[int], Iterator[LogRow]]
    ) -> None:
        id_col = "id" if table == "decisions" else "seq"
        (count,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608 - fixed names

        def chain_at(n: int) -> bytes | None:
            if n == 0:
                return GENESIS
            row = conn.execute(
                f"SELECT leaf_hash, prev_chain_hash FROM {table} WHERE {id_col} = ?",  # noqa: S608
                (n,),
            ).fetchone()
            if row is None or not isinstance(row[0], bytes) or not isinstance(row[1], bytes):
                return None
            return chain_hash(row[1], row[0])

        self._resume_log(log, int(count), chain_at, rows, _began(conn, log.name))

    def _resume_log(
        self,
        log: _Log,
        count: int,
        chain_at: Callable[[int], bytes | None],
        rows: Callable[[int], Iterator[LogRow]],
        began: str | None,
    ) -> None:
        refused = f"the {self.env} daemon does not start"
        where = f"the {self.env} {log.title}"
        state: dict[str, Any] = {}

        def leaves_after(n: int) -> list[bytes]:
            leaves, state["last"], state["chain"] = _rows_after(
                rows, n, chain_at(n) or GENESIS, log.noun, "after its newest signed head" if n else ""
            )
            return leaves

        command = "decisions" if log.name == "decisions" else "audit-log"
        tree = CompactRange()
        try:
            resumed = resume(
                log.heads,
                self._keys,
                int(count),
                leaves_after,
                log=log.name,
                env=self.env,
                noun=log.plural,
                chain_at=chain_at,
            )
            if resumed is None and began is None:  # heads begin now, over the rows it holds
                tree.extend(leaves_after(0))
        except CheckFailed as exc:
            raise CheckFailed(
                f"{refused}: {where} does not verify: {exc.message}",
                code=exc.code,
                hint=f"`mu {command} verify --env={self.env}` names every problem; move the database "
                "aside to start a new log (keep the old one as evidence)",
            ) from exc
        if resumed is None and began is not None:
            raise CheckFailed(
                f"{refused}: {where} holds {count} {log.plural} but its signed tree heads are "
                f"missing from {log.heads.path} (heads began {began}): a deletion from the end "
                "cannot be ruled out",
                code="audit.tree_head_missing",
                location=Location(file=str(log.heads.path)),
                hint="restore the head files from a backup or a witness's copy",
            )
        if resumed is None:
            log.signed = -1
        else:
            tree, head = resumed
            log.signed = int(head["tree_size"])
        log.tree, log.last_id, log.chain = tree, state.get("last", 0), state.get("chain", GENESIS)

    # --- signing ---------------------------------------------------------------------------

    def _sign(self, log: _Log, tree: CompactRange, chain: bytes) -> None:
        if tree.size <= log.signed:
            return
        head = sign_head(make_head(log.name, tree, env=self.env, chain=chain), self._key)
        log.heads.write(head)
        if log.signed < 0:
            if self.storage is not None:
                from finops_fabric.transparency import now_stamp

                self.storage.mark_heads_began(log.name, now_stamp())
            else:
                _mark_began(self.store, self.env, log.name)
        log.signed = tree.size
        self._post(head)

    def _post(self, head: dict[str, Any]) -> None:
        if self.config.webhook is None:
            return
        problem = post_head(self.config.webhook, head)
        if problem is not None:
            print(f"mu daemon: tree head not handed to the witness: {problem}", file=sys.stderr, flush=True)

    def tick(self) -> None:
        """Sign a head of each log that grew since its last head (and hand the ledger's newest
        head to the witness)."""
        with self._lock:
            _last, chain, tree = self.writer.head()
            if tree is not None:
                self._sign(self.decisions, tree, chain)
            self._follow_audit()
            if self.audit.problem is None:
                self._sign(self.audit, self.audit.tree.copy(), self.audit.chain)
            if self.config.webhook is not None:
                newest = self.store.ledger_heads.newest()
                if newest is not None and newest.head is not None and newest.size > self._posted_ledger:
                    self._post(newest.head)
                    self._posted_ledger = newest.size

    def _follow_audit(self) -> None:
        """Re-hash and re-link the audit entries the workers appended since the last tick, and
        make them durable (the workers commit without an fsync) before a head covers them."""
        log, conn, storage = self.audit, self._audit_conn, self.storage
        rows: Callable[[int], Iterator[LogRow]]
        if storage is not None:
            rows = lambda after: (r.row for r in storage.audit_rows(after))  # noqa: E731
        elif conn is not None:
            rows = lambda after: _audit_rows(conn, after)  # noqa: E731
        else:
            return
        if log.problem is not None:
            return
        try:
            leaves, last_id, chain = _rows_after(
                rows,
                log.last_id,
                log.chain,
                log.noun,
                "",
            )
            if leaves and storage is None:  # PostgreSQL commits are durable when they return
                decision_log.sync_wal(decision_log.db_path(self.store.home, self.env))
            log.tree.extend(leaves)
            log.last_id, log.chain = last_id, chain
        except CheckFailed as exc:
            log.problem = exc.message
            print(
                f"mu daemon: no more audit tree heads are signed: {exc.message}", file=sys.stderr, flush=True
            )
        except (sqlite3.Error, OSError, FabricError):
            pass  # read again at the next tick

    def health(self) -> dict[str, Any]:
        problem = self.audit.problem
        return {
            "status": "failed" if problem else "ok",
            "decisions_signed": self.decisions.signed,
            "audit_signed": self.audit.signed,
            **({"problem": problem} if problem else {}),
        }

    # --- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"tree-heads-{self.env}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval):
            try:
                self.tick()
            except Exception as exc:  # a head that cannot be written now is signed at the next tick
                print(f"mu daemon: tree head not written: {exc}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the thread, close the writer (every decision committed) and sign the last heads."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.writer.close()
        try:
            self.tick()
        finally:
            if self._audit_conn is not None:
                self._audit_conn.close()
                self._audit_conn = None


def _audit_rows(conn: sqlite3.Connection, after: int) -> Iterator[LogRow]:
    for stored in audit_log.log_rows(conn, after=after):
        yield stored.row


def _began(conn: sqlite3.Connection, log: str) -> str | None:
    try:
        row = conn.execute("SELECT adopted_at FROM log_chain WHERE log = ?", (f"{log}:heads",)).fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row is not None else None


def _mark_began(store: Store, env: str, log: str) -> None:
    """Record in the database that this log's heads began (so missing heads are noticed)."""
    from finops_fabric.transparency import now_stamp

    path = decision_log.db_path(store.home, env)
    with contextlib.closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as conn:
        conn.execute(decision_log.LOG_CHAIN_SCHEMA.strip())
        conn.execute(
            "INSERT OR IGNORE INTO log_chain (log, adopted_rows, adopted_at) VALUES (?, 0, ?)",
            (f"{log}:heads", now_stamp()),
        )
