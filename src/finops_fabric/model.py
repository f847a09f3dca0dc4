"""The typed, frozen model of a policy O. Nothing past the RDF boundary sees rdflib.

Everything here is plain data: IRIs are ``str``, amounts are ``Decimal``, collections are
tuples sorted in a canonical order, so that the same O always gives an equal model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Literal, TypeAlias

FAB = "https://w3id.org/finops-fabric/ns#"

#: The versions of the policy language's decision semantics (POLICY-LANGUAGE.md). 1.0: generators
#: 1 and 2; 1.1 ("fail closed"): generator 3 and later.
LANGUAGE_VERSIONS = ("1.0", "1.1")
#: Language 1.1 rejects a transaction whose type, amount or actor level the policy did not
#: foresee. Such a rejection is listed among the fired rules under one of these IRIs (one per
#: field), so every implementation, every comparison and every report names it the same way.
INPUT_CHECK_TYPE = FAB + "FailClosed/type"
INPUT_CHECK_AMOUNT = FAB + "FailClosed/amount"
INPUT_CHECK_LEVEL = FAB + "FailClosed/actor_level"
INPUT_CHECKS = (INPUT_CHECK_AMOUNT, INPUT_CHECK_LEVEL, INPUT_CHECK_TYPE)

EventName = Literal["Approved", "Rejected", "AnyDecision"]
OperatorName = Literal["gt", "ge", "lt", "le", "eq", "ne"]
Value: TypeAlias = Decimal | str


@dataclass(frozen=True)
class TransactionType:
    iri: str
    code: str
    label: str


@dataclass(frozen=True)
class AuthorityLevel:
    iri: str
    code: str
    rank: int


@dataclass(frozen=True)
class Role:
    iri: str
    label: str
    can_approve: tuple[str, ...]
    can_execute: tuple[str, ...]


# Conditions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    attribute: str
    operator: OperatorName
    value: Value


@dataclass(frozen=True)
class Membership:
    attribute: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class AllOf:
    operands: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    operands: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    operand: Condition


Condition: TypeAlias = Comparison | Membership | AllOf | AnyOf | Not


def condition_leaves(c: Condition) -> Iterator[Comparison | Membership]:
    """The comparisons and memberships of a condition, depth first, left to right."""
    if isinstance(c, Comparison | Membership):
        yield c
    elif isinstance(c, AllOf | AnyOf):
        for o in c.operands:
            yield from condition_leaves(o)
    else:
        yield from condition_leaves(c.operand)


def condition_attributes(c: Condition) -> tuple[str, ...]:
    """Every attribute a condition reads, sorted (a transaction lacking one fails closed)."""
    return tuple(sorted({leaf.attribute for leaf in condition_leaves(c)}))


# Rules --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleBase:
    iri: str
    label: str
    rationale: str | None
    applies_to: tuple[str, ...]  # transaction type codes, sorted; empty = every type


@dataclass(frozen=True)
class ApprovalRule(RuleBase):
    threshold: Decimal
    threshold_text: str
    required: AuthorityLevel

    kind: Literal["approval"] = field(default="approval", init=False)


@dataclass(frozen=True)
class SegregationOfDutyRule(RuleBase):
    kind: Literal["sod"] = field(default="sod", init=False)


@dataclass(frozen=True)
class RestrictionRule(RuleBase):
    condition: Condition
    override: AuthorityLevel | None
    fraud_check: bool

    kind: Literal["restriction"] = field(default="restriction", init=False)


@dataclass(frozen=True)
class NotificationRule(RuleBase):
    event: EventName
    recipients: tuple[str, ...]
    min_authority: AuthorityLevel | None
    threshold: Decimal | None
    threshold_text: str | None

    kind: Literal["notification"] = field(default="notification", init=False)


@dataclass(frozen=True)
class AuditLogRule(RuleBase):
    event: EventName
    ledger: str
    min_authority: AuthorityLevel | None
    flags: tuple[str, ...]

    kind: Literal["audit"] = field(default="audit", init=False)


DecisionRule: TypeAlias = ApprovalRule | SegregationOfDutyRule | RestrictionRule
Rule: TypeAlias = DecisionRule | NotificationRule | AuditLogRule

DECISION_KINDS = ("approval", "sod", "restriction")


# Golden cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldenCase:
    iri: str
    scenario: str
    tx_type: str  # type code
    amount: Decimal
    amount_text: str
    actor_level: str  # level code
    approver: str | None
    executor: str | None
    attributes: tuple[tuple[str, str], ...]
    expect: Literal["APPROVE", "REJECT"]
    expect_fired: tuple[str, ...] | None  # rule IRIs, sorted; None: not checked
    expect_notified: tuple[str, ...] | None  # recipients, sorted; None: not checked

    def transaction(self) -> dict[str, object]:
        tx: dict[str, object] = {
            "id": self.scenario,
            "type": self.tx_type,
            "amount": self.amount_text,
            "currency": "USD",
            "actor_id": "golden",
            "actor_level": self.actor_level,
            "attributes": dict(self.attributes),
        }
        if self.approver is not None:
            tx["approver_id"] = self.approver
        if self.executor is not None:
            tx["executor_id"] = self.executor
        return tx


@dataclass(frozen=True)
class Policy:
    """O as a typed model: reference data, rules (sorted by IRI) and golden cases."""

    iri: str
    title: str
    version: str | None
    types: tuple[TransactionType, ...]
    levels: tuple[AuthorityLevel, ...]  # sorted by rank
    roles: tuple[Role, ...]
    rules: tuple[Rule, ...]
    golden: tuple[GoldenCase, ...]

    def level_by_code(self, code: str) -> AuthorityLevel | None:
        for lv in self.levels:
            if lv.code == code:
                return lv
        return None

    def rule(self, iri: str) -> Rule | None:
        return self._rules_by_iri.get(iri)

    @cached_property
    def _rules_by_iri(self) -> dict[str, Rule]:
        return {r.iri: r for r in self.rules}
