"""A generated history: transactions decided by a real enforcer and logged exactly as the daemon
logs them (the same row, leaf hash and chain), with timestamps spread over a period.

For demonstrations, benchmarks and tests of `mu backtest --env`: the log it writes verifies and
replays like any daemon's. It appends to ``<store>/daemon-<env>.db`` (or the PostgreSQL database
a ``database`` URL names) in large transactions.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from finops_fabric.store import Store

TYPES = ("purchase", "wire", "refund")
LEVELS = ("L1", "L2", "L3", "CFO", "Board")
COUNTRIES = ("US", "DE", "GB", "FR", "IR", "KP")
RISKS = ("low", "medium", "high")


def transactions(n: int, seed: int = 0, *, start: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` plausible transactions (amounts up to 2,000,000.00, a few odd rows among them)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not a secret
    for i in range(start, start + n):
        cents = rng.randint(0, 200_000_000) if rng.random() < 0.9 else rng.randint(0, 12_000_000)
        tx: dict[str, Any] = {
            "id": f"tx-{i}",
            "type": rng.choice(TYPES),
            "amount": f"{cents // 100}.{cents % 100:02d}",
            "currency": "USD",
            "actor_id": f"u-{rng.randint(1, 500)}",
            "actor_level": rng.choice(LEVELS),
            "approver_id": f"u-{rng.randint(1, 200)}",
            "executor_id": f"u-{rng.randint(1, 200)}",
            "attributes": {"country": rng.choice(COUNTRIES), "vendor_risk": rng.choice(RISKS)},
        }
        odd = rng.random()
        if odd < 0.002:
            tx["type"] = "loan"
        elif odd < 0.004:
            del tx["attributes"]["vendor_risk"]
        elif odd < 0.005:
            tx["amount"] = Decimal(cents) / 100
        yield tx


def log_history(
    store: Store,
    env: str,
    enforcer: Any,
    generation_receipt_hash: str,
    txs: Iterable[Mapping[str, Any]],
    *,
    start: dt.datetime,
    every: dt.timedelta,
    chunk: int = 20_000,
    database: str | None = None,
) -> int:
    """Decide each transaction with ``enforcer`` and log it (decided at ``start``, ``start +
    every`` …), then sign a tree head of the log with the operator key as the daemon's keeper
    does; the number of rows written. ``database``: a PostgreSQL URL to log into instead of the
    store's SQLite file."""
    import json

    from finops_fabric.daemon import decision_log as dl
    from finops_fabric.daemon.tree_heads import _mark_began, decision_heads
    from finops_fabric.transparency import GENESIS, CompactRange, chain_hash, make_head, sign_head

    def entries() -> Iterator[dl.LoggedDecision]:
        at = start
        for tx in txs:
            decision = enforcer.decide(dict(tx)).to_dict()
            tx_id = tx.get("id")
            yield dl.LoggedDecision(
                env=env,
                transaction_id=None if tx_id is None else str(tx_id),
                transaction_json=dl.transaction_json(tx),
                outcome=str(decision["decision"]),
                fired=json.dumps([f["rule"] for f in decision.get("fired", [])]),
                decision_json=json.dumps(decision, sort_keys=True, separators=(",", ":"), default=str),
                enforcer_hash=enforcer.hash,
                generation_receipt_hash=generation_receipt_hash,
                decided_at=at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            )
            at += every

    if database is not None:
        return _log_to_postgres(store, env, database, entries(), chunk)

    conn = dl.connect(dl.db_path(Path(store.home), env))
    written = 0
    tree = CompactRange()
    chain_now = GENESIS
    for row in dl.log_rows(conn):
        assert row.leaf is not None
        tree.append(row.leaf)
    try:
        pending: list[dl.LoggedDecision] = []

        def flush() -> None:
            nonlocal chain_now
            conn.execute("BEGIN IMMEDIATE")
            try:
                tail = dl._read_tail(conn)
                last, chain = tail.last_id, tail.chain
                for entry in pending:
                    last, leaf = dl._insert(conn, entry, last, chain)
                    chain = chain_hash(chain, leaf)
                    tree.append(leaf)
                conn.execute("COMMIT")
                chain_now = chain
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            pending.clear()

        for entry in entries():
            pending.append(entry)
            written += 1
            if len(pending) >= chunk:
                flush()
        if pending:
            flush()
    finally:
        conn.close()
    head = make_head("decisions", tree, env=env, chain=chain_now)
    decision_heads(store, env).write(sign_head(head, store.operator_private_key()))
    _mark_began(store, env, "decisions")
    return written


