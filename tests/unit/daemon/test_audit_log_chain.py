"""The hash-chained audit ledger: idempotent append, verification, tamper detection, the CLI."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from test_faults_support import ENV, enqueue_burst, make_store, outbox_depth

from finops_fabric.canonical import canonical_json
from finops_fabric.daemon import audit_log, outbox
from finops_fabric.daemon.worker import Worker


def _ledger(tmp_path: Path) -> sqlite3.Connection:
    return outbox.open_db(outbox.db_path(tmp_path, ENV))


def _append(conn: sqlite3.Connection, ledger: str, n: int, key: str) -> str:
    with outbox.transaction(conn):
        return audit_log.append(conn, ledger, {"n": n, "flags": ["x"]}, key)


def test_chain_links_and_hash_formula(tmp_path: Path) -> None:
    conn = _ledger(tmp_path)
    try:
        h1 = _append(conn, "immutable", 1, "k1")
        h2 = _append(conn, "immutable", 2, "k2")
        other = _append(conn, "fraud", 3, "k3")
        rows = conn.execute("SELECT seq, ledger, entry, prev_hash, entry_hash FROM audit_ledger").fetchall()
        assert [r[3] for r in rows] == [audit_log.GENESIS, h1, audit_log.GENESIS]
        assert [r[4] for r in rows] == [h1, h2, other]
        # recomputable with nothing but sha256 over the stored text
        for _, _, entry, prev, digest in rows:
            assert digest == "sha256:" + hashlib.sha256(prev.encode() + entry.encode()).hexdigest()
            assert canonical_json(json.loads(entry)) == entry.encode()
        report = audit_log.verify(conn)
        assert report.verified and report.entries == 3 and report.first_broken is None
        assert report.to_dict()["heads"] == {"immutable": h2, "fraud": other}
    finally:
        conn.close()


def test_append_is_idempotent_by_key(tmp_path: Path) -> None:
    conn = _ledger(tmp_path)
    try:
        h = _append(conn, "immutable", 1, "k1")
        assert _append(conn, "immutable", 99, "k1") == h
        assert conn.execute("SELECT COUNT(*) FROM audit_ledger").fetchone()[0] == 1
    finally:
        conn.close()


def test_ledger_is_append_only_in_sqlite(tmp_path: Path) -> None:
    conn = _ledger(tmp_path)
    try:
        _append(conn, "immutable", 1, "k1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit_ledger SET entry = '{}'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit_ledger")
    finally:
        conn.close()


def _sign_heads(home: Path) -> None:
    from finops_fabric.daemon import decision_log
    from finops_fabric.daemon.tree_heads import HeadKeeper, HeadsConfig
    from finops_fabric.store import Store

    store = Store(home)
    keeper = HeadKeeper(
        store, ENV, decision_log.DecisionWriter(decision_log.db_path(home, ENV)), HeadsConfig()
    )
    keeper.boot()
    keeper.close()


def _tamper(path: Path, sql: str, *params: Any) -> None:
    """What someone with the file can do: drop the guards and rewrite rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER audit_ledger_no_update")
        conn.execute("DROP TRIGGER audit_ledger_no_delete")
        conn.execute(sql, params)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("UPDATE audit_ledger SET entry = replace(entry, '\"n\":3', '\"n\":4') WHERE seq = 3", "entry_hash"),
        (
            "UPDATE audit_ledger SET entry = replace(entry, '\"n\":3}', '\"n\": 3}') WHERE seq = 3",
            "canonical",
        ),
        ("DELETE FROM audit_ledger WHERE seq = 3", "audit entry 3 is missing: ids jump from 2 to 4"),
        ("UPDATE audit_ledger SET ledger = 'other' WHERE seq = 3", "does not link"),
    ],
)
def test_tampering_is_found_with_its_seq(tmp_path: Path, sql: str, reason: str) -> None:
    conn = _ledger(tmp_path)
    try:
        for i in range(1, 6):
            _append(conn, "immutable", i, f"k{i}")
    finally:
        conn.close()
    _tamper(outbox.db_path(tmp_path, ENV), sql)
    conn = _ledger(tmp_path)
    try:
        report = audit_log.verify(conn)
    finally:
        conn.close()
    assert not report.verified
    assert report.first_broken is not None
    assert report.first_broken["seq"] == 3
    assert reason in report.first_broken["reason"]
    if sql.startswith("DELETE"):  # and the entry after it no longer links within its ledger
        assert any(p["seq"] == 4 and "prev_hash" in p["reason"] for p in report.problems)


