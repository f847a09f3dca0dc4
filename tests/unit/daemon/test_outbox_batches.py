"""The outbox's batch operations: ack_many, fail_many, release, delivered_keys, waiting, and a
claim that survives a malformed payload."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_faults_support import decision_for

from finops_fabric.daemon import outbox


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = outbox.open_db(outbox.db_path(tmp_path, "test"))
    c.execute("BEGIN IMMEDIATE")
    for i in range(4):
        decision, tx = decision_for(i, ["a@x", "b@x"], ["immutable"])
        outbox.enqueue_for_decision(c, i + 1, decision, tx, now=100.0)
    c.execute("COMMIT")
    yield c
    c.close()


def _states(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return conn.execute(
        "SELECT state, attempts FROM outbox WHERE kind = 'notification' ORDER BY id"
    ).fetchall()


def test_ack_many_records_each_time_and_key(conn: sqlite3.Connection) -> None:
    items = outbox.claim(conn, "notification", 100.0, limit=3)
    outbox.ack_many(conn, [(items[0], 101.0), (items[2], 103.0)])
    rows = conn.execute("SELECT id, state, delivered_at FROM outbox WHERE kind = 'notification' ORDER BY id")
    assert [r[1:] for r in rows.fetchall()][:3] == [
        ("delivered", 101.0),
        ("delivering", None),
        ("delivered", 103.0),
    ]
    keys = [i.idempotency_key for i in items]
    assert outbox.delivered_keys(conn, keys) == {keys[0], keys[2]}
    assert outbox.delivered_keys(conn, []) == set()
    outbox.ack_many(conn, [])  # nothing to do


def test_delivered_keys_of_a_large_batch(conn: sqlite3.Connection) -> None:
    items = outbox.claim(conn, "notification", 100.0, limit=8)
    outbox.ack_many(conn, [(i, 101.0) for i in items])
    keys = [i.idempotency_key for i in items] + [f"sha256:{n:064x}" for n in range(1200)]
    assert outbox.delivered_keys(conn, keys) == {i.idempotency_key for i in items}


def test_fail_many_backs_off_or_dead_letters_and_keeps_delivered(conn: sqlite3.Connection) -> None:
    items = outbox.claim(conn, "notification", 100.0, limit=3)
    outbox.ack(conn, items[2], now=100.5)  # delivered meanwhile (another lease)
    outbox.fail_many(
        conn, [(items[0], "down", False), (items[1], "550 no", True), (items[2], "late", False)], 101.0,
        rng=lambda: 0.5,
    )  # fmt: skip
    rows = conn.execute(
        "SELECT state, next_attempt_at, last_error FROM outbox WHERE kind = 'notification' ORDER BY id"
    ).fetchall()[:3]
    # the lease's end (100 + 30 s) stays on the delivered one: fail_many does not touch it
    assert rows == [("pending", 101.5, "down"), ("dead", 101.0, "550 no"), ("delivered", 130.0, None)]


def test_release_hands_back_without_charging_an_attempt(conn: sqlite3.Connection) -> None:
    items = outbox.claim(conn, "notification", 100.0, limit=2)
    assert _states(conn)[:2] == [("delivering", 1), ("delivering", 1)]
    outbox.release(conn, items, now=100.2)
    assert _states(conn)[:2] == [("pending", 0), ("pending", 0)]
    again = outbox.claim(conn, "notification", 100.2, limit=8)
    assert {i.id: i.attempts for i in again if i.id in (items[0].id, items[1].id)} == {
        items[0].id: 1,
        items[1].id: 1,
    }


def test_waiting_is_depth_pending_plus_delivering(conn: sqlite3.Connection) -> None:
    items = outbox.claim(conn, "notification", 100.0, limit=3)
    outbox.ack(conn, items[0])
    depth = outbox.depth(conn)
    assert outbox.waiting(conn) == {k: depth[k]["pending"] + depth[k]["delivering"] for k in outbox.KINDS}
    assert outbox.waiting(conn) == {"notification": 7, "audit": 4}


def test_claim_survives_a_malformed_payload(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE outbox SET payload = 'not json' WHERE id = 1")
    items = outbox.claim(conn, "notification", 100.0, limit=2)
    assert items[0].payload == {} and items[1].payload["recipient"] == "b@x"
