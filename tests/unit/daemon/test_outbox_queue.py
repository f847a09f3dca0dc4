"""The durable outbox: enqueue inside the decision transaction, claim/lease, ack, back-off, depth."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_faults_support import RULE_AUDIT, RULE_NOTIFY, decision_for

from finops_fabric.daemon import outbox


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = outbox.open_db(outbox.db_path(tmp_path, "test"))
    yield c
    c.close()


def _enqueue(conn: sqlite3.Connection, decision_id: int, *args: object, **kw: object) -> int:
    decision, tx = decision_for(decision_id, *args, **kw)  # type: ignore[arg-type]
    conn.execute("BEGIN IMMEDIATE")
    n = outbox.enqueue_for_decision(conn, decision_id, decision, tx, now=100.0)
    conn.execute("COMMIT")
    return n


def test_db_path_and_wal(tmp_path: Path, conn: sqlite3.Connection) -> None:
    assert outbox.db_path(tmp_path, "test") == tmp_path.absolute() / "daemon-test.db"
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ValueError):
        outbox.db_path(tmp_path, "../etc")
    outbox.ensure_schema(conn)  # idempotent


def test_one_row_per_recipient_and_audit_entry(conn: sqlite3.Connection) -> None:
    assert _enqueue(conn, 1, ["a@x", "b@x"], ["immutable"]) == 3
    rows = conn.execute(
        "SELECT kind, state, attempts, decision_id, payload FROM outbox ORDER BY id"
    ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("notification", "pending", 0, 1),
        ("notification", "pending", 0, 1),
        ("audit", "pending", 0, 1),
    ]
    assert '"recipient":"a@x"' in rows[0][4] and f'"rule":"{RULE_NOTIFY}"' in rows[0][4]
    assert '"ledger":"immutable"' in rows[2][4] and RULE_AUDIT in rows[2][4]


def test_retried_decision_does_not_double(conn: sqlite3.Connection) -> None:
    assert _enqueue(conn, 1, ["a@x"], ["immutable"]) == 2
    # the same transaction decided again (a client retry) under a new decision id
    decision, tx = decision_for(1, ["a@x"], ["immutable"])
    conn.execute("BEGIN IMMEDIATE")
    assert outbox.enqueue_for_decision(conn, 2, decision, tx) == 0
    conn.execute("COMMIT")
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 2
    # a duplicate recipient inside one decision is one notification
    assert _enqueue(conn, 3, ["c@x", "c@x"]) == 1


def test_transaction_without_id_keys_by_decision(conn: sqlite3.Connection) -> None:
    decision, tx = decision_for(0, ["a@x"], tx_id="")
    conn.execute("BEGIN IMMEDIATE")
    assert outbox.enqueue_for_decision(conn, 7, decision, tx) == 1
    assert outbox.enqueue_for_decision(conn, 8, decision, tx) == 1  # another decision: another key
    conn.execute("COMMIT")


def test_enqueue_does_not_commit(conn: sqlite3.Connection) -> None:
    decision, tx = decision_for(1, ["a@x"], ["immutable"])
    conn.execute("BEGIN IMMEDIATE")
    outbox.enqueue_for_decision(conn, 1, decision, tx)
    assert conn.in_transaction
    conn.execute("ROLLBACK")  # the decision transaction failed: no side effect remains
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_decimal_amounts_are_strings(conn: sqlite3.Connection) -> None:
    from decimal import Decimal

    decision, tx = decision_for(1, ["a@x"])
    tx["amount"] = Decimal("105000.10")
    conn.execute("BEGIN IMMEDIATE")
    outbox.enqueue_for_decision(conn, 1, decision, tx, now=100.0)
    conn.execute("COMMIT")
    (item,) = outbox.claim(conn, "notification", 200.0)
    assert item.payload["transaction"]["amount"] == "105000.10"


def test_claim_lease_ack(conn: sqlite3.Connection) -> None:
    _enqueue(conn, 1, ["a@x", "b@x"], ["immutable"])
    assert outbox.claim(conn, "notification", 99.0) == []  # not due yet
    items = outbox.claim(conn, "notification", 100.0, limit=1, lease_seconds=10)
    assert len(items) == 1 and items[0].attempts == 1 and items[0].lease_until == 110.0
    assert [i.payload["recipient"] for i in outbox.claim(conn, "notification", 101.0)] == ["b@x"]
    assert outbox.claim(conn, "notification", 105.0) == []  # both leased
    outbox.ack(conn, items[0], now=106.0)
    assert outbox.already_delivered(conn, items[0].idempotency_key)
    # the other lease expires: claimed again (at-least-once), attempts counted
    (again,) = outbox.claim(conn, "notification", 200.0)
    assert again.payload["recipient"] == "b@x" and again.attempts == 2
    d = outbox.depth(conn, now=200.0)
    assert d["notification"]["delivered"] == 1 and d["notification"]["delivering"] == 1
    assert d["audit"]["pending"] == 1 and d["notification"]["oldest_pending_s"] == 100.0
    with pytest.raises(ValueError):
        outbox.claim(conn, "sms", 0.0)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    mid = [outbox.backoff_delay(n, rng=lambda: 0.5) for n in range(1, 10)]
    assert mid == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert outbox.backoff_delay(1, rng=lambda: 0.0) == pytest.approx(0.4)
    assert outbox.backoff_delay(1, rng=lambda: 0.999999) == pytest.approx(0.6, abs=1e-5)
    assert outbox.backoff_delay(6, rng=lambda: 0.999999) == pytest.approx(19.2, abs=1e-4)
    assert outbox.backoff_delay(100, rng=lambda: 0.999999) == 30.0


def test_fail_schedules_retry_then_dead(conn: sqlite3.Connection) -> None:
    _enqueue(conn, 1, ["a@x"])
    (item,) = outbox.claim(conn, "notification", 100.0)
    at = outbox.fail(conn, item, "connection refused", 100.0, rng=lambda: 0.5)
    assert at == 100.5
    row = conn.execute("SELECT state, next_attempt_at, last_error FROM outbox").fetchone()
    assert row == ("pending", 100.5, "connection refused")
    assert outbox.claim(conn, "notification", 100.4) == []
    (item,) = outbox.claim(conn, "notification", 100.5)
    assert item.attempts == 2
    assert outbox.fail(conn, item, "down", 101.0, rng=lambda: 0.5) == 102.0
    (item,) = outbox.claim(conn, "notification", 102.0)
    assert outbox.fail(conn, item, "still down", 103.0, max_attempts=3) is None
    assert conn.execute("SELECT state FROM outbox").fetchone()[0] == "dead"
    assert outbox.claim(conn, "notification", 1e9) == []
    assert outbox.requeue_dead(conn, "notification", now=200.0) == 1
    (item,) = outbox.claim(conn, "notification", 200.0)
    assert item.attempts == 1
    assert outbox.fail(conn, item, "550 no such user", 201.0, permanent=True) is None
    assert outbox.depth(conn)["notification"]["dead"] == 1


def test_fail_after_delivery_elsewhere_keeps_delivered(conn: sqlite3.Connection) -> None:
    _enqueue(conn, 1, ["a@x"])
    (slow,) = outbox.claim(conn, "notification", 100.0, lease_seconds=1)
    (fast,) = outbox.claim(conn, "notification", 102.0)  # the lease ran out
    outbox.ack(conn, fast)
    outbox.fail(conn, slow, "timeout", 103.0)
    assert conn.execute("SELECT state FROM outbox").fetchone()[0] == "delivered"


def test_concurrent_claims_never_share_an_item(tmp_path: Path, conn: sqlite3.Connection) -> None:
    for i in range(50):
        _enqueue(conn, i, ["a@x", "b@x"])
    got: list[list[int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        c = outbox.open_db(outbox.db_path(tmp_path, "test"))
        mine: list[int] = []
        try:
            while True:
                items = outbox.claim(c, "notification", 1000.0, limit=3)
                if not items:
                    break
                mine += [i.id for i in items]
        except BaseException as exc:
            errors.append(exc)
        finally:
            c.close()
            got.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    claimed = [i for mine in got for i in mine]
    assert len(claimed) == 100 and len(set(claimed)) == 100


def test_transaction_refuses_to_nest(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN")
    with pytest.raises(RuntimeError):
        outbox.claim(conn, "notification", 0.0)
    conn.execute("ROLLBACK")


def test_release_leases_of_a_dead_predecessor(conn: sqlite3.Connection) -> None:
    _enqueue(conn, 1, ["a@x"], ["immutable"])
    (item,) = outbox.claim(conn, "notification", 100.0, lease_seconds=30)
    assert outbox.release_leases(conn, "notification", now=101.0) == 1
    (again,) = outbox.claim(conn, "notification", 101.0)
    assert again.id == item.id and again.attempts == 2
    assert outbox.release_leases(conn, "audit", now=101.0) == 0
