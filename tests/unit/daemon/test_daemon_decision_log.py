"""The decision log: one durable row per decision, extra writers in the same transaction."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from finops_fabric.daemon import decision_log as dl

H = "sha256:" + "a" * 64
R = "sha256:" + "b" * 64


def decision(outcome: str, tx_id: str, fired: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "transaction_id": tx_id,
        "decision": outcome,
        "fired": [{"rule": r, "reason": "because"} for r in fired],
        "notifications": [],
        "audit": [],
        "enforcer_hash": H,
    }


def entry(outcome: str, tx_id: str, amount: str = "105000.50") -> dl.LoggedDecision:
    tx = {"id": tx_id, "type": "purchase", "amount": Decimal(amount), "n": 3}
    return dl.LoggedDecision.of("test", tx, decision(outcome, tx_id, ("ex:r1",)), H, R)


def test_dumps_exact_keeps_decimals_exact() -> None:
    assert (
        dl.dumps_exact({"b": Decimal("0.10"), "a": [1, "x", None, True]})
        == '{"a":[1,"x",null,true],"b":0.10}'
    )


def test_commit_decision_and_extra_writer_share_one_transaction(tmp_path: Path) -> None:
    conn = dl.connect(tmp_path / "d.db")
    conn.execute("CREATE TABLE outbox (decision_id INTEGER, msg TEXT)")
    seen: list[int] = []

    def outbox(c: sqlite3.Connection, row_id: int) -> None:
        seen.append(row_id)
        c.execute("INSERT INTO outbox VALUES (?, 'mail')", (row_id,))

    row = dl.commit_decision(conn, entry("REJECT", "t1"), [outbox])
    assert seen == [row]
    assert conn.execute("SELECT decision_id FROM outbox").fetchall() == [(row,)]

    def broken(c: sqlite3.Connection, row_id: int) -> None:
        c.execute("INSERT INTO outbox VALUES (?, 'mail')", (row_id,))
        raise RuntimeError("outbox full")

    with pytest.raises(RuntimeError):
        dl.commit_decision(conn, entry("APPROVE", "t2"), [broken])
    # neither the decision nor its outbox row was kept
    assert conn.execute("SELECT COUNT(*) FROM decisions").fetchone() == (1,)
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone() == (1,)


def test_log_is_append_only(tmp_path: Path) -> None:
    conn = dl.connect(tmp_path / "d.db")
    dl.commit_decision(conn, entry("REJECT", "t1"))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE decisions SET outcome = 'APPROVE'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM decisions")


def test_group_writer_commits_before_answering_and_isolates_failures(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    writer = dl.DecisionWriter(path)
    seen: list[int] = []

    def ok(c: sqlite3.Connection, row_id: int) -> None:
        seen.append(row_id)

    def bad(c: sqlite3.Connection, row_id: int) -> None:
        raise ValueError("no")

    async def many() -> list[Any]:
        jobs = [
            writer.write(entry("APPROVE" if i % 2 else "REJECT", f"t{i}"), [bad] if i == 3 else [ok])
            for i in range(20)
        ]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(many())
    assert isinstance(results[3], ValueError)
    ids = [r for r in results if isinstance(r, int)]
    assert len(ids) == 19 and sorted(ids) == sorted(seen)
    # durable: a fresh connection sees every answered decision
    reader = dl.connect(path, readonly=True)
    assert reader.execute("SELECT COUNT(*) FROM decisions").fetchone() == (19,)
    assert writer.write_sync(entry("REJECT", "sync")) == 20
    writer.close()


def test_query_filters(tmp_path: Path) -> None:
    conn = dl.connect(tmp_path / "d.db")
    for i, outcome in enumerate(["REJECT", "APPROVE", "REJECT"]):
        dl.commit_decision(conn, entry(outcome, f"t{i}"))
    rows = dl.query(conn)
    assert [r["transaction_id"] for r in rows] == ["t0", "t1", "t2"]
    assert rows[0]["transaction"]["amount"] == Decimal("105000.50")
    assert rows[0]["enforcer_hash"] == H and rows[0]["generation_receipt_hash"] == R
    assert rows[0]["fired"] == ["ex:r1"]
    assert [r["transaction_id"] for r in dl.query(conn, outcome="REJECT")] == ["t0", "t2"]
    assert [r["transaction_id"] for r in dl.query(conn, transaction_id="t1")] == ["t1"]
    assert [r["transaction_id"] for r in dl.query(conn, limit=2)] == ["t1", "t2"]
    first = rows[0]["decided_at"]
    assert len(dl.query(conn, since=first)) == 3
    assert dl.query(conn, until=first) == []
    assert dl.query(conn, since="2999-01-01T00:00:00.000000Z") == []
