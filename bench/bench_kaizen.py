"""`mu kaizen` (generator v1 → v2) on synthetic policies: cases compared and wall time.

    python3 bench/bench_kaizen.py [--rules 15,100,200] [--repeat 2] [--json]

For each size a policy is written (bench/policies.py, seed 0) and ``finops_fabric.kaizen.kaizen``
runs in-process in a fresh store, alternating between one process (the split threshold raised
out of reach) and the default (with 20,000 cases or more, half of them compared in a forked
child), so the ratio comes from one sitting. Each figure is the best of --repeat runs. The
example policy gives 3,184 cases; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import policies

c.ensure_package()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", default="15,100,200", help="comma-separated policy sizes")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    import finops_fabric.kaizen as kz
    from finops_fabric.store import Store

    split_from = kz.PARALLEL_FROM
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-kaizen-") as tmp:
        root = Path(tmp)
        for n in (int(x) for x in a.rules.split(",")):
            onto = policies.write_policy(root / f"O{n}", n).parent
            best = {"one process": float("inf"), "split": float("inf")}
            cases = 0
            for r in range(a.repeat):
                for mode, threshold in (("one process", 10**12), ("split", split_from)):
                    kz.PARALLEL_FROM = threshold
                    store = Store(root / f"store-{n}-{r}-{mode.replace(' ', '-')}")
                    store.init()
                    start = time.perf_counter()
                    result = kz.kaizen(onto, "1", "2", store)
                    best[mode] = min(best[mode], time.perf_counter() - start)
                    cases = result.cases_compared
                    if not result.behaviour_equivalent:
                        raise SystemExit(f"{n} rules: v1 and v2 are not equivalent: {result.verdict}")
            rows.append(
                {
                    "rules": n,
                    "cases": cases,
                    "one_process_s": round(best["one process"], 2),
                    "split_s": round(best["split"], 2),
                    "ratio": round(best["one process"] / best["split"], 2),
                    "split_used": cases >= split_from,
                }
            )
    kz.PARALLEL_FROM = split_from
    if a.json:
        c.emit_json({"machine": c.machine(), "runs": rows})
        return
    print(f"mu kaizen v1 → v2 (best of {a.repeat}, alternating); machine: {c.machine_line()}")
    print(
        c.table(
            [
                (r["rules"], f"{r['cases']:,}", r["one_process_s"], r["split_s"], r["ratio"], r["split_used"])
                for r in rows
            ],
            ("rules", "cases", "one process s", "split s", "ratio", "split used"),
        )
    )


if __name__ == "__main__":
    main()
