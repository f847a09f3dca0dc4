"""Fault: the daemon itself is killed (SIGKILL) in the middle of a deployment, then restarted.

A real `mu daemon` subprocess; the deployment is held between booting the new A and its health
check by the daemon's failpoint (FABRIC_FAULT_DEPLOY_PAUSE), so the kill lands mid-deployment
every time. While it is held, decisions go on at normal latency on the previous A; after the
kill and a restart, the previous A serves (nothing half-switched, no deployment receipt for the
interrupted attempt), every decision answered before the kill is in the durable log, and the
same deployment then succeeds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from test_faults_support import wait_until

from finops_fabric.cli import main
from finops_fabric.daemon import client, decision_log
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
ENV = "test"


def _tx(i: int) -> dict[str, str]:
    return {
        "id": f"k{i}",
        "type": "purchase",
        "amount": "105000",
        "currency": "USD",
        "actor_id": "u-1",
        "actor_level": "L2",
    }


@contextmanager
def daemon(home: Path, log: Path, **extra_env: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finops_fabric.cli", "daemon", f"--env={ENV}", "--port=0"],
            stdout=out,
            stderr=out,
            env={**os.environ, "FABRIC_HOME": str(home), **extra_env},
        )
    try:
        assert wait_until(lambda: (home / "daemons" / f"{ENV}.json").is_file() or proc.poll() is not None, 60)
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _client(home: Path) -> httpx.Client:
    """An HTTP client with the local operator's token, once the daemon answers."""
    return client.connect(Store.open(str(home)), ENV, wait=60).http


def _deploy(home: Path, a: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "finops_fabric.cli", "deploy", f"--target={ENV}", f"--enforcer={a}", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FABRIC_HOME": str(home)},
    )


def _deployments(home: Path) -> list[dict[str, object]]:
    return [r for r in Store.open(str(home)).receipts() if r.get("kind") == "deployment"]


@pytest.mark.slow  # about 20 s: three daemon starts, two generations
def test_kill_daemon_mid_deployment_then_restart(tmp_path: Path) -> None:
    home = tmp_path / "store"
    assert main(["init", f"--home={home}"]) == 0
    o2 = tmp_path / "O2"
    shutil.copytree(ACME, o2)
    wires = o2 / "wires.ttl"
    wires.write_text(wires.read_text().replace('"1000000"', '"2000000"'))
    a1, a2 = tmp_path / "A1", tmp_path / "A2"
    assert main(["generate", f"--input={ACME}", f"--output={a1}", f"--home={home}"]) == 0
    assert main(["generate", f"--input={o2}", f"--output={a2}", f"--home={home}"]) == 0
    log = tmp_path / "daemon.log"

    # 1. A1 deployed normally.
    with daemon(home, log):
        dep = _deploy(home, a1)
        out, err = dep.communicate(timeout=120)
        assert dep.returncode == 0, err
        hash1 = json.loads(out)["enforcer_hash"]

    # 2. Restarted with the failpoint: A1 is restored; deploying A2 is held mid-way, then SIGKILL.
    answered: list[str] = []
    with daemon(home, log, FABRIC_FAULT_DEPLOY_PAUSE="120") as proc:
        with _client(home) as c:
            assert c.get("/v1/deployment").json()["enforcer_hash"] == hash1
            before = len(_deployments(home))
            dep = _deploy(home, a2)
            assert wait_until(lambda: "paused" in log.read_text(), 60), log.read_text()
            latencies = []
            for i in range(50):  # the previous A keeps deciding while the new one is held
                t0 = time.perf_counter()
                r = c.post("/v1/decisions", json=_tx(i))
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
                assert r.headers["X-Enforcer-Hash"] == hash1
                answered.append(r.headers["X-Decision-Id"])
            assert sorted(latencies)[len(latencies) // 2] < 0.5  # not blocked behind the deployment
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        _, err = dep.communicate(timeout=60)
        assert dep.returncode == 1, err  # the deployer is told it did not complete
        assert "went away during the deployment" in err
        assert len(_deployments(home)) == before  # no receipt for the interrupted attempt

    # 3. Restarted: the previous A serves; nothing answered was lost; the deployment now succeeds.
    with daemon(home, log), _client(home) as c:
        assert c.get("/v1/deployment").json()["enforcer_hash"] == hash1
        assert c.get("/v1/health").json()["status"] in ("ok", "degraded")
        conn = decision_log.connect(decision_log.db_path(home, ENV), readonly=True)
        logged = {str(row["id"]) for row in decision_log.query(conn)}
        conn.close()
        assert set(answered) <= logged
        dep = _deploy(home, a2)
        out, err = dep.communicate(timeout=120)
        assert dep.returncode == 0, err
        hash2 = json.loads(out)["enforcer_hash"]
        assert hash2 != hash1
        assert c.get("/v1/deployment").json()["enforcer_hash"] == hash2
        assert c.post("/v1/decisions", json=_tx(99)).headers["X-Enforcer-Hash"] == hash2
