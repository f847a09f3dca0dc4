"""The golden gate: compliance's golden cases, plus derived boundary cases, run on the
generated A and on the reference interpreter.

- A compliance case passes when A's decision equals ``fab:expect`` (and the fired rules and
  notified recipients equal the listed sets, when listed). A failing case means O does not
  do what compliance wrote down: the policy is wrong (or the case is).
- Every case, compliance's and derived, must get the same decision, fired rules,
  notifications and audit entries from A and from the interpreter. A disagreement is a
  generator defect, reported with the counterexample.

Derived cases: each threshold and compared value −0.01 / exact / +0.01, × every authority
level (plus an unknown and a missing one), × every transaction type the rule applies to (plus
an unknown and a missing one), plus each restriction's edges (every compared value, one value
outside them, a missing attribute) and approver = / ≠ executor. They are checked rule by rule
(A's module against the interpreter's reading of that rule), which scales linearly with the
number of rules, and as whole decisions on a deterministic selection of at most
``WHOLE_LIMIT`` transactions (fewer for a large policy: about ``WHOLE_RULE_EVALUATIONS`` rule evaluations).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from finops_fabric import model as m
from finops_fabric.enforcer import Enforcer
from finops_fabric.interpreter import Interpreter, comparable

CENT = Decimal("0.01")
WHOLE_LIMIT = 20000
# Whole decisions cost one evaluation per rule: past this many rule evaluations the selection
# thins out (every rule is still checked on its own boundary cases above).
WHOLE_RULE_EVALUATIONS = 1_000_000
PER_RULE_VARIANTS = 512
_MISSING = object()


@dataclass
class GoldenReport:
    cases: list[dict[str, Any]] = field(default_factory=list)
    failed_cases: list[str] = field(default_factory=list)
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    derived_rule_checks: int = 0
    derived_whole_checks: int = 0

    @property
    def passed(self) -> int:
        return len(self.cases) - len(self.failed_cases)

    @property
    def ok(self) -> bool:
        return not self.failed_cases and not self.disagreements

    def evidence(self) -> dict[str, Any]:
        return {
            "golden_cases": len(self.cases),
            "golden_passed": self.passed,
            "golden_failed": sorted(self.failed_cases),
            "failures": self.failures,
            "derived_rule_checks": self.derived_rule_checks,
            "derived_decisions_compared": self.derived_whole_checks,
            "disagreements": self.disagreements[:10],
        }


def run_case(enforcer: Enforcer, case: dict[str, Any]) -> dict[str, Any]:
    """Run one compiled golden case on A; return {scenario, ok, decision, problems}."""
    decision = enforcer.decide(case["transaction"]).to_dict()
    problems = []
    if decision["decision"] != case["expect"]:
        problems.append(f"expected {case['expect']}, got {decision['decision']}")
    fired = sorted(f["rule"] for f in decision["fired"])
    if case.get("expect_fired") is not None and fired != sorted(case["expect_fired"]):
        problems.append(f"expected rules fired {sorted(case['expect_fired'])}, got {fired}")
    notified = sorted({n["recipient"] for n in decision["notifications"]})
    if case.get("expect_notified") is not None and notified != sorted(case["expect_notified"]):
        problems.append(f"expected notified {sorted(case['expect_notified'])}, got {notified}")
    return {"scenario": case["scenario"], "ok": not problems, "decision": decision, "problems": problems}


def explain_failure(case: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A failed golden case for the person who must fix O (or the case): what compliance expected
    (``fired``/``notified`` are None when the case does not list them), what A decided, and the
    reason each rule that fired gave."""
    decision = result["decision"]
    expect_fired, expect_notified = case.get("expect_fired"), case.get("expect_notified")
    return {
        "scenario": case["scenario"],
        "expected": {
            "decision": case["expect"],
            "fired": sorted(expect_fired) if expect_fired is not None else None,
            "notified": sorted(expect_notified) if expect_notified is not None else None,
        },
        "actual": {
            "decision": decision["decision"],
            "fired": sorted(f["rule"] for f in decision["fired"]),
            "notified": sorted({n["recipient"] for n in decision["notifications"]}),
        },
        "reasons": [{"rule": f["rule"], "reason": f["reason"]} for f in decision["fired"]],
        "problems": list(result["problems"]),
    }


def failure_lines(failure: dict[str, Any]) -> list[str]:
    """A failed golden case (:func:`explain_failure`) as lines for a person."""

    def listed(values: list[str] | None) -> str:
        return "(not listed)" if values is None else (", ".join(values) or "none")

    lines = [f"golden case {failure['scenario']} FAILED"]
    for side in ("expected", "actual"):
        d = failure[side]
        lines.append(
            f"  {side:<8} {d['decision']}; fired: {listed(d['fired'])}; notified: {listed(d['notified'])}"
        )
    lines += [f"  fired {r['rule']}: {r['reason']}" for r in failure["reasons"]]
    return lines


