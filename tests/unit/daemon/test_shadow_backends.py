"""Shadow mode on both storage backends (SQLite and PostgreSQL): the session, its log and its
report; two daemon processes of one environment (a fleet) sharing one session: a start through
one reaches the other, both compare, the counts add up, one chain, one stop receipt."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from finops_fabric.daemon import shadow
from finops_fabric.daemon.app import create_app
from finops_fabric.daemon.effects import attach_outbox
from finops_fabric.daemon.runtime import Runtime
from finops_fabric.pipeline import generate
from finops_fabric.storage import open_storage
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
AGREE = {"id": "p1", "type": "purchase", "amount": "105000", "currency": "USD", "actor_level": "L2"}
FLIP = {
    "id": "w1",
    "type": "wire",
    "amount": "1500000",
    "currency": "USD",
    "actor_level": "L3",
    "approver_id": "u-1",
    "executor_id": "u-2",
    "attributes": {"country": "US", "vendor_risk": "low"},
}
_envs = itertools.count()


@dataclass
class Acme:
    store: Store
    a1: Path
    a2: Path
    r1: dict[str, Any]
    r2: dict[str, Any]


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Acme:
    root = tmp_path_factory.mktemp("shadow-backends")
    store = Store(root / "store")
    store.init()
    o2 = root / "O2"
    shutil.copytree(ACME, o2)
    wires = o2 / "wires.ttl"
    wires.write_text(wires.read_text().replace('"1000000"^^xsd:decimal', '"2000000"^^xsd:decimal'))
    g1 = generate(ACME, root / "A1", store)
    g2 = generate(o2, root / "A2", store)
    assert g1.status == g2.status == "generated"
    return Acme(store, root / "A1", root / "A2", g1.receipt, g2.receipt)


@pytest.fixture
def env() -> str:
    return f"b{next(_envs)}"


@contextlib.contextmanager
def daemon(acme: Acme, env: str, database: str | None) -> Iterator[TestClient]:
    """One daemon process of ``env`` on ``database`` (None: the store's SQLite file)."""
    storage = open_storage(acme.store.home, env, database) if database is not None else None
    runtime = Runtime(acme.store, env)
    app = create_app(acme.store, env, dev=True, runtime=runtime, storage=storage)
    attach_outbox(app, acme.store, env)
    runtime.restore()
    try:
        with TestClient(app) as client:
            yield client
    finally:
        if storage is not None:
            storage.close()


def deploy_a1(client: TestClient, acme: Acme) -> None:
    r = client.post(
        "/v1/deployments", json={"enforcer": str(acme.a1), "generation_receipt_hash": acme.r1["receipt_hash"]}
    )
    assert r.status_code == 200, r.text


def start(client: TestClient, acme: Acme) -> Any:
    return client.post(
        "/v1/shadow", json={"enforcer": str(acme.a2), "generation_receipt_hash": acme.r2["receipt_hash"]}
    )


def state_when(client: TestClient, check: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = client.get("/v1/shadow").json()
        if check(doc):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"{what}: {doc}")


def compared(n: int) -> Any:
    return lambda doc: doc.get("session", {}).get("compared", -1) >= n and doc["queued"] == 0


def test_a_session_logs_and_reports_on_either_backend(acme: Acme, env: str, database: str | None) -> None:
    h1, h2 = acme.r1["outputs"]["enforcer_hash"], acme.r2["outputs"]["enforcer_hash"]
    with daemon(acme, env, database) as c:
        deploy_a1(c, acme)
        r = start(c, acme)
        assert r.status_code == 200, r.text
        session = r.json()["session"]["session"]
        for i, tx in enumerate([AGREE, FLIP, AGREE, FLIP, FLIP]):
            got = c.post("/v1/decisions", json={**tx, "id": f"{tx['id']}-{i}"})
            assert got.status_code == 200 and got.headers["X-Enforcer-Hash"] == h1
        doc = state_when(c, compared(5), "the shadow did not compare 5 decisions")
        assert (doc["session"]["agreed"], doc["session"]["disagreed"]) == (2, 3)
    # the daemon is gone, the session stays open; the report reads the same database
    report = shadow.shadow_report(acme.store, env, database_url=database)
    assert report["verified"] and report["running"] and report["session"] == session
    assert (report["compared"], report["agreed"], report["disagreed"]) == (5, 2, 3)
    assert report["flips"] == {"APPROVE→REJECT": 0, "REJECT→APPROVE": 3}
    assert report["amount_flipped"] == "4500000" and report["chain"]["size"] == 3
    assert {e["transaction_id"] for e in report["examples"]} <= {"w1-1", "w1-3", "w1-4"}
    with daemon(acme, env, database) as c:  # booted again, counting on, then stopped
        assert c.get("/v1/shadow").json()["session"]["compared"] == 5
        assert c.post("/v1/decisions", json={**FLIP, "id": "w-late"}).status_code == 200
        state_when(c, compared(6), "the restored session did not compare")
        end = c.post("/v1/shadow/stop").json()["receipt"]
    assert (end["outputs"]["compared"], end["outputs"]["disagreed"]) == (6, 4)
    assert end["outputs"]["flips"] == {"REJECT→APPROVE": 4} and end["outputs"]["shadow_log"]["tree_size"] == 4
    report = shadow.shadow_report(acme.store, env, database_url=database)
    assert not report["running"] and report["end_receipt_hash"] == end["receipt_hash"]
    assert report["enforcer_hash"] == h2 and report["disagreed"] == 4


def test_two_processes_share_one_session(acme: Acme, env: str, database: str | None) -> None:
    """Two daemon processes of one environment on one database: a session started through one
    is run by both; the counts of both add up; a stop through the other ends it once, with one
    receipt of every count; the shadow log is one chain."""
    with daemon(acme, env, database) as one, daemon(acme, env, database) as two:
        deploy_a1(one, acme)
        deploy_a1(two, acme)  # (a fleet follows deployments by itself; here each is told)
        r = start(one, acme)
        assert r.status_code == 200, r.text
        session = r.json()["session"]["session"]
        doc = state_when(two, lambda d: d["shadowing"], "the second process did not take the session up")
        assert doc["session"]["session"] == session
        again = start(two, acme)  # one session per environment, whichever process is asked
        assert again.status_code == 409 and again.json()["error"]["code"] == "shadow.running"
        for i in range(4):
            for k, c in enumerate((one, two)):
                tx = FLIP if i % 2 else AGREE
                assert c.post("/v1/decisions", json={**tx, "id": f"{k}-{i}"}).status_code == 200
        state_when(one, compared(4), "process one did not compare")
        state_when(two, compared(4), "process two did not compare")
        stopped = two.post("/v1/shadow/stop")
        assert stopped.status_code == 200, stopped.text
        end = stopped.json()["receipt"]
        state_when(one, lambda d: not d["shadowing"], "process one did not let the session go")
        assert one.post("/v1/shadow/stop").status_code == 404
    o = end["outputs"]
    assert (o["compared"], o["agreed"], o["disagreed"], o["dropped"]) == (8, 4, 4, 0)
    assert o["shadow_log"]["tree_size"] == 4
    ends = [
        r for r in acme.store.receipts("shadow") if r.get("inputs", {}).get("start_receipt_hash") == session
    ]
    assert len(ends) == 1
    report = shadow.shadow_report(acme.store, env, database_url=database)
    assert report["verified"] and report["chain"]["size"] == 4
    assert (report["compared"], report["agreed"], report["disagreed"]) == (8, 4, 4)
