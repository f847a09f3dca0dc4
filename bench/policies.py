"""Synthetic policies in the policy language, for benchmarks (stdlib only).

``write_policy(dir, n_rules, seed=0)`` writes ``dir/policy.ttl``: one ``fab:Policy``, five
transaction types, five authority levels (L1, L2, L3, CFO, Board with ranks 1..5) and
``n_rules`` rules in a fixed mix, repeated every 20 rules:

    0 SegregationOfDutyRule          4 AuditLogRule
    1 RestrictionRule (Membership)   5 RestrictionRule (Comparison, sometimes an override)
    2 FraudCheckRule (AllOf, override) 6 RestrictionRule (AllOf of Membership and Comparison)
    3 NotificationRule               7..19 ApprovalRule (13 of every 20)

plus two or three golden cases whose expectations are COMPUTED here from the rules written
(an independent little evaluator of the language's semantics, below), so they hold. The
output depends only on (n_rules, seed).

Golden transactions carry benign attributes that no restriction matches (country US,
vendor_risk low, risk_score 0, channel branch) and amounts far from every threshold (1.00 and
50,000,000; thresholds lie in 100..5,000,000), so ``change_one_threshold`` never changes
what a golden case expects.

Run ``python3 bench/policies.py DIR N [--seed S]`` to write one by hand.
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

EX = "https://example.com/bench/policy#"
FILE_NAME = "policy.ttl"
TYPES = ("purchase", "wire", "refund", "payroll", "vendor_onboarding")
LEVELS = (("L1", 1), ("L2", 2), ("L3", 3), ("CFO", 4), ("Board", 5))
RANK = dict(LEVELS)
COUNTRIES = ("IR", "KP", "SY", "CU", "RU", "BY", "VE", "MM")
CHANNELS = ("crypto", "cash", "p2p", "prepaid")
EVENTS = ("Approved", "Rejected", "AnyDecision")
EVENT_DECISION = {"Approved": "APPROVE", "Rejected": "REJECT"}
BENIGN = {"country": "US", "vendor_risk": "low", "risk_score": "0", "channel": "branch"}
SMALL = Decimal("1.00")
LARGE = Decimal("50000000")
MIX = ("sod", "membership", "fraud", "notification", "audit", "comparison", "allof")
APPROVAL_LINE = re.compile(
    r'^(ex:(?P<name>\S+) a fab:ApprovalRule ;.*fab:amountThreshold ")(?P<thr>[0-9.]+)("\^\^xsd:decimal ;.*)$',
    re.MULTILINE,
)

_PREFIXES = """\
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix ex: <https://example.com/bench/policy#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix dcterms: <http://purl.org/dc/terms/> .
"""


# --- the rules as plain data, and a small evaluator for the golden expectations ---------------


@dataclass
class Rule:
    name: str
    kind: str  # approval | sod | restriction | notification | audit
    types: tuple[str, ...]
    threshold: Decimal | None = None
    required: str | None = None
    condition: tuple[Any, ...] | None = None  # ("in", attr, values) | ("cmp", attr, op, value) | ("all", ...)
    override: str | None = None
    fraud: bool = False
    event: str | None = None
    recipients: tuple[str, ...] = ()
    min_authority: str | None = None
    ledger: str | None = None
    flags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def iri(self) -> str:
        return EX + self.name

    def applies(self, tx_type: str) -> bool:
        return not self.types or tx_type in self.types


def _holds(cond: tuple[Any, ...], tx: dict[str, Any]) -> bool:
    """Whether a condition holds (every attribute a golden transaction needs is present)."""
    op = cond[0]
    if op == "all":
        return all(_holds(c, tx) for c in cond[1:])
    attr = cond[1]
    raw = tx["amount"] if attr == "amount" else tx["attributes"][attr]
    if op == "in":
        return str(raw) in cond[2]
    cmp_op, value = cond[2], cond[3]
    left: Any = Decimal(str(raw)) if isinstance(value, Decimal) else str(raw)
    return {
        "gt": left > value,
        "ge": left >= value,
        "lt": left < value,
        "le": left <= value,
        "eq": left == value,
        "ne": left != value,
    }[cmp_op]


def evaluate(rules: list[Rule], tx: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """(decision, fired rule IRIs, notified recipients) for a complete golden transaction."""
    t, amount, rank = tx["type"], Decimal(tx["amount"]), RANK[tx["actor_level"]]
    fired = []
    for r in rules:
        if not r.applies(t):
            continue
        if r.kind == "approval":
            assert r.threshold is not None and r.required is not None
            if amount > r.threshold and rank < RANK[r.required]:
                fired.append(r.iri)
        elif r.kind == "sod":
            if tx["approver_id"] == tx["executor_id"]:
                fired.append(r.iri)
        elif r.kind == "restriction":
            assert r.condition is not None
            if _holds(r.condition, tx) and (r.override is None or rank < RANK[r.override]):
                fired.append(r.iri)
    decision = "REJECT" if fired else "APPROVE"
    notified: set[str] = set()
    for r in rules:
        if r.kind != "notification" or not r.applies(t):
            continue
        if r.event in EVENT_DECISION and EVENT_DECISION[r.event] != decision:
            continue
        if r.min_authority is not None and rank < RANK[r.min_authority]:
            continue
        if r.threshold is not None and amount <= r.threshold:
            continue
        notified.update(r.recipients)
    return decision, sorted(fired), sorted(notified)


# --- making the rules -------------------------------------------------------------------------


def _types(rng: random.Random, k_max: int = 2, untyped: float = 0.0) -> tuple[str, ...]:
    if rng.random() < untyped:
        return ()
    return tuple(sorted(rng.sample(TYPES, rng.randint(1, k_max))))


def _amount(rng: random.Random) -> Decimal:
    """A threshold in 100 .. 5,000,000, sometimes with cents."""
    whole = rng.choice((rng.randint(1, 99) * 100, rng.randint(1, 999) * 1000, rng.randint(1, 5000) * 1000))
    cents = rng.choice((0, 0, 0, rng.randint(1, 99)))
    return (Decimal(whole) + Decimal(cents) / 100).quantize(Decimal("0.01"))


def make_rules(n_rules: int, seed: int = 0) -> list[Rule]:
    rng = random.Random(seed)
    rules = []
    for i in range(n_rules):
        slot = i % 20
        kind = MIX[slot] if slot < len(MIX) else "approval"
        name = f"r{i:05d}-{kind}"
        if kind == "approval":
            rules.append(
                Rule(
                    name,
                    "approval",
                    _types(rng, 1),
                    threshold=_amount(rng),
                    required=rng.choice(("L2", "L3", "CFO", "Board")),
                )
            )
        elif kind == "sod":
            rules.append(Rule(name, "sod", _types(rng, 2)))
        elif kind == "membership":
            cond = ("in", "country", tuple(sorted(rng.sample(COUNTRIES, rng.randint(1, 4)))))
            rules.append(Rule(name, "restriction", _types(rng, 3, untyped=0.3), condition=cond))
        elif kind == "fraud":
            cond = (
                "all",
                ("cmp", "vendor_risk", "eq", rng.choice(("high", "critical"))),
                ("cmp", "amount", "gt", _amount(rng)),
            )
            rules.append(
                Rule(
                    name,
                    "restriction",
                    _types(rng, 2),
                    condition=cond,
                    fraud=True,
                    override=rng.choice(("CFO", "Board")),
                )
            )
        elif kind == "comparison":
            cond = ("cmp", "risk_score", rng.choice(("gt", "ge")), Decimal(rng.randint(50, 99)))
            rules.append(
                Rule(
                    name,
                    "restriction",
                    _types(rng, 2),
                    condition=cond,
                    override=rng.choice((None, "L3", "CFO")),
                )
            )
        elif kind == "allof":
            cond = (
                "all",
                ("in", "channel", tuple(sorted(rng.sample(CHANNELS, rng.randint(1, 3))))),
                ("cmp", "amount", "ge", _amount(rng)),
            )
            rules.append(Rule(name, "restriction", _types(rng, 2), condition=cond, fraud=rng.random() < 0.5))
        elif kind == "notification":
            who = tuple(sorted({f"team{rng.randint(1, 40)}@bench.example" for _ in range(rng.randint(1, 2))}))
            rules.append(
                Rule(
                    name,
                    "notification",
                    _types(rng, 2, untyped=0.3),
                    event=rng.choice(EVENTS),
                    recipients=who,
                    min_authority=rng.choice((None, None, "L2", "CFO")),
                    threshold=rng.choice((None, _amount(rng))),
                )
            )
        else:
            flags = tuple(sorted({rng.choice(("sox", "high_value", "override", "pci")) for _ in range(2)}))
            rules.append(
                Rule(
                    name,
                    "audit",
                    _types(rng, 2, untyped=0.5),
                    event=rng.choice(EVENTS),
                    ledger=rng.choice(("immutable", "sox-ledger")),
                    flags=flags,
                    min_authority=rng.choice((None, "L3")),
                )
            )
    return rules


# --- writing Turtle ---------------------------------------------------------------------------


def _str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dec(d: Decimal) -> str:
    return f'"{d}"^^xsd:decimal'


def _value(v: object) -> str:
    return _dec(v) if isinstance(v, Decimal) else _str(str(v))


def _condition(cond: tuple[Any, ...], indent: str) -> str:
    op = cond[0]
    if op == "all":
        inner = f" ,\n{indent}    ".join(_condition(c, indent + "    ") for c in cond[1:])
        return f"[ a fab:AllOf ; fab:operand\n{indent}    {inner} ]"
    if op == "in":
        values = ", ".join(_str(v) for v in cond[2])
        return f"[ a fab:Membership ; fab:attribute {_str(cond[1])} ; fab:value {values} ]"
    return (
        f"[ a fab:Comparison ; fab:attribute {_str(cond[1])} ; fab:operator fab:{cond[2]} ; "
        f"fab:value {_value(cond[3])} ]"
    )


def _applies(r: Rule) -> str:
    return "".join(f" fab:appliesTo ex:{t} ;" for t in r.types)


def _rule_ttl(r: Rule, i: int) -> str:
    scope = "/".join(r.types) or "every type"
    if r.kind == "approval":
        # One line per approval rule: change_one_threshold edits exactly this line.
        return (
            f"ex:{r.name} a fab:ApprovalRule ; "
            f"rdfs:label {_str(f'{scope} approval {i} needs {r.required}')} ;"
            f"{_applies(r)} fab:amountThreshold {_dec(r.threshold)} ; "  # type: ignore[arg-type]
            f"fab:requiredAuthority ex:{r.required} ."
        )
    if r.kind == "sod":
        return (
            f"ex:{r.name} a fab:SegregationOfDutyRule ; "
            f"rdfs:label {_str(f'{scope} approver is not executor {i}')} ;"
            f'{_applies(r)} fab:rationale "four eyes" .'
        )
    if r.kind == "restriction":
        cls = "fab:FraudCheckRule" if r.fraud else "fab:RestrictionRule"
        assert r.condition is not None
        lines = [
            f"ex:{r.name} a {cls} ; rdfs:label {_str(f'{scope} restriction {i}')} ;{_applies(r)}",
            f"    fab:condition {_condition(r.condition, '    ')}",
        ]
        if r.override:
            lines[-1] += f" ;\n    fab:overrideAuthority ex:{r.override}"
        return "\n".join(lines) + " ."
    parts = [
        f"ex:{r.name} a fab:{'NotificationRule' if r.kind == 'notification' else 'AuditLogRule'} ; "
        f"rdfs:label {_str(f'{scope} {r.kind} {i}')} ;{_applies(r)} fab:onEvent fab:{r.event}"
    ]
    if r.kind == "notification":
        parts.append("fab:recipient " + ", ".join(_str(x) for x in r.recipients))
        if r.threshold is not None:
            parts.append(f"fab:amountThreshold {_dec(r.threshold)}")
    else:
        parts.append(f"fab:ledger {_str(r.ledger or '')}")
        if r.flags:
            parts.append("fab:flag " + ", ".join(_str(x) for x in r.flags))
    if r.min_authority:
        parts.append(f"fab:minAuthority ex:{r.min_authority}")
    return " ; ".join(parts) + " ."


def golden_transactions(rules: list[Rule]) -> list[dict[str, Any]]:
    """Two or three golden transactions (complete: every attribute any rule reads)."""
    base = {"approver_id": "u-1", "executor_id": "u-2", "attributes": dict(BENIGN)}
    cases = [
        {
            "scenario": "small_purchase_board_actor",
            "type": "purchase",
            "amount": str(SMALL),
            "actor_level": "Board",
        },
        {
            "scenario": "large_purchase_l1_actor",
            "type": "purchase",
            "amount": str(LARGE),
            "actor_level": "L1",
        },
    ]
    sod = next((r for r in rules if r.kind == "sod"), None)
    if sod is not None:
        cases.append(
            {
                "scenario": f"same_approver_executor_{sod.types[0]}",
                "type": sod.types[0],
                "amount": str(SMALL),
                "actor_level": "Board",
                "executor_id": "u-1",
            }
        )
    return [{**base, **c} for c in cases]


def _golden_ttl(n: int, tx: dict[str, Any], rules: list[Rule]) -> str:
    decision, fired, notified = evaluate(rules, tx)
    attrs = " , ".join(
        f"[ fab:attribute {_str(k)} ; fab:value {_str(v)} ]" for k, v in sorted(tx["attributes"].items())
    )
    lines = [
        f"ex:golden-{n} a fab:GoldenCase ; fab:scenario {_str(tx['scenario'])} ;",
        f"    fab:txType ex:{tx['type']} ; fab:txAmount {_dec(Decimal(tx['amount']))} ; "
        f"fab:txActorLevel ex:{tx['actor_level']} ;",
        f"    fab:txApprover {_str(tx['approver_id'])} ; fab:txExecutor {_str(tx['executor_id'])} ;",
        f"    fab:txAttribute {attrs} ;",
        f"    fab:expect fab:{'Approve' if decision == 'APPROVE' else 'Reject'}",
    ]
    if fired:
        lines[-1] += " ;\n    fab:expectFired " + " , ".join(f"<{iri}>" for iri in fired)
    if notified:
        lines[-1] += " ;\n    fab:expectNotified " + " , ".join(_str(x) for x in notified)
    return "\n".join(lines) + " ."


def policy_text(n_rules: int, seed: int = 0) -> str:
    rules = make_rules(n_rules, seed)
    out = [
        _PREFIXES,
        f"# Synthetic benchmark policy: {n_rules} rules, seed {seed} (bench/policies.py).",
        f'ex:policy a fab:Policy ; dcterms:title "Benchmark policy, {n_rules} rules" ; '
        f'fab:policyVersion "seed-{seed}" .',
    ]
    out += [
        f"ex:{t} a fab:TransactionType ; fab:code {_str(t)} ; "
        f"rdfs:label {_str(t.replace('_', ' ').title())} ."
        for t in TYPES
    ]
    out += [
        f"ex:{code} a fab:AuthorityLevel ; fab:code {_str(code)} ; fab:rank {rank} ." for code, rank in LEVELS
    ]
    out += [_rule_ttl(r, i) for i, r in enumerate(rules)]
    out += [_golden_ttl(n, tx, rules) for n, tx in enumerate(golden_transactions(rules), 1)]
    return "\n".join(out) + "\n"


def write_policy(directory: str | Path, n_rules: int, seed: int = 0) -> Path:
    """Write ``directory/policy.ttl`` (creating the directory); return the file's path."""
    if n_rules < 1:
        raise ValueError("a policy needs at least one rule")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / FILE_NAME
    path.write_text(policy_text(n_rules, seed), encoding="utf-8")
    return path


def change_one_threshold(directory: str | Path) -> dict[str, str]:
    """Raise exactly one approval rule's threshold by 1 (the middle approval rule, so the edit
    is deterministic); return {rule, old, new}. Golden expectations are unaffected."""
    path = Path(directory) / FILE_NAME
    text = path.read_text(encoding="utf-8")
    matches = list(APPROVAL_LINE.finditer(text))
    if not matches:
        raise ValueError(f"{path} has no approval rule")
    mt = matches[len(matches) // 2]
    old = Decimal(mt["thr"])
    new = old + 1
    line = mt.group(1) + str(new) + mt.group(4)
    path.write_text(text[: mt.start()] + line + text[mt.end() :], encoding="utf-8")
    return {"rule": EX + mt["name"], "old": str(old), "new": str(new)}


def main() -> None:
    ap = argparse.ArgumentParser(description="write a synthetic policy DIR/policy.ttl")
    ap.add_argument("directory")
    ap.add_argument("n_rules", type=int)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(write_policy(args.directory, args.n_rules, args.seed))


if __name__ == "__main__":
    main()
