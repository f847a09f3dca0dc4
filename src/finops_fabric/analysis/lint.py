"""`mu analyze`: what the exact decision space of one O says about its rules.

For every type a rule concerns (each declared type it applies to; every type atom for a rule
without ``appliesTo``):

- *never fires*: no transaction makes the decision rule reject;
- *fails closed only*: it rejects only transactions that lack (or have unreadable) fields it
  needs: its own condition, threshold and authority never reject a well-formed transaction;
- *shadowed*: every transaction it rejects is rejected by another rule (or input check) too, so
  removing it changes no decision (it changes the fired rules only);
- *never triggers*: a notification or audit rule that matches no transaction, whatever the
  decision;
- golden cases that no longer exercise a rule they name in ``expectFired``.

The same engine decides the ``satisfiable`` invariant exactly (:func:`condition_can_hold`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from finops_fabric import model as m
from finops_fabric.analysis.encode import Encoder
from finops_fabric.analysis.fields import Atom, TextField, Unsupported, point_of
from finops_fabric.analysis.mdd import Manager
from finops_fabric.analysis.space import Side, applies, build_space, type_field
from finops_fabric.interpreter import Interpreter

#: Past this many decision rules for one type, a shadowed rule's single covering rules are not
#: searched (the combination is still reported exactly).
COVER_SEARCH_LIMIT = 400


def type_label(atom: Atom) -> str:
    code = point_of(atom.text)
    if code is not None:
        return code
    return "(no type)" if atom.text is None else "(an undeclared type)"


@dataclass
class Analysis:
    ontology_hash: str | None
    language: str
    never_fires: dict[str, list[str]] = field(default_factory=dict)  # rule -> types
    fails_closed_only: dict[str, list[str]] = field(default_factory=dict)
    shadowed: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # rule -> type -> covering rules
    never_triggers: dict[str, list[str]] = field(default_factory=dict)
    golden: list[dict[str, Any]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    @property
    def findings(self) -> int:
        return (
            len(self.never_fires)
            + len(self.fails_closed_only)
            + len(self.shadowed)
            + len(self.never_triggers)
            + len(self.golden)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ontology_hash": self.ontology_hash,
            "language": self.language,
            "findings": self.findings,
            "never_fires": [{"rule": r, "types": t} for r, t in sorted(self.never_fires.items())],
            "fails_closed_only": [{"rule": r, "types": t} for r, t in sorted(self.fails_closed_only.items())],
            "shadowed": [
                {"rule": r, "types": sorted(by), "by": {t: cover for t, cover in sorted(by.items())}}
                for r, by in sorted(self.shadowed.items())
            ],
            "never_triggers": [{"rule": r, "types": t} for r, t in sorted(self.never_triggers.items())],
            "golden": self.golden,
            "unsupported": self.unsupported,
        }


def _concerns(rule: m.Rule, atom: Atom) -> bool:
    """The type atoms a rule is judged on: its own types, or every atom when it has none."""
    return applies(rule, atom.text) and (atom.text is not None or not rule.applies_to)


def analyze(policy: m.Policy, language: str = "1.0", ontology_hash: str | None = None) -> Analysis:
    side = Side(policy, language)
    tf = type_field([side])
    out = Analysis(ontology_hash, language)
    possible: dict[str, set[str]] = {}  # rule -> types where it can fire
    well: dict[str, set[str]] = {}  # rule -> types where it can fire on a well-formed transaction
    judged: dict[str, list[str]] = {}
    triggers: dict[str, set[str]] = {}
    effect_judged: dict[str, list[str]] = {}
    for atom in tf.atoms:
        label = type_label(atom)
        try:
            _judge_type(policy, side, tf, atom, label, out, possible, well, judged, triggers, effect_judged)
        except Unsupported as exc:
            out.unsupported.append(f"{label}: {exc}")
    for iri, types in judged.items():
        if not possible.get(iri):
            out.never_fires[iri] = types
        elif not well.get(iri):
            out.fails_closed_only[iri] = types
    for iri, types in effect_judged.items():
        if not triggers.get(iri):
            out.never_triggers[iri] = types
    out.golden = _golden(policy, language)
    return out


def _judge_type(
    policy: m.Policy,
    side: Side,
    tf: TextField,
    atom: Atom,
    label: str,
    out: Analysis,
    possible: dict[str, set[str]],
    well: dict[str, set[str]],
    judged: dict[str, list[str]],
    triggers: dict[str, set[str]],
    effect_judged: dict[str, list[str]],
) -> None:
    space = build_space(atom, [side])
    mgr = Manager(space.sizes)
    enc = Encoder(mgr, space, side, tf)
    rules = enc.decision_rules()
    fires = dict(rules)
    for r in policy.rules:
        if r.kind in m.DECISION_KINDS and _concerns(r, atom):
            judged.setdefault(r.iri, []).append(label)
            if fires[r.iri] != mgr.false:
                possible.setdefault(r.iri, set()).add(label)
            if enc.holds(r) != mgr.false:  # type: ignore[arg-type]
                well.setdefault(r.iri, set()).add(label)
    _shadowed(
        mgr,
        rules,
        {r.iri for r in policy.rules if r.kind in m.DECISION_KINDS and _concerns(r, atom)},
        label,
        out,
    )
    decision = mgr.any_of([n for _, n in rules])
    approve = mgr.not_(decision)
    for r in policy.rules:
        if isinstance(r, m.NotificationRule | m.AuditLogRule) and _concerns(r, atom):
            effect_judged.setdefault(r.iri, []).append(label)
            on_a, on_r = enc.effect(r)
            if mgr.or_(mgr.and_(on_a, approve), mgr.and_(on_r, decision)) != mgr.false:
                triggers.setdefault(r.iri, set()).add(label)


def _shadowed(
    mgr: Manager, rules: Sequence[tuple[str, int]], mine: set[str], label: str, out: Analysis
) -> None:
    """Rules whose every rejection another rule makes too (prefix/suffix ORs: linear in rules)."""
    nodes = [n for _, n in rules]
    prefix = [mgr.false]
    for n in nodes:
        prefix.append(mgr.or_(prefix[-1], n))
    suffix = [mgr.false] * (len(nodes) + 1)
    for i in range(len(nodes) - 1, -1, -1):
        suffix[i] = mgr.or_(suffix[i + 1], nodes[i])
    for i, (iri, n) in enumerate(rules):
        if iri not in mine or n == mgr.false:
            continue
        others = mgr.or_(prefix[i], suffix[i + 1])
        if mgr.and_(n, mgr.not_(others)) != mgr.false:
            continue
        covers = []
        if len(rules) <= COVER_SEARCH_LIMIT:
            covers = [
                o for j, (o, on) in enumerate(rules) if j != i and mgr.and_(n, mgr.not_(on)) == mgr.false
            ][:3]
        out.shadowed.setdefault(iri, {})[label] = covers or ["(the other rules together)"]


def _golden(policy: m.Policy, language: str) -> list[dict[str, Any]]:
    interp = Interpreter(policy, language)
    found = []
    for case in policy.golden:
        fired = {r for r, _ in interp.decide(case.transaction()).fired}
        for iri in case.expect_fired or ():
            rule = policy.rule(iri)
            if rule is None or iri in fired:
                continue
            why = (
                f"it does not apply to type {case.tx_type!r}"
                if rule.applies_to and case.tx_type not in rule.applies_to
                else "it does not fire on the case's transaction"
            )
            found.append({"scenario": case.scenario, "case": case.iri, "rule": iri, "why": why})
    return found


def condition_can_hold(policy: m.Policy, rule: m.RestrictionRule) -> bool:
    """Whether some transaction that has every field the condition reads makes it hold (exact;
    True when the analysis cannot judge, e.g. an ordering with an undeclared level code)."""
    probe = replace(rule, applies_to=(), override=None)
    mini = replace(policy, rules=(probe,), golden=())
    side = Side(mini, "1.0")
    tf = type_field([side])
    reads_type = any(leaf.attribute == "type" for leaf in m.condition_leaves(rule.condition))
    atoms = [a for a in tf.atoms if a.text is not None] if reads_type else [tf.atoms[-1]]
    try:
        for atom in atoms:
            space = build_space(atom, [side])
            mgr = Manager(space.sizes)
            if Encoder(mgr, space, side, tf).holds(probe) != mgr.false:
                return True
    except Unsupported:
        return True
    return False
