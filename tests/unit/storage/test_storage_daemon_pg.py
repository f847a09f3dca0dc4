"""End to end on PostgreSQL: a real `mu daemon --database=postgresql://…` subprocess deploys,
decides, delivers its notifications and audit entries through workers that share the database,
signs tree heads of logs that live there; restarted, it resumes them; `mu decisions verify`,
`mu audit-log verify`, `mu outbox status` and `mu diagnose --decision-id` read the same
database (by flag or config.json); its password is never printed and no SQLite log is written
to the store."""

from __future__ import annotations

import json
import os
import signal
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


def start_daemon(home: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    discovery = home / "daemons" / "test.json"
    discovery.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "finops_fabric.cli", "daemon", "--env=test", "--port=0", f"--database={url}"],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "FABRIC_HOME": str(home)},
    )
    deadline = time.monotonic() + 60
    while not discovery.is_file():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return proc


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow  # about 20 s: a real generation, two daemon starts and several CLI processes
def test_daemon_on_postgresql_end_to_end(tmp_path: Path, pg_url: str) -> None:
    url = pg_url.replace("postgresql://fabric@", "postgresql://fabric:s3cret-pw@")  # trust auth ignores it
    home = tmp_path / "store"
    assert mu(home, "init").returncode == 0
    gen = mu(home, "generate", f"--input={ACME}", f"--output={tmp_path / 'A1'}", "--json")
    assert gen.returncode == 0, gen.stderr
    enforcer_hash = json.loads(gen.stdout)["enforcer_hash"]
    base = {"type": "purchase", "amount": "105000", "currency": "USD", "actor_id": "u-1"}
    txs = []
    for i, level in enumerate(("L2", "L3", "L3")):
        path = tmp_path / f"tx{i}.json"
        path.write_text(json.dumps({**base, "id": f"pg-{i}", "actor_level": level}))
        txs.append(path)
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
    config = {"smtp": {"host": "127.0.0.1", "port": port, "from": "f@x"}}
    (home / "config.json").write_text(json.dumps(config))
    log = tmp_path / "daemon.log"
    daemon = start_daemon(home, url, log)
    try:
        dep = mu(home, "deploy", "--target=test", f"--enforcer={tmp_path / 'A1'}", "--wait=60", "--json")
        assert dep.returncode == 0, dep.stderr
        first = mu(home, "decide", "--target=test", f"--transaction={txs[0]}", "--json")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["decision"] == "REJECT"
        second = mu(home, "decide", "--target=test", f"--transaction={txs[1]}", "--json")
        assert json.loads(second.stdout)["decision"] == "APPROVE"
        deadline = time.monotonic() + 30  # the workers deliver from the PostgreSQL outbox
        while len(mails) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(mails) == ["audit@acme.example", "finance@acme.example", "finance@acme.example"]
        status = mu(home, "outbox", "status", "--env=test", f"--database={url}", "--json")
        assert status.returncode == 0, status.stderr
        notifications = json.loads(status.stdout)["environments"]["test"]["notification"]
        assert notifications["delivered"] == 3 and notifications["pending"] == 0
    finally:
        stop_daemon(daemon)

    # restarted on the same database: the logs verify against the heads it signed, it goes on
    daemon = start_daemon(home, url, log)
    try:
        third = mu(home, "decide", "--target=test", f"--transaction={txs[2]}", "--json")
        assert third.returncode == 0, third.stderr
    finally:
        stop_daemon(daemon)
        smtp.stop()

    logged = mu(home, "decisions", "--env=test", f"--database={url}", "--json")
    assert logged.returncode == 0, logged.stderr
    rows = json.loads(logged.stdout)["decisions"]
    assert [(r["id"], r["transaction_id"], r["enforcer_hash"]) for r in rows] == [
        (1, "pg-0", enforcer_hash),
        (2, "pg-1", enforcer_hash),
        (3, "pg-2", enforcer_hash),
    ]
    assert all(r["process"] for r in rows)
    assert len({r["process"] for r in rows}) == 2  # two daemon processes answered
    verify = mu(home, "decisions", "verify", "--env=test", f"--database={url}", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["verified"] is True and "s3cret" not in report["database"]
    # the same through config.json, no flag
    config["environments"] = {"test": {"database": url}}
    (home / "config.json").write_text(json.dumps(config))
    assert mu(home, "decisions", "verify", "--env=test").returncode == 0
    # `mu backtest --env` replays the daemon's PostgreSQL log, each decision by its own enforcer
    backtest = mu(home, "backtest", "--env=test", f"--new={ACME}", "--no-regions", "--json")
    assert backtest.returncode == 0, backtest.stdout + backtest.stderr
    replayed = json.loads(backtest.stdout)
    assert replayed["reproducible"] is True and replayed["fidelity"]["replayed"] == 3
    assert replayed["old"]["enforcers"][0]["enforcer_hash"] == enforcer_hash
    assert replayed["data"]["log"]["covered_by_signed_head"] == 3
    diag = mu(home, "diagnose", "--decision-id=2", "--env=test", "--json")  # read from PostgreSQL
    assert diag.returncode == 0, diag.stdout + diag.stderr
    out = json.loads(diag.stdout)
    assert out["logged"]["decision_id"] == 2 and out["observed"] == "APPROVE"
    audit = mu(home, "audit-log", "verify", "--env=test", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert json.loads(audit.stdout)["entries"] == 2
    every = mu(home, "audit-log", "verify", "--json")  # every environment: config.json names test's
    assert every.returncode == 0, every.stdout + every.stderr
    assert list(json.loads(every.stdout)["environments"]) == ["test"]
    status = mu(home, "outbox", "status", "--json")
    assert json.loads(status.stdout)["environments"]["test"]["audit"]["delivered"] == 2
    assert json.loads(mu(home, "decisions", "--json").stdout)["count"] == 3  # the one environment
    assert not (home / "daemon-test.db").exists()  # nothing went to SQLite
    assert "s3cret" not in log.read_text()
    assert "fabric:***@" in log.read_text()
