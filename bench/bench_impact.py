"""`mu impact` and `mu analyze` on synthetic 1,000-rule policies: wall time of the command, and
where it goes.

    python3 bench/bench_impact.py [--rules 1000] [--repeat 2] [--json]

Four runs, each a `mu` child process timed from start to exit (the figure people wait for):
one threshold changed (bench/policies.py ``change_one_threshold``), the same decided by generator 1
on both sides (its enforcers load faster than the default generator's: that difference is the
generators', not the analysis'), two unrelated policies (seeds 0 and 1, the same rule IRIs with
other contents), and `mu analyze` of the seed-0 policy. Each is the best of --repeat runs (wall
time, and CPU time of the `mu` process with the children it forks: on a shared machine the
steadier figure); the breakdown of the impact runs (reading both O, the analysis, building both
enforcers and deciding the witnesses) is measured in-process in the same sitting. Nothing is
asserted about time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import policies

c.ensure_package()


def _cpu_of_children() -> float:
    t = os.times()
    return t.children_user + t.children_system


def _child(args: list[str], home: Path) -> tuple[float, float, dict[str, Any]]:
    """Wall time, CPU time (the `mu` process and every process it forked) and its document."""
    start, cpu = time.perf_counter(), _cpu_of_children()
    p = subprocess.run(
        [*c.mu_command(), *args, "--json"], capture_output=True, text=True, env=c.child_env(home), check=False
    )
    took, cpu = time.perf_counter() - start, _cpu_of_children() - cpu
    if p.returncode not in (0, 1):
        raise SystemExit(f"mu {' '.join(args)} exited {p.returncode}: {p.stderr[-800:]}")
    return took, cpu, json.loads(p.stdout)


def _phases(old: Path, new: Path) -> dict[str, float]:
    from finops_fabric.analysis.run import analyse, checked
    from finops_fabric.analysis.sides import side_of_path

    t0 = time.perf_counter()
    a, b = side_of_path(old, None), side_of_path(new, None)
    t1 = time.perf_counter()
    result = analyse(a, b)
    t2 = time.perf_counter()
    checked(result, a, b, lambda _: None)
    t3 = time.perf_counter()
    return {"read_s": t1 - t0, "analysis_s": t2 - t1, "enforcers_and_witnesses_s": t3 - t2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n = a.rules
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-impact-") as tmp:
        root = Path(tmp)
        base = policies.write_policy(root / "O", n, seed=0).parent
        changed = root / "O-changed"
        shutil.copytree(base, changed)
        edit = policies.change_one_threshold(changed)
        other = policies.write_policy(root / "O-other", n, seed=1).parent
        v1 = ["--old-generator=1", "--new-generator=1"]
        runs: list[tuple[str, list[str], tuple[Path, Path] | None]] = [
            (
                "impact, one threshold changed",
                ["impact", f"--old={base}", f"--new={changed}"],
                (base, changed),
            ),
            ("the same, generator 1", ["impact", f"--old={base}", f"--new={changed}", *v1], None),
            ("impact, two unrelated policies", ["impact", f"--old={base}", f"--new={other}"], (base, other)),
            ("analyze", ["analyze", f"--ontology={base}"], None),
        ]
        for label, args, pair in runs:
            best, best_cpu = float("inf"), float("inf")
            doc: dict[str, Any] = {}
            for _ in range(a.repeat):
                took, cpu, doc = _child(args, root / "store")
                best, best_cpu = min(best, took), min(best_cpu, cpu)
            row: dict[str, Any] = {
                "run": label,
                "rules": n,
                "wall_s": round(best, 2),
                "cpu_s": round(best_cpu, 2),
            }
            if args[0] == "impact":
                row["regions"] = len(doc["regions"])
                row["generators"] = (
                    f"v{doc['old']['generator']['version']}/v{doc['new']['generator']['version']}"
                )
                row.update({k: round(v, 2) for k, v in _phases(*pair).items()} if pair else {})
            else:
                row["findings"] = doc["findings"]
            rows.append(row)
    if a.json:
        c.emit_json({"machine": c.machine(), "changed_rule": edit, "runs": rows})
        return
    print(f"mu impact / mu analyze at {n} rules (best of {a.repeat}); machine: {c.machine_line()}")
    print(f"one threshold changed: {edit['rule']} {edit['old']} → {edit['new']}")
    print(
        c.table(
            [
                (
                    r["run"],
                    r.get("generators", ""),
                    r["wall_s"],
                    r["cpu_s"],
                    r.get("regions", r.get("findings")),
                    r.get("read_s", ""),
                    r.get("analysis_s", ""),
                    r.get("enforcers_and_witnesses_s", ""),
                )
                for r in rows
            ],
            (
                "run",
                "generators",
                "wall s",
                "CPU s",
                "regions/findings",
                "read O s",
                "analysis s",
                "enforcers+witnesses s",
            ),
        )
    )


if __name__ == "__main__":
    main()
