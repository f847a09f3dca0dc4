"""`mu daemon --no-workers` decides and writes each decision's outbox rows, which wait for the
next daemon started with workers; that one delivers them. Everything runs under umask 000,
and every file the store holds (databases with their -wal and -shm, the discovery and token
files, the worker logs) is 0600 in directories of 0700."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"


def _umask_000() -> None:
    os.umask(0)


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
        preexec_fn=_umask_000,
    )


def start_daemon(home: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "finops_fabric.cli", "daemon", "--env=test", "--port=0", *extra],
        stdout=out,
        stderr=out,
        env={**os.environ, "FABRIC_HOME": str(home)},
        preexec_fn=_umask_000,
    )
    out.close()
    deadline = time.monotonic() + 60
    discovery = home / "daemons" / "test.json"
    while time.monotonic() < deadline:
        if discovery.is_file() and json.loads(discovery.read_text()).get("pid") == proc.pid:
            return proc
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"the daemon did not start: {log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def outbox_rows(home: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(f"file:{home / 'daemon-test.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT kind, state, payload FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(k, s, json.loads(p).get("recipient") or json.loads(p).get("ledger")) for k, s, p in rows]


def not_private(root: Path) -> dict[str, str]:
    bad: dict[str, str] = {}
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode != (0o700 if p.is_dir() else 0o600):
            bad[str(p.relative_to(root))] = oct(mode)
    return bad


@pytest.mark.slow  # about 15 s: a generation, two daemons, several CLI processes
def test_no_workers_queues_and_the_next_start_delivers(tmp_path: Path) -> None:
    home = tmp_path / ".fabric"
    assert mu(home, "init").returncode == 0
    gen = mu(home, "generate", f"--input={ACME}", f"--output={tmp_path / 'A'}")
    assert gen.returncode == 0, gen.stderr
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
    os.chmod(home / "config.json", 0o600)  # the operator's file: written here by the test
    tx = tmp_path / "tx.json"
    tx.write_text(
        json.dumps(
            {
                "id": "nw-1",
                "type": "purchase",
                "amount": "105000",
                "currency": "USD",
                "actor_id": "u-1",
                "actor_level": "L3",
            }
        )
    )
    log = tmp_path / "daemon.log"
    try:
        daemon = start_daemon(home, log, "--no-workers")
        try:
            dep = mu(home, "deploy", "--target=test", f"--enforcer={tmp_path / 'A'}", "--wait=60")
            assert dep.returncode == 0, dep.stderr
            dec = mu(home, "decide", "--target=test", f"--transaction={tx}", "--json")
            assert dec.returncode == 0, dec.stderr
            decision = json.loads(dec.stdout)
            assert decision["decision"] == "APPROVE" and decision["notifications"]
            queued = outbox_rows(home)
            expected = sorted(
                [("notification", "pending", n["recipient"]) for n in decision["notifications"]]
                + [("audit", "pending", a["ledger"]) for a in decision["audit"]]
            )
            assert sorted(queued) == expected and expected
            time.sleep(1.0)
            assert mails == []  # nobody delivers while the daemon runs without workers
            assert not_private(home) == {}, "while it runs"
        finally:
            stop(daemon)
        assert all(state == "pending" for _, state, _ in outbox_rows(home))

        daemon = start_daemon(home, log)  # with workers: the waiting entries go out
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = {state for _, state, _ in outbox_rows(home)}
                if states == {"delivered"}:
                    break
                time.sleep(0.1)
            assert {state for _, state, _ in outbox_rows(home)} == {"delivered"}, log.read_text()
            assert sorted(mails) == sorted(n["recipient"] for n in decision["notifications"])
            assert not_private(home) == {}, "with workers"
        finally:
            stop(daemon)
    finally:
        smtp.stop()
    assert not_private(home) == {}, "after both stopped"
