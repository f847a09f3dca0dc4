"""The daemon app in-process (Starlette TestClient), its runtime, and the deploy/rollback CLI paths
that need no running daemon."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from finops_fabric.cli import main
from finops_fabric.commands.rollback import restore_enforcer
from finops_fabric.daemon import auth, decision_log
from finops_fabric.daemon.app import create_app
from finops_fabric.daemon.client import verify_receipted
from finops_fabric.daemon.runtime import Runtime
from finops_fabric.enforcer import Enforcer, load_enforcer
from finops_fabric.errors import CheckFailed
from finops_fabric.pipeline import generate
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
EX = "https://example.com/acme/policy#"
TX = {
    "id": "t105",
    "type": "purchase",
    "amount": "105000",
    "currency": "USD",
    "actor_id": "u-1",
    "actor_level": "L2",
}
_envs = itertools.count()


@dataclass
class Acme:
    store: Store
    a1: Path
    a2: Path  # one threshold changed (approval-wire-large)
    r1: dict[str, Any]
    r2: dict[str, Any]


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Acme:
    root = tmp_path_factory.mktemp("acme")
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


def env_name() -> str:
    return f"t{next(_envs)}"


@pytest.fixture
def env() -> str:
    return env_name()


@pytest.fixture
def dev_client(acme: Acme, env: str) -> Iterator[TestClient]:
    app = create_app(acme.store, env, dev=True)
    with TestClient(app) as client:
        yield client


def deploy(client: TestClient, path: Path, receipt: dict[str, Any], **more: Any) -> Any:
    body = {"enforcer": str(path), "generation_receipt_hash": receipt["receipt_hash"], **more}
    return client.post("/v1/deployments", json=body)


# --- deciding ---------------------------------------------------------------------------------


def test_nothing_deployed_is_503_then_decides_like_the_enforcer(
    acme: Acme, dev_client: TestClient, env: str
) -> None:
    r = dev_client.post("/v1/decisions", json=TX)
    assert r.status_code == 503 and "nothing is deployed" in r.json()["error"]["message"]
    assert dev_client.get("/v1/health").json()["processes"]["decision"]["status"] == "degraded"
    r = deploy(dev_client, acme.a1, acme.r1)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "deployed"
    got = dev_client.post("/v1/decisions", json=TX)
    assert got.status_code == 200
    assert got.json() == load_enforcer(acme.a1).decide(TX).to_dict()
    assert got.json()["decision"] == "REJECT"
    # logged with the enforcer hash and the generation receipt that made it
    conn = decision_log.connect(decision_log.db_path(acme.store.home, env), readonly=True)
    rows = decision_log.query(conn, transaction_id="t105")
    assert len(rows) == 1 and rows[0]["id"] == int(got.headers["X-Decision-Id"])
    assert rows[0]["enforcer_hash"] == acme.r1["outputs"]["enforcer_hash"]
    assert rows[0]["generation_receipt_hash"] == acme.r1["receipt_hash"]
    assert rows[0]["fired"] == [EX + "approval-purchase"]
    health = dev_client.get("/v1/health").json()
    assert health["status"] == "ok" and health["processes"]["decision"]["status"] == "ok"


def test_numbers_are_read_as_decimal(acme: Acme, dev_client: TestClient, env: str) -> None:
    deploy(dev_client, acme.a1, acme.r1)
    body = (
        '{"id": "dec", "type": "purchase", "amount": 100000.001, "currency": "USD",'
        ' "actor_id": "u", "actor_level": "L2"}'
    )
    r = dev_client.post("/v1/decisions", content=body)
    assert r.json()["decision"] == "REJECT"  # 100000.001 > 100000 exactly, as a Decimal
    conn = decision_log.connect(decision_log.db_path(acme.store.home, env), readonly=True)
    assert decision_log.query(conn, transaction_id="dec")[0]["transaction"]["amount"] == Decimal("100000.001")


def test_bad_requests_are_400(acme: Acme, dev_client: TestClient) -> None:
    deploy(dev_client, acme.a1, acme.r1)
    r = dev_client.post("/v1/decisions", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "tx.invalid_json"
    assert dev_client.post("/v1/decisions", content=b"[1, 2]").status_code == 400


def test_metrics_deployment_and_openapi(acme: Acme, dev_client: TestClient, env: str) -> None:
    assert dev_client.get("/v1/deployment").status_code == 404
    deploy(dev_client, acme.a1, acme.r1)
    dev_client.post("/v1/decisions", json=TX)
    text = dev_client.get("/metrics").text
    assert 'decisions_total{outcome="REJECT"} 1.0' in text
    assert "decision_latency_seconds_bucket" in text and 'deployments_total{result="ok"} 1.0' in text
    assert "outbox_queue_depth" in text and "process_restarts_total" in text
    d = dev_client.get("/v1/deployment").json()
    assert d["enforcer_hash"] == acme.r1["outputs"]["enforcer_hash"] and d["env"] == env
    assert d["generation_receipt_hash"] == acme.r1["receipt_hash"]
    assert (
        d["rules"][EX + "approval-purchase"]["sha256"]
        == acme.r1["outputs"]["rules"][EX + "approval-purchase"]["sha256"]
    )
    spec = dev_client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    routes = {(r.path, m.lower()) for r in dev_client.app.routes for m in r.methods - {"HEAD"}}  # type: ignore[attr-defined]
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert routes == documented


def test_extra_writers_and_health_sources_hook_in(acme: Acme, dev_client: TestClient) -> None:
    app: Any = dev_client.app
    seen: list[int] = []
    app.state.decision_writers.append(lambda conn, row_id: seen.append(row_id))
    app.state.health_sources["notifier"] = lambda: {"status": "failed", "detail": "crashed"}
    deploy(dev_client, acme.a1, acme.r1)
    r = dev_client.post("/v1/decisions", json=TX)
    assert seen == [int(r.headers["X-Decision-Id"])]
    h = dev_client.get("/v1/health")
    assert h.status_code == 503 and h.json()["status"] == "failed"
    assert h.json()["processes"]["decision"]["status"] == "ok"


# --- access -----------------------------------------------------------------------------------


def test_tokens_and_roles(acme: Acme, env: str) -> None:
    home = acme.store.home
    operator = auth.create_token(home, ["operator"])
    deployer = auth.create_token(home, ["deployer"])
    auditor = auth.create_token(home, ["auditor"])
    stored = (home / "tokens.json").read_text()
    assert operator not in stored and auth.hash_token(operator) in stored
    assert oct(os.stat(home / "tokens.json").st_mode & 0o777) == "0o600"
    app = create_app(acme.store, env)
    with TestClient(app) as c:

        def h(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        assert c.get("/v1/health").status_code == 401
        assert c.get("/v1/health", headers=h("mu_wrong")).status_code == 401
        assert c.get("/metrics", headers=h(auditor)).status_code == 200
        # the wrong role: 403, and nothing changes
        r = c.post(
            "/v1/deployments",
            json={"enforcer": str(acme.a1), "generation_receipt_hash": acme.r1["receipt_hash"]},
            headers=h(operator),
        )
        assert r.status_code == 403
        assert app.state.runtime.active is None
        assert c.post("/v1/decisions", json=TX, headers=h(deployer)).status_code == 403
        assert c.post("/v1/decisions", json=TX, headers=h(auditor)).status_code == 403
        assert c.post("/v1/decisions", json=TX).status_code == 401
        r = c.post(
            "/v1/deployments",
            json={"enforcer": str(acme.a1), "generation_receipt_hash": acme.r1["receipt_hash"]},
            headers=h(deployer),
        )
        assert r.status_code == 200
        assert c.post("/v1/decisions", json=TX, headers=h(operator)).json()["decision"] == "REJECT"
    conn = decision_log.connect(decision_log.db_path(home, env), readonly=True)
    assert len(decision_log.query(conn)) == 1  # the refused requests logged nothing


def test_dev_mode_is_loopback_only(acme: Acme, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["daemon", "--env=test", "--host=0.0.0.0", "--dev", f"--home={acme.store.home}"])
    assert code == 2
    assert "loopback" in capsys.readouterr().err


def test_token_create_prints_it_once(acme: Acme, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["daemon", "token", "create", "--role=auditor", f"--home={acme.store.home}", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["roles"] == ["auditor"]
    assert doc["token"] not in (acme.store.home / "tokens.json").read_text()
    assert main(["daemon", "token", "create", "--role=root", f"--home={acme.store.home}"]) == 2


# --- deploying --------------------------------------------------------------------------------


def test_only_changed_rules_restart(acme: Acme, dev_client: TestClient) -> None:
    first = deploy(dev_client, acme.a1, acme.r1).json()
    assert first["kept"] == [] and EX + "approval-wire-large" in first["restarted"]
    second = deploy(dev_client, acme.a2, acme.r2).json()
    assert second["status"] == "deployed"
    assert second["restarted"] == [EX + "approval-wire-large"]
    assert EX + "approval-purchase" in second["kept"] and len(second["kept"]) == len(first["restarted"]) - 1
    receipt = acme.store.find(second["receipt_hash"])
    assert receipt is not None and receipt["kind"] == "deployment"
    assert receipt["outputs"]["restarted"] == [EX + "approval-wire-large"]
    assert receipt["gates"]["operational"]["status"] == "PASS"
    assert receipt["inputs"]["generation_receipt_hash"] == acme.r2["receipt_hash"]
    assert receipt["inputs"]["previous_enforcer_hash"] == acme.r1["outputs"]["enforcer_hash"]


def test_failed_health_check_keeps_the_old_a(acme: Acme, dev_client: TestClient) -> None:
    deploy(dev_client, acme.a1, acme.r1)
    runtime: Runtime = dev_client.app.state.runtime  # type: ignore[attr-defined]

    def fail(enforcer: Enforcer) -> None:
        raise RuntimeError("rule module crashed at boot")

    runtime.boot_hook = fail
    r = deploy(dev_client, acme.a2, acme.r2)
    assert r.status_code == 422
    doc = r.json()
    assert doc["status"] == "failed" and "rule module crashed" in doc["reason"]
    receipt = acme.store.find(doc["receipt_hash"])
    assert receipt is not None and receipt["gates"]["operational"]["status"] == "FAIL"
    assert "rule module crashed" in receipt["gates"]["operational"]["evidence"]["reason"]
    assert runtime.active is not None and runtime.active.hash == acme.r1["outputs"]["enforcer_hash"]
    assert (
        dev_client.post("/v1/decisions", json=TX).json()["enforcer_hash"]
        == acme.r1["outputs"]["enforcer_hash"]
    )


def test_golden_case_failure_fails_the_health_check(
    acme: Acme, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = Runtime(acme.store, env)
    real = Enforcer.golden_cases

    def wrong(self: Enforcer) -> list[dict[str, Any]]:
        cases = real(self)
        cases[0] = {**cases[0], "expect": "REJECT" if cases[0]["expect"] == "APPROVE" else "APPROVE"}
        return cases

    monkeypatch.setattr(Enforcer, "golden_cases", wrong)
    result = runtime.deploy(acme.a1, acme.r1["receipt_hash"])
    assert not result.ok and "health" in str(result.reason)
    assert runtime.active is None


def test_deploy_refuses_a_without_its_receipt(acme: Acme, dev_client: TestClient, tmp_path: Path) -> None:
    r = deploy(dev_client, acme.a1, {"receipt_hash": "sha256:" + "0" * 64})
    assert r.status_code == 422 and r.json()["error"]["code"] == "deploy.no_receipt"
    r = deploy(dev_client, acme.a1, acme.r2)  # a receipt of another A
    assert r.status_code == 422 and "hash" in r.json()["reason"]
    assert dev_client.app.state.runtime.active is None  # type: ignore[attr-defined]


def test_cli_refuses_unreceipted_or_changed_a(
    acme: Acme, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Store(tmp_path / "other")
    other.init()
    generate(ACME, tmp_path / "A_other", other)
    # same A, but this store has no receipt for it? It does (same O) - use a changed O instead
    o3 = tmp_path / "O3"
    shutil.copytree(ACME, o3)
    (o3 / "wires.ttl").write_text(
        (o3 / "wires.ttl").read_text().replace('"50000"^^xsd:decimal', '"60000"^^xsd:decimal')
    )
    generate(o3, tmp_path / "A3", other)
    with pytest.raises(CheckFailed, match="no generation receipt"):
        verify_receipted(acme.store, tmp_path / "A3")
    home = f"--home={acme.store.home}"
    assert main(["deploy", "--target=test", f"--enforcer={tmp_path / 'A3'}", home, "--wait=0"]) == 1
    assert "no generation receipt" in capsys.readouterr().err
    changed = tmp_path / "A1-edited"
    shutil.copytree(acme.a1, changed)
    module = next((changed / "rules").glob("*.py"))
    module.write_bytes(module.read_bytes() + b"\n")
    assert main(["deploy", "--target=test", f"--enforcer={changed}", home, "--wait=0"]) == 1
    assert "does not match its manifest" in capsys.readouterr().err
    # a receipted, intact A with no daemon running: exit 2 with plain words
    assert main(["deploy", "--target=nodaemon", f"--enforcer={acme.a1}", home, "--wait=0.2"]) == 2
    assert "no nodaemon daemon is running" in capsys.readouterr().err


def test_atomic_switch_keeps_serving(acme: Acme, env: str) -> None:
    runtime = Runtime(acme.store, env)
    assert runtime.deploy(acme.a1, acme.r1["receipt_hash"]).ok
    h1, h2 = acme.r1["outputs"]["enforcer_hash"], acme.r2["outputs"]["enforcer_hash"]
    booting = threading.Event()

    def slow(enforcer: Enforcer) -> None:
        booting.set()
        time.sleep(0.5)

    runtime.boot_hook = slow
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.append(runtime.deploy(acme.a2, acme.r2["receipt_hash"])))
    t.start()
    assert booting.wait(10)
    seen: set[str] = set()
    while t.is_alive():
        active = runtime.active
        assert active is not None  # never a gap
        seen.add(active.enforcer.decide(TX).to_dict()["enforcer_hash"])
    t.join()
    assert results[0].ok and h1 in seen
    assert runtime.active is not None and runtime.active.hash == h2


def test_production_waits_for_its_epoch(acme: Acme, tmp_path: Path) -> None:
    from finops_fabric import approvals
    from finops_fabric.keys import generate_keypair, load_private_key, load_public_key

    minute = (dt.datetime.now(dt.UTC).minute + 30) % 60
    (acme.store.home / "config.json").write_text(json.dumps({"epochs": {"production": f"{minute} * * * *"}}))
    try:
        app = create_app(acme.store, "production", dev=True)
        with TestClient(app) as c:
            r = deploy(c, acme.a1, acme.r1)
            assert r.status_code == 409 and r.json()["error"]["code"] == "deploy.outside_epoch"
            assert r.json()["error"]["next_epoch"].endswith(f":{minute:02d}:00Z")
            assert app.state.runtime.active is None
            r = deploy(c, acme.a1, acme.r1, now=True)  # production also needs compliance's approval
            assert r.status_code == 422 and r.json()["error"]["code"] == "deploy.unapproved"
            key_path, pub_path = generate_keypair(tmp_path / "compliance")
            key = load_private_key(key_path)
            approvals.init_roster(
                acme.store.home, [approvals.member_of("compliance", load_public_key(pub_path))], key
            )
            approvals.approve(acme.store.home, acme.r1["inputs"]["ontology_hash"], key)
            r = deploy(c, acme.a1, acme.r1, now=True)
            assert r.status_code == 200
            assert r.json()["receipt"]["epoch"]["bypassed"] is True
    finally:
        (acme.store.home / "config.json").unlink()


def test_a_broken_epoch_schedule_is_never_a_500(acme: Acme, capsys: pytest.CaptureFixture[str]) -> None:
    (acme.store.home / "config.json").write_text(json.dumps({"epochs": {"production": "99 * * * *"}}))
    try:
        app = create_app(acme.store, "production", dev=True)
        with TestClient(app) as c:
            r = deploy(c, acme.a1, acme.r1)
            assert r.status_code == 503 and r.json()["error"]["code"] == "config.epoch"
        # and `mu daemon` refuses it before it listens
        code = main(["daemon", "--env=production", "--dev", f"--home={acme.store.home}"])
        assert code == 2 and "outside 0-59" in capsys.readouterr().err
    finally:
        (acme.store.home / "config.json").unlink()


def test_restart_restores_the_last_good_deployment(acme: Acme, env: str) -> None:
    first = Runtime(acme.store, env)
    assert first.deploy(acme.a2, acme.r2["receipt_hash"]).ok
    again = Runtime(acme.store, env)
    assert again.restore() == acme.r2["outputs"]["enforcer_hash"]


# --- rollback ---------------------------------------------------------------------------------


def test_rollback_restores_the_exact_a_from_snapshot_or_regeneration(acme: Acme) -> None:
    expected = acme.r1["outputs"]["enforcer_hash"]
    path, source = restore_enforcer(acme.store, acme.r1, lambda _: None)
    assert source in ("store snapshot", "already restored")
    assert load_enforcer(path).hash == expected
    shutil.rmtree(path)
    # the blobs are gone: regenerate with the pinned generator, verified by hash
    listing = acme.r1["outputs"]["artifacts"]
    moved = acme.store.home / "blobs-away"
    shutil.move(acme.store.objects_dir / "blob", moved)
    try:
        path, source = restore_enforcer(acme.store, acme.r1, lambda _: None)
    finally:
        shutil.rmtree(acme.store.objects_dir / "blob", ignore_errors=True)
        shutil.move(moved, acme.store.objects_dir / "blob")
    assert source == "regenerated with the pinned generator"
    assert load_enforcer(path).hash == expected
    assert acme.store.get_tree(listing)  # the store is whole again


# --- decisions and receipts from the CLI -------------------------------------------------------


def test_decisions_cli_and_receipt_as_of(acme: Acme, env: str, capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(acme.store, env, dev=True)
    with TestClient(app) as c:
        deploy(c, acme.a1, acme.r1)
        c.post("/v1/decisions", json=TX)
        c.post("/v1/decisions", json={**TX, "id": "t95", "amount": "95000"})
    home = f"--home={acme.store.home}"
    assert main(["decisions", f"--env={env}", "--outcome=APPROVE", "--json", home]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["transaction_id"] for d in doc["decisions"]] == ["t95"]
    assert main(["decisions", f"--env={env}", "--id=t105", home]) == 0
    assert "1 decision(s)" in capsys.readouterr().out
    assert main(["decisions", f"--env={env}", "--since=yesterday", home]) == 2
    capsys.readouterr()
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert main(["receipt", f"--deployment={env}", f"--timestamp={later}", "--json", home]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["kind"] == "deployment" and r["event"] == "state"
    assert r["outputs"]["enforcer_hash"] == acme.r1["outputs"]["enforcer_hash"]
    assert acme.store.find(r["receipt_hash"]) is not None
    assert main(["receipt", f"--deployment={env}", "--timestamp=2000-01-01T00:00:00Z", home]) == 1
