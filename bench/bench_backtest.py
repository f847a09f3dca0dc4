"""`mu backtest` at scale: a Parquet file of transactions through old and new, and a decision log
replayed with fidelity checking.

    python3 bench/bench_backtest.py [--rows 10000000] [--history 100000] [--json]
    python3 bench/bench_backtest.py --history 1000000          # the full history run
    python3 bench/bench_backtest.py --rows 0 --database postgresql://USER@HOST/EMPTY_DB

Policies: the bundled example (acme) as O_old, and the same with the wire threshold raised from
1,000,000 to 2,000,000 as O_new; both decided by the default generator's enforcers.

1. file: --rows transactions (typed Parquet columns: decimal(18,2) amounts, dictionary-encoded
   codes, ids, a timestamp, two attributes) written once, then `mu backtest --old --new
   --transactions --no-regions` in a child process: its wall time and its peak RSS
   (getrusage of the child). In the same run: the kernel alone over the first 1,000,000 rows
   (both policies, per row per policy), and `decide` of the generated enforcers called in a
   Python loop over 100,000 of the same transactions (per row per policy): the ratio of the two.
2. history: --history decisions logged by the old A as the daemon logs them (hash chain, Merkle
   tree, a signed head), then `mu backtest --env --new --no-regions` in a child process: chain
   verification, every decision re-decided by its own enforcer and compared byte for byte, the
   new policy by the kernel. Wall time and peak RSS. With --database (an empty PostgreSQL
   database): the same decisions are also logged there and replayed from there
   (`mu backtest --env --database=URL`) in the same run, beside the SQLite figures.

Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

c.ensure_package()

EXAMPLE = c.REPO / "src" / "finops_fabric" / "examples" / "acme"


def policies(root: Path) -> tuple[Path, Path]:
    old = root / "O"
    shutil.copytree(EXAMPLE, old)
    new = root / "O2"
    shutil.copytree(EXAMPLE, new)
    wires = new / "wires.ttl"
    wires.write_text(wires.read_text().replace('"1000000"', '"2000000"'))
    return old, new


def write_parquet(path: Path, rows: int, seed: int = 0, chunk: int = 1_000_000) -> None:
    """``rows`` transactions, generated column by column with NumPy (amounts exact cents)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    types = pa.array(["purchase", "wire", "refund", "loan"])
    levels = pa.array(["L1", "L2", "L3", "CFO", "Board"])
    users = pa.array([f"u-{i}" for i in range(1, 201)])
    countries = pa.array(["US", "DE", "GB", "FR", "IR", "KP"])
    risks = pa.array(["low", "medium", "high"])
    days = pa.array(
        [(dt.date(2026, 1, 1) + dt.timedelta(days=d)).isoformat() + "T12:00:00Z" for d in range(365)]
    )
    writer = None
    try:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            cents = rng.integers(0, 300_000_000, n, dtype=np.int64)
            # exactly on the thresholds now and then
            on = rng.random(n) < 0.001
            cents[on] = rng.choice(np.array([100_000_000, 200_000_000, 10_000_000, 5_000_000]), on.sum())
            words = np.empty(2 * n, dtype=np.int64)
            words[0::2], words[1::2] = cents, cents >> 63
            amount = pa.Array.from_buffers(pa.decimal128(18, 2), n, [None, pa.py_buffer(words.tobytes())])

            def pick(values: pa.Array, p: Any = None, n: int = n) -> pa.DictionaryArray:
                idx = rng.choice(len(values), n, p=p).astype(np.int32)
                return pa.DictionaryArray.from_arrays(pa.array(idx), values)

            ids = pc.binary_join_element_wise(
                "tx-", pc.cast(pa.array(np.arange(start, start + n)), pa.string()), ""
            )
            table = pa.table(
                {
                    "id": ids,
                    "type": pick(types, [0.45, 0.35, 0.199, 0.001]),
                    "amount": amount,
                    "actor_level": pick(levels),
                    "approver_id": pick(users),
                    "executor_id": pick(users),
                    "timestamp": pick(days),
                    "attributes.country": pick(countries),
                    "attributes.vendor_risk": pick(risks),
                }
            )
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=256 * 1024)
    finally:
        if writer is not None:
            writer.close()


