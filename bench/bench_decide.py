"""The hot path: ``enforcer.decide(tx)`` of A made by every generator version, versus
hand-written functions, in one run.

    python3 bench/bench_decide.py [--quick] [--json] [--versions=1,2,3]

For each generator version it generates A for the 15-rule p15 policy (embedded below) with
``mu init`` + ``mu generate --generator-version=V`` in a temporary store (FABRIC_HOME), loads
it with ``load_enforcer``, and times ``decide`` in two comparisons, all in one interleaved run:

1. Policy language 1.0 (generators 1 and 2) over a fixed mix of transactions against
   ``hand_decide``: the same 15 rules written by hand in plain Python, doing the same work
   (amount parsed to Decimal from its string, level rank looked up, every rule of the type
   evaluated, the same decision object with decision, fired (rule, reason) list, notifications
   and audit). Before timing, every such A and the hand-written function must give the same
   decision, fired rules, notifications and audit on every transaction of the mix (else
   abort); reasons are compared too and reported.
2. Every version over the same mix with amounts already Decimal, plus three transactions that
   language 1.1 refuses, against ``bare_decide`` (``_p15_bare.py``): the 15 rules written by
   hand with language 1.1's semantics (generator 3's: the input checks included) that returns
   the fired rule IRIs only, no reasons, no decision object. Before timing, generator 3's
   fired rules must equal bare_decide's on every transaction (else abort). Generators 1 and 2
   implement language 1.0 (no input checks): their rows are there to compare, not equal.

Generators of the same language must agree exactly; generator 3 must agree exactly with
generator 2 on every transaction language 1.1 accepts.

It also reports, per version, the size of A (files and bytes), the time of ``build`` (the
generator alone, in-process, best of 5), the wall time of the whole ``mu generate`` (gates
included, one run) and of ``load_enforcer``.

Method: timeit-style, each callable runs the whole mix ``number`` times per repeat (about 4 ms),
repeats alternate between ALL the callables (every version and the hand-written ones), and the
BEST repeat is reported. Ratios compare figures from the same run. Targets: generated within 1.5x
of hand-written; generator 3's decide within 1.5x of bare_decide.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
from _p15_bare import FAB, bare_decide

c.ensure_package()

TARGET_RATIO = 1.5

# /work/shared/acceptance/data/p15/policy.ttl, verbatim (a user's clone has no ../shared).
P15 = """\
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix ex: <https://example.com/acme/policy#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix dcterms: <http://purl.org/dc/terms/> .
# A 15-rule policy for the minimal-blast-radius scenario (5.1).
ex:policy a fab:Policy ; dcterms:title "ACME fifteen controls" .
ex:purchase a fab:TransactionType ; fab:code "purchase" ; rdfs:label "Purchase" .
ex:wire a fab:TransactionType ; fab:code "wire" ; rdfs:label "Wire" .
ex:refund a fab:TransactionType ; fab:code "refund" ; rdfs:label "Refund" .
ex:payroll a fab:TransactionType ; fab:code "payroll" ; rdfs:label "Payroll" .
ex:vendor_onboarding a fab:TransactionType ; fab:code "vendor_onboarding" ; rdfs:label "Vendor onboarding" .
ex:L1 a fab:AuthorityLevel ; fab:code "L1" ; fab:rank 1 .
ex:L2 a fab:AuthorityLevel ; fab:code "L2" ; fab:rank 2 .
ex:L3 a fab:AuthorityLevel ; fab:code "L3" ; fab:rank 3 .
ex:CFO a fab:AuthorityLevel ; fab:code "CFO" ; fab:rank 4 .
ex:Board a fab:AuthorityLevel ; fab:code "Board" ; fab:rank 5 .
ex:approval-purchase a fab:ApprovalRule ; rdfs:label "purchase over 100000 needs L3" ;
    fab:appliesTo ex:purchase ; fab:amountThreshold "100000"^^xsd:decimal ; fab:requiredAuthority ex:L3 .
ex:approval-purchase-board a fab:ApprovalRule ; rdfs:label "purchase over 1000000 needs Board" ;
    fab:appliesTo ex:purchase ; fab:amountThreshold "1000000"^^xsd:decimal ; fab:requiredAuthority ex:Board .
