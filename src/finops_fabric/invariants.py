"""The invariant gate: checks SHACL cannot state simply, each a named invariant.

- ``sod``: no role may both approve and execute a type a segregation-of-duty rule covers;
- ``levels``: authority codes and ranks are unique; transaction type codes are unique;
- ``golden``: golden cases reference known rules (decision rules for ``expectFired``) and
  have unique scenario names;
- ``satisfiable`` (warning): a restriction whose condition can never hold, decided exactly on
  the condition's decision space (``analysis.lint.condition_can_hold``): no transaction that has
  every field the condition reads makes it hold.
"""

from __future__ import annotations

from collections import defaultdict

from finops_fabric import model as m
from finops_fabric.analysis.lint import condition_can_hold
from finops_fabric.errors import Finding

INVARIANTS = ("sod", "levels", "golden", "satisfiable")


def _finding(
    invariant: str,
    focus: str,
    message: str,
    nodes: tuple[str, ...] = (),
    severity: str = "violation",
    label: str | None = None,
) -> Finding:
    return Finding(
        gate="invariant",
        invariant=invariant,
        focus=focus,
        message=message,
        nodes=nodes or (focus,),
        severity=severity,
        label=label,
    )


def check_sod(policy: m.Policy) -> list[Finding]:
    all_types = {t.code for t in policy.types}
    covered: dict[str, list[str]] = defaultdict(list)
    for r in policy.rules:
        if isinstance(r, m.SegregationOfDutyRule):
            for t in r.applies_to or tuple(sorted(all_types)):
                covered[t].append(r.iri)
    out = []
    for role in policy.roles:
        both = sorted(set(role.can_approve) & set(role.can_execute) & set(covered))
        for t in both:
            rules = tuple(sorted(covered[t]))
            out.append(
                _finding(
                    "sod",
                    role.iri,
                    f'Role "{role.label}" ({role.iri}) may both approve and execute {t} transactions, '
                    f"which segregation of duty ({', '.join(rules)}) forbids",
                    nodes=(role.iri, *rules),
                    label=role.label,
                )
            )
    return out


def check_levels(policy: m.Policy) -> list[Finding]:
    out = []
    for what, groups in (
        ("authority level code", _groups((lv.code, lv.iri) for lv in policy.levels)),
        ("authority level rank", _groups((str(lv.rank), lv.iri) for lv in policy.levels)),
        ("transaction type code", _groups((t.code, t.iri) for t in policy.types)),
    ):
        for key, iris in groups.items():
            if len(iris) > 1:
                out.append(
                    _finding(
                        "levels",
                        iris[0],
                        f"{what} {key!r} is used by {len(iris)} nodes: "
                        + ", ".join(iris)
                        + "; it must be unique",
                        nodes=tuple(iris),
                    )
                )
    return out


def _groups(pairs: object) -> dict[str, list[str]]:
    g: dict[str, list[str]] = defaultdict(list)
    for key, iri in pairs:  # type: ignore[attr-defined]
        g[key].append(iri)
    return {k: sorted(v) for k, v in sorted(g.items())}


def check_golden(policy: m.Policy) -> list[Finding]:
    decision_rules = {r.iri for r in policy.rules if r.kind in m.DECISION_KINDS}
    all_rules = {r.iri for r in policy.rules}
    out = []
    for g in policy.golden:
        for iri in g.expect_fired or ():
            if iri not in decision_rules:
                why = (
                    "is a notification or audit rule, which never fires"
                    if iri in all_rules
                    else "is not a rule of O"
                )
                out.append(
                    _finding(
                        "golden",
                        g.iri,
                        f'golden case "{g.scenario}" expects {iri} to fire, but it {why}',
                        nodes=(g.iri, iri),
                    )
                )
        if g.expect == "APPROVE" and g.expect_fired:
            out.append(
                _finding(
                    "golden",
                    g.iri,
                    f'golden case "{g.scenario}" expects APPROVE but lists rules '
                    "that fire; a fired rule always rejects",
                )
            )
    for scenario, iris in _groups((g.scenario, g.iri) for g in policy.golden).items():
        if len(iris) > 1:
            out.append(
                _finding(
                    "golden",
                    iris[0],
                    f"golden scenario {scenario!r} is defined {len(iris)} times",
                    nodes=tuple(iris),
                )
            )
    return out


def check_satisfiable(policy: m.Policy) -> list[Finding]:
    return [
        _finding(
            "satisfiable",
            r.iri,
            f'Restriction "{r.label}" ({r.iri}) has a condition that can never hold, '
            "so it never rejects anything",
            severity="warning",
            label=r.label,
        )
        for r in policy.rules
        if isinstance(r, m.RestrictionRule) and not condition_can_hold(policy, r)
    ]


def check_invariants(policy: m.Policy) -> list[Finding]:
    findings = check_sod(policy) + check_levels(policy) + check_golden(policy) + check_satisfiable(policy)
    return sorted(findings, key=Finding.sort_key)
