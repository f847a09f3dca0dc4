"""The store's files are private whatever the umask: directories 0700, files 0600 (SQLite's
-wal and -shm too); and `mu generate` removes the `.A.partial-*` directories a killed run left."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from finops_fabric.daemon import decision_log, outbox
from finops_fabric.daemon.client import DaemonInfo, write_discovery
from finops_fabric.files import private_dir, private_file
from finops_fabric.pipeline import PARTIAL_MAX_AGE_S, generate, sweep_partials
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[2] / "src" / "finops_fabric" / "examples" / "acme"


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, str]:
    """Every path under ``root`` (and root) -> its permission bits, in octal."""
    out = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = oct(stat.S_IMODE(p.lstat().st_mode))
    return out


def not_private(root: Path) -> dict[str, str]:
    return {
        name: mode
        for name, mode in modes(root).items()
        if mode != ("0o700" if (root / name).is_dir() else "0o600")
    }


def test_private_dir_and_file(tmp_path: Path, umask_000: None) -> None:
    d = private_dir(tmp_path / "a" / "b" / "c")
    assert modes(tmp_path / "a") == {".": "0o700", "b": "0o700", "b/c": "0o700"}
    f = private_file(d / "x.db")
    assert oct(stat.S_IMODE(f.stat().st_mode)) == "0o600" and f.read_bytes() == b""
    f.write_bytes(b"kept")
    private_file(f)  # an existing file is left alone
    assert f.read_bytes() == b"kept"
    existing = tmp_path / "open"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    private_dir(existing)  # an existing directory is left alone
    assert oct(stat.S_IMODE(existing.stat().st_mode)) == "0o755"


def test_store_is_private_under_umask_000(tmp_path: Path, umask_000: None) -> None:
    store = Store(tmp_path / ".fabric")
    store.init()
    store.put_object(b"one", "blob")
    store.cache_put("k", b"v")
    store.append({"kind": "note", "what": "a receipt in the ledger"})
    # the daemon's files
    write_discovery(store, DaemonInfo("test", "127.0.0.1", 1, os.getpid(), "now"), "hint", False)
    writer = decision_log.DecisionWriter(decision_log.db_path(store.home, "test"))
    conn = outbox.open_db(outbox.db_path(store.home, "test"))
    try:
        h = "sha256:" + "a" * 64
        d = {"transaction_id": "t", "decision": "APPROVE", "fired": [], "enforcer_hash": h}
        writer.write_sync(decision_log.LoggedDecision.of("test", {"id": "t"}, d, h, h))
        assert (store.home / "daemon-test.db-wal").exists() and (store.home / "daemon-test.db-shm").exists()
        assert not_private(store.home) == {}, modes(store.home)
    finally:
        conn.close()
        writer.close()
    assert not_private(store.home) == {}


def test_sweep_keeps_live_builds_and_removes_dead_ones(tmp_path: Path) -> None:
    output = tmp_path / "A"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        made = {
            "live": tmp_path / f".A.partial-{live.pid}-abcd1234",
            "mine": tmp_path / f".A.partial-{os.getpid()}-abcd1234",
            "dead": tmp_path / f".A.partial-{dead.pid}-abcd1234",
            "legacy_fresh": tmp_path / ".A.partial-k2j4h5g6",
            "legacy_old": tmp_path / ".A.partial-q1w2e3r4",
            "live_but_ancient": tmp_path / f".A.partial-{live.pid}-zzzz9999",
            "other_output": tmp_path / f".B.partial-{dead.pid}-abcd1234",
        }
        for p in made.values():
            (p / "rules").mkdir(parents=True)
            (p / "rules" / "r.py").write_text("x")
        ancient = time.time() - PARTIAL_MAX_AGE_S - 60
        for key in ("legacy_old", "live_but_ancient"):
            os.utime(made[key], (ancient, ancient))
        not_a_dir = tmp_path / f".A.partial-{dead.pid}-file"
        not_a_dir.write_text("a file, not ours to judge")
        removed = sweep_partials(output)
        assert sorted(removed) == sorted([made["dead"], made["legacy_old"], made["live_but_ancient"]])
        for key in ("live", "mine", "legacy_fresh", "other_output"):
            assert made[key].is_dir(), key
        assert not_a_dir.is_file()
    finally:
        live.kill()
        live.wait()


def test_generate_removes_what_a_killed_generate_left(tmp_path: Path) -> None:
    home = tmp_path / "store"
    Store(home).init()
    output = tmp_path / "out" / "A"
    output.parent.mkdir()
    run = subprocess.Popen(
        [sys.executable, "-m", "finops_fabric.cli", "generate", f"--input={ACME}", f"--output={output}"],
        env={**os.environ, "FABRIC_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    partial: list[Path] = []
    while not partial and run.poll() is None and time.monotonic() < deadline:
        partial = list(output.parent.glob(".A.partial-*"))
        time.sleep(0.005)
    run.send_signal(signal.SIGKILL)
    run.wait()
    if not partial:
        pytest.fail("the generate run ended before its partial directory could be seen")
    assert partial[0].name.startswith(f".A.partial-{run.pid}-")
    leftovers = list(output.parent.glob(".A.partial-*"))
    assert leftovers, "SIGKILL left nothing behind (the run may have finished first)"
    res = generate(ACME, output, Store(home))
    assert res.status == "generated"
    assert list(output.parent.glob(".A.partial-*")) == []
    assert sorted(p.name for p in output.parent.iterdir()) == ["A"]
