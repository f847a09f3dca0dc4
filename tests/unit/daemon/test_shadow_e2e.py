"""End to end: a real `mu daemon` with A1 live and A2 in shadow, through the CLI, across a restart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
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
AGREE = {"id": "p1", "type": "purchase", "amount": "105000", "currency": "USD", "actor_level": "L2"}


def mu(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FABRIC_HOME": str(home)}
    env.pop("FABRIC_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "finops_fabric.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def start_daemon(home: Path, log: Any) -> subprocess.Popen[bytes]:
    (home / "daemons" / "test.json").unlink(missing_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "finops_fabric.cli", "daemon", "--env=test", "--port=0", "--no-workers"],
        stdout=log,
        stderr=log,
        env={**os.environ, "FABRIC_HOME": str(home)},
    )


def stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    daemon.terminate()
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(timeout=10)


def decide(home: Path, tmp: Path, tx: dict[str, Any]) -> dict[str, Any]:
    path = tmp / f"{tx['id']}.json"
    path.write_text(json.dumps(tx))
    got = mu(home, "decide", "--target=test", f"--transaction={path}", "--wait=60", "--json")
    assert got.returncode == 0, got.stderr
    return dict(json.loads(got.stdout))


def report_when(home: Path, compared: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        got = mu(home, "shadow", "report", "--env=test", "--json")
        assert got.returncode == 0, got.stdout + got.stderr
        doc = dict(json.loads(got.stdout))
        if doc["compared"] >= compared or time.monotonic() > deadline:
            return doc
        time.sleep(0.3)


@pytest.mark.slow  # about 30 s: two generations, a daemon started twice, a dozen CLI processes
def test_shadow_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "store"
    assert mu(home, "init").returncode == 0
    o2 = tmp_path / "O2"
    shutil.copytree(ACME, o2)
    (o2 / "wires.ttl").write_text((o2 / "wires.ttl").read_text().replace('"1000000"^^xsd', '"2000000"^^xsd'))
    hashes = []
    for src, out in ((ACME, "A1"), (o2, "A2")):
        gen = mu(home, "generate", f"--input={src}", f"--output={tmp_path / out}", "--json")
        assert gen.returncode == 0, gen.stderr
        hashes.append(json.loads(gen.stdout)["enforcer_hash"])
    h1, h2 = hashes
    log = (tmp_path / "daemon.log").open("w")
    daemon = start_daemon(home, log)
    try:
        dep = mu(home, "deploy", "--target=test", f"--enforcer={tmp_path / 'A1'}", "--wait=60")
        assert dep.returncode == 0, dep.stderr

        # a tampered A_new is refused (exit 1), nothing changes
        bad = tmp_path / "A2-bad"
        shutil.copytree(tmp_path / "A2", bad)
        golden = bad / "manifest.json"
        golden.write_text(golden.read_text().replace(h2.removeprefix("sha256:")[:8], "00000000", 1) + " ")
        refused = mu(home, "deploy", "--target=test", "--shadow", f"--enforcer={bad}")
        assert refused.returncode == 1, refused.stdout + refused.stderr

        sh = mu(
            home,
            "deploy",
            "--target=test",
            "--shadow",
            f"--enforcer={tmp_path / 'A2'}",
            "--until=1h",
            "--json",
            f"--receipt={tmp_path / 'shadow.json'}",
        )
        assert sh.returncode == 0, sh.stdout + sh.stderr
        doc = json.loads(sh.stdout)
        assert doc["status"] == "shadowing" and doc["session"]["enforcer_hash"] == h2
        receipt = json.loads((tmp_path / "shadow.json").read_text())
        assert receipt["kind"] == "shadow" and receipt["gates"]["operational"]["status"] == "PASS"
        again = mu(home, "deploy", "--target=test", "--shadow", f"--enforcer={tmp_path / 'A2'}")
        assert again.returncode == 1 and "already shadows" in again.stderr

        assert decide(home, tmp_path, FLIP)["enforcer_hash"] == h1  # the live A answers
        assert decide(home, tmp_path, AGREE)["enforcer_hash"] == h1
        report = report_when(home, 2)
        assert (report["compared"], report["agreed"], report["disagreed"]) == (2, 1, 1)
        assert report["running"] and report["flips"] == {"APPROVE→REJECT": 0, "REJECT→APPROVE": 1}

        # a restart keeps the session
        stop_daemon(daemon)
        daemon = start_daemon(home, log)
        assert decide(home, tmp_path, {**FLIP, "id": "w2"})["enforcer_hash"] == h1
        report = report_when(home, 3)
        assert report["running"] and report["session"] == receipt["receipt_hash"]
        assert (report["compared"], report["disagreed"]) == (3, 2)

        stopped = mu(home, "shadow", "stop", "--env=test", "--json")
        assert stopped.returncode == 0, stopped.stderr
        end = json.loads(stopped.stdout)["receipt"]
        assert end["outputs"]["compared"] == 3 and end["outputs"]["disagreed"] == 2
        none = mu(home, "shadow", "stop", "--env=test")
        assert none.returncode == 1 and "no shadow session" in none.stderr
        text = mu(home, "shadow", "report", "--env=test")
        assert text.returncode == 0
        assert "compared 3: agreed 1, disagreed 2" in text.stdout
        assert "approval-wire-large" in text.stdout and "requires CFO" in text.stdout
        # the ledger still verifies with the shadow receipts in it
        trail = mu(home, "audit-trail", "--json")
        assert trail.returncode == 0, trail.stdout + trail.stderr
    finally:
        stop_daemon(daemon)
        log.close()