ex:approval-wire a fab:ApprovalRule ; rdfs:label "wire over 50000 needs L3" ;
    fab:appliesTo ex:wire ; fab:amountThreshold "50000"^^xsd:decimal ; fab:requiredAuthority ex:L3 .
ex:approval-wire-cfo a fab:ApprovalRule ; rdfs:label "wire over 1000000 needs CFO" ;
    fab:appliesTo ex:wire ; fab:amountThreshold "1000000"^^xsd:decimal ; fab:requiredAuthority ex:CFO .
ex:approval-refund a fab:ApprovalRule ; rdfs:label "refund over 10000 needs L2" ;
    fab:appliesTo ex:refund ; fab:amountThreshold "10000"^^xsd:decimal ; fab:requiredAuthority ex:L2 .
ex:approval-payroll a fab:ApprovalRule ; rdfs:label "payroll over 250000 needs CFO" ;
    fab:appliesTo ex:payroll ; fab:amountThreshold "250000"^^xsd:decimal ; fab:requiredAuthority ex:CFO .
ex:approval-vendor a fab:ApprovalRule ; rdfs:label "vendor_onboarding over 0.01 needs L2" ;
    fab:appliesTo ex:vendor_onboarding ; fab:amountThreshold "0.01"^^xsd:decimal ; fab:requiredAuthority ex:L2 .
ex:approval-refund-l3 a fab:ApprovalRule ; rdfs:label "refund over 50000 needs L3" ;
    fab:appliesTo ex:refund ; fab:amountThreshold "50000"^^xsd:decimal ; fab:requiredAuthority ex:L3 .
ex:approval-payroll-board a fab:ApprovalRule ; rdfs:label "payroll over 5000000 needs Board" ;
    fab:appliesTo ex:payroll ; fab:amountThreshold "5000000"^^xsd:decimal ; fab:requiredAuthority ex:Board .
ex:approval-purchase-l2 a fab:ApprovalRule ; rdfs:label "purchase over 25000 needs L2" ;
    fab:appliesTo ex:purchase ; fab:amountThreshold "25000"^^xsd:decimal ; fab:requiredAuthority ex:L2 .
ex:sod-wire a fab:SegregationOfDutyRule ; rdfs:label "Wire approver is not its executor" ; fab:appliesTo ex:wire .
ex:sod-payroll a fab:SegregationOfDutyRule ; rdfs:label "Payroll approver is not its executor" ; fab:appliesTo ex:payroll .
ex:sanctions a fab:RestrictionRule ; rdfs:label "No sanctioned countries" ;
    fab:condition [ a fab:Membership ; fab:attribute "country" ; fab:value "IR", "KP", "SY", "CU" ] .
ex:fraud-check a fab:FraudCheckRule ; rdfs:label "High-risk vendors over $25k need the CFO" ;
    fab:condition [ a fab:AllOf ; fab:operand [ a fab:Comparison ; fab:attribute "vendor_risk" ; fab:operator fab:eq ; fab:value "high" ] , [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:gt ; fab:value "25000"^^xsd:decimal ] ] ;
    fab:overrideAuthority ex:CFO .
ex:notify-finance a fab:NotificationRule ; rdfs:label "Finance hears about rejections" ; fab:onEvent fab:Rejected ; fab:recipient "finance@acme.example" .
ex:case-105k-L2 a fab:GoldenCase ; fab:scenario "transaction_105k_L2_actor" ;
    fab:txType ex:purchase ; fab:txAmount "105000"^^xsd:decimal ; fab:txActorLevel ex:L2 ;
    fab:txApprover "u-1" ; fab:txExecutor "u-2" ;
    fab:txAttribute [ fab:attribute "country" ; fab:value "US" ] , [ fab:attribute "vendor_risk" ; fab:value "low" ] ;
    fab:expect fab:Reject ; fab:expectFired ex:approval-purchase ; fab:expectNotified "finance@acme.example" .
