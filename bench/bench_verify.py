"""`mu decisions verify` over a large decision log: every leaf, link and the Merkle root recomputed.

    python3 bench/bench_verify.py [--decisions 1000000] [--json]

Builds, in a temporary store, a decision log of N decisions through the library (the daemon's
own group-commit writer, ``DecisionWriter``, with the tree-head keeper following it: rows,
leaves, links and signed heads exactly as a running daemon writes them, without HTTP), a mix of
approvals and rejections whose transactions look like the daemon's (about 0.5 KB a row). Then
times:

- ``mu decisions verify --env=bench --json`` end to end as a child process (interpreter start,
  imports, reading every row, the leaf of each row's RFC 8785 record, every link, the Merkle
  root against the newest signed head);
- in-process, its phases: reading the rows from SQLite only; reading them as chain rows (the
  record bytes built); the whole verification.

Target: 1,000,000 decisions verified in < 30 s. No timed assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

c.ensure_package()

from finops_fabric.daemon import decision_log as dl  # noqa: E402
from finops_fabric.daemon.tree_heads import HeadKeeper, HeadsConfig, decision_heads  # noqa: E402
from finops_fabric.store import Store  # noqa: E402
from finops_fabric.transparency import gather_heads, verify_log  # noqa: E402

ENV = "bench"
ENFORCER = "sha256:" + "e" * 64
RECEIPT = "sha256:" + "f" * 64


def entry(i: int) -> dl.LoggedDecision:
    reject = i % 3 == 0
    tx = {
        "id": f"tx-{i:08d}",
        "type": "wire" if i % 2 else "purchase",
        "amount": Decimal(f"{(i * 7919) % 250_000}.{i % 100:02d}"),
        "currency": "USD",
        "actor_id": f"u-{i % 97}",
        "actor_level": ("L1", "L2", "L3", "CFO")[i % 4],
        "approver_id": f"u-{i % 89}",
        "executor_id": f"u-{i % 83}",
        "attributes": {"country": "US", "vendor_risk": "low"},
    }
    fired = [{"rule": "https://example.com/acme/policy#approval-purchase", "reason": "amount over 100000"}]
    decision = {
        "transaction_id": tx["id"],
        "decision": "REJECT" if reject else "APPROVE",
        "fired": fired if reject else [],
        "notifications": [],
        "audit": [],
        "enforcer_hash": ENFORCER,
    }
    return dl.LoggedDecision.of(ENV, tx, decision, ENFORCER, RECEIPT)


def log_chunk(writer: dl.DecisionWriter, base: int, count: int) -> None:
    """Queue ``count`` decisions and wait until every one is committed."""
    left = [count]
    done_all = threading.Event()
    lock = threading.Lock()

    def done(row_id: int | None, exc: BaseException | None) -> None:
        if exc is not None:
            raise SystemExit(f"logging a decision failed: {exc}")
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done_all.set()

    for i in range(base, base + count):
        writer.submit(entry(i), (), done)
    done_all.wait()


def build(store: Store, n: int) -> float:
    """Log ``n`` decisions through the daemon's writer (groups of up to 1,024), heads signed."""
    started = time.perf_counter()
    writer = dl.DecisionWriter(dl.db_path(store.home, ENV), max_batch=1024)
    keeper = HeadKeeper(store, ENV, writer, HeadsConfig(interval=3600))
    keeper.boot()
    chunk = 20_000
    for base in range(0, n, chunk):
        log_chunk(writer, base, min(chunk, n - base))
        print(f"  … {min(base + chunk, n):,} decisions logged", file=sys.stderr, flush=True)
    keeper.close()
    return time.perf_counter() - started


def phases(store: Store) -> dict[str, float]:
    path = dl.db_path(store.home, ENV)
    out: dict[str, float] = {}
    conn = dl.connect(path, readonly=True)
    try:
        t = time.perf_counter()
        for _ in conn.execute("SELECT * FROM decisions ORDER BY id"):
            pass
        out["read rows (SQLite only)"] = time.perf_counter() - t
        t = time.perf_counter()
        for _ in dl.log_rows(conn):
            pass
        out["read rows + RFC 8785 record bytes"] = time.perf_counter() - t
        from finops_fabric.audit import default_trust

        heads, problems = gather_heads(
            decision_heads(store, ENV), [], default_trust(store).keys, log="decisions", env=ENV
        )
        t = time.perf_counter()
        report = verify_log(dl.log_rows(conn), heads, noun="decision")
        out["whole verification (leaves, links, Merkle root, head)"] = time.perf_counter() - t
        assert report.verified and not problems, report.summary()
    finally:
        conn.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = args.decisions
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        store = Store(Path(tmp) / "store")
        store.init()
        print(f"logging {n:,} decisions through DecisionWriter …", file=sys.stderr, flush=True)
        build_s = build(store, n)
        db = dl.db_path(store.home, ENV)
        size_mb = os.path.getsize(db) / 1e6
        env = {**os.environ, "FABRIC_HOME": str(store.home)}
        t = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "finops_fabric.cli", "decisions", "verify", f"--env={ENV}", "--json"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        cli_s = time.perf_counter() - t
        if p.returncode != 0:
            raise SystemExit(
                f"mu decisions verify failed ({p.returncode}): {p.stdout[-800:]} {p.stderr[-800:]}"
            )
        doc = json.loads(p.stdout)
        ph = phases(store)
    out: dict[str, Any] = {
        "decisions": n,
        "database_mb": round(size_mb, 1),
        "build_seconds": round(build_s, 2),
        "build_decisions_per_second": round(n / build_s),
        "cli_verify_seconds": round(cli_s, 2),
        "cli_verify_decisions_per_second": round(n / cli_s),
        "summary": doc["summary"],
        "phases_seconds": {k: round(v, 3) for k, v in ph.items()},
        "target": "1,000,000 decisions verified in < 30 s",
        "machine": c.machine(),
    }
    if args.json:
        c.emit_json(out)
        return 0
    rate = n / build_s
    print(f"decision log of {n:,} decisions, {size_mb:,.0f} MB (logged in {build_s:.1f} s, {rate:,.0f}/s)")
    print(f"  `mu decisions verify --json` as a child process: {cli_s:.2f} s ({n / cli_s:,.0f} decisions/s)")
    print(f"  {doc['summary']}")
    print("  in-process phases:")
    for name, secs in ph.items():
        print(f"    {name:<55} {secs:8.2f} s {secs / n * 1e6:8.2f} µs/decision")
    print(f"  target: {out['target']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
