"""`mu generate` end to end, by policy size, and a one-rule change with --previous.

    python3 bench/bench_generate.py [--quick] [--sizes 15,1000,10000] [--json]
                                    [--repeat N] [--timeout S] [--phases] [--no-change]

For each size N (default 15, 1000, 10000; --quick: 15, 1000) it writes a synthetic policy
(bench/policies.py, seed 0), runs `mu init` in a fresh store (not timed), then times
`mu generate --input=O --output=A --receipt=R` as a child process: wall seconds and the
child's peak RSS (os.wait4's rusage of that child: the child and the children it waited
for, such as the canonicalization worker).

Then the one-rule change at 1000 rules: `change_one_threshold` on a copy of O and
`mu generate --previous=A_old` in the same store (its module cache warm, as for a user who
regenerates), with the modules regenerated vs reused from the receipt
(gates.waste_elimination.evidence) and outputs.changed.

--phases additionally runs the pipeline in-process once per size and splits its time by the
pipeline's own progress messages (load, gates, build, determinism, golden, replay, rest).

Method: each figure is the best of --repeat runs (default: 3 for N < 1000, else 1, since
large runs take minutes and noise is small relative to them); every run uses a fresh store.
Targets: 15 rules < 2 s; 1000 < 15 s; 10000 < 90 s and < 2 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import policies

c.ensure_package()

TARGETS = {15: (2.0, None), 1000: (15.0, None), 10000: (90.0, 2 * 1024**3)}
CHANGE_SIZE = 1000
CHANGE_TARGET_S = 15.0  # not a stated target: the same budget as a full 1000-rule generation


def run_child(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> dict[str, Any]:
    """Run ``cmd``; return exit code, wall seconds, peak RSS in bytes, stdout text, timed_out."""
    timed_out = threading.Event()
    with open(log.with_suffix(".out"), "wb") as out, open(log.with_suffix(".err"), "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return {
        "exit": proc.returncode,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_bytes": rss,
        "timed_out": timed_out.is_set(),
        "stdout": log.with_suffix(".out").read_text(encoding="utf-8", errors="replace"),
        "stderr": log.with_suffix(".err").read_text(encoding="utf-8", errors="replace"),
    }


def mu(args: list[str], home: Path, log: Path, timeout: float) -> dict[str, Any]:
    return run_child(c.mu_command() + args, c.child_env(home), log, timeout)


def init_store(home: Path, log: Path) -> None:
    r = mu(["init"], home, log, 120)
    if r["exit"] != 0:
        sys.exit(f"mu init failed: {r['stdout']}{r['stderr']}")


def _receipt(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def generate_once(
    work: Path,
    onto: Path,
    timeout: float,
    previous: Path | None = None,
    home: Path | None = None,
    tag: str = "",
) -> dict[str, Any]:
    fresh = home is None
    home = home or work / "home"
    if fresh:
        init_store(home, work / "init")
    out, receipt = work / f"A{tag}", work / f"receipt{tag}.json"
    args = ["generate", f"--input={onto}", f"--output={out}", f"--receipt={receipt}", "--json"]
    if previous is not None:
        args.append(f"--previous={previous}")
    r = mu(args, home, work / f"generate{tag}", timeout)
    rec = _receipt(receipt)
    gates = rec.get("gates") or {}
    waste = (gates.get("waste_elimination") or {}).get("evidence") or {}
    outputs = rec.get("outputs") or {}
    return {
        "exit": r["exit"],
        "timed_out": r["timed_out"],
        "wall_s": r["wall_s"],
        "cpu_s": r["cpu_s"],
        "peak_rss_bytes": r["peak_rss_bytes"],
        "status": {"generation": "generated", "rejection": "rejected"}.get(rec.get("kind", ""))
        or ("timeout" if r["timed_out"] else "failed"),
        "reason": rec.get("reason") or (r["stderr"].strip().splitlines() or [""])[-1],
        "gates": {k: v.get("status") for k, v in gates.items()},
        "golden": (gates.get("golden") or {}).get("evidence"),
        "modules_generated": waste.get("modules_generated"),
        "modules_reused_from_cache": waste.get("modules_reused_from_cache"),
        "changed": outputs.get("changed"),
        "blast_radius": (outputs.get("blast_radius") or {}),
        "output": str(out),
        "home": str(home),
    }


def phases(onto: Path, work: Path) -> dict[str, float]:
    """Seconds per pipeline phase, in-process, split at the pipeline's progress messages."""
    from finops_fabric.pipeline import generate
    from finops_fabric.store import Store

    store = Store(work / "home-phases")
    store.init()
    marks: list[tuple[str, float]] = []

    def progress(msg: str) -> None:
        marks.append((msg.split(":")[0].split(" with ")[0], time.perf_counter()))

    start = time.perf_counter()
    res = generate(onto, work / "A-phases", store, progress=progress)
    end = time.perf_counter()
    out: dict[str, float] = {}
    names = [m[0] for m in marks]
    times = [m[1] for m in marks] + [end]
    for i, name in enumerate(names):
        last = " (to the end: operational, waste, receipt)" if i == len(names) - 1 else ""
        out[name.replace(str(onto), "O") + last] = times[i + 1] - times[i]
    out[f"total ({res.status})"] = end - start
    return out


def best_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r["exit"] == 0]
    best = min(ok or runs, key=lambda r: r["wall_s"])
    return {
        **best,
        "runs_wall_s": [r["wall_s"] for r in runs],
        "runs_peak_rss_bytes": [r["peak_rss_bytes"] for r in runs],
    }