ex:case-105k-L3 a fab:GoldenCase ; fab:scenario "transaction_105k_L3_actor" ;
    fab:txType ex:purchase ; fab:txAmount "105000"^^xsd:decimal ; fab:txActorLevel ex:L3 ;
    fab:txApprover "u-1" ; fab:txExecutor "u-2" ;
    fab:txAttribute [ fab:attribute "country" ; fab:value "US" ] , [ fab:attribute "vendor_risk" ; fab:value "low" ] ;
    fab:expect fab:Approve .
"""  # noqa: E501


# --- the mix of transactions -------------------------------------------------------------------


def _tx(n: int, tx_type: str | None, amount: str, level: str, **kw: Any) -> dict[str, Any]:
    tx: dict[str, Any] = {
        "id": f"tx-{n}",
        "amount": amount,
        "currency": "USD",
        "actor_id": "u-7",
        "actor_level": level,
        "approver_id": kw.pop("approver", "u-1"),
        "executor_id": kw.pop("executor", "u-2"),
        "attributes": kw.pop("attributes", {"country": "US", "vendor_risk": "low"}),
    }
    if tx_type is not None:
        tx["type"] = tx_type
    assert not kw
    return tx


MIX: list[dict[str, Any]] = [
    _tx(1, "purchase", "105000.00", "L2"),  # above 100k, needs L3
    _tx(2, "purchase", "105000.00", "L3"),  # approved
    _tx(3, "purchase", "2000000.00", "L3"),  # above 1M, needs Board
    _tx(4, "purchase", "30000.00", "L1"),  # above 25k, needs L2
    _tx(5, "purchase", "950.00", "L1"),  # below every threshold
    _tx(6, "wire", "60000.00", "L2"),  # above 50k, needs L3
    _tx(7, "wire", "60000.00", "L3", executor="u-1"),  # approver = executor
    _tx(8, "wire", "2000000.00", "CFO"),  # approved
    _tx(9, "refund", "12000.00", "L1"),  # above 10k, needs L2
    _tx(10, "refund", "60000.00", "L2"),  # above 50k, needs L3
    _tx(11, "refund", "500.00", "L1"),  # approved
    _tx(12, "payroll", "300000.00", "L3"),  # above 250k, needs CFO
    _tx(13, "payroll", "6000000.00", "CFO"),  # above 5M, needs Board
    _tx(14, "payroll", "100000.00", "L2", executor="u-1"),  # approver = executor
    _tx(15, "payroll", "90000.00", "L2"),  # approved
    _tx(16, "vendor_onboarding", "100.00", "L1"),  # above 0.01, needs L2
    _tx(17, "vendor_onboarding", "100.00", "L2"),  # approved
    _tx(18, "purchase", "500.00", "L1", attributes={"country": "IR", "vendor_risk": "low"}),  # sanctioned
    _tx(19, "purchase", "30000.00", "L2", attributes={"country": "US", "vendor_risk": "high"}),  # fraud
    _tx(20, "purchase", "30000.00", "CFO", attributes={"country": "US", "vendor_risk": "high"}),  # override
    _tx(21, "wire", "1000.00", "L1", attributes={}),  # attributes missing: fails closed
    _tx(22, None, "1000.00", "L2"),  # type missing: fails closed on every typed rule
]


# --- the hand-written enforcer for exactly the p15 policy ---------------------------------------

P = "https://example.com/acme/policy#"
RANKS = {"L1": 1, "L2": 2, "L3": 3, "CFO": 4, "Board": 5}
_PLAIN = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*").fullmatch
MISSING_AMOUNT = "field 'amount' is missing or not a decimal; the rule fails closed"
MISSING_LEVEL = "field 'actor_level' is missing or not a known authority level; the rule fails closed"
# Per type, its approval rules in rule-IRI order: (rule, threshold, threshold text, rank, code).
APPROVALS: dict[str, tuple[tuple[str, Decimal, str, int, str], ...]] = {
    "purchase": (
        (P + "approval-purchase", Decimal("100000"), "100000", 3, "L3"),
        (P + "approval-purchase-board", Decimal("1000000"), "1000000", 5, "Board"),
        (P + "approval-purchase-l2", Decimal("25000"), "25000", 2, "L2"),
    ),
    "wire": (
        (P + "approval-wire", Decimal("50000"), "50000", 3, "L3"),
        (P + "approval-wire-cfo", Decimal("1000000"), "1000000", 4, "CFO"),
    ),
    "refund": (
        (P + "approval-refund", Decimal("10000"), "10000", 2, "L2"),
        (P + "approval-refund-l3", Decimal("50000"), "50000", 3, "L3"),
    ),
    "payroll": (
        (P + "approval-payroll", Decimal("250000"), "250000", 4, "CFO"),
        (P + "approval-payroll-board", Decimal("5000000"), "5000000", 5, "Board"),
    ),
    "vendor_onboarding": ((P + "approval-vendor", Decimal("0.01"), "0.01", 2, "L2"),),
}
SOD = {"wire": P + "sod-wire", "payroll": P + "sod-payroll"}
TYPED_RULES = tuple(sorted([r[0] for rs in APPROVALS.values() for r in rs] + list(SOD.values())))
FRAUD, SANCTIONS, NOTIFY = P + "fraud-check", P + "sanctions", P + "notify-finance"
FRAUD_LIMIT, FRAUD_OVERRIDE_RANK = Decimal("25000"), 4
FRAUD_REASON = 'High-risk vendors over $25k need the CFO: amount > 25000 and vendor_risk = "high"'
FRAUD_OVERRIDE = "; override needs CFO or above, actor is "
SANCTIONED = frozenset(("IR", "KP", "SY", "CU"))
SANCTIONS_REASON = 'No sanctioned countries: country is one of "CU", "IR", "KP", "SY"'


def _decimal(v: object) -> Decimal | None:
    if type(v) is str:
        return Decimal(v) if _PLAIN(v) else None
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, Decimal):
        return v if v.is_finite() else None
    return None


def _text(v: object) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal):
        return str(v) if v.is_finite() else None
    return None


class HandDecision:
    __slots__ = ("audit", "decision", "fired", "notifications", "transaction_id")

    def __init__(
        self,
        transaction_id: object,
        decision: str,
        fired: list[tuple[str, str]],
        notifications: list[tuple[str, str]],
        audit: list[tuple[str, str, tuple[str, ...]]],
    ) -> None:
        self.transaction_id = transaction_id
        self.decision = decision
        self.fired = fired
        self.notifications = notifications
        self.audit = audit

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "decision": self.decision,
            "fired": [{"rule": r, "reason": why} for r, why in self.fired],
            "notifications": [{"rule": r, "recipient": to} for r, to in self.notifications],
            "audit": [{"rule": r, "ledger": led, "flags": list(flags)} for r, led, flags in self.audit],
            "enforcer_hash": "hand-written",
        }


def hand_decide(raw: dict[str, Any]) -> HandDecision:
    get = raw.get
    t = get("type")
    if type(t) is not str:
        t = None
    amount = _decimal(get("amount"))
    level = get("actor_level")
    if type(level) is str:
        rank = RANKS.get(level)
    else:
        level = rank = None
    attrs = get("attributes")
    if type(attrs) is not dict:
        attrs = {}
    fired: list[tuple[str, str]] = []
    if t is not None:
        for rule, threshold, threshold_text, required, code in APPROVALS.get(t, ()):
            if amount is None:
                fired.append((rule, MISSING_AMOUNT))
            elif amount > threshold:
                if rank is None:
                    fired.append((rule, MISSING_LEVEL))
                elif rank < required:
                    fired.append(
                        (
                            rule,
                            f"amount {amount} > {threshold_text} requires {code} or above; actor is {level}",
                        )
                    )
    # fraud-check (every type): vendor_risk = high and amount > 25000, unless CFO or above
    risk = _text(attrs.get("vendor_risk"))
    if amount is None or risk is None:
        missing = [n for n, v in (("amount", amount), ("vendor_risk", risk)) if v is None]
        fired.append(
            (FRAUD, "missing or invalid field(s): " + ", ".join(missing) + "; the rule fails closed")
        )
    elif amount > FRAUD_LIMIT and risk == "high":
        if rank is None:
            fired.append((FRAUD, MISSING_LEVEL))
        elif rank < FRAUD_OVERRIDE_RANK:
            seen = f" (transaction: amount={amount}, vendor_risk={risk})"
            fired.append((FRAUD, FRAUD_REASON + seen + FRAUD_OVERRIDE + str(level)))
    # sanctions (every type)
    country = _text(attrs.get("country"))
    if country is None:
        fired.append((SANCTIONS, "missing or invalid field(s): country; the rule fails closed"))
    elif country in SANCTIONED:
        fired.append((SANCTIONS, f"{SANCTIONS_REASON} (transaction: country={country})"))
    if t is None:
        fired.extend(
            (r, f"field 'type' is missing; rule {r} applies to specific types, so it fails closed")
            for r in TYPED_RULES
        )
        fired.sort()
    elif t in SOD:
        approver, executor = _text(get("approver_id")), _text(get("executor_id"))
        if approver is None or executor is None:
            missing = [n for n, v in (("approver_id", approver), ("executor_id", executor)) if v is None]
            fired.append((SOD[t], "missing field(s): " + ", ".join(missing) + "; the rule fails closed"))
        elif approver == executor:
            fired.append((SOD[t], f"approver {approver} is also the executor (segregation of duty)"))
    if fired:
        return HandDecision(get("id"), "REJECT", fired, [(NOTIFY, "finance@acme.example")], [])
    return HandDecision(get("id"), "APPROVE", fired, [], [])


# --- running ---------------------------------------------------------------------------------


def generate_a(work: Path, version: str) -> tuple[Path, float]:
    """A for p15 made by generator ``version``, by the CLI in a fresh store (FABRIC_HOME=work/home);
    with the wall time of the ``mu generate`` run."""
    onto = work / "p15" / "policy.ttl"
    if not onto.exists():
        onto.parent.mkdir()
        onto.write_text(P15, encoding="utf-8")
    env = c.child_env(work / f"home-v{version}")
    out = work / f"A-v{version}"
    wall = 0.0
    for args in (
        ["init"],
        ["generate", f"--input={onto}", f"--output={out}", f"--generator-version={version}"],
    ):
        t0 = time.perf_counter()
        proc = subprocess.run(c.mu_command() + args, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(
                f"mu {args[0]} failed (exit {proc.returncode}); nothing measured:\n{proc.stdout}{proc.stderr}"
            )
    return out, wall


def _comparable(d: dict[str, Any]) -> tuple[Any, ...]:
    return (
        d["transaction_id"],
        d["decision"],
        tuple(sorted(f["rule"] for f in d["fired"])),
        tuple(sorted((n["rule"], n["recipient"]) for n in d["notifications"])),
        tuple(sorted((a["rule"], a["ledger"], tuple(a["flags"])) for a in d["audit"])),
    )


def check_same(decide: Any) -> tuple[bool, list[str]]:
    """Abort unless both give the same decisions; return (reasons identical, reason differences)."""
    reason_diffs = []
    for tx in MIX:
        gen, hand = decide(tx).to_dict(), hand_decide(tx).to_dict()
        if _comparable(gen) != _comparable(hand):
            sys.exit(
                f"ABORT: generated and hand-written disagree on {tx['id']}:\n  generated   "
                f"{_comparable(gen)}\n  hand-written {_comparable(hand)}"
            )
        if sorted((f["rule"], f["reason"]) for f in gen["fired"]) != sorted(
            (f["rule"], f["reason"]) for f in hand["fired"]
        ):
            reason_diffs.append(f"{tx['id']}: generated {gen['fired']} / hand-written {hand['fired']}")
    return not reason_diffs, reason_diffs


def check_versions_agree(decides: dict[str, Any], languages: dict[str, str]) -> None:
    """Abort unless generator versions of one policy language give exactly the same decision JSON
    (but hash(A)) and those of different languages agree wherever both accept the transaction
    (language 1.1 refuses what 1.0 decided: there bare_decide names an input check)."""
    first, *others = decides
    for tx in MIX:
        want = {**decides[first](tx).to_dict(), "enforcer_hash": None}
        refused = any(r.startswith(FAB + "FailClosed/") for r in bare_decide(tx))
        for v in others:
            if refused and languages[v] != languages[first]:
                continue
            got = {**decides[v](tx).to_dict(), "enforcer_hash": None}
            if got != want:
                sys.exit(f"ABORT: v{v} and v{first} decide {tx['id']} differently:\n  {got}\n  {want}")


# --- the bare comparison: amounts already Decimal, rule ids only -------------------------------

BARE_MIX: list[dict[str, Any]] = [{**tx, "amount": Decimal(tx["amount"])} for tx in MIX] + [
    _tx(23, "PURCHASE", "999999999", "L1"),  # not a declared type (language 1.1 refuses it)
    _tx(24, "purchase", "-5.00", "L3"),  # a negative amount
    _tx(25, "purchase", "100.00", "l3"),  # not a declared level
]
for _tx_ in BARE_MIX[-3:]:
    _tx_["amount"] = Decimal(_tx_["amount"])


def check_bare(decide: Any) -> None:
    """Abort unless generator 3's decide fires exactly bare_decide's rules on the bare mix."""
    for tx in BARE_MIX:
        d = decide(tx).to_dict()
        gen, bare = sorted(f["rule"] for f in d["fired"]), sorted(bare_decide(tx))
        if gen != bare or (d["decision"] == "REJECT") != bool(bare):
            sys.exit(f"ABORT: generator 3 and bare_decide disagree on {tx['id']}:\n  {gen}\n  {bare}")


def _policy() -> Any:
    import pyoxigraph as ox

    from finops_fabric.rdf.reader import read_policy

    return read_policy([q.triple for q in ox.parse(P15.encode("utf-8"), ox.RdfFormat.TURTLE)])


def _build_seconds(version: str) -> float:
    from finops_fabric import generators

    gen, policy = generators.get(version), _policy()
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        gen.build(policy, "sha256:" + "0" * 64)
        runs.append(time.perf_counter() - t0)
    return min(runs)


def _over(mix: list[dict[str, Any]], decide: Any, to_dict: bool = False) -> Any:
    if to_dict:

        def run_to_dict() -> None:
            for tx in mix:
                decide(tx).to_dict()

        return run_to_dict

    def run() -> None:
        for tx in mix:
            decide(tx)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (11 instead of 41)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--versions", help="generator versions to compare (default: every released one)")
    args = ap.parse_args()
    # Short repeats (about 4 ms each): on a busy machine some of them run undisturbed, and the
    # best of them is what is reported (20 ms repeats were all preempted at a load of 4 on 2 CPUs).
    repeat, min_s = (11, 0.004) if args.quick else (41, 0.004)

    from finops_fabric import generators
    from finops_fabric.enforcer import load_enforcer

    versions = args.versions.split(",") if args.versions else generators.versions()
    languages = {v: generators.get(v).language for v in versions}
    old = [v for v in versions if languages[v] == "1.0"]  # compared with hand_decide
    new = [v for v in versions if languages[v] != "1.0"]  # fired rules checked against bare_decide
    info: dict[str, dict[str, Any]] = {}
    decides: dict[str, Any] = {}
    fns: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-decide-") as tmp:
        for v in versions:
            a_dir, generate_wall = generate_a(Path(tmp), v)
            files = [p for p in sorted(a_dir.rglob("*")) if p.is_file()]
            t0 = time.perf_counter()
            enforcer = load_enforcer(a_dir)
            load_s = time.perf_counter() - t0
            same_reasons, reason_diffs = check_same(enforcer.decide) if v in old else (None, [])
            if v in new:
                check_bare(enforcer.decide)
            info[v] = {
                "language": languages[v],
                "enforcer_hash": enforcer.hash,
                "size_of_a": {
                    "files": len(files),
                    "bytes": sum(p.stat().st_size for p in files),
                    "rule_module_bytes": sum(p.stat().st_size for p in files if p.parent.name == "rules"),
                    "runtime_bytes": (a_dir / "runtime.py").stat().st_size,
                },
                "build_seconds": _build_seconds(v),
                "mu_generate_wall_seconds": generate_wall,
                "load_enforcer_seconds": load_s,
                "same_reasons_as_hand": same_reasons,
                "reason_differences": reason_diffs,
            }
            decides[v] = enforcer.decide
        check_versions_agree(decides, languages)
        rejected = sum(1 for tx in MIX if hand_decide(tx).decision == "REJECT")
        bare_rejected = sum(1 for tx in BARE_MIX if bare_decide(tx))
        hand_decisions = [hand_decide(tx) for tx in MIX]

        # comparison 1: language 1.0 against the hand-written decision objects
        for v in old:
            fns[f"v{v}"] = _over(MIX, decides[v])
        if old:
            fns["hand"] = _over(MIX, hand_decide)
        for v in old:
            fns[f"v{v}+to_dict"] = _over(MIX, decides[v], to_dict=True)

        def run_hand_to_dict() -> None:
            for d in hand_decisions:
                d.to_dict()

        if old:
            fns["hand_to_dict"] = run_hand_to_dict
        # comparison 2: amounts already Decimal, against the bare rule-ids-only function
        for v in versions:
            fns[f"bare_mix:v{v}"] = _over(BARE_MIX, decides[v])
        fns["bare_mix:bare"] = _over(BARE_MIX, bare_decide)
        for v in versions:
            fns[f"bare_mix:v{v}+to_dict"] = _over(BARE_MIX, decides[v], to_dict=True)
        res = c.interleaved(fns, repeat, min_s)
    n, n_bare = len(MIX), len(BARE_MIX)
    per = {k: v["best"] / (n_bare if k.startswith("bare_mix:") else n) for k, v in res.items()}
    ratios = {f"v{v}_over_hand": per[f"v{v}"] / per["hand"] for v in old}
    for i, first in enumerate(old):
        for second in old[i + 1 :]:
            ratios[f"v{first}_over_v{second}"] = per[f"v{first}"] / per[f"v{second}"]
    bare = per["bare_mix:bare"]
    ratios |= {f"v{v}_over_bare": per[f"bare_mix:v{v}"] / bare for v in versions}
    for i, first in enumerate(versions):
        for second in versions[i + 1 :]:
            ratios[f"v{first}_over_v{second}_decimal_amounts"] = (
                per[f"bare_mix:v{first}"] / per[f"bare_mix:v{second}"]
            )
    rows = []
    for v in old:
        rows.append(
            (f"enforcer.decide (A by generator v{v})", c.fmt_us(per[f"v{v}"]), c.fmt_rate(1 / per[f"v{v}"]))
        )
    if old:
        rows.append(("hand_decide (hand-written)", c.fmt_us(per["hand"]), c.fmt_rate(1 / per["hand"])))
    for v in old:
        key = f"v{v}+to_dict"
        rows.append((f"decide + to_dict (v{v})", c.fmt_us(per[key]), c.fmt_rate(1 / per[key])))
    if old:
        rows.append(
            ("to_dict (hand-written)", c.fmt_us(per["hand_to_dict"]), c.fmt_rate(1 / per["hand_to_dict"]))
        )
    bare_rows = [
        (
            f"enforcer.decide (v{v}, language {languages[v]})",
            c.fmt_us(per[f"bare_mix:v{v}"]),
            c.fmt_rate(1 / per[f"bare_mix:v{v}"]),
            f"{ratios[f'v{v}_over_bare']:.2f}x",
        )
        for v in versions
    ]
    bare_rows.append(
        ("bare_decide (hand-written, rule ids only)", c.fmt_us(bare), c.fmt_rate(1 / bare), "1x")
    )
    for v in versions:
        key = f"bare_mix:v{v}+to_dict"
        bare_rows.append(
            (
                f"decide + to_dict (v{v})",
                c.fmt_us(per[key]),
                c.fmt_rate(1 / per[key]),
                f"{per[key] / bare:.2f}x",
            )
        )
    doc = {
        "benchmark": "decide",
        "policy": "p15 (15 rules, embedded)",
        "method": f"timeit-style: best of {repeat} alternating repeats of about {min_s * 1000:.0f} ms, "
        "each the whole mix run `number` times; figures are per transaction",
        "machine": c.machine(),
        "mix": {"transactions": n, "rejected": rejected, "approved": n - rejected},
        "bare_mix": {
            "transactions": n_bare,
            "rejected": bare_rejected,
            "approved": n_bare - bare_rejected,
            "amounts": "Decimal",
            "bare_decide": "hand-written p15 with language 1.1 semantics (generator 3's, the input checks "
            "included), returning the fired rule IRIs only",
        },
        "same_decisions": True,
        "versions": versions,
        "generators": info,
        "results": {
            k: {
                "seconds_per_call": per[k],
                "calls_per_second": 1 / per[k],
                "number": v["number"],
                "repeats_seconds_per_call": [
                    r / (n_bare if k.startswith("bare_mix:") else n) for r in v["runs"]
                ],
            }
            for k, v in res.items()
        },
        "ratios": ratios,
        "target": f"generated within {TARGET_RATIO}x of hand-written; generator 3 within {TARGET_RATIO}x "
        "of bare_decide",
        "target_met": {
            **{v: ratios[f"v{v}_over_hand"] <= TARGET_RATIO for v in old},
            **{v: ratios[f"v{v}_over_bare"] <= TARGET_RATIO for v in new},
        },
    }
    if args.json:
        c.emit_json(doc)
        return
    print(f"machine: {c.machine_line()}")
    print(f"method: {doc['method']}")
    if old:
        print()
        print(f"1. decide() on p15, language 1.0: {n} transactions ({rejected} rejected), amounts as strings")
        print("decisions checked equal first (every language 1.0 version and hand_decide): yes")
        for v in old:
            same = info[v]["same_reasons_as_hand"]
            print(f"  v{v}: reasons identical to hand-written: {'yes' if same else 'NO'}")
            for line in info[v]["reason_differences"]:
                print(f"    reason differs: {line}")
        print()
        print(c.table(rows, ("measurement", "µs/tx", "per second")))
    print()
    print(
        f"2. decide() on p15 with amounts already Decimal: {n_bare} transactions ({bare_rejected} rejected, "
        "3 of them refused inputs) against bare_decide"
    )
    print(
        "bare_decide is hand-written for p15 with the semantics of generator 3 (policy language 1.1, its "
        "input checks included) and returns the fired rule IRIs only: no reasons, no decision object"
    )
    for v in new:
        print(f"  v{v}: fired rules checked equal to bare_decide's on every transaction first: yes")
    print("  decide + to_dict: the decision JSON as the daemon and `mu decide` use it (reasons included)")
    if old:
        print(f"  v{', v'.join(old)} implement language 1.0 (no input checks): shown to compare, not equal")
    print()
    print(c.table(bare_rows, ("measurement", "µs/tx", "per second", "/ bare")))
    print()
    gen_rows = [
        (
            f"v{v}",
            languages[v],
            info[v]["size_of_a"]["files"],
            f"{info[v]['size_of_a']['bytes']:,}",
            f"{info[v]['size_of_a']['runtime_bytes']:,}",
            f"{info[v]['build_seconds'] * 1000:.1f}",
            f"{info[v]['mu_generate_wall_seconds']:.2f}",
            f"{info[v]['load_enforcer_seconds'] * 1000:.1f}",
        )
        for v in versions
    ]
    print(
        c.table(
            gen_rows,
            (
                "generator",
                "language",
                "files in A",
                "bytes of A",
                "runtime.py",
                "build ms",
                "mu generate s",
                "load ms",
            ),
        )
    )
    print()
    for k, r in ratios.items():
        extra = ""
        if k.endswith("_over_hand") or (k.endswith("_over_bare") and k[1:].split("_")[0] in new):
            extra = f"  (target <= {TARGET_RATIO}x: {'within' if r <= TARGET_RATIO else 'NOT within'})"
        name = k.replace("_over_", " / ").replace("_decimal_amounts", " (Decimal amounts)")
        print(f"ratio {name}: {r:.3f}x{extra}")


if __name__ == "__main__":
    main()
