"""The decision log's group commit on each storage backend, with every decision's outbox rows
in the same transaction (what the daemon writes for each answered decision, without HTTP).

    python3 bench/bench_storage.py [--decisions=N] [--writers=1,2] [--database=postgresql://…] [--json]

SQLite: a temporary ``daemon-bench.db`` (WAL fsynced before a caller is told). PostgreSQL: the
database of ``--database`` (its tables are created if absent; durable as the server's
``synchronous_commit`` says, ``on`` by default), or, without it, a throwaway cluster made with
Debian's server binaries as the tests make it (skipped when they are missing). ``--writers=W``
runs W writers at once (W daemon processes' writers, each chaining to the rows of the others
under the log's lock). Reported: decisions per second from the first submit to the last commit.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import REPO, emit_json, ensure_package, machine_line

H = "sha256:" + "a" * 64


def run(storage: Any, n: int, writers: int) -> float:
    from finops_fabric.daemon import decision_log as dl

    ws = [storage.decision_writer() for _ in range(writers)]
    done = threading.Semaphore(0)
    failed: list[BaseException] = []

    def told(row_id: int | None, exc: BaseException | None) -> None:
        if exc is not None:
            failed.append(exc)
        done.release()

    t0 = time.perf_counter()
    for i in range(n):
        tx = {"id": f"tx-{i}", "type": "purchase", "amount": "1000.50", "actor_level": "L2"}
        dec = {
            "decision": "REJECT",
            "fired": [{"rule": "ex:r1"}],
            "notifications": [{"rule": "ex:r1", "recipient": "cfo@example.com"}],
            "audit": [],
        }
        entry = dl.LoggedDecision.of("bench", tx, dec, H, H, process="bench:1")
        ws[i % writers].submit(entry, [storage.effects_writer(dec, tx)], told)
    for _ in range(n):
        done.acquire()
    elapsed = time.perf_counter() - t0
    for w in ws:
        w.close()
    if failed:
        raise SystemExit(f"bench_storage: {len(failed)} decision(s) failed: {failed[0]}")
    return n / elapsed


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[Any]:
    """A function giving a fresh database URL per run (``None`` when no server is at hand)."""
    if url is not None:
        yield lambda _name: url
        return
    sys.path.insert(0, str(REPO / "tests" / "unit"))
    try:
        from services import postgres_bindir, postgres_cluster
    except ImportError:
        yield None
        return
    if postgres_bindir() is None:
        yield None
        return
    with postgres_cluster() as cluster:
        yield cluster.create_database


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--decisions", type=int, default=8000)
    ap.add_argument("--writers", default="1,2", help="writer counts to run, comma-separated")
    ap.add_argument("--database", help="a PostgreSQL URL (default: a throwaway cluster)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ensure_package()
    from finops_fabric.storage import open_storage, redact

    counts = [int(w) for w in args.writers.split(",") if w]
    results: list[dict[str, Any]] = []
    with postgres(args.database) as make_db:
        for writers in counts:
            home = Path(tempfile.mkdtemp(prefix="bench-storage-"))
            with open_storage(home, "bench") as s:
                results.append(
                    {"backend": "sqlite", "writers": writers, "per_s": run(s, args.decisions, writers)}
                )
            if make_db is None:
                continue
            url = make_db(f"bench_storage_{writers}_{int(time.time())}")
            with open_storage(home, "bench", url) as s:
                results.append(
                    {
                        "backend": "postgresql",
                        "database": redact(url),
                        "writers": writers,
                        "per_s": run(s, args.decisions, writers),
                    }
                )
    if args.json:
        emit_json({"decisions": args.decisions, "results": results})
        return 0
    print(machine_line())
    for r in results:
        print(f"{r['backend']:<10} writers={r['writers']}  {r['per_s']:>8,.0f} decisions/s")
    if not any(r["backend"] == "postgresql" for r in results):
        print("postgresql: not measured (no --database and no PostgreSQL server binaries here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
