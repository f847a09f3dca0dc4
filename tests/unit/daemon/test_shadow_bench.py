"""bench_daemon.py --shadow runs and reports both sides (figures only; timings are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_daemon.py"


@pytest.mark.slow  # about 20 s: a daemon, two generations, 2 x 3 s at 400 decisions/s
def test_bench_shadow_quick() -> None:
    p = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--shadow",
            "--quick",
            "--rounds=1",
            "--no-workers",
            "--no-smtp",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    doc = json.loads(p.stdout)
    assert doc["errors"] == 0 and doc["offered_rate"] == 400
    assert doc["without_shadow"]["decisions"] == doc["with_shadow"]["decisions"] == 1200
    # every decision of the shadow round was compared; every fifth (an L3 approval) disagrees
    assert doc["shadow"]["compared"] + doc["shadow"]["dropped"] == 1200
    assert doc["shadow"]["disagreed"] == doc["shadow"]["compared"] // 5
    assert doc["p99_ratio"] > 0
