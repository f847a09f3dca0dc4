"""A fleet of daemon processes on one store: `mu daemon --processes=N` (one port, a pre-fork
parent), a second daemon that joins on another port, deployments and rollbacks that reach every
live process (and `mu deploy` naming a process that did not switch), a killed process restarted
by its parent, and kill -9 of one of two daemons under load: the other keeps answering and no
answered decision is lost. Real `mu daemon` subprocesses throughout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from fleet_support import daemon
from fleet_support import mu as _mu
from fleet_support import tx as _tx
from test_faults_support import free_port, wait_until

from finops_fabric.cli import main
from finops_fabric.daemon import client, decision_log, fleet
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
ENV = "test"


def _token(home: Path) -> str:
    token = client.read_token(Store.open(str(home)), ENV)
    assert token is not None
    return token


def _live(home: Path) -> list[dict[str, object]]:
    state = fleet.FleetState.open(home, ENV)
    try:
        return [p for p in state.processes() if p["alive"]]
    finally:
        state.close()


def _logged_ids(home: Path) -> set[str]:
    conn = decision_log.connect(decision_log.db_path(home, ENV), readonly=True)
    try:
        return {str(row["id"]) for row in decision_log.query(conn)}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A store with two receipted enforcers (A1: acme; A2: acme with a higher wire limit)."""
    base = tmp_path_factory.mktemp("fleet")
    home = base / "store"
    assert main(["init", f"--home={home}"]) == 0
    o2 = base / "O2"
    shutil.copytree(ACME, o2)
    wires = o2 / "wires.ttl"
    wires.write_text(wires.read_text().replace('"1000000"', '"2000000"'))
    a1, a2 = base / "A1", base / "A2"
    assert main(["generate", f"--input={ACME}", f"--output={a1}", f"--home={home}"]) == 0
    assert main(["generate", f"--input={o2}", f"--output={a2}", f"--home={home}"]) == 0
    return home, a1, a2