# --- derived boundary cases ---------------------------------------------------------------


def _edges(values: set[Decimal]) -> list[Decimal]:
    out: set[Decimal] = set()
    for v in values:
        out.update((v - CENT, v, v + CENT))
    return sorted(out)


def _attribute_choices(rule: m.Rule) -> dict[str, list[object]]:
    """For a restriction: each attribute it reads → values that sit on and beside its edges."""
    if not isinstance(rule, m.RestrictionRule):
        return {}
    choices: dict[str, set[object]] = {}
    for leaf in m.condition_leaves(rule.condition):
        values = leaf.values if isinstance(leaf, m.Membership) else (leaf.value,)
        bucket = choices.setdefault(leaf.attribute, set())
        for v in values:
            if isinstance(v, Decimal):
                bucket.update(str(x) for x in (v - CENT, v, v + CENT))
            else:
                bucket.add(v)
        bucket.add("zz-not-listed")
    return {k: sorted(v, key=str) + [_MISSING] for k, v in sorted(choices.items())}


def _amounts(rule: m.Rule) -> set[Decimal]:
    vals: set[Decimal] = set()
    if isinstance(rule, m.ApprovalRule):
        vals.add(rule.threshold)
    if isinstance(rule, m.NotificationRule) and rule.threshold is not None:
        vals.add(rule.threshold)
    if isinstance(rule, m.RestrictionRule):
        for leaf in m.condition_leaves(rule.condition):
            if leaf.attribute == "amount":
                vals.update(
                    v
                    for v in (leaf.values if isinstance(leaf, m.Membership) else (leaf.value,))
                    if isinstance(v, Decimal)
                )
    return vals


def _tx(
    tx_type: object, amount: object, level: object, attrs: dict[str, object], same: bool | None
) -> dict[str, Any]:
    tx: dict[str, Any] = {"id": "derived"}
    special = {"type": tx_type, "amount": amount, "actor_level": level}
    for k, v in special.items():
        if v is not _MISSING:
            tx[k] = str(v) if isinstance(v, Decimal) else v
    if same is not None:
        tx["approver_id"] = "u-1"
        tx["executor_id"] = "u-1" if same else "u-2"
    tx["attributes"] = {k: v for k, v in attrs.items() if v is not _MISSING and k not in special}
    return tx


def _reads(rule: m.Rule) -> set[str]:
    """The transaction fields a rule's outcome depends on (beyond its type)."""
    if isinstance(rule, m.ApprovalRule):
        return {"amount", "actor_level"}
    if isinstance(rule, m.SegregationOfDutyRule):
        return {"approver_id", "executor_id"}
    if isinstance(rule, m.RestrictionRule):
        fields = set(m.condition_attributes(rule.condition))
        return fields | ({"actor_level"} if rule.override is not None else set())
    fields = {"actor_level"} if rule.min_authority is not None else set()
    if isinstance(rule, m.NotificationRule) and rule.threshold is not None:
        fields.add("amount")
    return fields


def rule_cases(policy: m.Policy, rule: m.Rule) -> Iterator[dict[str, Any]]:
    """Boundary transactions for one rule, exhaustive over the fields the rule reads.

    A dimension the rule does not read is held at one value (every type and level still meets
    every threshold in the whole-decision grid); type dispatch, including unknown and missing
    types, is the runtime's job and is checked by the whole-decision comparison.
    """
    reads = _reads(rule)
    all_levels: list[object] = [lv.code for lv in policy.levels] + ["ZZ-unknown-level", _MISSING]
    levels = all_levels if "actor_level" in reads else all_levels[:1] or [_MISSING]
    types: list[object] = list(rule.applies_to or [t.code for t in policy.types])
    types = types if "type" in reads else types[:1]
    amounts: list[object] = (
        [*_edges(_amounts(rule) or {Decimal("1")}), _MISSING] if "amount" in reads else [Decimal("1000")]
    )
    attr_choices = _attribute_choices(rule)
    baseline = {k: v[0] for k, v in attr_choices.items()}
    variants: list[dict[str, object]] = [baseline]
    keys = list(attr_choices)
    product_size = 1
    for v in attr_choices.values():
        product_size *= len(v)
    if keys and product_size <= PER_RULE_VARIANTS:
        variants = [
            dict(zip(keys, combo, strict=True)) for combo in itertools.product(*attr_choices.values())
        ]
    elif keys:
        variants += [{**baseline, k: c} for k in keys for c in attr_choices[k][1:]]
    sod_choices: list[bool | None] = [False, True, None] if "approver_id" in reads else [False]
    for t, a, lv, attrs, same in itertools.product(types, amounts, levels, variants, sod_choices):
        yield _tx(t, a, lv, attrs, same)


