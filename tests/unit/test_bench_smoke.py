"""Smoke test for the benchmark helpers: bench/policies.py writes policies that validate."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from finops_fabric.pipeline import load_ontology, validate

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _policies() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_policies", BENCH / "policies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_policies_writes_a_valid_policy(tmp_path: Path) -> None:
    policies = _policies()
    path = policies.write_policy(tmp_path / "O", 20)
    v = validate(load_ontology(path))
    assert v.conforms, [f.to_dict() for f in v.violations]
    assert v.policy is not None and len(v.policy.rules) == 20
    kinds = {r.kind for r in v.policy.rules}
    assert {"approval", "sod", "restriction", "notification", "audit"} <= kinds
    assert len(v.policy.golden) == 3


def test_policies_is_deterministic_and_changes_one_threshold(tmp_path: Path) -> None:
    policies = _policies()
    a = policies.write_policy(tmp_path / "a", 20, seed=3).read_text(encoding="utf-8")
    b = policies.write_policy(tmp_path / "b", 20, seed=3).read_text(encoding="utf-8")
    assert a == b
    edit = policies.change_one_threshold(tmp_path / "b")
    changed = [
        (x, y)
        for x, y in zip(a.splitlines(), (tmp_path / "b" / "policy.ttl").read_text().splitlines(), strict=True)
        if x != y
    ]
    assert len(changed) == 1 and edit["old"] in changed[0][0] and edit["new"] in changed[0][1]
    v = validate(load_ontology(tmp_path / "b"))
    assert v.conforms


def _bench_module(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    finally:  # the script puts its own folder on sys.path as well
        sys.path[:] = [p for p in sys.path if p != str(BENCH)]


def test_the_bare_decide_of_bench_decide_has_generator_3s_semantics() -> None:
    """The bare hand-written p15 function the decide benchmark compares generator 3 with fires
    exactly the rules generator 3 fires, on kaizen's whole case set for p15 (refused inputs, the
    set complete for p15 in language 1.1, random transactions): the ratio compares the same work."""
    import hashlib
    import json

    from finops_fabric import generators
    from finops_fabric.kaizen import cases

    bench = _bench_module("bench_decide")
    policy = bench._policy()
    files = generators.get("3").build(policy, "sha256:" + "0" * 64)
    enforcer = generators.get("3").load(
        files,
        json.loads(files["manifest.json"]),
        "sha256:" + hashlib.sha256(files["manifest.json"]).hexdigest(),
    )
    compared = cases(policy, 2000, 1, ("1.1",))
    assert len(compared) > 2000
    for _, tx in [*((None, t) for t in bench.BARE_MIX), *compared]:
        d = enforcer.decide(tx)
        assert sorted(f["rule"] for f in d.to_dict()["fired"]) == sorted(bench.bare_decide(tx)), tx


@pytest.mark.slow  # about a minute: two daemons on a throwaway PostgreSQL under load
def test_bench_daemon_measures_one_and_two_processes_on_postgresql() -> None:
    """bench_daemon.py --postgres --processes=1,2: a figure for each from one run, their ratio,
    no errors, a log row for every answer, and both HTTP processes answering in the second."""
    import json
    import subprocess

    from services import INSTALL_POSTGRESQL, missing, postgres_bindir

    if postgres_bindir() is None:
        missing("PostgreSQL's server (initdb, pg_ctl)", INSTALL_POSTGRESQL)
    p = subprocess.run(
        [sys.executable, str(BENCH / "bench_daemon.py"), "--postgres", "--processes=1,2", "--quick",
         "--client=async", "--concurrency=8", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    doc = json.loads(p.stdout)
    one, two = doc["runs"]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["database"] == two["database"] == "postgresql"
    for run in (one, two):
        assert run["errors"] == 0 and run["decision_log_matches"] is True
    assert len(two["decisions_by_process"]) == 2  # the kernel handed connections to both
    assert doc["throughput_ratio"]["2_to_1"] == pytest.approx(
        two["decisions_per_second"] / one["decisions_per_second"], abs=0.01
    )
