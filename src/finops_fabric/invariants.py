"""The invariant gate: checks SHACL cannot state simply, each a named invariant.

- ``sod``: no role may both approve and execute a type a segregation-of-duty rule covers;
- ``levels``: authority codes and ranks are unique; transaction type codes are unique;
- ``golden``: golden cases reference known rules (decision rules for ``expectFired``) and
  have unique scenario names;
- ``satisfiable`` (warning): a restriction whose condition can never hold.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from finops_fabric import model as m
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


def _never_holds(c: m.Condition) -> bool:
    """A conservative check: True only when the condition provably can never hold."""
    if isinstance(c, m.AnyOf):
        return all(_never_holds(o) for o in c.operands)
    if isinstance(c, m.AllOf):
        if any(_never_holds(o) for o in c.operands):
            return True
        by_attr: dict[str, list[m.Comparison | m.Membership]] = defaultdict(list)
        for o in c.operands:
            if isinstance(o, m.Comparison | m.Membership) and o.attribute != "actor_level":
                by_attr[o.attribute].append(o)
        return any(_contradictory(leaves) for leaves in by_attr.values())
    return False


def _contradictory(leaves: list[m.Comparison | m.Membership]) -> bool:
    lo: tuple[Decimal, bool] | None = None  # (bound, inclusive)
    hi: tuple[Decimal, bool] | None = None
    allowed: set[str] | None = None
    for leaf in leaves:
        if isinstance(leaf, m.Membership):
            vals = {str(v) for v in leaf.values}
            allowed = vals if allowed is None else allowed & vals
            continue
        v = leaf.value
        if leaf.operator == "eq":
            allowed = {str(v)} if allowed is None else allowed & {str(v)}
        if isinstance(v, Decimal):
            if leaf.operator in ("gt", "ge") and (
                lo is None or v > lo[0] or (v == lo[0] and leaf.operator == "gt")
            ):
                lo = (v, leaf.operator == "ge")
            if leaf.operator in ("lt", "le") and (
                hi is None or v < hi[0] or (v == hi[0] and leaf.operator == "lt")
            ):
                hi = (v, leaf.operator == "le")
    if allowed is not None and not allowed:
        return True
    if lo is not None and hi is not None and (lo[0] > hi[0] or (lo[0] == hi[0] and not (lo[1] and hi[1]))):
        return True
    if allowed is not None and (lo is not None or hi is not None):
        nums = []
        for a in allowed:
            try:
                nums.append(Decimal(a))
            except ArithmeticError:
                return False
        return not any(
            (lo is None or n > lo[0] or (n == lo[0] and lo[1]))
            and (hi is None or n < hi[0] or (n == hi[0] and hi[1]))
            for n in nums
        )
    return False


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
        if isinstance(r, m.RestrictionRule) and _never_holds(r.condition)
    ]


def check_invariants(policy: m.Policy) -> list[Finding]:
    findings = check_sod(policy) + check_levels(policy) + check_golden(policy) + check_satisfiable(policy)
    return sorted(findings, key=Finding.sort_key)
