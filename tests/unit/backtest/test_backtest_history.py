"""`mu backtest --env`: the decision log's chain verified first (refused when it does not verify),
every decision reproduced by its own enforcer (a mismatch, or an enforcer the store does not
hold, makes the report not reproducible, exit 1), then compared with the new policy.

Each case runs on both backends: the store's SQLite file, and a PostgreSQL database named by
config.json's ``environments.test.database`` (a fresh database of a throwaway cluster; skipped
locally without the server binaries, required under CI)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

from harness import changed_example, copy_example

from finops_fabric.backtest.simulate import generated, log_history, transactions
from finops_fabric.daemon import decision_log
from finops_fabric.store import Store

AR, RA = "APPROVE→REJECT", "REJECT→APPROVE"
START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def _use(store: Store, database: str | None) -> None:
    """Keep the test environment's log in ``database`` (config.json), or in the store's file."""
    if database is not None:
        (store.home / "config.json").write_text(
            json.dumps({"environments": {"test": {"database": database}}}), encoding="utf-8"
        )


def _history(
    tmp_path: Path, database: str | None, n: int = 2000, enforcer: Any = None
) -> tuple[Store, Any, str]:
    store = Store.locate(None)
    _use(store, database)
    A, receipt = generated(store, copy_example(tmp_path, "O"), tmp_path / "A")
    log_history(
        store,
        "test",
        enforcer or A,
        receipt,
        transactions(n, seed=3),
        start=START,
        every=dt.timedelta(minutes=7),
        database=database,
    )
    return store, A, receipt


class Lying:
    """An enforcer that logs a decision other than the one its A makes (for one transaction)."""

    def __init__(self, real: Any, victim: str) -> None:
        self.real, self.victim, self.hash = real, victim, real.hash

    def decide(self, tx: dict[str, Any]) -> Any:
        d = self.real.decide(tx)
        if tx.get("id") != self.victim:
            return d

        class Flipped:
            def to_dict(self) -> dict[str, Any]:
                out = d.to_dict()
                out["decision"] = "APPROVE" if out["decision"] == "REJECT" else "REJECT"
                return out

        return Flipped()


def test_history_is_reproduced_then_compared(mu: Any, tmp_path: Path, database: str | None) -> None:
    store, A, _ = _history(tmp_path, database)
    new = changed_example(tmp_path, "O2")
    doc = mu.json("backtest", "--env=test", f"--new={new}")
    assert doc["reproducible"] is True
    assert doc["fidelity"] == {
        "replayed": 2000,
        "mismatches": 0,
        "mismatch_examples": [],
        "enforcers_missing": [],
    }
    assert doc["rows"] == 2000
    assert doc["old"]["enforcers"][0]["enforcer_hash"] == A.hash
    assert doc["data"]["first_id"] == 1 and doc["data"]["last_id"] == 2000
    assert doc["data"]["log"]["covered_by_signed_head"] == 2000
    assert doc["flips"][RA] > 0 and doc["flips"][AR] == 0
    assert sum(v["rows"] for v in doc["per_day"].values()) == 2000
    assert doc["regions"]["available"] and doc["regions"]["changed_rows_outside_every_region"] == 0
    # the old side of an example is the logged decision, reasons included
    ex = next(e for e in doc["examples"] if e["group"] == RA)
    assert ex["old"]["decision"] == "REJECT" and ex["old"]["fired"][0]["reason"]
    receipt = store.find(doc["receipt_hash"])
    assert receipt is not None
    assert receipt["inputs"]["enforcers_replayed"] == [A.hash]
    assert receipt["inputs"]["data"]["log"]["root_hash"] == doc["data"]["log"]["root_hash"]
    # a range: --since/--until select by decision time
    day = mu.json(
        "backtest", "--env=test", f"--new={new}", "--since=2026-10-02", "--until=2026-10-03", "--no-receipt"
    )
    assert day["rows"] == doc["per_day"]["2026-10-02"]["rows"]
    assert day["data"]["since"].startswith("2026-10-02")


def test_a_decision_its_enforcer_does_not_reproduce_is_named(
    mu: Any, tmp_path: Path, database: str | None
) -> None:
    store = Store.locate(None)
    _use(store, database)
    A, receipt = generated(store, copy_example(tmp_path, "O"), tmp_path / "A")
    log_history(
        store,
        "test",
        Lying(A, "tx-17"),
        receipt,
        transactions(300, seed=3),
        start=START,
        every=dt.timedelta(minutes=1),
        database=database,
    )
    code, out, _ = mu("backtest", "--env=test", f"--new={tmp_path / 'O'}", "--json")
    doc = json.loads(out)
    assert code == 1
    assert doc["reproducible"] is False
    assert doc["fidelity"]["mismatches"] == 1
    assert doc["fidelity"]["mismatch_examples"][0]["id"] == 18
    assert doc["receipt_hash"] is None
    code, out, _ = mu("backtest", "--env=test", f"--new={tmp_path / 'O'}")
    assert code == 1 and "NOT REPRODUCIBLE" in out


def test_an_enforcer_the_store_does_not_hold_is_named(mu: Any, tmp_path: Path, database: str | None) -> None:
    store = Store.locate(None)
    _use(store, database)
    A, receipt = generated(store, copy_example(tmp_path, "O"), tmp_path / "A")

    class Unknown:
        hash = "sha256:" + "ab" * 32

        def decide(self, tx: dict[str, Any]) -> Any:
            return A.decide(tx)

    log_history(
        store,
        "test",
        Unknown(),
        receipt,
        transactions(50, seed=3),
        start=START,
        every=dt.timedelta(minutes=1),
        database=database,
    )
    code, out, _ = mu("backtest", "--env=test", f"--new={tmp_path / 'O'}", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["reproducible"] is False
    assert doc["fidelity"]["enforcers_missing"][0]["enforcer_hash"] == Unknown.hash
    code, out, _ = mu("backtest", "--env=test", f"--new={tmp_path / 'O'}")
    assert Unknown.hash in out


TAMPER = (
    "UPDATE decisions SET outcome = 'APPROVE', decision_json = replace(decision_json, 'REJECT', 'APPROVE')"
)


def test_a_log_that_does_not_verify_is_refused(mu: Any, tmp_path: Path, database: str | None) -> None:
    store, _, _ = _history(tmp_path, database, 100)
    if database is None:
        conn = sqlite3.connect(decision_log.db_path(store.home, "test"), isolation_level=None)
        conn.execute("DROP TRIGGER decisions_no_update")
        conn.execute(TAMPER)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(database, autocommit=True) as pg:
            pg.execute("ALTER TABLE decisions DISABLE TRIGGER USER")
            pg.execute(TAMPER + " WHERE id = 40")
    code, _, err = mu("backtest", "--env=test", f"--new={tmp_path / 'O'}")
    assert code == 1
    assert "does not verify" in err


def test_no_log_is_bad_input(mu: Any, tmp_path: Path, database: str | None) -> None:
    _use(Store.locate(None), database)
    code, _, err = mu("backtest", "--env=test", f"--new={copy_example(tmp_path, 'O')}")
    assert code == 2 and "no decision log" in err
    assert mu("backtest", "--env=test", f"--new={tmp_path / 'O'}", f"--old={tmp_path / 'O'}")[0] == 2


def test_a_history_replayed_in_several_processes_counts_as_in_one(
    mu: Any, tmp_path: Path, database: str | None
) -> None:
    """Each child reads the log through a connection of its own (on PostgreSQL too)."""
    from finops_fabric.backtest.history import backtest_history
    from finops_fabric.backtest.run import Options
    from finops_fabric.backtest.sides import load_side

    store, _, _ = _history(tmp_path, database, 1500)
    new = load_side("new", changed_example(tmp_path, "O2"), store)
    one = backtest_history(store, "test", None, None, new, Options(batch_size=200), workers=1)
    three = backtest_history(store, "test", None, None, new, Options(batch_size=200), workers=3)
    assert one["processes"] == 1 and three["processes"] == 3
    assert {k: v for k, v in one.items() if k != "processes"} == {
        k: v for k, v in three.items() if k != "processes"
    }
    assert one["reproducible"] is True and one["rows"] == 1500


def test_the_database_flag_reads_another_log_and_hides_its_password(
    mu: Any, tmp_path: Path, pg_url: str
) -> None:
    """``--database=URL`` names a PostgreSQL log config.json does not; a URL's password is never
    shown, not even when the database cannot be reached."""
    _history(tmp_path, pg_url, 120)
    (Store.locate(None).home / "config.json").unlink()
    new = f"--new={tmp_path / 'O'}"
    code, _, err = mu("backtest", "--env=test", new, "--no-receipt")
    assert code == 2 and "no decision log" in err  # the store's own SQLite file: none
    doc = mu.json("backtest", "--env=test", new, "--no-receipt", f"--database={pg_url}")
    assert doc["rows"] == 120 and doc["reproducible"] is True
    assert doc["data"]["log"]["covered_by_signed_head"] == 120
    code, out, err = mu(
        "backtest", "--env=test", new, "--database=postgresql://fabric:s3cret-pw@127.0.0.1:1/fabric"
    )
    assert code == 2 and "unavailable" in err
    assert "s3cret-pw" not in out + err and "***" in err
    assert (
        mu("backtest", new, f"--transactions={tmp_path}", f"--old={tmp_path / 'O'}", f"--database={pg_url}")[
            0
        ]
        == 2
    )


def test_a_postgresql_history_leaves_no_sqlite_log(mu: Any, tmp_path: Path, pg_url: str) -> None:
    store, _, _ = _history(tmp_path, pg_url, 20)
    assert not (store.home / "daemon-test.db").exists()
    assert mu.json("backtest", "--env=test", f"--new={tmp_path / 'O'}", "--no-regions")["rows"] == 20
    assert not (store.home / "daemon-test.db").exists()


def test_an_unreadable_postgresql_log_is_bad_input(mu: Any, tmp_path: Path, pg_url: str) -> None:
    import psycopg

    _history(tmp_path, pg_url, 20)
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("ALTER TABLE decisions RENAME COLUMN decision_json TO decision_text")
    code, _, err = mu("backtest", "--env=test", f"--new={tmp_path / 'O'}")
    assert code == 2 and "cannot read the decision log" in err and "decision_json" in err
