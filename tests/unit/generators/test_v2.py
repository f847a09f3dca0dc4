"""Generator v2: every generator-agnostic test of v1 runs against v2 as well (the ``policies``
fixture below builds and loads with v2), v2 decides exactly as v1 does (reasons and order
included), and what is v2's own: the fragments, their load-time checks, the fused paths."""

from __future__ import annotations

import ast
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from harness import EX as ACME
from harness import changed_example, copy_example
from hypothesis import given

# The tests of v1 that do not depend on the generator version: collected here a second time,
# with this module's `policies` (generator v2).
from test_v1 import (  # noqa: F401
    HOSTILE,
    MORE_RULES,
    SETTINGS,
    test_a_decision_has_the_documented_shape,
    test_a_rank_comparison_with_a_hostile_code_is_refused,
    test_an_unchanged_rule_yields_a_byte_identical_module,
    test_core_fields_of_the_wrong_type_agree,
    test_decisions_equal_the_interpreter,
    test_decisions_equal_the_interpreter_on_chosen_cases,
    test_generated_files_have_no_absolute_path_and_no_timestamp,
    test_golden_cases_are_compiled,
    test_hostile_text_stays_inert_and_round_trips,
    test_two_builds_are_byte_identical,
    transactions,
)

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.enforcer import load_enforcer
from finops_fabric.generators.v1 import emit as emit1
from finops_fabric.generators.v2 import emit
from finops_fabric.golden import run_golden_gate
from finops_fabric.interpreter import Interpreter
from finops_fabric.pipeline import generate, load_ontology
from finops_fabric.rdf.reader import read_policy
from finops_fabric.store import Store

V2 = generators.get("2")


def _load(version: str, files: dict[str, bytes]) -> Any:
    manifest = json.loads(files["manifest.json"])
    return generators.get(version).load(
        files, manifest, "sha256:" + hashlib.sha256(files["manifest.json"]).hexdigest()
    )


@pytest.fixture(scope="module")
def policies(policies: SimpleNamespace) -> SimpleNamespace:
    """The shared policies, building and loading A with generator v2."""
    return SimpleNamespace(
        **{
            **vars(policies),
            "build": lambda policy, ontology_hash=policies.ZERO_HASH: V2.build(policy, ontology_hash),
            "load_built": lambda files: _load("2", files),
        }
    )


@pytest.fixture(scope="module")
def full_policy(policies: SimpleNamespace) -> m.Policy:
    policy: m.Policy = policies.policy_of(policies.FULL_RULES + MORE_RULES)
    return policy


@pytest.fixture(scope="module")
def pair(policies: SimpleNamespace, full_policy: m.Policy) -> tuple[Interpreter, Any]:
    return Interpreter(full_policy), policies.load_built(policies.build(full_policy))


@pytest.fixture(scope="module")
def both(policies: SimpleNamespace, full_policy: m.Policy) -> tuple[Any, Any]:
    return (
        _load("1", generators.get("1").build(full_policy, policies.ZERO_HASH)),
        _load("2", V2.build(full_policy, policies.ZERO_HASH)),
    )


def _same(both: tuple[Any, Any], tx: dict[str, Any]) -> None:
    old, new = (e.decide(tx).to_dict() for e in both)
    old.pop("enforcer_hash")
    new.pop("enforcer_hash")
    assert new == old, tx


@SETTINGS
@given(tx=transactions())
def test_v2_decides_exactly_as_v1(both: tuple[Any, Any], tx: dict[str, Any]) -> None:
    _same(both, tx)


def test_v2_decides_exactly_as_v1_on_the_example_boundaries() -> None:
    from harness import EXAMPLE

    from finops_fabric.golden import rule_cases, whole_cases

    onto = load_ontology(EXAMPLE)
    policy = read_policy(onto.raw.triples)
    pair_ = (
        _load("1", generators.get("1").build(policy, onto.hash)),
        _load("2", V2.build(policy, onto.hash)),
    )
    cases = whole_cases(policy) + [tx for r in policy.rules for tx in rule_cases(policy, r)]
    assert len(cases) > 1000
    for tx in cases:
        _same(pair_, tx)


