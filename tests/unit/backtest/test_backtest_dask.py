"""`--engine=dask`: the same back-test on a Dask distributed cluster (a LocalCluster of two
workers), one partition per Parquet file, with the counts of the local engine."""

from __future__ import annotations

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


def test_dask_engine_counts_as_the_local_engine(mu: Any, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    old, new = copy_example(tmp_path, "O"), changed_example(tmp_path, "O2")
    data = _parquet_dir(tmp_path / "data", parts=3, rows=1500)
    local = mu.json("backtest", f"--old={old}", f"--new={new}", f"--transactions={data}", "--batch-size=500")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        remote = mu.json(
            "backtest",
            f"--old={old}",
            f"--new={new}",
            f"--transactions={data}",
            "--batch-size=500",
            "--engine=dask",
            f"--scheduler={cluster.scheduler_address}",
        )
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
    code, _, err = mu(
        "backtest",
        f"--old={old}",
        f"--new={old}",
        f"--transactions={data}",
        "--engine=dask",
        "--scheduler=tcp://127.0.0.1:9",
        "--no-receipt",
    )
    assert code == 2 and "cannot reach the Dask scheduler" in err