LAST_CPU: list[float] = [0.0]


def child(args: list[str], home: Path) -> tuple[float, float, int, dict[str, Any]]:
    """(wall seconds, peak RSS in MB, exit code, JSON) of one `mu` child process; its CPU
    seconds (its own and its worker processes') in LAST_CPU."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu_before = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    p = subprocess.run(
        [*c.mu_command(), *args, "--json"], capture_output=True, text=True, env=c.child_env(home), check=False
    )
    took = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = usage.ru_maxrss
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime - cpu_before
    if p.returncode not in (0, 1):
        raise SystemExit(f"mu {' '.join(args)} exited {p.returncode}: {p.stderr[-1500:]}")
    if peak <= before:
        peak = before  # ru_maxrss of children is the largest so far: this child did not exceed it
    return took, peak / 1024, p.returncode, json.loads(p.stdout)


def file_run(root: Path, rows: int, old: Path, new: Path, repeat: int = 3) -> dict[str, Any]:
    import pyarrow as pa

    from finops_fabric.backtest.columns import from_arrow
    from finops_fabric.backtest.kernel import Kernel
    from finops_fabric.backtest.sides import load_side
    from finops_fabric.backtest.sources import parquet_batches

    data = root / "tx.parquet"
    t0 = time.perf_counter()
    write_parquet(data, rows)
    written = time.perf_counter() - t0
    home = root / "store"
    took, rss, code, doc = child(
        [
            "backtest",
            f"--old={old}",
            f"--new={new}",
            f"--transactions={data}",
            "--no-regions",
            "--no-receipt",
        ],
        home,
    )
    # the kernel alone, and decide() in a loop, on the same transactions, in this process
    so, sn = load_side("old", old, None), load_side("new", new, None)
    ko, kn = Kernel(so.policy, so.language), Kernel(sn.policy, sn.language)
    attrs = ko.attributes() | kn.attributes()
    kernel_rows = min(rows, 1_000_000)
    batches = []
    got = 0
    for batch, _ in parquet_batches(data, attrs, 65_536):
        assert batch is not None
        batches.append(batch.source)
        got += batch.n
        if got >= kernel_rows:
            break
    kernel_rows = got

    def kernel() -> None:
        first = 1
        for table in batches:
            b = from_arrow(table, first, attrs)
            ko.decide(b)
            kn.decide(b)
            first += table.num_rows

    loop_rows = min(100_000, kernel_rows)
    sample = pa.concat_tables(batches).slice(0, loop_rows)
    txs = [
        {
            **{k: v for k, v in row.items() if not k.startswith("attributes.")},
            "attributes": {k[11:]: v for k, v in row.items() if k.startswith("attributes.")},
        }
        for row in sample.to_pylist()
    ]

    def loop() -> None:
        for tx in txs:
            so.enforcer.decide(tx)
            sn.enforcer.decide(tx)

    kernel_s, loop_s = float("inf"), float("inf")
    for _ in range(repeat):  # interleaved, so both see the same machine
        t0 = time.perf_counter()
        kernel()
        kernel_s = min(kernel_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop()
        loop_s = min(loop_s, time.perf_counter() - t0)
    kernel_per_row = kernel_s / (2 * kernel_rows)
    loop_per_row = loop_s / (2 * loop_rows)
    pipeline_per_row = took / (2 * rows)
    return {
        "rows": rows,
        "parquet_bytes": data.stat().st_size,
        "write_parquet_s": round(written, 2),
        "backtest_wall_s": round(took, 2),
        "backtest_peak_rss_mb": round(rss, 1),
        "backtest_cpu_s": round(LAST_CPU[0], 2),
        "backtest_exit": code,
        "rows_per_s": round(rows / took),
        "flips": doc["flips"],
        "changed_fired": doc["changed_fired"],
        "amount_flipped": doc["amount_flipped"],
        "rechecked_by_enforcers": doc["checked_by"]["rows_rechecked"],
        "kernel_rows": kernel_rows,
        "kernel_ns_per_row_per_policy": round(kernel_per_row * 1e9, 1),
        "decide_loop_rows": loop_rows,
        "decide_loop_ns_per_row_per_policy": round(loop_per_row * 1e9, 1),
        "kernel_speedup_over_decide_loop": round(loop_per_row / kernel_per_row, 1),
        "whole_backtest_ns_per_row_per_policy": round(pipeline_per_row * 1e9, 1),
        "whole_backtest_speedup_over_decide_loop": round(loop_per_row / pipeline_per_row, 1),
    }


def history_run(
    root: Path, rows: int, old: Path, new: Path, report: Path | None = None, database: str | None = None
) -> dict[str, Any]:
    from finops_fabric.backtest.simulate import generated, log_history, transactions
    from finops_fabric.store import Store

    home = root / ("hstore-pg" if database else "hstore")
    store = Store(home)
    store.init()
    enforcer, receipt = generated(store, old, root / "A_old")
    t0 = time.perf_counter()
    log_history(
        store,
        "bench",
        enforcer,
        receipt,
        transactions(rows, seed=1),
        start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        every=dt.timedelta(seconds=max(1, 365 * 86400 // max(rows, 1))),
        database=database,
    )
    logged = time.perf_counter() - t0
    flag = [f"--database={database}"] if database else []
    took, rss, code, doc = child(["backtest", "--env=bench", f"--new={new}", "--no-regions", *flag], home)
    text = None
    if report is not None:  # the same back-test with the regions, its text and its HTML report
        p = subprocess.run(
            [*c.mu_command(), "backtest", "--env=bench", f"--new={new}", f"--report={report}", *flag],
            capture_output=True,
            text=True,
            env=c.child_env(home),
            check=False,
        )
        text = p.stdout
    return {
        **({"text": text} if text is not None else {}),
        "decisions": rows,
        "log": "postgresql" if database else "sqlite",
        **({} if database else {"log_bytes": (home / "daemon-bench.db").stat().st_size}),
        "write_log_s": round(logged, 2),
        "backtest_wall_s": round(took, 2),
        "backtest_peak_rss_mb": round(rss, 1),
        "backtest_cpu_s": round(LAST_CPU[0], 2),
        "processes": doc.get("processes"),
        "backtest_exit": code,
        "reproducible": doc["reproducible"],
        "replayed": doc["fidelity"]["replayed"],
        "decisions_per_s": round(rows / took),
        "flips": doc["flips"],
        "receipt_hash": doc["receipt_hash"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="transactions in the Parquet file (0: skip)")
    ap.add_argument("--history", type=int, default=100_000, help="logged decisions to replay (0: skip)")
    ap.add_argument("--old", type=Path, help="O_old (default: the bundled example)")
    ap.add_argument("--new", type=Path, help="O_new (default: the example with the wire threshold raised)")
    ap.add_argument("--report", type=Path, help="history: also write the HTML report (and print the text)")
    ap.add_argument("--dir", help="where the data is written (default: the temporary directory)")
    ap.add_argument(
        "--database",
        metavar="URL",
        help="history: also log and replay it in this (empty) PostgreSQL database",
    )
    ap.add_argument("--repeat", type=int, default=3, help="in-process timings: the best of N runs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-backtest-", dir=args.dir))
    out: dict[str, Any] = {"machine": c.machine()}
    print(f"load average at start: {out['machine']['load_average_1_5_15']}", file=sys.stderr)
    try:
        old, new = policies(root)
        old, new = args.old or old, args.new or new
        if args.rows:
            out["file"] = file_run(root, args.rows, old, new, args.repeat)
        if args.history:
            out["history"] = history_run(root, args.history, old, new, args.report)
            if args.database:
                out["history_postgresql"] = history_run(root, args.history, old, new, None, args.database)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for section in ("file", "history", "history_postgresql"):
        if section in out:
            print(f"[{section}]")
            for k, v in out[section].items():
                if k != "text":
                    print(f"  {k:42} {v}")
            if "text" in out[section]:
                print(out[section]["text"])


if __name__ == "__main__":
    main()
