"""`bench_daemon.py --shadow`: p99 at a fixed rate with and without a shadow enforcer, same daemon.

The daemon of bench_daemon.py runs A (the bundled example); A_shadow is the same policy with the
audit rule's flag renamed, so every fifth decision of the mix (an approval by L3) disagrees on
its audit entry and is written to the shadow log, and the others are compared and counted. The
timed run alternates rounds without and with the shadow (``mu deploy --shadow`` ... ``mu shadow
stop``), each round ``--duration`` seconds at ``--rate`` decisions/s (400 unless given), open
loop, latency from each request's scheduled time; the rounds of each kind are pooled. Target:
p99 with the shadow at most 10% above p99 without.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as c

RATE = 400.0
TARGET_RATIO = 1.10


def _shadow_enforcer(tmp: Path, mu: Callable[..., str], home: Path) -> Path:
    acme = c.REPO / "src" / "finops_fabric" / "examples" / "acme"
    o2 = tmp / "O-shadow"
    shutil.copytree(acme, o2)
    purchases = o2 / "purchases.ttl"
    purchases.write_text(
        purchases.read_text().replace('fab:flag "L3_override"', 'fab:flag "senior_override"')
    )
    mu(home, "generate", f"--input={o2}", f"--output={tmp / 'A-shadow'}")
    return tmp / "A-shadow"


def compare(
    args: Any,
    setup: Any,
    load: Callable[..., Any],
    pct: Callable[[list[float], float], float],
    mu: Callable[..., str],
    cpu_of: Callable[[int], float],
) -> int:
    rate = args.rate or RATE
    seconds = 3.0 if args.quick else args.duration
    rounds = max(1, args.rounds)
    n = max(1, round(rate * seconds))
    a_shadow = _shadow_enforcer(setup.tmp, mu, setup.home)
    pooled: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, float] = {"off": 0.0, "on": 0.0}  # the daemon process's CPU seconds (all threads)
    errors = 0
    ends: list[dict[str, Any]] = []
    offset = 0
    per_round: list[dict[str, Any]] = []
    for _ in range(rounds):
        for mode in ("off", "on"):
            if mode == "on":
                mu(setup.home, "deploy", "--target=bench", "--shadow", f"--enforcer={a_shadow}")
            cpu0 = cpu_of(setup.daemon.pid)
            _wall, lat, errs = asyncio.run(load(setup.url, setup.token, n, args.concurrency, offset, rate))
            cpu[mode] += cpu_of(setup.daemon.pid) - cpu0
            offset += n
            errors += errs
            pooled[mode] += lat
            per_round.append({"shadow": mode, "p99_ms": round(pct(sorted(lat), 0.99) * 1000, 3)})
            if mode == "on":
                ends.append(json.loads(mu(setup.home, "shadow", "stop", "--env=bench", "--json"))["receipt"])
    p = {}
    for mode, lat in pooled.items():
        lat.sort()
        p[mode] = {
            "decisions": len(lat),
            "p50_ms": round(pct(lat, 0.50) * 1000, 3),
            "p99_ms": round(pct(lat, 0.99) * 1000, 3),
            "max_ms": round(lat[-1] * 1000, 3),
            "daemon_cpu_ms_per_decision": round(cpu[mode] / max(len(lat), 1) * 1000, 4),
        }
    totals = {
        k: sum(int(e["outputs"][k]) for e in ends) for k in ("compared", "agreed", "disagreed", "dropped")
    }
    median_round = {
        mode: statistics.median(r["p99_ms"] for r in per_round if r["shadow"] == mode)
        for mode in ("off", "on")
    }
    ratio = p["on"]["p99_ms"] / p["off"]["p99_ms"] if p["off"]["p99_ms"] else float("nan")
    doc = {
        "bench": "shadow",
        "offered_rate": rate,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "concurrency": args.concurrency,
        "without_shadow": p["off"],
        "with_shadow": p["on"],
        "p99_ratio": round(ratio, 3),
        "rounds_p99_ms": per_round,
        # the machine is shared: the median round of each kind is less swayed by another load
        "median_round_p99_ms": median_round,
        "median_round_p99_ratio": round(median_round["on"] / median_round["off"], 3)
        if median_round["off"]
        else None,
        "shadow": totals,
        "errors": errors,
        "target_p99_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO and errors == 0 and totals["dropped"] == 0,
        "machine": c.machine(),
    }
    if args.json:
        c.emit_json(doc)
    else:
        rows = [
            [name, q["decisions"], f"{q['p50_ms']:.2f}", f"{q['p99_ms']:.2f}", f"{q['max_ms']:.2f}"]
            for name, q in (("without shadow", p["off"]), ("with shadow", p["on"]))
        ]
        print(c.table(rows, ["run", "decisions", "p50 ms", "p99 ms", "max ms"]))
        print(
            f"fixed rate {rate:g}/s, {rounds} round(s) of {seconds:g} s each way; shadow compared "
            f"{totals['compared']} (agreed {totals['agreed']}, disagreed {totals['disagreed']}, dropped "
            f"{totals['dropped']}); p99 with/without {ratio:.3f} (target <= {TARGET_RATIO:.2f}: "
            + ("met" if doc["meets_target"] else "NOT met")
            + f"); errors {errors}; {c.machine_line()}"
        )
        print(
            f"daemon CPU per decision: {p['off']['daemon_cpu_ms_per_decision']:.3f} ms without, "
            f"{p['on']['daemon_cpu_ms_per_decision']:.3f} ms with"
        )
        print(
            f"median round p99: {median_round['off']:.2f} ms without, {median_round['on']:.2f} ms with "
            f"(ratio {doc['median_round_p99_ratio']})"
        )
        print("p99 per round: " + ", ".join(f"{r['shadow']} {r['p99_ms']:.2f}" for r in per_round))
    return 0 if errors == 0 else 1
