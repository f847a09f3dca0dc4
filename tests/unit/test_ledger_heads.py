"""The receipt ledger against the tree heads the store signs at every append and keeps outside its
database: `mu audit-trail` names a ledger cut short or emptied (never "all verified"), the store
refuses to append to it, and `mu deploy` and the daemon refuse to work on it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from finops_fabric import audit
from finops_fabric.canonical import canonical_json
from finops_fabric.daemon.app import create_app
from finops_fabric.errors import CheckFailed
from finops_fabric.keys import load_public_key
from finops_fabric.merkle import MerkleTree
from finops_fabric.receipts import seal
from finops_fabric.store import Store, ledger_leaf
from finops_fabric.transparency import check_head, read_head, verifiers


def receipt(i: int) -> dict[str, Any]:
    return {
        "kind": "deployment",
        "time": f"2030-01-01T00:00:{i:02d}Z",
        "env": "test",
        "inputs": {"ontology_hash": "sha256:" + f"{i:x}".rjust(64, "0")},
        "outputs": {"enforcer_hash": "sha256:" + f"{i + 100:x}".rjust(64, "0")},
    }


@pytest.fixture
def store(tmp_path: Path) -> Store:
    st = Store(tmp_path / "store")
    st.init()
    for i in range(5):
        st.append(receipt(i))
    return st


def sql(store: Store, *statements: str, params: tuple[object, ...] = ()) -> None:
    db = sqlite3.connect(store.db_path, isolation_level=None)
    try:
        for s in statements:
            db.execute(s, params) if params else db.execute(s)
    finally:
        db.close()


def trail(mu: Any, store: Store, *args: object, code: int) -> dict[str, Any]:
    doc: dict[str, Any] = mu.json("audit-trail", f"--home={store.home}", *args, code=code)
    return doc


def problems(doc: dict[str, Any]) -> list[tuple[int | None, str]]:
    return [(g["seq"], g["problem"]) for g in doc["gaps"]]


def test_every_append_signs_a_head_outside_the_database(store: Store, mu: Any) -> None:
    heads = store.ledger_heads
    assert heads.sizes() == [0, 1, 2, 3, 4, 5]
    head = read_head(heads.path / "latest.json")
    hashes = [r["receipt_hash"] for r in store.receipts()]
    assert head["log"] == "ledger" and head["tree_size"] == 5
    assert head["root_hash"] == "sha256:" + MerkleTree([ledger_leaf(h) for h in hashes]).root().hex()
    assert check_head(head, verifiers(load_public_key(store.operator_public_key_path)), log="ledger")
    assert (heads.path / "5.json").stat().st_mode & 0o777 == 0o600
    doc = trail(mu, store, code=0)
    assert doc["verified"] and doc["summary"].endswith("5 receipts, all verified")


@pytest.mark.parametrize(
    ("statements", "expected", "says"),
    [
        (
            ["UPDATE ledger SET kind = 'approval' WHERE seq = 2"],
            [(2, "altered")],
            "kind (column 'approval', body 'deployment')",
        ),
        (["DELETE FROM ledger WHERE seq = 3"], [(4, "deleted"), (None, "removed")], "(seq 3 is missing)"),
        (
            ["DELETE FROM ledger WHERE seq > 3", "UPDATE sqlite_sequence SET seq = 3 WHERE name = 'ledger'"],
            [(None, "truncated")],
            "the ledger has 3 receipts but a signed head of 5 exists",
        ),
        (
            [
                "UPDATE ledger SET seq = 100 WHERE seq = 2",
                "UPDATE ledger SET seq = 2 WHERE seq = 3",
                "UPDATE ledger SET seq = 3 WHERE seq = 100",
            ],
            [(2, "reordered"), (3, "reordered"), (4, "reordered"), (None, "rewritten")],
            "no longer hash to the root",
        ),
        (
            ["DELETE FROM ledger", "DELETE FROM sqlite_sequence"],
            [(None, "truncated")],
            "the ledger is empty but a signed head of 5 exists",
        ),
    ],
    ids=["flip-field", "delete-middle", "delete-newest", "reorder", "empty"],
)
def test_tampering_in_sqlite_is_named(
    store: Store, mu: Any, statements: list[str], expected: list[tuple[int | None, str]], says: str
) -> None:
    sql(store, *statements)
    doc = trail(mu, store, code=1)
    assert problems(doc) == expected
    assert says in "\n".join(g["message"] for g in doc["gaps"])
    assert "all verified" not in doc["summary"] and "NOT verified" in doc["summary"]
    if expected[-1][1] == "truncated":
        assert "deleted from the end" in doc["gaps"][-1]["message"]


def test_a_forged_row_inserted_is_named(store: Store, mu: Any, tmp_path: Path) -> None:
    from finops_fabric.keys import generate_keypair, load_private_key

    key, _ = generate_keypair(tmp_path / "mallory")
    last = store.latest()
    assert last is not None
    body = {**receipt(9), "format": last["format"], "previous_receipt_hash": last["receipt_hash"]}
    forged = seal(body, load_private_key(key))
    sql(
        store,
        "INSERT INTO ledger (receipt_hash, kind, previous_receipt_hash, ontology_hash, enforcer_hash, body)"
        " VALUES (?, 'deployment', ?, ?, ?, ?)",
        params=(
            forged["receipt_hash"],
            last["receipt_hash"],
            body["inputs"]["ontology_hash"],
            body["outputs"]["enforcer_hash"],
            canonical_json(forged).decode(),
        ),
    )
    doc = trail(mu, store, code=1)
    assert problems(doc) == [(6, "untrusted_signer"), (6, "unsigned")]
    # even resealed with the operator key, it is a receipt no signed head covers
    forged = seal(body, store.operator_private_key())
    sql(
        store,
        "UPDATE ledger SET receipt_hash = ?, body = ? WHERE seq = 6",
        params=(forged["receipt_hash"], canonical_json(forged).decode()),
    )
    doc = trail(mu, store, code=1)
    assert problems(doc) == [(6, "unsigned")]
    assert "1 receipt(s) from here on are not covered by a signed tree head" in doc["gaps"][0]["message"]


def test_the_store_refuses_to_append_to_a_cut_ledger(store: Store) -> None:
    sql(store, "DELETE FROM ledger WHERE seq > 3", "UPDATE sqlite_sequence SET seq = 3 WHERE name = 'ledger'")
    with pytest.raises(CheckFailed, match="holds 3 receipts but a signed head of 5 exists"):
        store.append(receipt(7))
    assert len(store.receipts()) == 3  # nothing was appended
    assert store.ledger_heads.sizes()[-1] == 5  # and no head vouches for the cut ledger


def test_deploy_and_the_daemon_refuse_a_ledger_that_does_not_verify(
    store: Store, mu: Any, tmp_path: Path
) -> None:
    sql(store, "DELETE FROM ledger WHERE seq > 3", "UPDATE sqlite_sequence SET seq = 3 WHERE name = 'ledger'")
    code, _, err = mu("deploy", "--target=test", f"--enforcer={tmp_path}", f"--home={store.home}")
    assert code == 1
    assert "mu deploy to test is refused: the receipt ledger" in err and "does not verify" in err
    assert "the ledger has 3 receipts but a signed head of 5 exists" in err
    code, _, err = mu("rollback", "--target=test", "--to-receipt=R.json", f"--home={store.home}")
    assert code == 1 and "mu rollback of test is refused: the receipt ledger" in err
    with pytest.raises(CheckFailed, match="the test daemon does not start"):
        create_app(store, "test", dev=True)
    code, _, err = mu("daemon", "--env=test", "--port=0", "--dev", f"--home={store.home}")
    assert code == 1 and "the test daemon does not start: the receipt ledger" in err


def test_removed_heads_are_named_and_a_store_from_before_heads_is_adopted_by_init(
    store: Store, mu: Any
) -> None:
    shutil.rmtree(store.ledger_heads.path)
    doc = trail(mu, store, code=1)
    assert problems(doc) == [(None, "no_tree_head")] and "so they were removed" in doc["gaps"][0]["message"]
    with pytest.raises(CheckFailed, match="signed tree heads are missing"):
        store.append(receipt(8))
    # a store made before tree heads: no heads, and no record that they began
    sql(store, "DELETE FROM meta WHERE key = 'ledger_heads'")
    doc = trail(mu, store, code=1)
    assert "a store made before tree heads: `mu init` signs the first" in doc["gaps"][0]["message"]
    assert mu("init", f"--home={store.home}")[0] == 0
    assert store.ledger_heads.sizes() == [5]
    assert json.loads(store.ledger_heads_began() or "{}")["receipts"] == 5
    assert trail(mu, store, code=0)["verified"] is True


def test_ledger_gaps_is_what_deploy_and_boot_check(store: Store) -> None:
    trust = audit.default_trust(store)
    assert audit.ledger_gaps(store, trust) == []
    sql(store, "DELETE FROM ledger WHERE seq = 5", "UPDATE sqlite_sequence SET seq = 4 WHERE name = 'ledger'")
    assert [g.problem for g in audit.ledger_gaps(store, trust)] == ["truncated"]
