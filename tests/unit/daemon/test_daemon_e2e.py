"""End to end: a real `mu daemon` subprocess, deploy, decide through the CLI, the decision log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"


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


@pytest.mark.slow  # about 15 s: a real generation, a daemon and several CLI processes
def test_daemon_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "store"
    assert mu(home, "init").returncode == 0
    gen = mu(home, "generate", f"--input={ACME}", f"--output={tmp_path / 'A1'}", "--json")
    assert gen.returncode == 0, gen.stderr
    enforcer_hash = json.loads(gen.stdout)["enforcer_hash"]
    tx = tmp_path / "tx.json"
    tx.write_text(
        json.dumps(
            {
                "id": "e2e",
                "type": "purchase",
                "amount": "105000",
                "currency": "USD",
                "actor_id": "u-1",
                "actor_level": "L2",
            }
        )
    )
    mails: list[str] = []

    class Inbox:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
            mails.extend(envelope.rcpt_tos)
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    smtp = Controller(Inbox(), hostname="127.0.0.1", port=port)
    smtp.start()
    (home / "config.json").write_text(
        json.dumps({"smtp": {"host": "127.0.0.1", "port": port, "from": "f@x"}})
    )
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "finops_fabric.cli", "daemon", "--env=test", "--port=0"],
        stdout=log,
        stderr=log,
        env={**os.environ, "FABRIC_HOME": str(home)},
    )
    discovery = home / "daemons" / "test.json"
    try:
        dep = mu(
            home,
            "deploy",
            "--target=test",
            f"--enforcer={tmp_path / 'A1'}",
            "--wait=60",
            "--json",
            f"--receipt={tmp_path / 'deploy.json'}",
        )
        assert dep.returncode == 0, dep.stderr
        out = json.loads(dep.stdout)
        assert out["status"] == "deployed" and out["enforcer_hash"] == enforcer_hash
        receipt = json.loads((tmp_path / "deploy.json").read_text())
        assert receipt["kind"] == "deployment" and receipt["gates"]["operational"]["status"] == "PASS"
        token = home / "daemons" / "test.token"
        assert oct(token.stat().st_mode & 0o777) == "0o600"
        assert discovery.is_file() and json.loads(discovery.read_text())["pid"] == daemon.pid

        dec = mu(home, "decide", "--target=test", f"--transaction={tx}", "--json")
        assert dec.returncode == 0, dec.stderr
        decision = json.loads(dec.stdout)
        assert decision["decision"] == "REJECT" and decision["enforcer_hash"] == enforcer_hash
        direct = mu(home, "decide", f"--enforcer={tmp_path / 'A1'}", f"--transaction={tx}", "--json")
        assert json.loads(direct.stdout) == decision

        # a bad token is refused (exit 1); nothing is decided
        bad = subprocess.run(
            [sys.executable, "-m", "finops_fabric.cli", "decide", "--target=test", f"--transaction={tx}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "FABRIC_HOME": str(home), "FABRIC_TOKEN": "mu_not-a-token"},
        )
        assert bad.returncode == 1 and "not valid" in bad.stderr

        drift = mu(home, "drift", "--env=test", "--json")  # asks the running daemon what it serves
        assert drift.returncode == 0, drift.stderr
        info = json.loads(drift.stdout)["information"]
        assert info[0] == f"the running test daemon serves A {enforcer_hash}", info

        state = mu(home, "receipt", "--deployment=test", "--json")
        assert state.returncode == 0, state.stderr
        assert json.loads(state.stdout)["outputs"]["enforcer_hash"] == enforcer_hash

        logged = mu(home, "decisions", "--env=test", "--json")
        rows = json.loads(logged.stdout)["decisions"]
        assert [(r["transaction_id"], r["outcome"], r["enforcer_hash"]) for r in rows] == [
            ("e2e", "REJECT", enforcer_hash)
        ]

        # side effects: the supervised workers deliver from the outbox (a real SMTP server)
        senior = tmp_path / "tx-senior.json"
        senior.write_text(json.dumps({**json.loads(tx.read_text()), "id": "e2e-2", "actor_level": "L3"}))
        dec = mu(home, "decide", "--target=test", f"--transaction={senior}", "--json")
        assert json.loads(dec.stdout)["decision"] == "APPROVE"
        deadline = time.monotonic() + 30
        while len(mails) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(mails) == ["audit@acme.example", "finance@acme.example", "finance@acme.example"]
        ledger = mu(home, "audit-log", "verify", "--env=test", "--json")
        assert ledger.returncode == 0, ledger.stderr
    finally:
        smtp.stop()
        daemon.terminate()
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
        log.close()
    assert not discovery.exists()  # removed on a clean shutdown
    assert not (home / "daemons" / "test.token").exists()
