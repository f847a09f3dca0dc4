"""store.py: init, the ledger hash chain, content-addressed objects, the cache."""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from finops_fabric.canonical import sha256_hex
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.keys import key_id
from finops_fabric.receipts import RECEIPT_FORMAT, verify_receipt
from finops_fabric.store import DEFAULT_HOME, ENV_HOME, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "home")
    s.init()
    return s


def assert_one_chain(store: Store) -> list[dict[str, Any]]:
    """Every receipt verifies and links to the one before it; exactly one genesis."""
    receipts = store.receipts()
    public = store.operator_public_key()
    previous = None
    for r in receipts:
        verify_receipt(r, public)
        assert r["previous_receipt_hash"] == previous
        previous = r["receipt_hash"]
    return receipts


# --- locating and creating --------------------------------------------------------------------


def test_locate_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_HOME, raising=False)
    assert Store.locate(None).home == tmp_path / DEFAULT_HOME
    monkeypatch.setenv(ENV_HOME, str(tmp_path / "from-env"))
    assert Store.locate(None).home == tmp_path / "from-env"
    assert Store.locate(str(tmp_path / "flag")).home == tmp_path / "flag"
    assert Store.locate("rel").home == tmp_path / "rel"  # absolute, immune to a later chdir


def test_require_without_store(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run `mu init`") as err:
        Store(tmp_path / "none").require()
    assert err.value.code == "store.missing"
    with pytest.raises(InputError):
        Store.open(tmp_path / "none")
    with pytest.raises(InputError):
        Store(tmp_path / "none").append({"kind": "generation"})
    assert not (tmp_path / "none").exists()


def test_init_layout(tmp_path: Path) -> None:
    s = Store(tmp_path / "home")
    result = s.init()
    assert result.created and result.keys_created
    assert str(s.operator_public_key_path) in result.message()
    assert s.receipts() == [] and s.latest() is None
    assert s.operator_public_key_path == tmp_path / "home" / "keys" / "operator.pub"
    for d in ("keys", "objects", "cache"):
        assert (s.home / d).is_dir()
    assert stat.S_IMODE(s.operator_key_path.stat().st_mode) == 0o600
    assert key_id(s.operator_private_key().public_key()) == key_id(s.operator_public_key())
    db = sqlite3.connect(s.db_path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = [row[1] for row in db.execute("PRAGMA table_info(ledger)")]
    finally:
        db.close()
    expected = [
        "seq",
        "receipt_hash",
        "kind",
        "previous_receipt_hash",
        "ontology_hash",
        "enforcer_hash",
        "body",
    ]
    assert cols == expected
    assert Store.open(s.home).home == s.home


def test_init_is_idempotent_and_keeps_keys(store: Store) -> None:
    key_bytes = store.operator_key_path.read_bytes()
    store.append({"kind": "generation"})
    again = store.init()
    assert not again.created and not again.keys_created
    assert "exists already" in again.message()
    assert store.operator_key_path.read_bytes() == key_bytes
    assert len(store.receipts()) == 1


def test_init_restores_missing_public_key(store: Store) -> None:
    kid = key_id(store.operator_private_key().public_key())
    store.operator_public_key_path.unlink()
    store.init()
    assert key_id(store.operator_public_key()) == kid


def test_init_refuses_public_key_without_private(store: Store) -> None:
    store.operator_key_path.unlink()
    with pytest.raises(InputError) as err:
        store.init()
    assert err.value.code == "store.key_missing"


# --- the ledger -------------------------------------------------------------------------------


def test_append_links_and_seals(store: Store) -> None:
    first = store.append({"kind": "generation", "inputs": {"ontology_hash": "sha256:" + "a" * 64}})
    second = store.append(
        {
            "kind": "deployment",
            "outputs": {"enforcer_hash": "sha256:" + "b" * 64},
            "time": "2025-01-01T00:00:00Z",
        }
    )
    third = store.append({"kind": "generation"})
    assert first["previous_receipt_hash"] is None
    assert second["previous_receipt_hash"] == first["receipt_hash"]
    assert third["previous_receipt_hash"] == second["receipt_hash"]
    assert first["format"] == RECEIPT_FORMAT
    assert assert_one_chain(store) == [first, second, third]
    assert store.receipts("generation") == [first, third]
    assert store.latest() == third
    assert store.latest("deployment") == second
    assert store.latest("rollback") is None
    assert store.find(second["receipt_hash"]) == second
    assert store.find("sha256:" + "0" * 64) is None
    db = sqlite3.connect(store.db_path)
    try:
        rows = db.execute(
            "SELECT seq, kind, ontology_hash, enforcer_hash FROM ledger ORDER BY seq"
        ).fetchall()
    finally:
        db.close()
    assert rows == [
        (1, "generation", "sha256:" + "a" * 64, None),
        (2, "deployment", None, "sha256:" + "b" * 64),
        (3, "generation", None, None),
    ]


def test_append_with_given_key_and_cosigner(store: Store) -> None:
    auditor, approver = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    r = store.append({"kind": "replay"}, auditor, cosigners=[approver])
    verify_receipt(r, auditor.public_key())
    verify_receipt(r, approver.public_key())
    with pytest.raises(CheckFailed):
        verify_receipt(r, store.operator_public_key())


def test_append_refuses_sealed_or_kindless_or_unrepresentable(store: Store) -> None:
    with pytest.raises(ValueError, match="unsealed"):
        store.append({"kind": "generation", "receipt_hash": "sha256:" + "0" * 64})
    with pytest.raises(ValueError, match="kind"):
        store.append({"inputs": {}})
    with pytest.raises(InputError):
        store.append({"kind": "generation", "amount": float("inf")})
    assert store.receipts() == []


def test_database_refuses_a_fork(store: Store) -> None:
    genesis = store.append({"kind": "generation"})
    store.append({"kind": "generation"})
    db = sqlite3.connect(store.db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(
                "INSERT INTO ledger (receipt_hash, kind, previous_receipt_hash, body) VALUES (?, ?, ?, ?)",
                ("sha256:" + "f" * 64, "generation", genesis["receipt_hash"], "{}"),
            )
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(
                "INSERT INTO ledger (receipt_hash, kind, previous_receipt_hash, body) VALUES (?, ?, NULL, ?)",
                ("sha256:" + "e" * 64, "generation", "{}"),
            )
    finally:
        db.close()


def _append_worker(home: str, worker: int, count: int, barrier: Any) -> None:
    s = Store(home)
    barrier.wait(timeout=60)
    for i in range(count):
        s.append({"kind": "generation", "worker": worker, "n": i})


def test_concurrent_appends_from_two_processes_keep_one_chain(store: Store) -> None:
    ctx = multiprocessing.get_context("spawn")
    count = 25
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_append_worker, args=(str(store.home), w, count, barrier)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    receipts = assert_one_chain(store)
    assert len(receipts) == 2 * count
    for w in (0, 1):  # each worker's receipts appear in its own order
        assert [r["n"] for r in receipts if r["worker"] == w] == list(range(count))


# --- objects ----------------------------------------------------------------------------------


def test_put_get_object(store: Store) -> None:
    digest = store.put_object(b"hello", "blob")
    assert digest == sha256_hex(b"hello")
    assert (store.objects_dir / "blob" / digest.removeprefix("sha256:")).read_bytes() == b"hello"
    assert store.put_object(b"hello", "blob") == digest
    assert store.get_object("blob", digest) == b"hello"


def test_corrupt_object_is_detected_and_repaired_by_put(store: Store) -> None:
    digest = store.put_object(b"enforcer module", "blob")
    path = store.objects_dir / "blob" / digest.removeprefix("sha256:")
    path.write_bytes(b"enforcer m0dule")
    with pytest.raises(CheckFailed) as err:
        store.get_object("blob", digest)
    assert err.value.code == "store.object_corrupt" and err.value.exit_code == 1
    store.put_object(b"enforcer module", "blob")
    assert store.get_object("blob", digest) == b"enforcer module"


def test_missing_object_and_bad_names(store: Store) -> None:
    with pytest.raises(InputError) as err:
        store.get_object("blob", "sha256:" + "0" * 64)
    assert err.value.code == "store.object_missing"
    with pytest.raises(InputError) as err:
        store.get_object("blob", "../../fabric.db")
    assert err.value.code == "store.bad_digest"
    for kind in ("../keys", "", "a/b", "Blob"):
        with pytest.raises(ValueError, match="kind"):
            store.put_object(b"x", kind)


def test_tree_round_trip_and_corruption(store: Store) -> None:
    files = {"manifest.json": b"{}", "processes/approval.py": b"def decide(): ...\n", "empty": b""}
    listing = store.put_tree(files)
    assert listing == {name: sha256_hex(data) for name, data in files.items()}
    assert store.get_tree(listing) == files
    (store.objects_dir / "blob" / listing["processes/approval.py"].removeprefix("sha256:")).write_bytes(
        b"evil"
    )
    with pytest.raises(CheckFailed):
        store.get_tree(listing)


# --- cache ------------------------------------------------------------------------------------


def test_cache(store: Store) -> None:
    assert store.cache_get("gen:v1:sha256:abc") is None
    store.cache_put("gen:v1:sha256:abc", b"A bytes")
    assert store.cache_get("gen:v1:sha256:abc") == b"A bytes"
    store.cache_put("gen:v1:sha256:abc", b"newer")
    assert store.cache_get("gen:v1:sha256:abc") == b"newer"
    assert store.cache_get("gen:v2:sha256:abc") is None
    (entry,) = [p for p in store.cache_dir.iterdir()]
    entry.write_bytes(entry.read_bytes()[:-1] + b"X")
    assert store.cache_get("gen:v1:sha256:abc") is None  # a damaged entry is a miss
