"""Shadow mode in-process: the daemon app (Starlette TestClient) with A1 live and A2 in shadow."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
import sqlite3
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

from finops_fabric.cli import main
from finops_fabric.daemon import decision_log, outbox, shadow
from finops_fabric.daemon.app import create_app
from finops_fabric.daemon.effects import attach_outbox
from finops_fabric.daemon.runtime import Runtime
from finops_fabric.enforcer import load_enforcer
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.pipeline import generate
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
EX = "https://example.com/acme/policy#"
# A1 and A2 agree on this one (both REJECT: a purchase over 100k needs L3)
AGREE = {"id": "p1", "type": "purchase", "amount": "105000", "currency": "USD", "actor_level": "L2"}
# A1 rejects it (wires over 1M need the CFO), A2 approves it (its threshold is 2M) and would notify
# audit@acme.example and write an audit entry: the shadow must do neither.
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
    root: Path
    store: Store
    a1: Path
    a2: Path
    r1: dict[str, Any]
    r2: dict[str, Any]


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Acme:
    root = tmp_path_factory.mktemp("shadow")
    store = Store(root / "store")
    store.init()
    o2 = root / "O2"
    shutil.copytree(ACME, o2)
    wires = o2 / "wires.ttl"
    wires.write_text(wires.read_text().replace('"1000000"^^xsd:decimal', '"2000000"^^xsd:decimal'))
    g1 = generate(ACME, root / "A1", store)
    g2 = generate(o2, root / "A2", store)
    assert g1.status == g2.status == "generated"
    return Acme(root, store, root / "A1", root / "A2", g1.receipt, g2.receipt)


@pytest.fixture
def env() -> str:
    return f"s{next(_envs)}"


def app_for(acme: Acme, env: str) -> Any:
    runtime = Runtime(acme.store, env)
    app = create_app(acme.store, env, dev=True, runtime=runtime)
    attach_outbox(app, acme.store, env)  # live decisions queue their effects; workers not needed
    runtime.restore()
    return app


@pytest.fixture
def client(acme: Acme, env: str) -> Iterator[TestClient]:
    with TestClient(app_for(acme, env)) as c:
        r = c.post(
            "/v1/deployments",
            json={"enforcer": str(acme.a1), "generation_receipt_hash": acme.r1["receipt_hash"]},
        )
        assert r.status_code == 200, r.text
        yield c


def start(client: TestClient, acme: Acme, path: Path | None = None, **more: Any) -> Any:
    body = {"enforcer": str(path or acme.a2), "generation_receipt_hash": acme.r2["receipt_hash"], **more}
    return client.post("/v1/shadow", json=body)


def wait_compared(client: TestClient, n: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        doc: dict[str, Any] = client.get("/v1/shadow").json()
        if doc.get("session", {}).get("compared", -1) >= n and doc["queued"] == 0:
            return doc
        time.sleep(0.02)
    raise AssertionError(f"the shadow did not compare {n} decisions: {doc}")


def db(acme: Acme, env: str) -> sqlite3.Connection:
    return sqlite3.connect(decision_log.db_path(acme.store.home, env))


def shadow_rows(acme: Acme, env: str) -> list[tuple[Any, ...]]:
    with db(acme, env) as conn:
        return conn.execute(
            "SELECT id, decision_id, transaction_id, enforcer_hash, shadow_enforcer_hash, outcome,"
            " shadow_outcome, json_extract(detail_json, '$.differences') FROM shadow ORDER BY id"
        ).fetchall()


def mu(capsys: pytest.CaptureFixture[str], acme: Acme, *args: str) -> tuple[int, str, str]:
    code = main([*args, f"--home={acme.store.home}"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# --- the session ---------------------------------------------------------------------------------


def test_live_a_decides_the_shadow_logs_disagreements_with_no_effect(
    acme: Acme, client: TestClient, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    h1, h2 = acme.r1["outputs"]["enforcer_hash"], acme.r2["outputs"]["enforcer_hash"]
    r = start(client, acme)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "shadowing" and doc["session"]["enforcer_hash"] == h2
    receipt = acme.store.find(doc["receipt_hash"])
    assert receipt is not None and receipt["kind"] == "shadow" and receipt["event"] == "start"
    assert receipt["gates"]["operational"]["status"] == "PASS"
    assert receipt["gates"]["operational"]["evidence"]["health"]["failed"] == []
    assert receipt["inputs"]["live_enforcer_hash"] == h1 and receipt["outputs"]["shadow"] == h2

    ids = {}
    for i, tx in enumerate([AGREE, FLIP, AGREE, FLIP, AGREE]):
        got = client.post("/v1/decisions", json={**tx, "id": f"{tx['id']}-{i}"})
        assert got.status_code == 200
        assert got.headers["X-Enforcer-Hash"] == h1  # answered by A1 only
        assert got.json() == load_enforcer(acme.a1).decide({**tx, "id": f"{tx['id']}-{i}"}).to_dict()
        ids[f"{tx['id']}-{i}"] = int(got.headers["X-Decision-Id"])
    state = wait_compared(client, 5)
    assert state["session"]["agreed"] == 3 and state["session"]["disagreed"] == 2
    assert state["session"]["flips"] == {"REJECT→APPROVE": 2}
    assert client.get("/v1/health").json()["processes"]["shadow"]["status"] == "ok"
    metrics = client.get("/metrics").text
    assert 'shadow_comparisons_total{result="agreed"} 3.0' in metrics
    assert 'shadow_comparisons_total{result="disagreed"} 2.0' in metrics
    assert "shadow_dropped_total 0.0" in metrics

    # every decision logged is A1's; no outbox entry of A2's (its audit@ mail, its audit entry)
    conn = decision_log.connect(decision_log.db_path(acme.store.home, env), readonly=True)
    assert {r["enforcer_hash"] for r in decision_log.query(conn)} == {h1}
    conn.close()
    with sqlite3.connect(outbox.db_path(acme.store.home, env)) as oc:
        queued = oc.execute("SELECT kind, payload FROM outbox").fetchall()
    assert all(kind == "notification" for kind, _ in queued), queued
    assert not any("audit@acme.example" in payload for _, payload in queued)
    live_effects = sum(
        len(load_enforcer(acme.a1).decide(t).to_dict()["notifications"]) for t in [AGREE, FLIP] * 2 + [AGREE]
    )
    assert len(queued) == live_effects

    stopped = client.post("/v1/shadow/stop")
    assert stopped.status_code == 200, stopped.text
    end = stopped.json()["receipt"]
    assert (
        end["kind"] == "shadow"
        and end["event"] == "stop"
        and end["inputs"]["start_receipt_hash"] == doc["receipt_hash"]
    )
    assert {k: end["outputs"][k] for k in ("compared", "agreed", "disagreed", "errors", "dropped")} == {
        "compared": 5,
        "agreed": 3,
        "disagreed": 2,
        "errors": 0,
        "dropped": 0,
    }
    assert end["outputs"]["shadow_log"]["tree_size"] == 2
    assert client.post("/v1/shadow/stop").status_code == 404  # nothing runs any more

    rows = shadow_rows(acme, env)
    assert [(r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows] == [
        (ids["w1-1"], "w1-1", h1, h2, "REJECT", "APPROVE"),
        (ids["w1-3"], "w1-3", h1, h2, "REJECT", "APPROVE"),
    ]
    assert json.loads(rows[0][7]) == ["decision", "fired", "notifications", "audit"]

    # the report: the chain verified, then totals, flips, rules, effects, examples with both reasons
    code, out, _ = mu(capsys, acme, "shadow", "report", f"--env={env}", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["verified"] and report["chain"]["size"] == 2
    assert (report["compared"], report["agreed"], report["disagreed"]) == (5, 3, 2)
    assert report["flips"] == {"APPROVE→REJECT": 0, "REJECT→APPROVE": 2}
    assert report["changed_fired"] == report["changed_effects"] == 0
    assert report["by_type_level"] == {"wire/L3": {"REJECT→APPROVE": 2}}
    assert report["amount_by_direction"] == {"REJECT→APPROVE": "3000000"}
    assert report["by_rule"] == {EX + "approval-wire-large": {"gained": 0, "lost": 2}}
    assert report["notifications"] == {"audit@acme.example": {"gained": 2, "lost": 0}}
    assert report["audit"] == {"immutable": {"gained": 2, "lost": 0}}
    assert report["amount_flipped"] == "3000000"
    assert not report["running"] and report["end_reason"] == "stopped by the operator"
    example = report["examples"][0]
    assert example["live"]["fired"][0]["reason"].startswith("amount 1500000 > 1000000 requires CFO")
    assert example["shadow"] == {"decision": "APPROVE", "fired": []}
    code, out, _ = mu(capsys, acme, "shadow", "report", f"--env={env}")
    assert (
        code == 0
        and "decisions flipped: APPROVE→REJECT 0, REJECT→APPROVE 2" in out
        and "approval-wire-large: +0 / -2" in out
    )


def test_a_tampered_shadow_row_is_named_and_no_report_is_made(
    acme: Acme, client: TestClient, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert start(client, acme).status_code == 200
    for i in range(3):
        assert client.post("/v1/decisions", json={**FLIP, "id": f"w-{i}"}).status_code == 200
    wait_compared(client, 3)
    assert client.post("/v1/shadow/stop").status_code == 200
    with db(acme, env) as conn:
        conn.execute("DROP TRIGGER shadow_no_update")
        conn.execute("UPDATE shadow SET shadow_outcome = 'REJECT' WHERE id = 2")
    code, out, _ = mu(capsys, acme, "shadow", "report", f"--env={env}", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["verified"] is False and "flips" not in doc
    found = [(f["id"], f["problem"]) for f in doc["chain"]["findings"]]
    assert found[0] == (2, "changed") and {p for _, p in found[1:]} <= {"rewritten"}, found
    code, out, _ = mu(capsys, acme, "shadow", "report", f"--env={env}")
    assert code == 1 and "shadow row 2 was changed" in out

    # cutting the last row off is found too: the signed head of the shadow log says 3
    with db(acme, env) as conn:
        conn.execute("DROP TRIGGER shadow_no_delete")
        conn.execute("UPDATE shadow SET shadow_outcome = 'APPROVE' WHERE id = 2")
        conn.execute("DELETE FROM shadow WHERE id = 3")
    code, out, _ = mu(capsys, acme, "shadow", "report", f"--env={env}", "--json")
    assert code == 1
    assert [f["problem"] for f in json.loads(out)["chain"]["findings"]] == ["truncated"]


def test_until_ends_the_session_by_itself(acme: Acme, client: TestClient) -> None:
    r = start(client, acme, until="2s")
    assert r.status_code == 200, r.text
    until = r.json()["session"]["until"]
    assert client.post("/v1/decisions", json=FLIP).status_code == 200
    deadline = time.monotonic() + 20
    while client.get("/v1/shadow").json()["shadowing"] and time.monotonic() < deadline:
        time.sleep(0.05)
    doc = client.get("/v1/shadow").json()
    assert doc["shadowing"] is False
    end = acme.store.find(doc["last_end_receipt_hash"])
    assert end is not None and end["event"] == "stop" and end["reason"] == f"its until time {until} passed"
    assert end["outputs"]["compared"] == 1 and end["outputs"]["disagreed"] == 1
    # afterwards nothing is compared any more
    assert client.post("/v1/decisions", json={**FLIP, "id": "late"}).status_code == 200
    time.sleep(0.2)
    assert client.get("/v1/shadow").json()["queued"] == 0


def test_a_restarted_daemon_boots_the_session_again(acme: Acme, env: str) -> None:
    with TestClient(app_for(acme, env)) as c:
        c.post(
            "/v1/deployments",
            json={"enforcer": str(acme.a1), "generation_receipt_hash": acme.r1["receipt_hash"]},
        )
        session = start(c, acme).json()["session"]["session"]
        assert c.post("/v1/decisions", json=FLIP).status_code == 200
        wait_compared(c, 1)
    # the first daemon is gone (its queue drained and committed); a new one takes the session up
    with TestClient(app_for(acme, env)) as c:
        doc = c.get("/v1/shadow").json()
        assert doc["shadowing"] and doc["session"]["session"] == session
        assert doc["session"]["compared"] == 1  # counting goes on where it stopped
        assert c.post("/v1/decisions", json={**FLIP, "id": "w2"}).status_code == 200
        assert c.post("/v1/decisions", json=AGREE).status_code == 200
        state = wait_compared(c, 3)
        assert (state["session"]["agreed"], state["session"]["disagreed"]) == (1, 2)
        end = c.post("/v1/shadow/stop").json()["receipt"]
    assert end["outputs"]["compared"] == 3
    assert [r[2] for r in shadow_rows(acme, env)] == ["w1", "w2"]
    report = shadow.shadow_report(acme.store, env)
    assert report["verified"] and report["flips"]["REJECT→APPROVE"] == 2


def test_a_shadow_a_that_fails_its_checks_is_refused(
    acme: Acme, client: TestClient, env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "A2-tampered"
    shutil.copytree(acme.a2, bad)
    module = next(p for p in sorted(bad.rglob("*.py")) if "rules" in str(p) or "rule" in p.name)
    module.write_text(module.read_text() + "\n# changed by hand\n")
    r = start(client, acme, path=bad)
    assert r.status_code == 422
    doc = r.json()
    assert doc["status"] == "failed" and doc["reason"].startswith("verify failed")
    receipt = acme.store.find(doc["receipt_hash"])
    assert receipt is not None and receipt["kind"] == "shadow"
    assert receipt["gates"]["operational"]["status"] == "FAIL" and receipt["outputs"]["shadow"] is None
    assert client.get("/v1/shadow").json()["shadowing"] is False
    # the CLI refuses it before asking the daemon: exit 1
    code, _out, err = mu(capsys, acme, "deploy", f"--target={env}", "--shadow", f"--enforcer={bad}")
    assert code == 1 and "mu:" in err
    # no receipt of that generation: refused, nothing receipted
    r = client.post(
        "/v1/shadow", json={"enforcer": str(acme.a2), "generation_receipt_hash": "sha256:" + "0" * 64}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "deploy.no_receipt"
    # bad requests are 4xx with a stable code
    assert client.post("/v1/shadow", json={"enforcer": 3}).json()["error"]["code"] == "shadow.bad_request"
    r = start(client, acme, until="2020-01-01T00:00:00Z")
    assert r.status_code == 400 and r.json()["error"]["code"] == "shadow.bad_until"
    r = client.post("/v1/shadow", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "shadow.invalid_json"
    r = client.post("/v1/shadow", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    # the live A itself is not a shadow
    r = client.post(
        "/v1/shadow", json={"enforcer": str(acme.a1), "generation_receipt_hash": acme.r1["receipt_hash"]}
    )
    assert r.status_code == 422 and "already runs" in r.json()["reason"]
    # one session at a time
    assert start(client, acme).status_code == 200
    r = start(client, acme)
    assert r.status_code == 409 and r.json()["error"]["code"] == "shadow.running"


def test_a_session_whose_a_no_longer_verifies_is_not_booted_again(
    acme: Acme, env: str, tmp_path: Path
) -> None:
    # a store of its own: its snapshot of A2 is damaged below
    store = Store(tmp_path / "store")
    store.init()
    g1 = generate(ACME, tmp_path / "A1", store)
    o2 = tmp_path / "O2"
    shutil.copytree(ACME, o2)
    (o2 / "wires.ttl").write_text((o2 / "wires.ttl").read_text().replace('"1000000"^^xsd', '"2000000"^^xsd'))
    g2 = generate(o2, tmp_path / "A2", store)
    mine = Acme(tmp_path, store, tmp_path / "A1", tmp_path / "A2", g1.receipt, g2.receipt)
    with TestClient(app_for(mine, env)) as c:
        c.post(
            "/v1/deployments",
            json={"enforcer": str(mine.a1), "generation_receipt_hash": mine.r1["receipt_hash"]},
        )
        start_hash = start(c, mine).json()["receipt_hash"]
    listing = g2.receipt["outputs"]["artifacts"]
    manifest_blob = store.objects_dir / "blob" / listing["manifest.json"].removeprefix("sha256:")
    manifest_blob.chmod(0o600)
    manifest_blob.write_bytes(manifest_blob.read_bytes() + b" ")
    with TestClient(app_for(mine, env)) as c:
        doc = c.get("/v1/shadow").json()
        assert doc["shadowing"] is False and "cannot be booted again" in doc["problem"]
        health = c.get("/v1/health").json()["processes"]["shadow"]
        assert health["status"] == "degraded"
        assert c.post("/v1/decisions", json=FLIP).status_code == 200  # the live A is not affected
    end = store.latest("shadow")
    assert end is not None and end["event"] == "stop" and end["inputs"]["start_receipt_hash"] == start_hash
    assert end["reason"].startswith("refused at boot")


def test_promoting_the_shadow_ends_the_session(acme: Acme, client: TestClient) -> None:
    assert start(client, acme).status_code == 200
    r = client.post(
        "/v1/deployments", json={"enforcer": str(acme.a2), "generation_receipt_hash": acme.r2["receipt_hash"]}
    )
    assert r.status_code == 200, r.text
    doc = client.get("/v1/shadow").json()
    assert doc["shadowing"] is False
    end = acme.store.find(doc["last_end_receipt_hash"])
    assert end is not None and end["reason"].startswith(f"promoted: deployment {r.json()['receipt_hash']}")


# --- the queue ----------------------------------------------------------------------------------


def test_a_full_queue_drops_and_counts_never_waits(acme: Acme, env: str) -> None:
    runtime = Runtime(acme.store, env)
    assert runtime.deploy(acme.a1, acme.r1["receipt_hash"]).ok
    runner = shadow.ShadowRunner(acme.store, env, runtime, queue_size=2)
    runner.boot_log()
    active = runtime.active
    assert active is not None
    session = shadow.Session(
        receipt_hash="sha256:" + "1" * 64,
        env=env,
        enforcer=load_enforcer(acme.a2),
        generation_receipt_hash=acme.r2["receipt_hash"],
        live_enforcer_hash=active.hash,
        started_at="2026-01-01T00:00:00Z",
        until=None,
    )
    runner.session = session  # no thread: nothing takes from the queue
    decision = active.enforcer.decide(FLIP).to_dict()
    started = time.perf_counter()
    for i in range(5):
        runner.offer(i + 1, FLIP, decision, active)
    assert time.perf_counter() - started < 1.0
    assert session.dropped == 3 and runner.describe()["queued"] == 2
    runner.close()


def test_differences_name_what_differs() -> None:
    a = {"decision": "APPROVE", "fired": [], "notifications": [{"rule": "r", "recipient": "x"}], "audit": []}
    assert shadow.differences(a, dict(a)) == []
    assert shadow.differences(a, {**a, "fired": [{"rule": "r1", "reason": "why"}]}) == ["fired"]
    assert shadow.differences(a, {**a, "decision": "REJECT", "notifications": []}) == [
        "decision",
        "notifications",
    ]
    # the same rules with other reasons are no disagreement
    b = {**a, "fired": [{"rule": "r1", "reason": "one"}]}
    assert shadow.differences(b, {**b, "fired": [{"rule": "r1", "reason": "two"}]}) == []


def test_until_is_a_future_time_or_a_duration() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert shadow.parse_until("30m", now=now) == now + dt.timedelta(minutes=30)
    assert shadow.parse_until("2026-01-02T00:00:00Z", now=now) == now + dt.timedelta(days=1)
    assert shadow.parse_until("2026-01-01T02:00:00+01:00", now=now) == now + dt.timedelta(hours=1)
    for bad in ("yesterday", "2025-12-31T00:00:00Z", "-5m", "0s"):
        with pytest.raises(InputError):
            shadow.parse_until(bad, now=now)


def test_cli_usage_and_no_session(acme: Acme, env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = mu(capsys, acme, "deploy", f"--target={env}", f"--enforcer={acme.a2}", "--until=1h")
    assert code == 2 and "--until goes with --shadow" in err
    code, _out, err = mu(
        capsys, acme, "deploy", f"--target={env}", f"--enforcer={acme.a2}", "--shadow", "--until=soon"
    )
    assert code == 2 and "until" in err
    code, _out, err = mu(capsys, acme, "shadow", "report", "--env=nothing-here")
    assert code == 2 and "no decision log" in err
    with TestClient(app_for(acme, env)):
        pass  # a decision log, and no shadow session ever
    code, _out, err = mu(capsys, acme, "shadow", "report", f"--env={env}")
    assert code == 1 and "no shadow session" in err
    with pytest.raises(CheckFailed):
        shadow.shadow_report(acme.store, env)
    code, _out, err = mu(capsys, acme, "shadow", "stop", f"--env={env}", "--wait=0")
    assert code == 2 and "no " in err  # no daemon runs


def test_an_until_that_passed_while_the_daemon_was_down_ends_the_session_at_boot(
    acme: Acme, env: str
) -> None:
    with TestClient(app_for(acme, env)) as c:
        c.post(
            "/v1/deployments",
            json={"enforcer": str(acme.a1), "generation_receipt_hash": acme.r1["receipt_hash"]},
        )
        started = start(c, acme, until="2s").json()
    time.sleep(2.5)
    with TestClient(app_for(acme, env)) as c:
        assert c.get("/v1/shadow").json()["shadowing"] is False
    end = acme.store.latest("shadow")
    assert end is not None and end["inputs"]["start_receipt_hash"] == started["receipt_hash"]
    assert end["reason"] == f"its until time {started['session']['until']} passed while the daemon was down"


def test_two_writers_make_one_chain(acme: Acme, env: str) -> None:
    """Two daemon processes of one environment (a fleet) append to one shadow log: each chains
    after the other's rows, and the log verifies."""
    runtime = Runtime(acme.store, env)
    assert runtime.deploy(acme.a1, acme.r1["receipt_hash"]).ok
    active = runtime.active
    assert active is not None
    runners = [shadow.ShadowRunner(acme.store, env, runtime) for _ in range(2)]
    decision = active.enforcer.decide(FLIP).to_dict()
    for i, runner in enumerate(runners):
        runner.boot_log()
        runner.session = shadow.Session(
            receipt_hash=f"sha256:{i}" + "0" * 63,
            env=env,
            enforcer=load_enforcer(acme.a2),
            generation_receipt_hash=acme.r2["receipt_hash"],
            live_enforcer_hash=active.hash,
            started_at="2026-01-01T00:00:00Z",
            until=None,
        )
    for round_ in range(3):
        for i, runner in enumerate(runners):
            for k in range(2):
                runner._compare(
                    (
                        runner.session,
                        10 * round_ + k,
                        {**FLIP, "id": f"{i}-{round_}-{k}"},
                        decision,
                        active.hash,
                    )
                )  # type: ignore[arg-type]
            runner._flush(runner.session)
    runners[1]._sign_head(force=True)
    conn = decision_log.connect(decision_log.db_path(acme.store.home, env), readonly=True)
    report, tree = shadow.verify_shadow_log(acme.store, env, conn)
    conn.close()
    assert report.verified, report.summary()
    assert report.size == 12 and tree.size == 12
    for runner in runners:
        runner.close()
