"""`mu replay` of a 15-rule receipt and `mu drift` of a 1,000-rule A, end to end.

    python3 bench/bench_replay_drift.py [--replay-rules 15] [--drift-rules 1000] [--repeat N]
                                        [--json] [--timeout S]

For each job it writes a synthetic policy (bench/policies.py, seed 0), runs `mu init` and
`mu generate` in a fresh store (not timed), then times:

- replay: `mu replay --receipt=R` as a child process (wall seconds, including interpreter start),
  and `finops_fabric.replay.regenerate` in-process (the replay proper: snapshot read and
  re-hashed, policy read, build without cache, written to a clean temporary directory,
  loaded with every hash verified, compared artifact by artifact);
- drift: `mu drift --enforcer=A` as a child process on the unchanged A (exit 0 expected) and
  on a copy with one hand-edited rule module (exit 1 expected), and
  `finops_fabric.drift.detect_drift` in-process.

Each figure is the best of --repeat runs (default 3 for replay, 2 for drift). Targets (from
issue 3): replay of the 15-rule example < 2 s; drift of a 1,000-rule A < 15 s. The figures are
printed; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import json
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

REPLAY_TARGET_S = 2.0
DRIFT_TARGET_S = 15.0


def mu(args: list[str], home: Path, timeout: float) -> tuple[int, float, str, str]:
    start = time.perf_counter()
    p = subprocess.run(
        c.mu_command() + args,
        env=c.child_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return p.returncode, time.perf_counter() - start, p.stdout, p.stderr


def prepare(root: Path, n_rules: int, timeout: float) -> tuple[Path, Path, Path]:
    """(store, A, receipt) for a fresh generation of an n-rule synthetic policy."""
    onto = policies.write_policy(root / f"O{n_rules}", n_rules).parent
    home, a_dir, receipt = root / f"home{n_rules}", root / f"A{n_rules}", root / f"R{n_rules}.json"
    for args in (["init"], ["generate", f"--input={onto}", f"--output={a_dir}", f"--receipt={receipt}"]):
        code, _, out, err = mu(args, home, timeout)
        if code != 0:
            sys.exit(f"mu {args[0]} failed for {n_rules} rules: {(err or out).strip()[-600:]}")
    return home, a_dir, receipt


def best(runs: list[float]) -> dict[str, Any]:
    return {"best_s": min(runs), "runs_s": runs}


def bench_replay(root: Path, n_rules: int, repeat: int, timeout: float, say: Any) -> dict[str, Any]:
    from finops_fabric.receipts import load_receipt
    from finops_fabric.replay import regenerate
    from finops_fabric.store import Store

    say(f"… generating the {n_rules}-rule policy (not timed)")
    home, _, receipt = prepare(root, n_rules, timeout)
    child: list[float] = []
    for i in range(repeat):
        say(f"… mu replay, {n_rules} rules, run {i + 1}/{repeat}")
        code, wall, out, err = mu(["replay", f"--receipt={receipt}", "--json"], home, timeout)
        if code != 0 or not json.loads(out)["match"]:
            sys.exit(f"mu replay did not match: {(err or out).strip()[-600:]}")
        child.append(wall)
    inproc: list[float] = []
    store, doc = Store(home), load_receipt(receipt)
    for _ in range(repeat):
        start = time.perf_counter()
        result = regenerate(doc, store)
        inproc.append(time.perf_counter() - start)
        assert result.match
    return {
        "rules": n_rules,
        "artifacts": len(result.files),
        "cli": best(child),
        "in_process": best(inproc),
        "target_s": REPLAY_TARGET_S,
    }


def bench_drift(root: Path, n_rules: int, repeat: int, timeout: float, say: Any) -> dict[str, Any]:
    from finops_fabric.drift import detect_drift
    from finops_fabric.store import Store

    say(f"… generating the {n_rules}-rule policy (not timed)")
    home, a_dir, _ = prepare(root, n_rules, timeout)
    edited = root / f"A{n_rules}-edited"
    shutil.copytree(a_dir, edited)
    mod = sorted((edited / "rules").glob("*.py"))[len(list((edited / "rules").glob("*.py"))) // 2]
    mod.write_text(mod.read_text() + "\n# hand edit\n")
    out: dict[str, Any] = {"rules": n_rules, "target_s": DRIFT_TARGET_S}
    for name, target, want in (("cli_no_drift", a_dir, 0), ("cli_one_edit", edited, 1)):
        runs = []
        for i in range(repeat):
            say(f"… mu drift ({name}), {n_rules} rules, run {i + 1}/{repeat}")
            code, wall, text, err = mu(["drift", f"--enforcer={target}", "--json"], home, timeout)
            if code != want:
                sys.exit(f"mu drift exited {code}, wanted {want}: {(err or text).strip()[-600:]}")
            runs.append(wall)
        out[name] = best(runs)
    inproc = []
    for _ in range(repeat):
        start = time.perf_counter()
        report = detect_drift(edited, Store(home))
        inproc.append(time.perf_counter() - start)
        assert [d.cause for d in report.differences] == ["edited"]
    out["in_process_one_edit"] = best(inproc)
    out["artifacts"] = report.artifacts_compared
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replay-rules", type=int, default=15)
    ap.add_argument("--drift-rules", type=int, default=1000)
    ap.add_argument("--repeat", type=int, help="runs per figure (default: 3 for replay, 2 for drift)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds before a child is killed")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = ap.parse_args()
    say = (lambda _msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="bench-replay-drift-") as tmp:
        root = Path(tmp)
        replay = bench_replay(root, args.replay_rules, args.repeat or 3, args.timeout, say)
        drift = bench_drift(root, args.drift_rules, args.repeat or 2, args.timeout, say)
    if args.json:
        c.emit_json({"machine": c.machine(), "replay": replay, "drift": drift})
        return

    def row(job: str, n: int, what: str, fig: dict[str, Any], target: float) -> list[object]:
        verdict = "met" if fig["best_s"] < target else "MISSED"
        return [job, n, what, f"{fig['best_s']:.2f}", f"< {target:g}", verdict]

    rows = [
        row("replay", replay["rules"], "mu replay (child process)", replay["cli"], REPLAY_TARGET_S),
        row("replay", replay["rules"], "regenerate() in-process", replay["in_process"], REPLAY_TARGET_S),
        row("drift", drift["rules"], "mu drift, no drift (child)", drift["cli_no_drift"], DRIFT_TARGET_S),
        row("drift", drift["rules"], "mu drift, one edit (child)", drift["cli_one_edit"], DRIFT_TARGET_S),
        row(
            "drift", drift["rules"], "detect_drift() in-process", drift["in_process_one_edit"], DRIFT_TARGET_S
        ),
    ]
    print(c.table(rows, ["job", "rules", "what", "best s", "target", ""]))
    m = c.machine()
    print(
        f"\nbest of {args.repeat or '3 (replay) / 2 (drift)'} runs; {m['implementation']} {m['python']}, "
        f"{m['cpus']} CPUs, {m['platform']}"
    )


if __name__ == "__main__":
    main()
