"""Fleet membership in one test process: two runtimes of one environment (as two daemon
processes have), each with its FleetMember on the store's database. A deployment through one is
recorded and followed by the other (boot from the store's snapshot, golden cases, switch);
wait_for reports every live process serving it; a follower whose boot fails keeps its A, says
why, and is named; a process whose heartbeat expired is not waited for; a rollback travels the
same way."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finops_fabric.daemon import fleet
from finops_fabric.daemon.runtime import Runtime
from finops_fabric.pipeline import generate
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
ENV = "test"


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Path, dict[str, Any], Path, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("member")
    store = Store(root / "store")
    store.init()
    o2 = root / "O2"
    shutil.copytree(ACME, o2)
    wires = o2 / "wires.ttl"
    wires.write_text(wires.read_text().replace('"1000000"', '"2000000"'))
    g1 = generate(ACME, root / "A1", store)
    g2 = generate(o2, root / "A2", store)
    assert g1.status == g2.status == "generated"
    yield root / "store", root / "A1", g1.receipt, root / "A2", g2.receipt


def _copy(built: tuple[Path, Path, dict[str, Any], Path, dict[str, Any]], tmp_path: Path) -> Store:
    shutil.copytree(built[0], tmp_path / "store")
    return Store.open(str(tmp_path / "store"))


def _member(store: Store, name: str) -> tuple[Runtime, fleet.FleetMember]:
    runtime = Runtime(store, ENV)
    runtime.restore()
    member = fleet.FleetMember(
        fleet.FleetState.open(store.home, ENV), runtime, f"http://{name}", process=name
    )
    member.start()
    return runtime, member


def test_a_deployment_reaches_every_member_and_a_rollback_too(
    built: tuple[Path, Path, dict[str, Any], Path, dict[str, Any]], tmp_path: Path
) -> None:
    store = _copy(built, tmp_path)
    _home, a1, r1, a2, r2 = built
    one, m1 = _member(store, "one")
    two, m2 = _member(store, "two")
    state = fleet.FleetState.open(store.home, ENV)
    try:
        first = one.deploy(a1, r1["receipt_hash"])
        assert first.ok
        h1 = first.to_dict()["enforcer_hash"]
        live, lagging = fleet.wait_for(state.processes, h1, timeout=20)
        assert lagging == []
        assert {p["process"] for p in live} == {"one", "two"}
        assert two.active is not None and two.active.hash == h1
        assert two.active.deployment_receipt_hash == first.receipt["receipt_hash"]  # the same deployment

        second = two.deploy(a2, r2["receipt_hash"])  # any member may deploy
        h2 = second.to_dict()["enforcer_hash"]
        assert fleet.wait_for(state.processes, h2, timeout=20)[1] == []
        assert one.active is not None and one.active.hash == h2

        back = one.deploy(a1, r1["receipt_hash"], kind="rollback")
        assert back.ok
        assert fleet.wait_for(state.processes, h1, timeout=20)[1] == []
        assert two.active is not None and two.active.hash == h1
        assert len(store.receipts("deployment")) == 2  # followers append no receipt of their own
    finally:
        m1.stop()
        m2.stop()
        state.close()


def test_a_member_that_cannot_boot_the_new_a_keeps_its_own_and_is_named(
    built: tuple[Path, Path, dict[str, Any], Path, dict[str, Any]], tmp_path: Path
) -> None:
    store = _copy(built, tmp_path)
    _home, a1, r1, a2, r2 = built
    one, m1 = _member(store, "one")
    two, m2 = _member(store, "two")
    state = fleet.FleetState.open(store.home, ENV)
    try:
        h1 = one.deploy(a1, r1["receipt_hash"]).to_dict()["enforcer_hash"]
        assert fleet.wait_for(state.processes, h1, timeout=20)[1] == []

        def refuse(enforcer: Any) -> None:
            raise RuntimeError("no memory for another A")

        two.boot_hook = refuse
        h2 = one.deploy(a2, r2["receipt_hash"]).to_dict()["enforcer_hash"]
        _live, lagging = fleet.wait_for(state.processes, h2, timeout=20)
        assert [lag.process for lag in lagging] == ["two"]
        assert lagging[0].serving == h1  # it kept the A it had
        assert "no memory for another A" in (lagging[0].problem or "")
        assert "two at http://two serves sha256:" in lagging[0].describe()
        assert two.active is not None and two.active.hash == h1
    finally:
        m1.stop()
        m2.stop()
        state.close()


def test_a_dead_member_is_not_waited_for_and_a_stopped_one_leaves(
    built: tuple[Path, Path, dict[str, Any], Path, dict[str, Any]], tmp_path: Path
) -> None:
    store = _copy(built, tmp_path)
    _home, a1, r1, _a2, _r2 = built
    state = fleet.FleetState.open(store.home, ENV)
    one, m1 = _member(store, "one")
    try:
        # a process that died without leaving: its row stays, its heartbeat stops
        state.beat("ghost", 999999, "http://ghost", None, 0, False, None)
        assert {p["process"] for p in state.processes() if p["alive"]} == {"one", "ghost"}
        h1 = one.deploy(a1, r1["receipt_hash"]).to_dict()["enforcer_hash"]
        _live, lagging = fleet.wait_for(state.processes, h1, timeout=0.2)
        assert [lag.process for lag in lagging] == ["ghost"]  # alive (for now) and not serving it
        time.sleep(0.2)
        live, lagging = fleet.wait_for(
            state.processes, h1, timeout=fleet.PROCESS_TTL_S + 2, interval=0.2
        )  # its heartbeat expires meanwhile
        assert lagging == []
        assert [p["process"] for p in live] == ["one"]
    finally:
        m1.stop()
    left = {p["process"]: p for p in state.processes()}
    assert not left["one"]["alive"] and left["one"]["problem"] == "stopped"  # it said so on a clean stop
    state.close()