def _log_to_postgres(store: Store, env: str, url: str, entries: Iterable[Any], chunk: int) -> int:
    """:func:`log_history` into PostgreSQL: the rows the daemon's writer inserts (under the
    decision log's lock, chained to the log's last row), ``chunk`` to a transaction; then a
    signed tree head of the whole log."""
    import psycopg

    from finops_fabric.daemon import decision_log as dl
    from finops_fabric.daemon.tree_heads import decision_heads
    from finops_fabric.storage import open_storage
    from finops_fabric.storage.migrations import LOCK_DECISIONS
    from finops_fabric.storage.postgres import _INSERT, _SELECT
    from finops_fabric.transparency import GENESIS, CompactRange, chain_hash, make_head, now_stamp, sign_head

    open_storage(store.home, env, url).close()  # migrated as a daemon would
    written = 0
    with psycopg.connect(url, autocommit=True) as conn:

        def flush(pending: list[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_DECISIONS,))
                row = cur.execute(_SELECT + " ORDER BY id DESC LIMIT 1").fetchone()
                if row is None:
                    last, chain = 0, GENESIS
                else:
                    stored = dl._log_row(row)
                    last, chain = (
                        stored.id,
                        chain_hash(stored.prev or GENESIS, stored.leaf or dl._leaf_of(stored)),
                    )
                rows = []
                for entry in pending:
                    last += 1
                    leaf = entry.leaf(last)
                    rows.append((last, *entry.params(), leaf, chain, entry.process))
                    chain = chain_hash(chain, leaf)
                cur.executemany(_INSERT, rows)
            pending.clear()

        pending: list[Any] = []
        for entry in entries:
            pending.append(entry)
            written += 1
            if len(pending) >= chunk:
                flush(pending)
        if pending:
            flush(pending)
        tree = CompactRange()
        chain_now = GENESIS
        for stored in _pg_rows(conn):
            leaf = stored.leaf or dl._leaf_of(stored)
            tree.append(leaf)
            chain_now = chain_hash(stored.prev or GENESIS, leaf)
        head = make_head("decisions", tree, env=env, chain=chain_now)
    decision_heads(store, env).write(sign_head(head, store.operator_private_key()))
    with open_storage(store.home, env, url) as storage:
        if storage.heads_began("decisions") is None:
            storage.mark_heads_began("decisions", now_stamp())
    return written


def _pg_rows(conn: Any) -> Iterator[Any]:
    """Every row of a PostgreSQL decision log, in id order, as the verifier reads them."""
    from finops_fabric.daemon import decision_log as dl
    from finops_fabric.storage.postgres import _SELECT

    last = 0
    while batch := conn.execute(_SELECT + " WHERE id > %s ORDER BY id LIMIT 10000", (last,)).fetchall():
        for r in batch:
            yield dl._log_row(r)
        last = int(batch[-1][0])


def generated(
    store: Store, ontology: Path, output: Path, generator_version: str | None = None
) -> tuple[Any, str]:
    """Generate A from O into ``output`` the way `mu generate` does (gates, receipt in the
    ledger, snapshots in the store); (the loaded A, its generation receipt hash)."""
    from finops_fabric.enforcer import load_enforcer
    from finops_fabric.pipeline import generate

    result = generate(ontology, output, store, generator_version=generator_version)
    if result.status != "generated":
        from finops_fabric.errors import CheckFailed

        raise CheckFailed(f"{ontology} was not generated (a {result.receipt.get('kind')} receipt)")
    return load_enforcer(output), str(result.receipt["receipt_hash"])
