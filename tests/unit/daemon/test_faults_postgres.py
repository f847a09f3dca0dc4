"""Faults of a fleet on PostgreSQL, with real `mu daemon --database=URL` subprocesses and a
throwaway cluster (tests/unit/services.py; skipped locally without PostgreSQL's binaries, a
failure under CI):

- kill -9 one of two daemons under load: the other keeps answering, every answered decision is
  in the log, and the notifications of the killed daemon's decisions (some claimed by its worker
  when it died) are delivered by the survivor's worker once their lease runs out;
- restart PostgreSQL under load: while it is gone the daemon answers 503 with a stable code
  (never a decision it did not log, never a 500), reconnects by itself and goes on;
- a partition of one daemon from the database (its connections go through a TCP proxy that
  then drops every byte): it stops giving decisions (503) rather than deciding unlogged, and
  goes on once the link is back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_support import ENV, Load, TcpProxy, daemon, mu
from services import Cluster, postgres_cluster
from test_faults_support import free_port, smtp_server, wait_until

from finops_fabric.cli import main
from finops_fabric.daemon import client, fleet
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
#: Storage errors a daemon answers while its database is gone (never a 500, never a decision).
UNAVAILABLE = {"storage.unavailable", "storage.timeout"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with postgres_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def a1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store (without SMTP) holding a receipted A of the acme example."""
    root = tmp_path_factory.mktemp("pgfaults")
    home = root / "store"
    assert main(["init", f"--home={home}"]) == 0
    assert main(["generate", f"--input={ACME}", f"--output={root / 'A'}", f"--home={home}"]) == 0
    return home, root / "A"


_databases = iter(range(1, 1000))


