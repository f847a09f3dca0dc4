"""`mu kaizen` (generator v1 → v2 unless told otherwise) on synthetic policies: the cases compared
(the case set complete for O, plus golden, refused-input and seeded random cases), wall time,
CPU time and cases per second.

    python3 bench/bench_kaizen.py [--rules 15,100,200] [--repeat 2] [--modes "one process,split"]
                                  [--from 1 --to 2] [--json]
    python3 bench/bench_kaizen.py --rules 1000 --repeat 1 --modes split   # the 1,000-rule figure

For each size a policy is written (bench/policies.py, seed 0) and ``finops_fabric.kaizen.kaizen``
runs in-process in a fresh store, alternating between the modes asked for: "one process" (the
split threshold raised out of reach: every case compared here) and "split" (the default: from
5,000 cases on, one slice per CPU in forked children; the case set and the determinism check's
second builds are made in forked children while the enforcers load, in both modes). Each figure
is the best of --repeat runs; CPU time counts this process and its children. Nothing is asserted
about time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import policies

c.ensure_package()

MODES = ("one process", "split")


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", default="15,100,200", help="comma-separated policy sizes")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of: {', '.join(MODES)}")
    ap.add_argument("--from", dest="old", default="1", help="the generator in use (default 1)")
    ap.add_argument("--to", dest="new", default="2", help="the newer generator (default 2)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise SystemExit(f"--modes: choose among {', '.join(MODES)}")

    import finops_fabric.kaizen as kz
    from finops_fabric.store import Store

    split_from = kz.PARALLEL_FROM
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-kaizen-") as tmp:
        root = Path(tmp)
        for n in (int(x) for x in a.rules.split(",")):
            onto = policies.write_policy(root / f"O{n}", n).parent
            best = {mode: (float("inf"), 0.0) for mode in modes}
            result = None
            for r in range(a.repeat):
                for mode in modes:
                    kz.PARALLEL_FROM = 10**12 if mode == "one process" else split_from
                    store = Store(root / f"store-{n}-{r}-{mode.replace(' ', '-')}")
                    store.init()
                    start, cpu = time.perf_counter(), _cpu()
                    result = kz.kaizen(onto, a.old, a.new, store)
                    took = (time.perf_counter() - start, _cpu() - cpu)
                    best[mode] = min(best[mode], took)
                    if a.old in ("1", "2") and a.new in ("1", "2") and not result.behaviour_equivalent:
                        raise SystemExit(f"{n} rules: v1 and v2 are not equivalent: {result.verdict}")
            assert result is not None
            row: dict[str, Any] = {
                "rules": n,
                "generators": f"v{a.old} → v{a.new}",
                "verdict": result.verdict,
                "cases": result.cases_compared,
                "by_category": {k: v for k, v in result.cases.items() if v},
                "case_set": result.case_set,
            }
            for mode in modes:
                wall, cpu = best[mode]
                key = mode.replace(" ", "_")
                row[f"{key}_s"] = round(wall, 2)
                row[f"{key}_cpu_s"] = round(cpu, 2)
                row[f"{key}_cases_per_s"] = round(result.cases_compared / wall)
            if len(modes) == 2:
                row["ratio"] = round(best["one process"][0] / best["split"][0], 2)
            rows.append(row)
    kz.PARALLEL_FROM = split_from
    if a.json:
        c.emit_json({"machine": c.machine(), "runs": rows})
        return
    print(f"mu kaizen v{a.old} → v{a.new} (best of {a.repeat}, alternating); machine: {c.machine_line()}")
    header = ["rules", "cases", "complete"]
    for mode in modes:
        header += [f"{mode} s", f"{mode} CPU s", f"{mode} cases/s"]
    if len(modes) == 2:
        header.append("ratio")
    table = []
    for r in rows:
        line: list[object] = [r["rules"], f"{r['cases']:,}", f"{r['by_category'].get('complete', 0):,}"]
        for mode in modes:
            key = mode.replace(" ", "_")
            line += [r[f"{key}_s"], r[f"{key}_cpu_s"], f"{r[f'{key}_cases_per_s']:,}"]
        if len(modes) == 2:
            line.append(r["ratio"])
        table.append(line)
    print(c.table(table, header))
    for r in rows:
        cs = r["case_set"]
        print(
            f"{r['rules']} rules: {r['verdict']}; case set {cs.get('kind')} over {cs.get('type_atoms')} type "
            f"atoms, languages {', '.join(cs.get('languages', []))}: parts {cs.get('parts')}, "
            f"combinations covered {cs.get('combinations')}; compared by category {r['by_category']}"
        )


if __name__ == "__main__":
    main()
