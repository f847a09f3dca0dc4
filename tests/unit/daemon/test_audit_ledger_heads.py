"""The audit ledger as a tamper-evident log: across its named ledgers every entry is a leaf of one
hash chain and Merkle tree whose signed heads the daemon keeps outside the database, so
`mu audit-log verify` names entries changed, removed, inserted or reordered, and a ledger cut
short, by seq."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_faults_support import ENV

from finops_fabric.daemon import audit_log, outbox
from finops_fabric.daemon import decision_log as dl
from finops_fabric.daemon.tree_heads import HeadKeeper, HeadsConfig, audit_heads
from finops_fabric.errors import CheckFailed
from finops_fabric.keys import load_public_key
from finops_fabric.store import Store
from finops_fabric.transparency import check_head, read_head, record_leaf, verifiers


def append(home: Path, n: int, start: int = 1) -> None:
    conn = outbox.open_db(outbox.db_path(home, ENV))
    try:
        for i in range(start, start + n):
            with outbox.transaction(conn):
                audit_log.append(conn, "immutable" if i % 3 else "fraud", {"n": i, "flags": ["x"]}, f"k{i}")
    finally:
        conn.close()


def sign_heads(store: Store) -> None:
    """A daemon's boot and shutdown: the audit ledger's head is signed."""
    writer = dl.DecisionWriter(dl.db_path(store.home, ENV))
    keeper = HeadKeeper(store, ENV, writer, HeadsConfig(interval=3600))
    try:
        keeper.boot()
    finally:
        keeper.close()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    st = Store(tmp_path / "store")
    st.init()
    append(st.home, 8)
    sign_heads(st)
    return st


def tamper(store: Store, *statements: str) -> None:
    conn = sqlite3.connect(outbox.db_path(store.home, ENV), isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_ledger_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_ledger_no_delete")
        for s in statements:
            conn.execute(s)
    finally:
        conn.close()


def verify(mu: Any, store: Store, *more: object, code: int) -> dict[str, Any]:
    doc: dict[str, Any] = mu.json(
        "audit-log", "verify", f"--env={ENV}", f"--home={store.home}", *more, code=code
    )
    return doc


def problems(doc: dict[str, Any]) -> list[tuple[int | None, str]]:
    return [(p["seq"], p["problem"]) for p in doc["problems"]]


def test_entries_are_leaves_and_the_head_is_signed(store: Store, mu: Any) -> None:
    conn = outbox.open_db(outbox.db_path(store.home, ENV))
    try:
        cols = ", ".join(audit_log.COLUMNS)
        for r in conn.execute(f"SELECT {cols}, leaf_hash FROM audit_ledger"):
            assert r[-1] == record_leaf(dict(zip(audit_log.COLUMNS, r[:-1], strict=True)))
    finally:
        conn.close()
    head = read_head(audit_heads(store, ENV).path / "latest.json")
    assert head["log"] == "audit" and head["env"] == ENV and head["tree_size"] == 8
    assert check_head(head, verifiers(load_public_key(store.operator_public_key_path)), log="audit", env=ENV)
    doc = verify(mu, store, code=0)
    assert doc["verified"] and doc["entries"] == 8 and doc["log"]["covered_by_signed_head"] == 8


@pytest.mark.parametrize(
    ("statements", "expected", "says"),
    [
        (
            ["UPDATE audit_ledger SET appended_at = appended_at + 3600 WHERE seq = 4"],
            [(4, "changed"), (None, "rewritten")],
            "audit entry 4 was changed: its leaf hash no longer matches",
        ),
        (
            ["DELETE FROM audit_ledger WHERE seq = 5"],
            [(5, "missing"), (7, "ledger_link"), (None, "removed")],
            "audit entry 5 is missing: ids jump from 4 to 6",
        ),
        (
            [
                "DELETE FROM audit_ledger WHERE seq > 6",
                "UPDATE sqlite_sequence SET seq = 6 WHERE name = 'audit_ledger'",
            ],
            [(None, "truncated")],
            "the log has 6 audit entries but a signed head of 8 exists",
        ),
        (
            [
                "UPDATE audit_ledger SET seq = -seq WHERE seq IN (1, 2)",
                "UPDATE audit_ledger SET seq = CASE seq WHEN -1 THEN 2 ELSE 1 END WHERE seq < 0",
            ],
            [
                (1, "ledger_link"),
                (1, "reordered"),
                (1, "chain_break"),
                (2, "ledger_link"),
                (2, "reordered"),
                (2, "chain_break"),
                (3, "reordered"),
                (4, "ledger_link"),
                (None, "rewritten"),
            ],
            "audit entry 1 was renumbered: its content was logged as audit entry 2",
        ),
        (
            [
                "INSERT INTO audit_ledger (ledger, idempotency_key, entry, prev_hash, entry_hash,"
                " appended_at) SELECT ledger, 'forged', entry, entry_hash, 'sha256:forged', appended_at"
                " FROM audit_ledger WHERE seq = 8"
            ],
            [(9, "ledger_link"), (9, "inserted")],
            "audit entry 9 has no chain hashes",
        ),
        (
            ["DELETE FROM audit_ledger", "DELETE FROM sqlite_sequence WHERE name = 'audit_ledger'"],
            [(None, "truncated")],
            "the log is empty but a signed head of 8 exists",
        ),
    ],
    ids=["flip-field", "delete-middle", "delete-newest", "reorder", "insert-forged", "empty"],
)
def test_tampering_in_sqlite_is_named_by_seq(
    store: Store, mu: Any, statements: list[str], expected: list[tuple[int | None, str]], says: str
) -> None:
    tamper(store, *statements)
    doc = verify(mu, store, code=1)
    assert problems(doc) == expected
    assert says in "\n".join(p["reason"] for p in doc["problems"])
    code, out, _ = mu("audit-log", "verify", f"--env={ENV}", f"--home={store.home}")
    assert code == 1 and "BROKEN" in out and "chain verified" not in out


def test_a_head_kept_elsewhere_finds_a_truncation(store: Store, mu: Any, tmp_path: Path) -> None:
    witness = tmp_path / "audit-8.json"
    shutil.copy(audit_heads(store, ENV).path / "8.json", witness)
    tamper(store, "DELETE FROM audit_ledger WHERE seq > 5")
    shutil.rmtree(audit_heads(store, ENV).path)
    assert problems(verify(mu, store, code=1)) == [(None, "no_tree_head")]
    doc = verify(mu, store, f"--head={witness}", code=1)
    assert problems(doc) == [(None, "truncated")]
    assert "3 audit entries were deleted from the end (ids 6–8)" in doc["problems"][0]["reason"]
    code, _, err = mu("audit-log", "verify", f"--head={witness}", f"--home={store.home}")
    assert code == 2 and "--head goes with --env" in err


def test_the_daemon_does_not_start_on_a_cut_audit_ledger(store: Store) -> None:
    tamper(store, "DELETE FROM audit_ledger WHERE seq > 6")
    with pytest.raises(CheckFailed, match=r"the test audit ledger does not verify.*holds 6 audit entries"):
        sign_heads(store)


def test_a_ledger_from_before_the_table_wide_chain_is_chained_on_open(tmp_path: Path, mu: Any) -> None:
    st = Store(tmp_path / "store")
    st.init()
    path = outbox.db_path(st.home, ENV)
    legacy = sqlite3.connect(path, isolation_level=None)
    legacy.executescript(
        "CREATE TABLE audit_ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, ledger TEXT NOT NULL,"
        " idempotency_key TEXT NOT NULL UNIQUE, entry TEXT NOT NULL, prev_hash TEXT NOT NULL,"
        " entry_hash TEXT NOT NULL UNIQUE, appended_at REAL NOT NULL);"
    )
    prev = audit_log.GENESIS
    for i in range(3):
        data = b'{"idempotency_key":"k%d","ledger":"immutable","n":%d}' % (i, i)
        digest = audit_log.entry_hash(prev, data)
        legacy.execute(
            "INSERT INTO audit_ledger (ledger, idempotency_key, entry, prev_hash, entry_hash, appended_at)"
            " VALUES ('immutable', ?, ?, ?, ?, 1700000000.5)",
            (f"k{i}", data.decode(), prev, digest),
        )
        prev = digest
    legacy.close()
    append(st.home, 2, start=10)  # opening the database for writing chains the 3 rows first
    sign_heads(st)
    doc = verify(mu, st, code=0)
    assert doc["entries"] == 5 and doc["adopted"]["rows"] == 3
