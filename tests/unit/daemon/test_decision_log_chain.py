"""The decision log as a tamper-evident log: every row a leaf of a hash chain and of an RFC 9162
Merkle tree, signed tree heads kept outside the database, `mu decisions verify` naming what an
attacker with the SQLite file did, and a daemon that does not start on such a log."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from finops_fabric.daemon import decision_log as dl
from finops_fabric.daemon.app import create_app
from finops_fabric.daemon.tree_heads import HeadKeeper, HeadsConfig, decision_heads
from finops_fabric.errors import CheckFailed
from finops_fabric.keys import load_public_key
from finops_fabric.merkle import MerkleTree
from finops_fabric.store import Store
from finops_fabric.transparency import check_head, read_head, record_leaf, verifiers

ENV = "test"
H = "sha256:" + "a" * 64


def entry(i: int) -> dl.LoggedDecision:
    tx = {"id": f"tx-{i}", "type": "purchase", "amount": Decimal(f"{1000 + i}.50"), "actor_level": "L2"}
    decision = {"decision": "REJECT" if i % 2 else "APPROVE", "fired": [{"rule": "ex:r1"}] if i % 2 else []}
    return dl.LoggedDecision.of(ENV, tx, decision, H, H)


def run_daemon_log(store: Store, n: int, start: int = 0) -> None:
    """What the daemon does with its log: boot the head keeper, log ``n`` decisions, shut down."""
    writer = dl.DecisionWriter(dl.db_path(store.home, ENV))
    keeper = HeadKeeper(store, ENV, writer, HeadsConfig(interval=3600))
    try:
        keeper.boot()
    except BaseException:
        writer.close()
        raise
    for i in range(start, start + n):
        writer.write_sync(entry(i))
    keeper.close()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    st = Store(tmp_path / "store")
    st.init()
    run_daemon_log(st, 20)
    return st


def tamper(store: Store, *statements: str) -> None:
    """What someone with the file can do: drop the guards, rewrite rows, fix sqlite_sequence."""
    conn = sqlite3.connect(dl.db_path(store.home, ENV), isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS decisions_no_update")
        conn.execute("DROP TRIGGER IF EXISTS decisions_no_delete")
        for s in statements:
            conn.execute(s)
    finally:
        conn.close()


def verify(mu: Any, store: Store, *more: object, code: int) -> dict[str, Any]:
    doc: dict[str, Any] = mu.json(
        "decisions", "verify", f"--env={ENV}", f"--home={store.home}", *more, code=code
    )
    return doc


def found(doc: dict[str, Any]) -> list[tuple[int | None, str]]:
    return [(f["id"], f["problem"]) for f in doc["findings"]]


def messages(doc: dict[str, Any]) -> str:
    return "\n".join(f["message"] for f in doc["findings"])


def test_each_row_is_a_leaf_of_the_chain_and_the_signed_tree(store: Store, mu: Any) -> None:
    conn = dl.connect(dl.db_path(store.home, ENV), readonly=True)
    rows = conn.execute("SELECT * FROM decisions ORDER BY id").fetchall()
    names = [d[0] for d in conn.execute("SELECT * FROM decisions LIMIT 1").description]
    conn.close()
    leaves = []
    for r in rows:
        row = dict(zip(names, r, strict=True))
        # the leaf hash covers every logged column, the id included
        assert row["leaf_hash"] == record_leaf({k: row[k] for k in dl.COLUMNS})
        leaves.append(row["leaf_hash"])
    head = read_head(decision_heads(store, ENV).path / "latest.json")
    assert (
        head["tree_size"] == 20
        and head["root_hash"] == "sha256:" + MerkleTree.from_leaf_hashes(leaves).root().hex()
    )
    keys = verifiers(load_public_key(store.operator_public_key_path))
    assert check_head(head, keys, log="decisions", env=ENV)  # signed with the operator key
    assert (decision_heads(store, ENV).path / "20.json").stat().st_mode & 0o777 == 0o600
    doc = verify(mu, store, code=0)
    assert doc["verified"] and doc["size"] == 20 and doc["covered_by_signed_head"] == 20
    code, out, _ = mu("decisions", "verify", f"--env={ENV}", f"--home={store.home}")
    assert code == 0 and "20 decisions" in out and "all verified" in out


@pytest.mark.parametrize(
    ("statements", "expected", "says"),
    [
        (
            ["UPDATE decisions SET outcome = 'APPROVE' WHERE id = 8"],
            [(8, "changed"), (None, "rewritten")],
            "decision 8 was changed: its leaf hash no longer matches",
        ),
        (
            [
                "UPDATE decisions SET transaction_json = replace(transaction_json, '1007.50', '7.50')"
                " WHERE id = 8"
            ],
            [(8, "changed"), (None, "rewritten")],
            "decision 8 was changed",
        ),
        (
            ["DELETE FROM decisions WHERE id = 12"],
            [(12, "missing"), (None, "removed")],
            "decision 12 is missing: ids jump from 11 to 13",
        ),
        (
            [
                "DELETE FROM decisions WHERE id > 17",
                "UPDATE sqlite_sequence SET seq = 17 WHERE name = 'decisions'",
            ],
            [(None, "truncated")],
            "the log has 17 decisions but a signed head of 20 exists",
        ),
        (
            [
                "UPDATE decisions SET id = -id WHERE id IN (5, 6)",
                "UPDATE decisions SET id = CASE id WHEN -5 THEN 6 ELSE 5 END WHERE id < 0",
            ],
            [
                (5, "reordered"),
                (5, "chain_break"),
                (6, "reordered"),
                (6, "reordered"),
                (7, "reordered"),
                (None, "rewritten"),
            ],
            "decision 5 was renumbered: its content was logged as decision 6",
        ),
        (
            [
                "INSERT INTO decisions (decided_at, env, transaction_id, transaction_json, outcome, fired,"
                " decision_json, enforcer_hash, generation_receipt_hash) SELECT decided_at, env, 'forged',"
                " transaction_json, 'APPROVE', fired, decision_json, enforcer_hash, generation_receipt_hash"
                " FROM decisions WHERE id = 3"
            ],
            [(21, "inserted")],
            "decision 21 has no chain hashes",
        ),
        (
            ["DELETE FROM decisions", "DELETE FROM sqlite_sequence"],
            [(None, "truncated")],
            "the log is empty but a signed head of 20 exists",
        ),
    ],
    ids=[
        "flip-outcome",
        "change-amount",
        "delete-middle",
        "delete-newest",
        "reorder",
        "insert-forged",
        "empty",
    ],
)
def test_tampering_in_sqlite_is_named_by_id(
    store: Store, mu: Any, statements: list[str], expected: list[tuple[int | None, str]], says: str
) -> None:
    tamper(store, *statements)
    doc = verify(mu, store, code=1)
    assert doc["verified"] is False and "all verified" not in doc["summary"]
    assert found(doc) == expected
    assert says in messages(doc)
    if found(doc)[-1][1] in ("truncated", "removed", "inserted"):
        # a log shorter than its newest head, or a row after it that does not hold: the daemon
        # does not start on it (rows before the head are `mu decisions verify`'s to recompute)
        with pytest.raises(CheckFailed, match="daemon does not start"):
            create_app(store, ENV, dev=True)


def test_a_head_kept_elsewhere_finds_a_truncation_the_store_hides(
    store: Store, mu: Any, tmp_path: Path
) -> None:
    witness = tmp_path / "witness-20.json"
    shutil.copy(decision_heads(store, ENV).path / "20.json", witness)
    tamper(
        store,
        "DELETE FROM decisions WHERE id > 15",
        "UPDATE sqlite_sequence SET seq = 15 WHERE name = 'decisions'",
    )
    shutil.rmtree(decision_heads(store, ENV).path)  # the attacker removes the local heads as well
    doc = verify(mu, store, code=1)
    assert found(doc) == [(None, "no_tree_head")]  # never "all verified" without a head
    doc = verify(mu, store, f"--head={witness}", code=1)
    assert found(doc) == [(None, "truncated")]
    assert "the log has 15 decisions but a signed head of 20 exists" in messages(doc)
    assert "5 decisions were deleted from the end (ids 16–20)" in messages(doc)


def test_a_rewritten_log_is_found_against_an_earlier_head(store: Store, mu: Any, tmp_path: Path) -> None:
    witness = tmp_path / "witness-20.json"
    shutil.copy(decision_heads(store, ENV).path / "20.json", witness)
    # an insider cuts the log to 10, removes the heads, and lets a daemon log 15 new decisions
    tamper(store, "DELETE FROM decisions WHERE id > 10", "DELETE FROM log_chain")
    shutil.rmtree(decision_heads(store, ENV).path)
    run_daemon_log(store, 15, start=100)
    assert verify(mu, store, code=0)["size"] == 25  # the local heads now vouch for the new log ...
    doc = verify(mu, store, f"--head={witness}", code=1)  # ... a witness's copy does not
    assert found(doc) == [(None, "rewritten")]
    assert "the first 20 decisions (up to id 20) no longer hash to the root" in messages(doc)


def test_the_daemon_refuses_to_start_and_says_why(store: Store, mu: Any) -> None:
    tamper(
        store,
        "DELETE FROM decisions WHERE id > 18",
        "UPDATE sqlite_sequence SET seq = 18 WHERE name = 'decisions'",
    )
    code, _, err = mu("daemon", f"--env={ENV}", "--port=0", "--dev", f"--home={store.home}")
    assert code == 1
    assert "the test daemon does not start: the test decision log does not verify" in err
    assert "holds 18 decisions but a signed head of 20 exists" in err


def test_heads_are_signed_while_the_log_grows_and_given_to_a_witness(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    class Witness(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Witness)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        st = Store(tmp_path / "store")
        st.init()
        url = f"http://127.0.0.1:{server.server_address[1]}/heads"
        (st.home / "config.json").write_text(
            json.dumps({"tree_heads": {"interval_seconds": 0.05, "webhook": url}})
        )
        writer = dl.DecisionWriter(dl.db_path(st.home, ENV))
        keeper = HeadKeeper(st, ENV, writer)
        keeper.boot()
        keeper.start()
        writer.write_sync(entry(1))
        writer.write_sync(entry(2))
        deadline = time.monotonic() + 10
        while 2 not in decision_heads(st, ENV).sizes():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sizes = decision_heads(st, ENV).sizes()
        time.sleep(0.2)
        assert decision_heads(st, ENV).sizes() == sizes  # nothing new while the log does not grow
        writer.write_sync(entry(3))
        keeper.close()  # the last head at shutdown, after the last decision
        assert decision_heads(st, ENV).sizes()[-1] == 3
        heads = {(h.get("log"), h["tree_size"]) for h in received}
        assert ("decisions", 0) in heads and ("decisions", 3) in heads and ("ledger", 0) in heads
    finally:
        server.shutdown()


def test_a_log_from_before_the_chain_is_chained_on_open_and_recorded(tmp_path: Path, mu: Any) -> None:
    st = Store(tmp_path / "store")
    st.init()
    path = dl.db_path(st.home, ENV)
    legacy = sqlite3.connect(path, isolation_level=None)
    legacy.executescript(
        "CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, decided_at TEXT NOT NULL,"
        " env TEXT NOT NULL, transaction_id TEXT, transaction_json TEXT NOT NULL, outcome TEXT NOT NULL,"
        " fired TEXT NOT NULL,"
        " decision_json TEXT NOT NULL, enforcer_hash TEXT NOT NULL, generation_receipt_hash TEXT NOT NULL);"
        "CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions"
        " BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;"
    )
    for i in range(3):
        e = entry(i)
        legacy.execute(
            "INSERT INTO decisions (decided_at, env, transaction_id, transaction_json, outcome, fired,"
            " decision_json, enforcer_hash, generation_receipt_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            e.params(),
        )
    legacy.close()
    code, _, err = mu("decisions", "verify", f"--env={ENV}", f"--home={st.home}")
    assert code == 1 and "written before decisions were hash-chained" in err
    run_daemon_log(st, 2, start=3)  # the daemon's writer chains the 3 rows, then logs 2 more
    doc = verify(mu, st, code=0)
    assert doc["size"] == 5 and doc["adopted"]["rows"] == 3
    assert "decisions 1–3 were written before the hash chain" in doc["notes"][0]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):  # the guard is back
        sqlite3.connect(path).execute("UPDATE decisions SET outcome = 'x'")


def test_the_writer_follows_rows_another_writer_chained_and_stops_on_a_cut(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    writer = dl.DecisionWriter(path)
    try:
        assert writer.write_sync(entry(1)) == 1
        other = dl.connect(path)
        assert dl.commit_decision(other, entry(2)) == 2
        assert writer.write_sync(entry(3)) == 3
        from finops_fabric.transparency import verify_log

        assert verify_log(dl.log_rows(other), [], noun="decision").verified
        other.execute("DROP TRIGGER decisions_no_delete")
        other.execute("DELETE FROM decisions WHERE id = 3")
        other.close()
        with pytest.raises(Exception, match="rows were deleted while the daemon ran"):
            writer.write_sync(entry(4))
    finally:
        writer.close()