def _rule_disagreement(
    enforcer: Enforcer, interp: Interpreter, rule: m.Rule, module: Any, tx: dict[str, Any]
) -> dict[str, Any] | None:
    typed = isinstance(tx.get("type"), str)
    if not interp.applies(rule, tx) or (not typed and rule.applies_to):
        return None  # type dispatch is checked by the whole-decision comparison
    t = enforcer.transaction(tx)
    if rule.kind in m.DECISION_KINDS:
        hit = module.check(t)
        ours = hit is not None
        theirs = interp.fires(rule, tx) is not None  # type: ignore[arg-type]
        if ours != theirs:
            return {"rule": rule.iri, "transaction": tx, "enforcer_fires": ours, "interpreter_fires": theirs}
        return None
    for outcome in ("APPROVE", "REJECT"):
        ours = bool(module.matches(t, outcome))
        theirs = interp.effect_matches(rule, tx, outcome)  # type: ignore[arg-type]
        if ours != theirs:
            return {
                "rule": rule.iri,
                "transaction": tx,
                "decision": outcome,
                "enforcer_matches": ours,
                "interpreter_matches": theirs,
            }
    return None


def whole_cases(policy: m.Policy) -> list[dict[str, Any]]:
    """The golden gate's whole-decision selection: :func:`boundary_cases`, thinned to about
    ``WHOLE_RULE_EVALUATIONS`` rule evaluations (at most ``WHOLE_LIMIT`` transactions)."""
    limit = max(200, min(WHOLE_LIMIT, WHOLE_RULE_EVALUATIONS // max(len(policy.rules), 1)))
    return boundary_cases(policy, limit)


def boundary_cases(policy: m.Policy, limit: int | None = None) -> list[dict[str, Any]]:
    """Whole-decision boundary transactions: every type (plus an unknown and a missing one) ×
    every threshold and compared amount −0.01 / exact / +0.01 (and a missing amount) × every
    level (plus an unknown and a missing one) × approver = / ≠ executor; then every type ×
    level × each restriction's attribute edges. All of them (``limit=None``, as ``mu kaizen``
    uses them), or an even selection of about ``limit``."""
    amounts: set[Decimal] = {Decimal("1")}
    variants: list[dict[str, object]] = [{}]
    for r in policy.rules:
        amounts |= _amounts(r)
        for attr, choices in _attribute_choices(r).items():
            variants.extend({attr: c} for c in choices)
    levels: list[object] = [lv.code for lv in policy.levels] + ["ZZ-unknown-level", _MISSING]
    types: list[object] = [t.code for t in policy.types] + ["zz_unknown_type", _MISSING]
    grid = list(itertools.product(types, [*_edges(amounts), _MISSING], levels, [False, True]))
    extra = list(itertools.product(types, levels, range(len(variants))))
    total = len(grid) + len(extra)
    stride = 1 if limit is None else max(1, -(-total // limit))
    cases = [_tx(t, a, lv, {}, same) for t, a, lv, same in grid[::stride]]
    cases += [_tx(t, Decimal("1000"), lv, variants[i], False) for t, lv, i in extra[::stride]]
    return cases


def run_golden_gate(policy: m.Policy, enforcer: Enforcer) -> GoldenReport:
    """Compliance's cases and the derived cases on A and on the reference interpreter, in the
    policy language of the generator that made A."""
    report = GoldenReport()
    interp = Interpreter(policy, enforcer.generator.language)
    for case in enforcer.golden_cases():
        result = run_case(enforcer, case)
        report.cases.append(result)
        if not result["ok"]:
            report.failed_cases.append(case["scenario"])
            report.failures.append(explain_failure(case, result))
        theirs = interp.decide(case["transaction"])
        if comparable(result["decision"]) != theirs.comparable():
            report.disagreements.append(
                {
                    "scenario": case["scenario"],
                    "transaction": case["transaction"],
                    "enforcer": result["decision"],
                    "interpreter": theirs.comparable(),
                }
            )
    modules = enforcer.rule_modules()
    for rule in policy.rules:
        module = modules.get(rule.iri)
        if module is None:
            report.disagreements.append({"rule": rule.iri, "problem": "A has no module for this rule"})
            continue
        for tx in rule_cases(policy, rule):
            report.derived_rule_checks += 1
            d = _rule_disagreement(enforcer, interp, rule, module, tx)
            if d is not None:
                report.disagreements.append(d)
                break
    for tx in whole_cases(policy):
        report.derived_whole_checks += 1
        mine = comparable(enforcer.decide(tx).to_dict())
        oracle = interp.decide(tx).comparable()
        if mine != oracle:
            report.disagreements.append({"transaction": tx, "enforcer": mine, "interpreter": oracle})
            if len(report.disagreements) >= 10:
                break
    return report
