"""Shadow mode across a fleet on PostgreSQL: `mu daemon --processes=2 --database=postgresql://…`;
a shadow session started through the port (so through one of the two processes) is run by both,
decisions spread over both are all compared, and the stop receipt, the report and the shadow
log's chain hold every process's rows and counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from fleet_support import daemon
from fleet_support import mu as _mu
from test_faults_support import free_port, wait_until

from finops_fabric.cli import main
from finops_fabric.daemon import client
from finops_fabric.storage import open_storage
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
ENV = "test"
AGREE = {"type": "purchase", "amount": "105000", "currency": "USD", "actor_id": "u-1", "actor_level": "L2"}
FLIP = {
    "type": "wire",
    "amount": "1500000",
    "currency": "USD",
    "actor_level": "L3",
    "approver_id": "u-1",
    "executor_id": "u-2",
    "attributes": {"country": "US", "vendor_risk": "low"},
}


@pytest.mark.slow  # about 30 s: two generations, a daemon of two processes, several CLI processes
def test_a_shadow_started_through_one_process_runs_in_both(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "store"
    assert main(["init", f"--home={home}"]) == 0
    o2 = tmp_path / "O2"
    shutil.copytree(ACME, o2)
    wires = o2 / "wires.ttl"
    wires.write_text(wires.read_text().replace('"1000000"', '"2000000"'))
    a1, a2 = tmp_path / "A1", tmp_path / "A2"
    assert main(["generate", f"--input={ACME}", f"--output={a1}", f"--home={home}"]) == 0
    assert main(["generate", f"--input={o2}", f"--output={a2}", f"--home={home}"]) == 0
    (home / "config.json").write_text(json.dumps({"environments": {ENV: {"database": pg_url}}}))
    log = tmp_path / "daemon.log"
    port = free_port()
    storage = open_storage(home, ENV, pg_url)
    try:
        with daemon(home, log, f"--port={port}", "--processes=2", "--no-workers"):
            dep = _mu(home, "deploy", f"--target={ENV}", f"--enforcer={a1}", "--json")
            assert dep.returncode == 0, dep.stderr
            assert len(json.loads(dep.stdout)["fleet"]["processes"]) == 2
            sh = _mu(home, "deploy", f"--target={ENV}", "--shadow", f"--enforcer={a2}", "--json")
            assert sh.returncode == 0, sh.stdout + sh.stderr
            session = json.loads(sh.stdout)["session"]["session"]

            def both_run_it() -> bool:
                row = storage.open_shadow_session()
                return row is not None and row["session"] == session and row["processes"] == 2

            assert wait_until(both_run_it, 30), storage.open_shadow_session()
            token = client.read_token(Store.open(str(home)), ENV)
            headers = {"Authorization": f"Bearer {token}"}
            for i in range(40):  # new connections: the kernel hands them to either process
                tx = {**(FLIP if i % 2 else AGREE), "id": f"t{i}"}
                r = httpx.post(f"http://127.0.0.1:{port}/v1/decisions", json=tx, headers=headers)
                assert r.status_code == 200, r.text
            fleet_doc = httpx.get(f"http://127.0.0.1:{port}/v1/fleet", headers=headers).json()
            assert len([p for p in fleet_doc["processes"] if p["alive"]]) == 2

            def counted() -> bool:
                row = storage.shadow_session(session)
                return row is not None and row["compared"] == 40

            assert wait_until(counted, 30), storage.shadow_session(session)
            stopped = _mu(home, "shadow", "stop", f"--env={ENV}", "--json")
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
            end = json.loads(stopped.stdout)["receipt"]
            assert wait_until(lambda: (storage.shadow_session(session) or {}).get("processes") == 0, 30)
        out = end["outputs"]
        assert (out["compared"], out["agreed"], out["disagreed"], out["dropped"]) == (40, 20, 20, 0)
        assert out["shadow_log"]["tree_size"] == 20
        decided = json.loads(_mu(home, "decisions", f"--env={ENV}", "--json").stdout)["decisions"]
        assert len({d["process"] for d in decided}) == 2  # both processes answered
        rows = storage.shadow_rows()
        answered_by = {d["id"]: d["process"] for d in decided}
        assert len({answered_by[r["decision_id"]] for r in rows}) == 2  # both processes compared
    finally:
        storage.close()
    report = _mu(home, "shadow", "report", f"--env={ENV}", "--json")  # the database of config.json
    assert report.returncode == 0, report.stdout + report.stderr
    doc = json.loads(report.stdout)
    assert doc["verified"] and not doc["running"] and doc["end_receipt_hash"] == end["receipt_hash"]
    assert (doc["compared"], doc["disagreed"], doc["chain"]["size"]) == (40, 20, 20)
    assert doc["flips"] == {"APPROVE→REJECT": 0, "REJECT→APPROVE": 20}
    assert not (home / "daemon-test.db").exists()  # nothing went to SQLite