def test_the_manifest_names_generator_v2(policies: SimpleNamespace, full_policy: m.Policy) -> None:
    files = policies.build(full_policy)
    manifest = json.loads(files["manifest.json"])
    assert manifest["generator"] == V2.describe()
    assert manifest["generator"]["version"] == "2"
    assert manifest["format"] == "finops-fabric-enforcer/1"  # the layout of A is v1's
    listed = {a["path"]: a for a in manifest["artifacts"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for path, art in listed.items():
        assert art["sha256"] == "sha256:" + hashlib.sha256(files[path]).hexdigest()


def test_the_same_artifacts_as_v1_with_other_bytes(policies: SimpleNamespace, full_policy: m.Policy) -> None:
    one = generators.get("1").build(full_policy, policies.ZERO_HASH)
    two = policies.build(full_policy)
    assert set(one) == set(two)  # the same layout: one artifact per rule, the same support files
    assert all(emit.artifact_path(r) == emit1.artifact_path(r) for r in full_policy.rules)
    rules = [emit.artifact_path(r) for r in full_policy.rules]
    assert all(one[p] != two[p] for p in [*rules, "runtime.py", "manifest.json"])
    assert one["golden.json"] == two["golden.json"] and one["supervision.json"] == two["supervision.json"]


def test_literals_are_python_literals() -> None:
    for v in HOSTILE:
        assert ast.literal_eval(emit.lit(v)) == v
    assert emit.lit(Decimal("0.10")) == "Decimal('0.10')"
    for bad in (True, 1.5, Decimal("NaN"), object()):
        with pytest.raises((TypeError, ValueError)):
            emit.lit(bad)


def test_a_fragment_holds_no_text_from_o(policies: SimpleNamespace) -> None:
    policy = policies.policy_of(policies.FULL_RULES + MORE_RULES)
    for rule in policy.rules:
        tree = ast.parse(emit.emit_rule(rule, {lv.code: lv.rank for lv in policy.levels}))
        (fragment,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "fragment"]
        texts = {
            n.value for n in ast.walk(fragment) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        assert texts <= emit._FIXED_TEXT, rule.iri
        assert rule.label not in texts


# --- the runtime: fusion and its load-time checks --------------------------------------------


def _runtime() -> ModuleType:
    from finops_fabric.generators.v2 import _exec_module, runtime_source

    module, _ = _exec_module("runtime", "runtime.py", runtime_source())
    return module


def _module(source: str) -> tuple[ModuleType, ast.Module]:
    from finops_fabric.generators.v2 import _exec_module

    return _exec_module("rule", "rules/x.py", source.encode())


GOOD = """
RULE = 'urn:r'
LABEL = 'r'
KIND = 'decision'
RULE_CLASS = 'restriction'
APPLIES_TO = ()
A0 = 'country'


def fragment(fired, attrs):
    v0 = attrs.get(A0)
    if v0 == 'x':
        fired.append((RULE, 'x'))
"""


def test_the_runtime_fuses_a_well_formed_fragment() -> None:
    rt = _runtime()
    enforcer = rt.Enforcer({"L1": 1}, [_module(GOOD)], "sha256:h")
    assert enforcer.decide({"attributes": {"country": "x"}}).decision == "REJECT"
    assert enforcer.decide({"attributes": {"country": "y"}}).decision == "APPROVE"
    assert enforcer.modules[0].check({"attributes": {"country": "x"}}) == ("urn:r", "x")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("    open('PWNED', 'w')", "unknown name 'open'"),
        ("    __import__('os').system('x')", "reads attribute 'system'"),
        ("    __import__('os')", "unknown name '__import__'"),
        ("    fired.append(attrs.__class__)", "attribute '__class__'"),
        ("    amount = 1", "assigns 'amount'"),
        ("    return None", "uses Return"),
        ("    fired.append([x for x in attrs])", "uses ListComp"),
        ("    fired.append(lambda: 1)", "uses Lambda"),
        ("    import os", "uses Import"),
        ("    fired.append(_hidden)", "unknown name '_hidden'"),
        ("    fired.append(NOT_DEFINED)", "unknown name 'NOT_DEFINED'"),
    ],
)
def test_the_runtime_refuses_a_fragment_outside_its_allow_list(tmp_path: Path, body: str, why: str) -> None:
    rt = _runtime()
    source = GOOD.split("def fragment")[0] + "_hidden = 1\n\n\ndef fragment(fired, attrs):\n" + body + "\n"
    with pytest.raises(ValueError, match=re.escape(why)):
        rt.Enforcer({}, [_module(source)], "sha256:h")
    assert not (tmp_path / "PWNED").exists()


def test_the_runtime_refuses_an_unknown_field() -> None:
    rt = _runtime()
    with pytest.raises(ValueError, match="unknown fields"):
        rt.Enforcer({}, [_module(GOOD.replace("(fired, attrs)", "(fired, attrs, os)"))], "sha256:h")


def test_each_type_gets_its_own_path_and_a_missing_type_fails_closed(both: tuple[Any, Any]) -> None:
    _, new = both
    d = new.decide({"id": "t", "amount": "1", "actor_level": "Board", "attributes": {"score": "0.1"}})
    typed = sorted(f["rule"] for f in d.to_dict()["fired"])
    assert typed and all("type" in f["reason"] for f in d.to_dict()["fired"])
    d = new.decide({"id": "t", "type": 7, "amount": "1"})
    assert d.decision == "REJECT"
    d = new.decide({"id": "t", "type": ["unhashable"], "amount": "1"})  # not a str: as missing
    assert d.decision == "REJECT"


# --- the line: golden gate, pipeline, blast radius, cache --------------------------------------


def test_the_golden_gate_passes_v2_and_catches_a_defective_v2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness import EXAMPLE

    onto = load_ontology(EXAMPLE)
    policy = read_policy(onto.raw.triples)

    def gate() -> Any:
        root = tmp_path / f"A{len(list(tmp_path.iterdir()))}"
        for rel, data in V2.build(policy, onto.hash).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        return run_golden_gate(policy, load_enforcer(root))

    report = gate()
    assert report.ok, report.evidence()
    assert report.derived_rule_checks > 500 and report.derived_whole_checks > 500
    real = emit._approval
    monkeypatch.setattr(
        emit,
        "_approval",
        lambda rule: [x.replace("rank < REQUIRED_RANK", "rank <= REQUIRED_RANK") for x in real(rule)],
    )
    report = gate()
    assert not report.ok
    rules = [d["rule"] for d in report.disagreements if "rule" in d]
    assert rules and all(r.startswith(ACME + "approval-") for r in rules)


def test_mu_generate_with_generator_v2_end_to_end(mu: Any, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    out = mu.json("generate", f"--input={o}", "--output=A", "--generator-version=2", "--receipt=r.json")
    assert out["status"] == "generated", out
    receipt = json.loads((tmp_path / "r.json").read_text())
    assert receipt["inputs"]["generator"] == V2.describe()
    assert all(g in ("PASS", "SKIPPED") for g in out["gates"].values()), out["gates"]
    code, printed, _ = mu("hash", "A")
    assert code == 0 and printed.strip() == out["enforcer_hash"]
    tested = mu.json("test", "--enforcer=A", "--golden-suite")
    assert tested["failed"] == 0 and tested["passed"] == 7
    # the auditor's replay uses the pinned generator v2
    replayed = mu.json("replay", "--receipt=r.json")
    assert replayed["match"] is True and replayed["generator"]["version"] == "2"
    assert mu.json("drift", "--enforcer=A")["drift"] is False
    # v2 runs when asked for by name; the default is v3 (policy language 1.1)
    assert mu.json("generators")["default"] == "3"


def test_one_threshold_changes_exactly_one_v2_artifact(mu: Any, tmp_path: Path) -> None:
    o1, o2 = copy_example(tmp_path), changed_example(tmp_path)
    mu.json("generate", f"--input={o1}", "--output=A1", "--generator-version=2")
    out = mu.json("generate", f"--input={o2}", "--output=A2", "--generator-version=2")
    assert out["changed"] == [ACME + "approval-wire-large"] and len(out["unchanged"]) == 8
    diff = mu.json("verify-hashes", "--old=A1", "--new=A2")
    assert [c["rule"] for c in diff["changed"]] == [ACME + "approval-wire-large"]
    assert len(diff["unchanged"]) == 8
    assert all(s["status"] == "unchanged" for s in diff["support"] if s["artifact"] != "manifest.json")


def test_the_rule_cache_is_kept_per_generator(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.init()
    o = copy_example(tmp_path)

    def reused(version: str, out: str) -> int:
        r = generate(o, tmp_path / out, store, generator_version=version)
        assert r.status == "generated"
        return int(r.receipt["gates"]["waste_elimination"]["evidence"]["modules_reused_from_cache"])

    assert reused("1", "A1") == 0
    assert reused("2", "A2") == 0  # v1's modules are never taken for v2's
    assert reused("2", "A3") == 9
    assert (tmp_path / "A2" / "manifest.json").read_bytes() == (
        tmp_path / "A3" / "manifest.json"
    ).read_bytes()


def test_the_daemon_deploys_v2_and_restarts_only_the_changed_rule(tmp_path: Path) -> None:
    from finops_fabric.daemon.runtime import Runtime

    store = Store(tmp_path / "store")
    store.init()
    o1, o2 = copy_example(tmp_path), changed_example(tmp_path)
    r1 = generate(o1, tmp_path / "A1", store, generator_version="2")
    r2 = generate(o2, tmp_path / "A2", store, generator_version="2")
    runtime = Runtime(store, "test")
    first = runtime.deploy(tmp_path / "A1", r1.receipt["receipt_hash"])
    assert first.ok, first.reason
    second = runtime.deploy(tmp_path / "A2", r2.receipt["receipt_hash"])
    assert second.ok, second.reason
    assert second.restarted == [ACME + "approval-wire-large"] and len(second.kept) == 8
    assert runtime.active is not None
    tx = {"id": "t", "type": "wire", "amount": "1500000", "actor_level": "CFO", "approver_id": "a"}
    tx |= {"executor_id": "b", "attributes": {"country": "US", "vendor_risk": "low"}}
    assert runtime.active.enforcer.decide(tx).decision == "APPROVE"  # 2M is the new threshold


def test_generator_v2_is_locked_by_its_source_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    from finops_fabric.errors import CheckFailed

    assert generators.RELEASED["2"] == generators.source_hash("2")
    monkeypatch.setitem(generators.RELEASED, "2", "sha256:" + "0" * 64)
    with pytest.raises(CheckFailed) as err:
        generators.get("2")
    assert err.value.code == "generator.modified"
