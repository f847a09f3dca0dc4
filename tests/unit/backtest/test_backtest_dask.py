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


#: Dask starts threads (an event loop, thread pools) that outlive a cluster and a client in the
#: process; other tests rely on no thread running in the test process (they fork), so the Dask
#: side of these tests runs in a child process of its own.
CHILD = """
import contextlib, io, json, sys
from distributed import LocalCluster
from finops_fabric.cli import main

args = json.loads(sys.argv[1])
with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
    if args and args[0] == "--here":
        args = args[1:] + [f"--scheduler={cluster.scheduler_address}"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
print(json.dumps({"code": code, "out": out.getvalue()}))
"""


def _in_child(args: list[str], home: Path) -> tuple[int, str, str]:
    env = {**os.environ, "FABRIC_HOME": str(home)}
    p = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    return int(got["code"]), got["out"], p.stderr


def test_dask_engine_counts_as_the_local_engine(mu: Any, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    old, new = copy_example(tmp_path, "O"), changed_example(tmp_path, "O2")
    data = _parquet_dir(tmp_path / "data", parts=3, rows=1500)
    local = mu.json("backtest", f"--old={old}", f"--new={new}", f"--transactions={data}", "--batch-size=500")
    code, out, err = _in_child(
        [
            "--here",
            "backtest",
            f"--old={old}",
            f"--new={new}",
            f"--transactions={data}",
            "--batch-size=500",
            "--engine=dask",
            "--json",
        ],
        Path.cwd() / "store",
    )
    assert code == 0, err[-2000:]
    remote = json.loads(out)
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
    args = [f"--old={old}", f"--new={old}", f"--transactions={data}", "--engine=dask", "--no-receipt"]
    code, _, err = _in_child(["backtest", *args, "--scheduler=tcp://127.0.0.1:9"], Path.cwd() / "store")
    assert code == 2 and "cannot reach the Dask scheduler" in err
