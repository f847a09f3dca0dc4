"""bench/bench_impact.py runs end to end on a small policy and reports its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_impact.py"


def test_bench_impact_small() -> None:
    p = subprocess.run(
        [sys.executable, str(BENCH), "--rules", "40", "--repeat", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(p.stdout)
    runs = {r["run"]: r for r in doc["runs"]}
    assert set(runs) == {
        "impact, one threshold changed",
        "the same, generator 1",
        "impact, two unrelated policies",
        "analyze",
    }
    assert runs["impact, one threshold changed"]["regions"] >= 1
    assert (
        runs["impact, two unrelated policies"]["regions"] > runs["impact, one threshold changed"]["regions"]
    )
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 for r in runs.values())
