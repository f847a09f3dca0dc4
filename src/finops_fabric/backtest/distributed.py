"""The Dask engine: the same partitions the local engine runs, on a Dask distributed cluster.

Each partition (one Parquet file of the data set) is decided, checked against both enforcers and
counted by :func:`~finops_fabric.backtest.run.run_partition` on a worker, which rebuilds the
kernels from the typed models and the enforcers from A's files (verified against the manifest
there too). The partial tallies come back and are merged in partition order, so every count is
the one the local engine gives. The workers need this package installed; they read the data
set's files by the paths given, so every worker must see them (a shared or object store).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finops_fabric.backtest.run import PartitionResult, PartitionSpec, Progress, run_partition
from finops_fabric.errors import InputError


def run_on_dask(
    specs: Sequence[PartitionSpec], scheduler: str | None, progress: Progress | None = None
) -> list[PartitionResult]:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # the `dask` extra is not installed
        raise InputError(
            "--engine=dask needs Dask distributed (install finops-fabric[dask])", code="backtest.no_dask"
        ) from exc
    if not scheduler:
        raise InputError("--engine=dask needs --scheduler=ADDRESS", code="cli.usage")
    try:
        client = Client(scheduler, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise InputError(
            f"cannot reach the Dask scheduler at {scheduler}: {exc}", code="backtest.scheduler_unreachable"
        ) from exc
    try:
        keys = [f"backtest-{i}" for i in range(len(specs))]
        futures = client.map(run_partition, list(specs), key=keys, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(specs)
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            result = future.result()
            results[index[future.key]] = result
            if progress is not None:
                progress.advance(result.tally.rows)
        return results
    finally:
        client.close()  # type: ignore[no-untyped-call]
