"""What the daemon's health costs: the once-a-second assessment of the notification path, and a
`/v1/health` poll.

    python3 bench/bench_health.py [--quick] [--json]

``delivery.assess`` (SMTP configuration, the worker's transport row, the count and oldest of the
waiting notifications) runs once a second in the daemon's outbox thread; it is timed on an
outbox with 300,000 delivered rows and 0, 10,000 and 100,000 waiting. The health source a
`/v1/health` request calls is timed alone: it copies the last assessment and does no I/O.
Method: best of several repeats (timeit-style).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

c.ensure_package()


def _add(conn: Any, n: int, state: str) -> None:
    now = time.time()
    base = conn.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO outbox (kind, idempotency_key, payload, state, next_attempt_at, created_at)"
        " VALUES ('notification', ?, '{}', ?, ?, ?)",
        [(f"k{base + i}", state, now, now - i * 0.001) for i in range(n)],
    )
    conn.execute("COMMIT")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller outbox (30k delivered, up to 10k waiting)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from finops_fabric.daemon import delivery, outbox
    from finops_fabric.daemon.effects import _health_of
    from finops_fabric.store import Store

    delivered = 30_000 if args.quick else 300_000
    steps = [0, 10_000] if args.quick else [0, 10_000, 90_000]
    repeat = 3 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        home = Path(tmp)
        Store(home).init()
        (home / "config.json").write_text(json.dumps({"smtp": {"host": "127.0.0.1", "port": 2525}}))
        conn = outbox.open_db(outbox.db_path(home, "bench"), synchronous="NORMAL")
        try:
            _add(conn, delivered, "delivered")
            rows: list[dict[str, Any]] = []
            waiting = 0
            for step in steps:
                _add(conn, step, "pending")
                waiting += step
                best, _n, _runs = c.best_of(lambda: delivery.assess(home, conn), repeat, 0.1)
                rows.append({"delivered": delivered, "waiting": waiting, "assess_ms": round(best * 1000, 3)})

            class _Supervisor:
                def status(self) -> dict[str, Any]:
                    return {"notification": {"state": "running", "pid": 1, "restarts": 0}}

            source = _health_of(_Supervisor(), "notification", delivery.assess(home, conn))  # type: ignore[arg-type]
            poll, _n, _runs = c.best_of(source, repeat)
        finally:
            conn.close()
    doc = {"assess": rows, "health_source_us": round(poll * 1e6, 3), "machine": c.machine()}
    if args.json:
        c.emit_json(doc)
        return 0
    print("delivery.assess (once a second in the daemon's outbox thread):")
    print(
        c.table(
            [(r["delivered"], r["waiting"], f"{r['assess_ms']:.2f}") for r in rows],
            ["delivered", "waiting", "ms"],
        )
    )
    print(f"/v1/health's notification source per call (no I/O): {poll * 1e6:.2f} µs")
    print(c.machine_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