def test_audit_worker_appends_once_and_acks(tmp_path: Path) -> None:
    make_store(tmp_path, None)
    keys = enqueue_burst(tmp_path, 10, [], ["immutable", "fraud"])
    worker = Worker(tmp_path, ENV, "audit")
    try:
        deadline = time.monotonic() + 20
        while worker.run_once():
            assert time.monotonic() < deadline
        # a redelivery (lost ack) does not add a second entry
        worker.conn.execute("UPDATE outbox SET state = 'pending', next_attempt_at = 0")
        while worker.run_once():
            assert time.monotonic() < deadline
        rows = worker.conn.execute("SELECT idempotency_key, entry FROM audit_ledger").fetchall()
        assert {r[0] for r in rows} == keys and len(rows) == 20
        entry = json.loads(rows[0][1])
        assert entry["rule"].endswith("#AuditLarge") and entry["flags"] == ["L3_override"]
        assert entry["transaction"]["amount"] == "100000.00" and entry["enforcer_hash"].startswith("sha256:")
        assert audit_log.verify(worker.conn).verified
    finally:
        worker.conn.close()
    assert outbox_depth(tmp_path)["audit"]["delivered"] == 20


def test_cli_audit_log_verify(tmp_path: Path, mu: Any) -> None:
    home = tmp_path / "store"
    make_store(home, None)
    code, out, err = mu("audit-log", "verify", "--home", home, "--json")
    assert code == 2 and "no daemon database" in err
    conn = _ledger(home)
    try:
        for i in range(1, 4):
            _append(conn, "immutable", i, f"k{i}")
    finally:
        conn.close()
    doc = mu.json("audit-log", "verify", "--env", ENV, "--home", home, code=1)
    assert doc["first_broken"]["problem"] == "no_tree_head"  # nothing says how long it was
    _sign_heads(home)  # what the daemon does at boot and shutdown
    doc = mu.json("audit-log", "verify", "--env", ENV, "--home", home)
    assert doc["verified"] is True and doc["entries"] == 3 and doc["first_broken"] is None
    doc = mu.json("audit-log", "verify", "--home", home)
    assert doc["environments"][ENV]["verified"] is True
    code, out, _ = mu("audit-log", "verify", "--env", ENV, "--home", home)
    assert code == 0 and "chain verified" in out
    _tamper(outbox.db_path(home, ENV), "UPDATE audit_ledger SET entry = replace(entry, '\"n\":2', '\"n\":7')")
    doc = mu.json("audit-log", "verify", f"--env={ENV}", "--home", home, code=1)
    assert doc["verified"] is False and doc["first_broken"]["seq"] == 2
    code, out, _ = mu("audit-log", "verify", "--env", ENV, "--home", home)
    assert code == 1 and "BROKEN at seq 2" in out
    code, _, err = mu("audit-log", "verify", "--env", "prod", "--home", home)
    assert code == 2 and "prod" in err


def test_cli_outbox_status_and_retry_dead(tmp_path: Path, mu: Any) -> None:
    home = tmp_path / "store"
    make_store(home, None)
    enqueue_burst(home, 2, ["a@example.com"], ["immutable"])
    doc = mu.json("outbox", "status", "--home", home)
    assert doc["environments"][ENV]["notification"]["pending"] == 2
    assert doc["environments"][ENV]["audit"]["pending"] == 2
    conn = _ledger(home)
    try:
        conn.execute("UPDATE outbox SET state = 'dead' WHERE kind = 'notification'")
    finally:
        conn.close()
    doc = mu.json("outbox", "retry-dead", "--kind", "notification", "--env", ENV, "--home", home)
    assert doc["requeued"] == 2 and doc["environments"][ENV]["notification"]["dead"] == 0
    code, out, _ = mu("outbox", "status", "--home", home)
    assert code == 0 and f"{ENV} notification: 2 pending" in out
