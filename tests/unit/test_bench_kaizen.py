"""bench/bench_kaizen.py runs end to end on a small policy and reports its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_kaizen.py"


def test_bench_kaizen_small() -> None:
    p = subprocess.run(
        [sys.executable, str(BENCH), "--rules", "15", "--repeat", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    (run,) = json.loads(p.stdout)["runs"]
    assert run["rules"] == 15 and run["verdict"] == "equivalent" and run["generators"] == "v1 → v2"
    assert run["case_set"]["kind"] == "complete" and run["by_category"]["complete"] > 0
    assert run["cases"] == sum(run["by_category"].values())
    for mode in ("one_process", "split"):
        assert run[f"{mode}_s"] > 0 and run[f"{mode}_cases_per_s"] > 0


def test_bench_kaizen_refuses_an_unknown_mode() -> None:
    p = subprocess.run(
        [sys.executable, str(BENCH), "--rules", "15", "--modes", "fast"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode != 0 and "--modes" in p.stderr
