"""Helpers shared by the benchmark scripts (stdlib only): import path, timing, tables, JSON.

Timing follows timeit: each measurement runs a statement ``number`` times per repeat, and
the figure reported is the BEST repeat (the least disturbed by the rest of the machine),
never the mean. Ratios are always between figures measured in the same run.
"""

from __future__ import annotations

import json
import platform
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def ensure_package() -> None:
    """Make ``finops_fabric`` importable from a source checkout that was not installed."""
    try:
        import finops_fabric  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))


def best_of(
    fn: Callable[[], object], repeat: int, min_seconds: float = 0.2
) -> tuple[float, int, list[float]]:
    """(best seconds per call, calls per repeat, every repeat's seconds per call), timeit-style."""
    timer = timeit.Timer(fn)
    number = 1
    while True:  # like Timer.autorange, but with our own floor
        t = timer.timeit(number)
        if t >= min_seconds or number >= 10**7:
            break
        number *= 2 if t > min_seconds / 10 else 10
    runs = [t / number for t in timer.repeat(repeat=repeat, number=number)]
    return min(runs), number, runs


def machine() -> dict[str, Any]:
    import os

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "load_average_1_5_15": load,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for n, r in enumerate(cells):
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def emit_json(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def fmt_rate(per_second: float) -> str:
    return f"{per_second:,.0f}"


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f}"


def interleaved(
    fns: dict[str, Callable[[], object]], repeat: int, min_seconds: float = 0.2
) -> dict[str, dict[str, Any]]:
    """Time several callables fairly on a noisy machine: each gets its own ``number`` (timeit's
    autorange), then the repeats ALTERNATE between them, so a burst of background load hits
    all of them alike. Returns name -> {best, number, runs} (seconds per call)."""
    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}
    numbers = {}
    for name, timer in timers.items():
        number = 1
        while True:
            t = timer.timeit(number)
            if t >= min_seconds or number >= 10**7:
                break
            number *= 2 if t > min_seconds / 10 else 10
        numbers[name] = number
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, timer in timers.items():
            runs[name].append(timer.timeit(numbers[name]) / numbers[name])
    return {name: {"best": min(r), "number": numbers[name], "runs": r} for name, r in runs.items()}


def mu_command() -> list[str]:
    """The `mu` CLI as a child process of this interpreter (``python -m finops_fabric.cli``)."""
    return [sys.executable, "-m", "finops_fabric.cli"]


def child_env(home: Path | str) -> dict[str, str]:
    """The environment for a `mu` child: its own store, and our package importable."""
    import os

    env = dict(os.environ)
    env["FABRIC_HOME"] = str(home)
    src = str(REPO / "src")
    if src in sys.path:
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def machine_line() -> str:
    """One line for a person: interpreter, CPUs and the load average now (a busy machine skews
    wall times; best-of repeats and same-run ratios are what to read)."""
    m = machine()
    load = m["load_average_1_5_15"]
    busy = f", load average {load[0]:.2f} (1 min)" if load else ""
    return f"{m['implementation']} {m['python']}, {m['cpus']} CPUs{busy}"