def _setup(
    cluster: Cluster, a1: tuple[Path, Path], tmp_path: Path, smtp_port: int | None = None
) -> tuple[Path, str]:
    """A copy of the store (pointed at ``smtp_port``) and a fresh database."""
    home = tmp_path / "store"
    shutil.copytree(a1[0], home)
    if smtp_port is not None:
        config: dict[str, Any] = {
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "from": "fabric@localhost"},
            "outbox": {"lease_seconds": 3},  # a dead worker's claimed items are due again after 3 s
        }
        (home / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return home, cluster.create_database(f"faults{next(_databases)}")


def _token(home: Path) -> str:
    token = client.read_token(Store.open(str(home)), ENV)
    assert token is not None
    return token


def _logged(cluster: Cluster, url: str) -> dict[int, str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return {int(r[0]): str(r[1]) for r in conn.execute("SELECT id, transaction_id FROM decisions")}


def _notified_decisions(url: str) -> set[int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT DISTINCT decision_id FROM outbox WHERE kind = 'notification'").fetchall()
    return {int(r[0]) for r in rows}


def _verify(home: Path, url: str) -> None:
    verify = mu(home, "decisions", "verify", f"--env={ENV}", f"--database={url}")
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow  # about 60 s: two daemons with workers, a kill, an outbox lease to run out
def test_kill_one_of_two_daemons_on_postgres_under_load(
    cluster: Cluster, a1: tuple[Path, Path], tmp_path: Path
) -> None:
    with smtp_server() as smtp:
        home, url = _setup(cluster, a1, tmp_path, smtp.port)
        p1, p2 = free_port(), free_port()
        with daemon(home, tmp_path / "one.log", f"--port={p1}", f"--database={url}"):
            dep = mu(home, "deploy", f"--target={ENV}", f"--enforcer={a1[1]}")
            assert dep.returncode == 0, dep.stdout + dep.stderr
            with daemon(home, tmp_path / "two.log", f"--port={p2}", f"--database={url}", "--join") as second:
                state = fleet.FleetState.open(home, ENV, url)
                try:
                    assert wait_until(lambda: len([p for p in state.processes() if p["alive"]]) == 2, 30)
                finally:
                    state.close()
                token = _token(home)
                one, two = Load(p1, token, "one").start(), Load(p2, token, "two").start()
                try:
                    assert wait_until(lambda: len(one.answered) >= 100 and len(two.answered) >= 100, 90)
                    for pid in _tree(second.pid):  # the daemon and its workers, mid-delivery
                        os.kill(pid, signal.SIGKILL)
                    second.wait(timeout=10)
                    before = len(one.answered)
                    assert wait_until(lambda: len(one.answered) >= before + 200, 90)  # the survivor answers
                finally:
                    one.stop()
                    two.stop()
                assert one.connection_errors == 0 and set(one.statuses) == {200}
                logged = _logged(cluster, url)
                for load in (one, two):
                    for decision_id, tx_id in load.answered.items():
                        assert logged.get(int(decision_id)) == tx_id  # every answered decision is logged
                # every notification queued for a logged decision (the killed daemon's included)
                # is delivered, by the survivor's worker once the dead one's leases ran out
                wanted = _notified_decisions(url)
                assert {int(d) for d in two.answered} & wanted  # the killed daemon's decisions notify

                def all_delivered() -> bool:
                    return wanted <= {int(m["X-Fabric-Decision-Id"]) for _rcpt, m in smtp.messages()}

                assert wait_until(all_delivered, 120, interval=0.5), len(wanted)
        _verify(home, url)


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


@pytest.mark.slow  # about 30 s: PostgreSQL stopped and started under load
def test_restart_postgres_under_load(cluster: Cluster, a1: tuple[Path, Path], tmp_path: Path) -> None:
    home, url = _setup(cluster, a1, tmp_path)
    port = free_port()
    with daemon(home, tmp_path / "d.log", f"--port={port}", f"--database={url}", "--no-workers"):
        dep = mu(home, "deploy", f"--target={ENV}", f"--enforcer={a1[1]}")
        assert dep.returncode == 0, dep.stdout + dep.stderr
        load = Load(port, _token(home), "r").start()
        try:
            assert wait_until(lambda: len(load.answered) >= 100, 60)
            cluster.stop("fast")
            try:
                assert wait_until(lambda: sum(load.codes.values()) >= 5, 60), load.statuses
            finally:
                cluster.start()
            refused = sum(load.codes.values())
            before = len(load.answered)
            assert wait_until(lambda: len(load.answered) >= before + 100, 90), (load.statuses, load.codes)
        finally:
            load.stop()
    assert refused >= 5
    assert set(load.codes) <= UNAVAILABLE, load.codes  # a clear, stable code
    assert set(load.statuses) <= {200, 503}, load.statuses  # never a 500
    assert load.connection_errors == 0  # the daemon itself stayed up throughout
    logged = _logged(cluster, url)
    for decision_id, tx_id in load.answered.items():
        assert logged.get(int(decision_id)) == tx_id
    _verify(home, url)


@pytest.mark.slow  # about 30 s: a daemon cut off from its database and reconnected
def test_partition_of_one_daemon_from_postgres(
    cluster: Cluster, a1: tuple[Path, Path], tmp_path: Path
) -> None:
    home, url = _setup(cluster, a1, tmp_path)
    proxy = TcpProxy(cluster.port)
    via_proxy = url.replace(f":{cluster.port}/", f":{proxy.port}/")
    port = free_port()
    try:
        with daemon(home, tmp_path / "d.log", f"--port={port}", f"--database={via_proxy}", "--no-workers"):
            dep = mu(home, "deploy", f"--target={ENV}", f"--enforcer={a1[1]}")
            assert dep.returncode == 0, dep.stdout + dep.stderr
            load = Load(port, _token(home), "p").start()
            try:
                assert wait_until(lambda: len(load.answered) >= 100, 60)
                proxy.partition()
                answered_at_cut = len(load.answered)
                assert wait_until(lambda: sum(load.codes.values()) >= 2, 60), load.statuses
                # cut off, it gave no decision at all (at most the ones in flight at the cut)
                assert len(load.answered) <= answered_at_cut + 16
                proxy.heal()
                before = len(load.answered)
                assert wait_until(lambda: len(load.answered) >= before + 100, 90), (load.statuses, load.codes)
            finally:
                load.stop()
    finally:
        proxy.close()
    assert set(load.codes) <= UNAVAILABLE, load.codes
    assert set(load.statuses) <= {200, 503}, load.statuses
    logged = _logged(cluster, url)
    for decision_id, tx_id in load.answered.items():
        assert logged.get(int(decision_id)) == tx_id  # nothing answered unlogged
    _verify(home, url)