def _mb(b: int | None) -> str:
    return "-" if b is None else f"{b / 1024**2:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sizes 15,1000 (unless --sizes is given)")
    ap.add_argument("--sizes", help="comma-separated numbers of rules (default 15,1000,10000)")
    ap.add_argument("--repeat", type=int, help="runs per size (default: 3 below 1000 rules, else 1)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before a child is killed")
    ap.add_argument("--phases", action="store_true", help="also split each size's time by pipeline phase")
    ap.add_argument("--no-change", action="store_true", help="skip the one-rule change at 1000 rules")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--workdir", help="work in this (new or empty) directory and keep it, for inspection")
    args = ap.parse_args()
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([15, 1000] if args.quick else [15, 1000, 10000])
    )
    say = (lambda _msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))

    results: dict[int, dict[str, Any]] = {}
    phase_times: dict[int, dict[str, float]] = {}
    change: dict[str, Any] | None = None
    with contextlib.ExitStack() as stack:
        if args.workdir:
            root = Path(args.workdir)
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-generate-")))
        for n in sizes:
            onto = policies.write_policy(root / f"O{n}", n)
            repeat = args.repeat or (3 if n < 1000 else 1)
            runs = []
            for i in range(repeat):
                work = root / f"n{n}-run{i}"
                work.mkdir()
                say(f"… mu generate, {n} rules, run {i + 1}/{repeat}")
                runs.append(generate_once(work, onto, args.timeout))
            results[n] = best_run(runs)
            if args.phases:
                say(f"… in-process phases, {n} rules")
                (root / f"n{n}-phases").mkdir()
                phase_times[n] = phases(onto, root / f"n{n}-phases")
        if not args.no_change:
            base = results.get(CHANGE_SIZE)
            work = root / "change"
            work.mkdir()
            if base is None or base["exit"] != 0:
                say(f"… baseline generation at {CHANGE_SIZE} rules (not timed for the change)")
                onto = policies.write_policy(root / f"O{CHANGE_SIZE}", CHANGE_SIZE)
                base = generate_once(work, onto, args.timeout, tag="-old")
            if base["exit"] == 0:
                o2 = root / f"O{CHANGE_SIZE}-changed"
                shutil.copytree(root / f"O{CHANGE_SIZE}", o2)
                edit = policies.change_one_threshold(o2)
                say(f"… mu generate --previous after one threshold change ({edit['rule']})")
                change = generate_once(
                    work,
                    o2 / policies.FILE_NAME,
                    args.timeout,
                    previous=Path(base["output"]),
                    home=Path(base["home"]),
                    tag="-new",
                )
                change["edit"] = edit
            else:
                change = {"status": "skipped", "reason": f"the {CHANGE_SIZE}-rule baseline did not generate"}

    doc = {
        "benchmark": "generate",
        "method": "`mu generate` as a child process, fresh store per run; best of the runs per size "
        "(wall seconds); CPU seconds and peak RSS of the child from os.wait4",
        "machine": c.machine(),
        "sizes": {
            str(n): {k: v for k, v in r.items() if k not in ("output", "home")}
            | {
                "target_s": TARGETS.get(n, (None, None))[0],
                "target_rss_bytes": TARGETS.get(n, (None, None))[1],
                "phases_s": phase_times.get(n),
            }
            for n, r in results.items()
        },
        "one_rule_change": None
        if change is None
        else {k: v for k, v in change.items() if k not in ("output", "home")},
    }
    if args.json:
        c.emit_json(doc)
        return
    rows = []
    for n, r in results.items():
        t_s, t_rss = TARGETS.get(n, (None, None))
        verdict = []
        if t_s is not None:
            verdict.append(f"< {t_s:g} s: {'yes' if r['exit'] == 0 and r['wall_s'] < t_s else 'NO'}")
        if t_rss is not None:
            verdict.append(f"< {t_rss / 1024**3:g} GB: {'yes' if r['peak_rss_bytes'] < t_rss else 'NO'}")
        runs = ", ".join(f"{w:.2f}" for w in r["runs_wall_s"])
        cpu = f"{r['cpu_s']:.2f}"
        rss = _mb(r["peak_rss_bytes"])
        rows.append((n, r["status"], f"{r['wall_s']:.2f}", runs, cpu, rss, "; ".join(verdict) or "-"))
    print(f"mu generate end to end ({doc['method']})")
    print(f"machine: {c.machine_line()}\n")
    header = ("rules", "status", "best wall s", "all runs s", "CPU s", "peak RSS MB", "target met (wall)")
    print(c.table(rows, header))
    print("CPU s = the child's user + system time for the best run (less sensitive to a busy machine).")
    for n, r in results.items():
        if r["exit"] != 0:
            print(f"  {n} rules: {r['status']}: {r['reason']}")
    for n, ph in phase_times.items():
        print(f"\nphases at {n} rules (in-process, one run):")
        print(c.table([(k, f"{v:.2f}") for k, v in ph.items()], ("phase", "seconds")))
    if change is not None:
        print(
            f"\none-rule change at {CHANGE_SIZE} rules, `mu generate --previous=A_old` "
            "(same store, warm cache):"
        )
        if change.get("status") == "skipped":
            print(f"  skipped: {change['reason']}")
        else:
            edit = change["edit"]
            print(f"  edit: {edit['rule']} threshold {edit['old']} -> {edit['new']}")
            print(
                f"  status {change['status']}, wall {change['wall_s']:.2f} s, CPU {change['cpu_s']:.2f} s, "
                f"peak RSS {_mb(change['peak_rss_bytes'])} MB"
            )
            print(
                f"  modules regenerated {change['modules_generated']}, reused from cache "
                f"{change['modules_reused_from_cache']}; outputs.changed = {change['changed']}"
            )
            if change["exit"] != 0:
                print(f"  {change['reason']}")


if __name__ == "__main__":
    main()