def _fresh(store: tuple[Path, Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    home, a1, a2 = store
    copy = tmp_path / "store"
    shutil.copytree(home, copy)
    return copy, a1, a2


@pytest.mark.slow  # about 25 s: two HTTP processes, two deployments, a rollback, a kill
def test_processes_share_one_port_follow_deploys_and_rollbacks_and_restart(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    home, a1, a2 = _fresh(store, tmp_path)
    log = tmp_path / "daemon.log"
    port = free_port()
    with daemon(home, log, f"--port={port}", "--processes=2") as parent:
        assert "with 2 HTTP processes" in log.read_text()
        info = client.read_discovery(Store.open(str(home)), ENV)
        assert info is not None and info.pid == parent.pid and info.port == port  # one discovery file
        assert len(_live(home)) == 2

        dep = _mu(home, "deploy", f"--target={ENV}", f"--enforcer={a1}", "--json")
        assert dep.returncode == 0, dep.stderr
        doc = json.loads(dep.stdout)
        hash1 = doc["enforcer_hash"]
        assert doc["fleet"]["lagging"] == []
        assert {p["serving"] for p in doc["fleet"]["processes"]} == {hash1}
        assert len(doc["fleet"]["processes"]) == 2

        headers = {"Authorization": f"Bearer {_token(home)}"}
        answered: set[str] = set()
        # new connections each time: the kernel hands them to either process; every one of them
        # decides with A1 and the log's chain holds across both writers
        for i in range(40):
            r = httpx.post(f"http://127.0.0.1:{port}/v1/decisions", json=_tx(i), headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["X-Enforcer-Hash"] == hash1
            answered.add(r.headers["X-Decision-Id"])
        assert len(answered) == 40

        dep = _mu(home, "deploy", f"--target={ENV}", f"--enforcer={a2}", "--json")
        assert dep.returncode == 0, dep.stderr
        doc2 = json.loads(dep.stdout)
        hash2 = doc2["enforcer_hash"]
        assert hash2 != hash1
        assert {p["serving"] for p in doc2["fleet"]["processes"]} == {hash2}
        for i in range(40, 60):
            r = httpx.post(f"http://127.0.0.1:{port}/v1/decisions", json=_tx(i), headers=headers)
            assert r.headers["X-Enforcer-Hash"] == hash2  # no process still on A1
            answered.add(r.headers["X-Decision-Id"])

        back = _mu(home, "rollback", f"--to-receipt={doc['receipt_hash']}", f"--target={ENV}", "--json")
        assert back.returncode == 0, back.stderr
        assert {p["serving"] for p in json.loads(back.stdout)["fleet"]["processes"]} == {hash1}

        # kill -9 one HTTP process: the parent restarts it, and it serves the rolled-back A
        victim = next(p for p in _live(home) if p["pid"] != parent.pid)
        os.kill(int(str(victim["pid"])), signal.SIGKILL)
        assert wait_until(lambda: "restarted" in log.read_text(), 30), log.read_text()
        for i in range(60, 80):
            r = httpx.post(f"http://127.0.0.1:{port}/v1/decisions", json=_tx(i), headers=headers)
            assert r.status_code == 200
            answered.add(r.headers["X-Decision-Id"])

        def restarted_serves_a1() -> bool:
            live = [p for p in _live(home) if p["pid"] != victim["pid"]]
            return len(live) == 2 and {p["serving"] for p in live} == {hash1}

        assert wait_until(restarted_serves_a1, 60), _live(home)
    assert parent.returncode == 0
    assert not (home / "daemons" / f"{ENV}.json").exists()
    assert answered <= _logged_ids(home)
    verify = _mu(home, "decisions", "verify", f"--env={ENV}")
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow  # about 20 s: two daemons, a held follower
def test_deploy_names_a_live_process_that_did_not_switch_and_skips_dead_ones(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    home, a1, _a2 = _fresh(store, tmp_path)
    log, log2 = tmp_path / "first.log", tmp_path / "second.log"
    with daemon(home, log, f"--port={free_port()}"):
        # the second daemon (another port: another host) holds every boot for 60 s
        with daemon(home, log2, f"--port={free_port()}", "--join", FABRIC_FAULT_DEPLOY_PAUSE="60") as second:
            assert wait_until(lambda: len(_live(home)) == 2, 30)
            dep = _mu(home, "deploy", f"--target={ENV}", f"--enforcer={a1}", "--wait=3", "--json")
            assert dep.returncode == 1, dep.stdout + dep.stderr
            doc = json.loads(dep.stdout)
            assert doc["status"] == "deployed"  # the deploying process switched ...
            assert len(doc["fleet"]["lagging"]) == 1  # ... the second did not, and is named
            assert f":{second.pid} " in doc["fleet"]["lagging"][0]
            os.kill(second.pid, signal.SIGKILL)
            second.wait(timeout=10)
        # its heartbeat expires: a dead process is not waited for
        assert wait_until(lambda: len(_live(home)) == 1, 10)
        again = _mu(home, "deploy", f"--target={ENV}", f"--enforcer={a1}", "--wait=10")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "every live daemon process serves it (1)" in again.stdout


@pytest.mark.slow  # about 20 s: two daemons under load, one killed
def test_kill_one_of_two_daemons_under_load_the_other_answers_and_nothing_answered_is_lost(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    home, a1, _a2 = _fresh(store, tmp_path)
    p1, p2 = free_port(), free_port()
    with daemon(home, tmp_path / "first.log", f"--port={p1}"):
        dep = _mu(home, "deploy", f"--target={ENV}", f"--enforcer={a1}")
        assert dep.returncode == 0, dep.stderr
        with daemon(home, tmp_path / "second.log", f"--port={p2}", "--join") as second:
            assert wait_until(lambda: len(_live(home)) == 2, 30)
            headers = {"Authorization": f"Bearer {_token(home)}"}
            answered: dict[int, set[str]] = {p1: set(), p2: set()}
            errors: dict[int, int] = {p1: 0, p2: 0}
            stop = threading.Event()

            def load(port: int) -> None:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5) as c:
                    i = 0
                    while not stop.is_set():
                        i += 1
                        try:
                            r = c.post("/v1/decisions", json=_tx(f"{port}-{i}"))
                        except httpx.HTTPError:
                            errors[port] += 1
                            time.sleep(0.01)
                            continue
                        if r.status_code == 200:
                            answered[port].add(r.headers["X-Decision-Id"])

            threads = [threading.Thread(target=load, args=(p,)) for p in (p1, p2)]
            for t in threads:
                t.start()
            assert wait_until(lambda: len(answered[p2]) >= 50 and len(answered[p1]) >= 50, 60)
            os.kill(second.pid, signal.SIGKILL)
            second.wait(timeout=10)
            before = len(answered[p1])
            assert wait_until(lambda: len(answered[p1]) >= before + 100, 60)  # the survivor answers
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert errors[p1] == 0  # not one failed request at the survivor
        assert errors[p2] > 0  # the killed one stopped answering
    logged = _logged_ids(home)
    assert answered[p1] | answered[p2] <= logged  # every answered decision is in the log
    verify = _mu(home, "decisions", "verify", f"--env={ENV}")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_processes_refuse_a_port_in_use(store: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """SO_REUSEPORT would let the HTTP processes join whatever listens on the port: a port in
    use is refused before anything starts (exit 2, daemon.listen)."""
    import socket

    home, _a1, _a2 = _fresh(store, tmp_path)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = _mu(home, "daemon", f"--env={ENV}", f"--port={port}", "--processes=2")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot listen on 127.0.0.1" in r.stderr
    assert not (home / "daemons" / f"{ENV}.json").exists()
