"""One suite for both storage backends (SQLite, the default, and PostgreSQL): the decision log's
chain with several writers and tamper detection, the outbox's claims and leases with concurrent
claimers, the audit ledger with concurrent writers, deployments, the shadow log and the
migrations. The PostgreSQL cases run in a fresh database of a throwaway cluster (skipped
locally without the server binaries, required under CI)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from finops_fabric.daemon import decision_log as dl
from finops_fabric.daemon.outbox import Item
from finops_fabric.errors import FabricError, InputError
from finops_fabric.storage import (
    LATEST,
    SchemaTooNew,
    Storage,
    database_for,
    open_storage,
    redact,
)
from finops_fabric.transparency import verify_log

ENV = "test"
H = "sha256:" + "a" * 64


def entry(i: int, process: str | None = "host-a:1") -> dl.LoggedDecision:
    tx = {"id": f"tx-{i}", "type": "purchase", "amount": Decimal(f"{1000 + i}.50"), "actor_level": "L2"}
    decision = {
        "decision": "REJECT" if i % 2 else "APPROVE",
        "fired": [{"rule": "ex:r1"}] if i % 2 else [],
        "notifications": [{"rule": "ex:r1", "recipient": f"cfo{i}@example.com"}] if i % 2 else [],
        "audit": [{"rule": "ex:r1", "ledger": "immutable", "flags": []}] if i % 2 else [],
    }
    return dl.LoggedDecision.of(ENV, tx, decision, H, H, process=process)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    return root


@pytest.fixture
def storage(home: Path, database: str | None) -> Iterator[Storage]:
    s = open_storage(home, ENV, database)
    yield s
    s.close()


def problems(rows: Iterator[Any], noun: str = "decision") -> set[tuple[int | None, str]]:
    report = verify_log(rows, [], noun=noun)
    return {(f.id, f.problem) for f in report.findings}


NO_HEAD: set[tuple[int | None, str]] = set()  # no signed head given: rows and links only


def tamper(storage: Storage, statement: str, table: str) -> None:
    """What an attacker with write access to the database does (triggers off first)."""
    if storage.backend == "sqlite":
        conn = sqlite3.connect(storage.where, isolation_level=None)
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute(statement.replace("%s", "?"))
        conn.close()
        return
    import psycopg

    with psycopg.connect(storage.url, autocommit=True) as conn:  # type: ignore[attr-defined]
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        conn.execute(statement)


# --- the decision log --------------------------------------------------------------------------


def test_decisions_append_read_and_verify(storage: Storage) -> None:
    writer = storage.decision_writer()
    try:
        ids = [writer.write_sync(entry(i)) for i in range(12)]
    finally:
        writer.close()
    assert ids == list(range(1, 13))
    rows = storage.decisions()
    assert [r["id"] for r in rows] == ids
    assert rows[3]["transaction"]["amount"] == Decimal("1003.50")
    assert {r["process"] for r in rows} == {"host-a:1"}
    assert [r["id"] for r in storage.decisions(outcome="REJECT", limit=2)] == [10, 12]
    assert storage.decisions(transaction_id="tx-4")[0]["id"] == 5
    assert problems(storage.decision_rows()) == NO_HEAD


def test_tampering_with_a_decision_or_its_process_is_found(storage: Storage) -> None:
    writer = storage.decision_writer()
    try:
        for i in range(6):
            writer.write_sync(entry(i))
    finally:
        writer.close()
    tamper(storage, "UPDATE decisions SET outcome = 'APPROVE' WHERE id = 2", "decisions")
    tamper(storage, "UPDATE decisions SET process = NULL WHERE id = 4", "decisions")
    found = problems(storage.decision_rows())
    assert (2, "changed") in found
    assert (4, "changed") in found
    tamper(storage, "DELETE FROM decisions WHERE id = 5", "decisions")
    assert (5, "missing") in problems(storage.decision_rows()) or (6, "missing") in problems(
        storage.decision_rows()
    )


def test_rows_without_a_process_keep_verifying_beside_rows_with_one(storage: Storage) -> None:
    writer = storage.decision_writer()
    try:
        for i in range(4):
            writer.write_sync(entry(i, process=None))
        for i in range(4, 8):
            writer.write_sync(entry(i))
    finally:
        writer.close()
    assert [r["process"] for r in storage.decisions()] == [None] * 4 + ["host-a:1"] * 4
    assert problems(storage.decision_rows()) == NO_HEAD


def test_several_writer_processes_extend_one_chain(home: Path, database: str | None) -> None:
    """Two daemons (each its own storage and writer) logging at once: one chain, no id twice."""
    stores = [open_storage(home, ENV, database, process=f"host-{n}:1") for n in range(2)]
    writers = [s.decision_writer() for s in stores]
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            for i in range(40):
                writers[n].write_sync(entry(n * 100 + i, process=f"host-{n}:1"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.close()
    assert errors == []
    rows = stores[0].decisions()
    assert [r["id"] for r in rows] == list(range(1, 81))
    assert {r["process"] for r in rows} == {"host-0:1", "host-1:1"}
    assert problems(stores[0].decision_rows()) == NO_HEAD
    # a writer that starts after both follows the log's end
    w = stores[1].decision_writer()
    assert w.write_sync(entry(999)) == 81
    w.close()
    assert problems(stores[0].decision_rows()) == NO_HEAD
    for s in stores:
        s.close()


# --- the outbox ----------------------------------------------------------------------------------


def enqueue(storage: Storage, n: int) -> int:
    """Decisions with one notification and one audit entry each; how many items were queued."""
    queued = 0
    for i in range(n):
        e = entry(2 * i + 1)
        decision = json.loads(e.decision_json)
        queued += storage.enqueue(i + 1, decision, json.loads(e.transaction_json))
    return queued


def test_decision_and_its_outbox_items_commit_together(storage: Storage) -> None:
    writer = storage.decision_writer()
    try:
        e = entry(1)
        decision, tx = json.loads(e.decision_json), json.loads(e.transaction_json)
        row_id = writer.write_sync(e, [storage.effects_writer(decision, tx)])
    finally:
        writer.close()
    items = storage.claim("notification", time.time() + 1, 10)
    assert [(i.decision_id, i.payload["recipient"]) for i in items] == [(row_id, "cfo1@example.com")]
    assert storage.depth()["audit"]["pending"] == 1


def test_two_concurrent_claimers_take_each_item_once(home: Path, database: str | None) -> None:
    first = open_storage(home, ENV, database, process="worker-a")
    second = open_storage(home, ENV, database, process="worker-b")
    assert enqueue(first, 60) == 120
    taken: dict[str, list[int]] = {"a": [], "b": []}
    now = time.time() + 1

    def run(name: str, s: Storage) -> None:
        while True:
            items = s.claim("notification", now, 7, lease_seconds=60)
            if not items:
                return
            taken[name].extend(i.id for i in items)
            s.ack_many([(i, now) for i in items])

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("a", first), ("b", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = taken["a"] + taken["b"]
    assert len(every) == 60
    assert len(set(every)) == 60
    depth = first.depth()["notification"]
    assert depth["delivered"] == 60
    assert depth["pending"] == depth["delivering"] == 0
    first.close()
    second.close()


def test_an_expired_lease_is_claimed_again_and_delivery_is_recorded_once(
    home: Path, database: str | None
) -> None:
    dying = open_storage(home, ENV, database, process="worker-dies")
    survivor = open_storage(home, ENV, database, process="worker-lives")
    enqueue(dying, 3)
    now = time.time() + 1
    leased = dying.claim("notification", now, 10, lease_seconds=30)
    assert len(leased) == 3
    assert survivor.claim("notification", now + 29, 10) == []  # leased: not due
    again = survivor.claim("notification", now + 31, 10)  # the lease expired
    assert sorted(i.id for i in again) == sorted(i.id for i in leased)
    assert {i.attempts for i in again} == {2}
    survivor.ack_many([(i, now + 31) for i in again])
    assert survivor.delivered_keys([i.idempotency_key for i in again]) == {i.idempotency_key for i in again}
    dying.ack_many([(i, now + 32) for i in leased])  # the late ack of the dead worker changes nothing
    assert survivor.depth()["notification"]["delivered"] == 3
    dying.close()
    survivor.close()


def test_failures_back_off_and_released_items_are_due_at_once(storage: Storage) -> None:
    enqueue(storage, 2)
    now = time.time() + 1
    a, b = storage.claim("notification", now, 10)
    storage.fail_many([(a, "refused", False)], now)
    storage.release([b])
    again = storage.claim("notification", time.time() + 1, 10)
    assert [i.id for i in again] == [b.id]
    assert again[0].attempts == 1  # a release does not count an attempt
    storage.fail_many([(again[0], "no such mailbox", True)], now)
    assert storage.depth()["notification"]["dead"] == 1


def test_skip_locked_claims_pass_over_a_locked_item(pg_url: str, home: Path) -> None:
    import psycopg

    s = open_storage(home, ENV, pg_url)
    enqueue(s, 3)
    with psycopg.connect(pg_url) as other:  # another worker mid-claim holds a row lock
        (locked,) = other.execute(
            "SELECT id FROM outbox WHERE kind = 'notification' ORDER BY id LIMIT 1 FOR UPDATE"
        ).fetchone()
        started = time.monotonic()
        items = s.claim("notification", time.time() + 1, 10)
        assert time.monotonic() - started < 5  # not blocked by the lock
        assert locked not in {i.id for i in items}
        assert len(items) == 2
        other.rollback()
    assert [i.id for i in s.claim("notification", time.time() + 1, 10)] == [locked]
    s.close()


# --- the audit ledger ------------------------------------------------------------------------------


def test_two_concurrent_audit_writers_make_one_ledger_that_verifies(home: Path, database: str | None) -> None:
    writers = [open_storage(home, ENV, database, process=f"audit-{n}") for n in range(2)]
    enqueue(writers[0], 40)
    appended: list[str] = []
    errors: list[BaseException] = []

    def run(s: Storage) -> None:
        try:
            while True:
                items = s.claim("audit", time.time() + 1, 3)
                if not items:
                    return
                for item in items:
                    appended.append(s.audit_append_item(item))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(appended) == len(set(appended)) == 40
    report = writers[1].audit_verify()
    assert report.entries == 40
    assert report.problems == []
    # appending an item again (a redelivery) adds nothing
    item = Item(1, 1, "audit", "k", {"ledger": "immutable", "rule": "r"}, 1, 0.0, 0.0)
    first = writers[0].audit_append_item(item)
    assert writers[1].audit_append_item(item) == first
    assert writers[0].audit_verify().entries == 41
    for s in writers:
        s.close()


def test_a_changed_audit_entry_is_named(storage: Storage) -> None:
    enqueue(storage, 3)
    for item in storage.claim("audit", time.time() + 1, 10):
        storage.audit_append_item(item)
    tamper(storage, "UPDATE audit_ledger SET appended_at = 1.5 WHERE seq = 2", "audit_ledger")
    report = storage.audit_verify()
    assert (2, "changed") in {(p["seq"], p["problem"]) for p in report.problems}


# --- deployments and the shadow log -------------------------------------------------------------


def test_deployments_are_recorded_and_waiters_woken(home: Path, database: str | None) -> None:
    deployer = open_storage(home, ENV, database, process="deployer")
    watcher = open_storage(home, ENV, database, process="watcher")
    assert watcher.current_deployment() is None
    assert watcher.deployment_version() == 0
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(watcher.wait_for_deployment(0, 20)))
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    first = deployer.record_deployment({"kind": "deployment", "enforcer_hash": H, "receipt_hash": H})
    t.join()
    assert seen == [first]
    assert time.monotonic() - started < 5
    second = deployer.record_deployment({"kind": "rollback", "enforcer_hash": "sha256:" + "b" * 64})
    current = watcher.current_deployment()
    assert current is not None
    assert (current["id"], current["kind"], current["process"]) == (second, "rollback", "deployer")
    assert [d["id"] for d in watcher.deployments()] == [first, second]
    assert watcher.wait_for_deployment(second, 0.2) == second  # nothing newer: the timeout
    with pytest.raises(InputError):
        deployer.record_deployment({"kind": "deployment"})
    deployer.close()
    watcher.close()


def test_shadow_disagreements_are_chained(storage: Storage) -> None:
    for i in range(5):
        storage.record_shadow(
            decision_id=i + 1,
            transaction_id=f"tx-{i}",
            enforcer_hash=H,
            shadow_enforcer_hash="sha256:" + "b" * 64,
            outcome="APPROVE",
            shadow_outcome="REJECT",
            detail={"amount": Decimal("10.25"), "fired": ["ex:r1"]},
        )
    rows = storage.shadow_rows()
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["detail"] == {"amount": 10.25, "fired": ["ex:r1"]}
    assert problems(storage.shadow_log_rows(), "shadow row") == NO_HEAD
    tamper(storage, "UPDATE shadow SET shadow_outcome = 'APPROVE' WHERE id = 3", "shadow")
    assert (3, "changed") in problems(storage.shadow_log_rows(), "shadow row")


# --- migrations and configuration -----------------------------------------------------------------


def test_a_fresh_database_is_at_the_latest_version(storage: Storage) -> None:
    assert storage.schema_version() == LATEST


def test_a_database_newer_than_the_code_is_refused(home: Path, database: str | None) -> None:
    s = open_storage(home, ENV, database)
    if s.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(s.where, isolation_level=None)) as conn:
            conn.execute("INSERT INTO schema_version VALUES (99, 'later', 'from the future')")
    else:
        import psycopg

        with psycopg.connect(database or "", autocommit=True) as pg:
            pg.execute("INSERT INTO schema_version VALUES (99, 'later', 'from the future')")
    s.close()
    for readonly in (False, True):
        with pytest.raises(SchemaTooNew) as info:
            open_storage(home, ENV, database, readonly=readonly)
        assert info.value.code == "storage.schema_newer"
        assert info.value.exit_code == 2
        assert "99" in info.value.message


def test_a_store_written_before_migrations_is_upgraded(home: Path) -> None:
    """A daemon-ENV.db of an older version (decisions without the chain columns, no
    schema_version) is chained, migrated and then written with processes; it verifies."""
    path = dl.db_path(home, ENV)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        """CREATE TABLE decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, decided_at TEXT NOT NULL, env TEXT NOT NULL,
            transaction_id TEXT, transaction_json TEXT NOT NULL, outcome TEXT NOT NULL,
            fired TEXT NOT NULL, decision_json TEXT NOT NULL, enforcer_hash TEXT NOT NULL,
            generation_receipt_hash TEXT NOT NULL)"""
    )
    for i in range(3):
        e = entry(i, process=None)
        conn.execute(
            "INSERT INTO decisions (decided_at, env, transaction_id, transaction_json, outcome, fired,"
            " decision_json, enforcer_hash, generation_receipt_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            e.params(),
        )
    conn.close()
    s = open_storage(home, ENV)
    assert s.schema_version() == LATEST
    assert s.adoption() is not None
    writer = s.decision_writer()
    assert writer.write_sync(entry(3)) == 4
    writer.close()
    assert [r["process"] for r in s.decisions()] == [None, None, None, "host-a:1"]
    assert problems(s.decision_rows()) == NO_HEAD
    s.close()


def test_the_database_comes_from_the_flag_or_the_store_config(home: Path, database: str | None) -> None:
    if database is None:
        assert database_for(home, ENV) is None
        s = open_storage(home, ENV)
        assert s.backend == "sqlite"
        assert s.where == str(dl.db_path(home, ENV))
        s.close()
        return
    (home / "config.json").write_text(json.dumps({"environments": {ENV: {"database": database}}}))
    assert database_for(home, ENV) == database
    assert database_for(home, "other") is None
    s = open_storage(home, ENV)
    assert s.backend == "postgresql"
    s.close()
    with pytest.raises(FabricError) as info:  # one database per environment
        open_storage(home, "other", database)
    assert info.value.code == "storage.other_env"


def test_passwords_are_never_shown() -> None:
    assert redact("postgresql://fabric:s3cret@db.example.com:5432/prod") == (
        "postgresql://fabric:***@db.example.com:5432/prod"
    )
    assert "s3cret" not in redact("postgresql://db/prod?user=f&password=s3cret")
    with pytest.raises(InputError) as info:
        database_for(Path("."), ENV, "mysql://root:s3cret@db/x")
    assert "s3cret" not in info.value.message
    assert info.value.code == "storage.url"


def test_an_unreachable_database_is_a_clear_refusal(home: Path) -> None:
    from services import free_port

    url = f"postgresql://fabric:s3cret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(FabricError) as info:
        open_storage(home, ENV, url)
    assert info.value.code == "storage.unavailable"
    assert "s3cret" not in info.value.message
    assert "***" in info.value.message


def test_the_postgresql_writer_reconnects_and_refuses_a_newer_schema(pg_url: str, home: Path) -> None:
    """A lost connection fails the decisions in flight (``storage.unavailable``: not logged, so
    not answered) and the next group reconnects; a database a newer daemon migrated meanwhile
    is refused (``storage.schema_newer``)."""
    import psycopg

    from finops_fabric.storage import StorageUnavailable

    s = open_storage(home, ENV, pg_url)
    writer = s.decision_writer()

    def cut() -> None:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    try:
        assert writer.write_sync(entry(0)) == 1
        cut()
        with pytest.raises(StorageUnavailable) as lost:
            writer.write_sync(entry(1))
        assert lost.value.code == "storage.unavailable"
        assert writer.write_sync(entry(1)) == 2  # reconnected by itself
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("INSERT INTO schema_version VALUES (99, 'later', 'from the future')")
        cut()
        with pytest.raises(StorageUnavailable):
            writer.write_sync(entry(2))
        with pytest.raises(SchemaTooNew):
            writer.write_sync(entry(2))
    finally:
        writer.close()
        s.close()
    assert [r["id"] for r in open_storage_rows(home, pg_url)] == [1, 2]


def open_storage_rows(home: Path, url: str) -> list[dict[str, Any]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [{"id": r[0]} for r in conn.execute("SELECT id FROM decisions ORDER BY id")]


# --- tokens ------------------------------------------------------------------------------------


def test_tokens_kept_by_the_storage_let_its_daemons_in(storage: Storage, home: Path) -> None:
    """SQLite keeps the store's tokens.json; PostgreSQL keeps the hashes in the database, so a
    token made once is accepted by every daemon of the environment, and revoked for all."""
    from finops_fabric.daemon import auth

    token = auth.create_token(home, ["auditor"], label="fleet", storage=storage)
    rows = auth.list_tokens(home, storage)
    assert [(r["roles"], r["label"]) for r in rows] == [(["auditor"], "fleet")]
    assert token not in json.dumps(storage.token_entries())  # only its hash is kept
    book = auth.TokenBook(home, storage if storage.backend == "postgresql" else None)
    assert book.roles(token) == frozenset({"auditor"})
    assert book.roles("mu_not-a-token") is None
    auth.revoke(home, rows[0]["id"], storage)
    assert auth.list_tokens(home, storage) == []
    book._shared_at = -1e9  # the next refresh is due (at most SHARED_REFRESH_S later)
    assert book.roles(token) is None
    assert (home / "tokens.json").exists() is (storage.backend == "sqlite")


def test_the_storage_benchmark_runs_on_both_backends(pg_url: str, home: Path) -> None:
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[3] / "bench" / "bench_storage.py"
    run = subprocess.run(
        [sys.executable, str(bench), "--decisions=300", "--writers=1,2", f"--database={pg_url}", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)["results"]
    assert sorted((r["backend"], r["writers"]) for r in results) == [
        ("postgresql", 1),
        ("postgresql", 2),
        ("sqlite", 1),
        ("sqlite", 2),
    ]
    with open_storage(home, "bench", pg_url) as s:  # every decision of both runs, one chain
        assert len(s.decisions()) == 600
        assert problems(s.decision_rows()) == NO_HEAD


def test_a_worker_over_postgresql_waits_out_a_lost_database(
    pg_url: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    from finops_fabric.daemon.worker import StorageWorker

    with open_storage(home, ENV, pg_url) as s:
        enqueue(s, 3)
    worker = StorageWorker(
        home, ENV, "audit", open_storage(home, ENV, pg_url, process="w1"), poll_interval=0.01
    )
    try:
        assert worker.run_once() == 3
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        assert worker.run_once() == 0  # the lost connection: it waits, it does not die
        assert "trying again" in capsys.readouterr().err
        with open_storage(home, ENV, pg_url) as s:
            for i in range(3, 6):
                e = entry(2 * i + 1)
                s.enqueue(i + 1, json.loads(e.decision_json), json.loads(e.transaction_json))
        deadline = time.monotonic() + 10
        while worker.run_once() == 0 and time.monotonic() < deadline:
            pass
        with open_storage(home, ENV, pg_url) as s:
            report = s.audit_verify()
        assert report.entries == 6 and report.problems == []
        assert "the database is back" in capsys.readouterr().err
    finally:
        worker.storage.close()
