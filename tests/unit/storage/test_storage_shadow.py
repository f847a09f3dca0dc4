"""The shadow log and shadow sessions on both backends: batched appends by two writers make one
chain (counts added in the same transaction), sessions begun, ended once, released, waited for."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from finops_fabric.storage import Storage, open_storage
from finops_fabric.transparency import verify_log

ENV = "test"
H1, H2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64
S = "sha256:" + "5" * 64


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    return root


@pytest.fixture
def two(home: Path, database: str | None) -> Iterator[tuple[Storage, Storage]]:
    a = open_storage(home, ENV, database, process="a")
    b = open_storage(home, ENV, database, process="b")
    yield a, b
    a.close()
    b.close()


def disagreement(i: int, session: str = S) -> dict[str, object]:
    return {
        "decision_id": i,
        "transaction_id": f"tx-{i}",
        "enforcer_hash": H1,
        "shadow_enforcer_hash": H2,
        "outcome": "REJECT",
        "shadow_outcome": "APPROVE" if i % 3 else "REJECT",
        "detail_json": f'{{"differences":["decision"],"session":"{session}"}}',
    }


def begin(storage: Storage, session: str = S) -> dict[str, object]:
    return storage.begin_shadow_session(
        {
            "session": session,
            "enforcer_hash": H2,
            "generation_receipt_hash": H2,
            "live_enforcer_hash": H1,
            "started_at": "2026-01-01T00:00:00Z",
            "until": None,
        }
    )


def test_two_writers_batch_into_one_chain_and_add_their_counts(two: tuple[Storage, Storage]) -> None:
    a, b = two
    assert begin(a)["processes"] == 1 and begin(b)["processes"] == 2
    errors: list[BaseException] = []

    def write(storage: Storage, base: int) -> None:
        try:
            for k in range(10):
                rows = [disagreement(base + 3 * k + j) for j in range(3)]
                appended = storage.record_shadow_batch(
                    rows, session=S, counts={"compared": 5, "agreed": 2, "disagreed": 3}
                )
                assert len(appended) == 3 and [r.id for r in appended] == list(
                    range(appended[0].id, appended[0].id + 3)
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, base)) for s, base in ((a, 1000), (b, 2000))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [r["id"] for r in a.shadow_rows()] == list(range(1, 61))
    report = verify_log(b.shadow_log_rows(), [], noun="shadow row")
    assert report.verified and report.size == 60, report.summary()
    row = b.shadow_session(S)
    assert row is not None
    assert (row["compared"], row["agreed"], row["disagreed"], row["errors"]) == (100, 40, 60, 0)
    assert a.shadow_flips(S) == {"REJECT→APPROVE": 40}
    assert len(list(a.shadow_session_rows(S))) == 60
    assert list(a.shadow_session_rows("sha256:" + "0" * 64)) == []
    # counts alone (no rows) are added too; nothing at all writes nothing
    assert a.record_shadow_batch([], session=S, counts={"dropped": 2}) == []
    assert a.record_shadow_batch([], session=S, counts={}) == []
    assert b.shadow_session(S)["dropped"] == 2  # type: ignore[index]


def test_a_session_is_ended_once_and_its_processes_released(two: tuple[Storage, Storage]) -> None:
    a, b = two
    assert a.open_shadow_session() is None and a.shadow_session() is None
    begin(a)
    begin(b)
    opened = b.open_shadow_session()
    assert opened is not None and opened["session"] == S and opened["ended_at"] is None
    assert a.end_shadow_session(S, ended_at="2026-01-01T01:00:00Z", reason="stopped") is True
    assert b.end_shadow_session(S, ended_at="2026-01-01T01:00:01Z", reason="until") is False
    assert b.open_shadow_session() is None
    a.finish_shadow_session(S, "sha256:" + "e" * 64)
    a.release_shadow_session(S)
    b.release_shadow_session(S)
    b.release_shadow_session(S)  # never below zero
    row = a.shadow_session()
    assert row is not None
    assert (row["ended_at"], row["end_reason"], row["end_receipt_hash"], row["processes"]) == (
        "2026-01-01T01:00:00Z",
        "stopped",
        "sha256:" + "e" * 64,
        0,
    )
    # a session never recorded: nothing to arbitrate, its caller ends it
    assert a.end_shadow_session("sha256:" + "9" * 64, ended_at="x", reason="y") is True


def test_a_waiter_sees_a_session_begin_and_end(two: tuple[Storage, Storage]) -> None:
    a, b = two
    seen: list[object] = []

    def wait(current: str | None) -> None:
        row = b.wait_for_shadow(current, 20)
        seen.append(row["session"] if row is not None else None)

    t = threading.Thread(target=wait, args=(None,))
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    begin(a)
    t.join()
    assert seen == [S] and time.monotonic() - started < 5
    t = threading.Thread(target=wait, args=(S,))
    t.start()
    time.sleep(0.3)
    a.end_shadow_session(S, ended_at="2026-01-01T01:00:00Z", reason="stopped")
    t.join()
    assert seen == [S, None]
    assert b.wait_for_shadow(None, 0.2) is None  # nothing changed: the timeout
