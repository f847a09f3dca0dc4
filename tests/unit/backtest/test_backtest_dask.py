"""`--engine=dask`: the same back-test on a Dask distributed cluster (a LocalCluster of two
workers), one partition per Parquet file, with the counts of the local engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from harness import changed_example, copy_example

from finops_fabric.backtest.simulate import transactions


def _parquet_dir(root: Path, parts: int, rows: int) -> Path:
    root.mkdir()
    start = 0
    for p in range(parts):
        flat = []
        for i, tx in enumerate(transactions(rows, seed=p, start=start)):
            row = {k: v for k, v in tx.items() if k != "attributes"}
            row.update({f"attributes.{k}": v for k, v in tx["attributes"].items()})
            row["amount"] = str(row["amount"])
            row["timestamp"] = f"2026-0{1 + p}-{1 + i % 28:02d}T00:00:00Z"
            flat.append(row)
        pq.write_table(pa.Table.from_pylist(flat), root / f"part-{p}.parquet")
        start += rows
    return root


def _mu_child(*args: str) -> subprocess.CompletedProcess[str]:
    """mu in a process of its own on the test's store (a Dask client's threads stay there)."""
    return subprocess.run(
        [sys.executable, "-m", "finops_fabric.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=600,
    )


def _cluster_child() -> subprocess.Popen[str]:
    """A LocalCluster of two workers in a child process (Dask's threads never join the test
    process, where other tests count threads before they fork)."""
    code = (
        "import sys\n"
        "from distributed import LocalCluster\n"
        "with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,"
        " protocol='tcp', dashboard_address=None) as c:\n"
        "    print(c.scheduler_address, flush=True)\n"
        "    sys.stdin.read()\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_dask_engine_counts_as_the_local_engine(mu: Any, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    old, new = copy_example(tmp_path, "O"), changed_example(tmp_path, "O2")
    data = _parquet_dir(tmp_path / "data", parts=3, rows=1500)
    local = mu.json("backtest", f"--old={old}", f"--new={new}", f"--transactions={data}", "--batch-size=500")
    child = _cluster_child()
    try:
        assert child.stdout is not None
        address = child.stdout.readline().strip()
        assert address.startswith("tcp://"), address
        # the Dask client runs in a mu process of its own, on the same store
        done = _mu_child(
            "backtest",
            f"--old={old}",
            f"--new={new}",
            f"--transactions={data}",
            "--batch-size=500",
            "--engine=dask",
            f"--scheduler={address}",
            "--json",
        )
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=60)
    assert done.returncode == 0, done.stderr
    remote = json.loads(done.stdout)
    assert remote["engine"] == "dask" and local["engine"] == "local"
    assert local["rows"] == remote["rows"] == 4500
    assert local["data"]["partitions"] == 3
    skip = {"engine", "receipt_hash"}
    assert {k: v for k, v in remote.items() if k not in skip} == {
        k: v for k, v in local.items() if k not in skip
    }
    assert local["flips"]["REJECT→APPROVE"] > 0


def test_an_unreachable_scheduler_is_bad_input(mu: Any, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    old = copy_example(tmp_path, "O")
    data = _parquet_dir(tmp_path / "data", parts=1, rows=10)
    done = _mu_child(
        "backtest",
        f"--old={old}",
        f"--new={old}",
        f"--transactions={data}",
        "--engine=dask",
        "--scheduler=tcp://127.0.0.1:9",
        "--no-receipt",
    )
    assert done.returncode == 2 and "cannot reach the Dask scheduler" in done.stderr, done.stderr
