"""The reference interpreter: decides a transaction straight from the typed model of O.

It is the oracle every generated enforcer must agree with, so it is written for clarity and
independently of the generators: it shares no code with them, only the semantics of
POLICY-LANGUAGE.md.

Semantics (the same for every generator):
- a rule matches a transaction when it has no ``appliesTo`` or the type is one of them; a
  transaction without a type fails closed on every rule that applies to specific types;
- a decision rule that needs a field the transaction lacks (or that cannot be read as the
  type the rule compares it with) fires, naming the field; a condition needs every attribute
  it mentions;
- amounts are decimals: an int, a Decimal or a string in plain decimal notation, never a float;
- notification and audit rules run after the decision and never change it.

Language 1.1 ("fail closed", generator 3 and later) decides as 1.0 does and adds three input
checks, each a fired entry under its own IRI (``model.INPUT_CHECKS``): a type that is missing or
not a declared code, an amount that is missing, not a plain decimal (no surrounding spaces, no
exponent in a string, never a float) or negative, and an actor level that is missing or not a
declared code. In 1.1 every decimal a rule reads is read strictly: the amount by the check's
reading (an amount such as ``" 1000 "`` is missing to the rules too), an attribute compared with
a decimal likewise (a string must be a plain decimal exactly, no surrounding spaces), and a
party or code compared with a decimal through its text (``approver_id`` ``1E+2``, a JSON number
whose text has an exponent, is missing; in 1.0 too, as generators 1 and 2 read it). Language 1.0
trims surrounding spaces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from finops_fabric import model as m

_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")
_CORE = {"type", "actor_level", "approver_id", "executor_id", "amount"}


@dataclass(frozen=True)
class Outcome:
    """A decision as the oracle sees it (reasons are not compared across implementations)."""

    decision: str
    fired: tuple[tuple[str, str], ...]
    notifications: tuple[tuple[str, str], ...]
    audit: tuple[tuple[str, str, tuple[str, ...]], ...]

    def comparable(self) -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...], tuple[Any, ...]]:
        return (
            self.decision,
            tuple(sorted(r for r, _ in self.fired)),
            tuple(sorted(self.notifications)),
            tuple(sorted(self.audit)),
        )


class _Missing(Exception):
    def __init__(self, field: str) -> None:
        self.field = field


def _decimal(v: object) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, Decimal):
        return v if v.is_finite() else None
    if isinstance(v, str) and _PLAIN.fullmatch(v.strip()):
        return Decimal(v.strip())
    return None


def _strict_decimal(v: object) -> Decimal | None:
    """Language 1.1's reading of an amount: as ``_decimal``, but a string must be a plain decimal
    exactly (no surrounding spaces)."""
    if isinstance(v, str):
        return Decimal(v) if _PLAIN.fullmatch(v) else None
    return _decimal(v)


def _values(leaf: m.Comparison | m.Membership) -> tuple[m.Value, ...]:
    return leaf.values if isinstance(leaf, m.Membership) else (leaf.value,)


def _text(v: object) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal) and v.is_finite():
        return str(v)
    return None


class Interpreter:
    def __init__(self, policy: m.Policy, language: str = "1.0") -> None:
        if language not in m.LANGUAGE_VERSIONS:
            raise ValueError(f"unknown policy language version {language!r}")
        self.policy = policy
        self.language = language
        self.ranks = {lv.code: lv.rank for lv in policy.levels}
        self.type_codes = frozenset(t.code for t in policy.types)
        # The rules that can concern a transaction of each type (and of no or an unknown type):
        # a plain index, so deciding does not scan every rule of a large policy.
        self._by_type: dict[str | None, tuple[m.Rule, ...]] = {
            code: tuple(r for r in policy.rules if not r.applies_to or code in r.applies_to)
            for code in {c for r in policy.rules for c in r.applies_to}
        }
        self._untyped = tuple(r for r in policy.rules if not r.applies_to)
        # The fields other than the amount a condition compares with a decimal.
        self._decimal_fields = tuple(
            sorted(
                {
                    leaf.attribute
                    for r in policy.rules
                    if isinstance(r, m.RestrictionRule)
                    for leaf in m.condition_leaves(r.condition)
                    if leaf.attribute != "amount"
                    and not (
                        leaf.attribute == "actor_level"
                        and isinstance(leaf, m.Comparison)
                        and leaf.operator not in ("eq", "ne")
                    )
                    and all(isinstance(v, Decimal) for v in _values(leaf))
                }
            )
        )

    # --- reading the transaction ---------------------------------------------------------
    def _raw(self, tx: Mapping[str, Any], field: str) -> object:
        if field == "amount":  # read as the decimal it is (as text too), never as its raw spelling
            return self._amount(tx)
        if field in ("type", "actor_level"):  # codes are strings; anything else is missing
            v = tx.get(field)
            return v if isinstance(v, str) else None
        if field in _CORE:
            return tx.get(field)
        attrs = tx.get("attributes")
        return attrs.get(field) if isinstance(attrs, Mapping) else None

    def _rank(self, tx: Mapping[str, Any]) -> int | None:
        level = tx.get("actor_level")
        return self.ranks.get(level) if isinstance(level, str) else None

    def _dec(self, field: str, raw: object) -> Decimal | None:
        """A field's value (as ``_raw`` gives it) read as a decimal, by this language: 1.0 trims
        spaces, 1.1 reads a string strictly; a party or a code is read through its text (as every
        generator reads it)."""
        if field == "amount":  # already read as a decimal, by this language
            return _decimal(raw)
        if field in _CORE:  # a party or code: its text (a number with an exponent is no decimal)
            raw = _text(raw)
        return _decimal(raw) if self.language == "1.0" else _strict_decimal(raw)

    def _amount(self, tx: Mapping[str, Any]) -> Decimal | None:
        if self.language == "1.0":
            return _decimal(tx.get("amount"))
        return _strict_decimal(tx.get("amount"))

    def strict_decimals(self, tx: Mapping[str, Any]) -> list[str]:
        """Language 1.1 only: the fields (other than the amount, which its input check covers) a
        condition of O compares with a decimal whose value language 1.0 reads as a decimal and
        1.1 does not (a spaced string; a party's number whose text is not plain)."""
        if self.language == "1.0":
            return []
        out = []
        for f in self._decimal_fields:
            raw = self._raw(tx, f)
            if f in _CORE:
                raw = _text(raw)
            if _decimal(raw) is not None and _strict_decimal(raw) is None:
                out.append(f if f in _CORE else "attributes." + f)
        return out

    def input_checks(self, tx: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Language 1.1's fail-closed checks of type, amount and actor level (none in 1.0)."""
        if self.language == "1.0":
            return []
        out: list[tuple[str, str]] = []
        t = tx.get("type")
        if not isinstance(t, str) or t not in self.type_codes:
            shown = "missing" if t is None else f"{t!r}, which is not a declared transaction type"
            out.append(
                (
                    m.INPUT_CHECK_TYPE,
                    f"field 'type' is {shown} (declared: "
                    f"{', '.join(sorted(self.type_codes)) or 'none'}); the transaction fails closed",
                )
            )
        amount = self._amount(tx)
        if amount is None:
            out.append(
                (
                    m.INPUT_CHECK_AMOUNT,
                    "field 'amount' is missing or not a plain decimal; the transaction fails closed",
                )
            )
        elif amount < 0:
            out.append(
                (m.INPUT_CHECK_AMOUNT, f"field 'amount' is negative ({amount}); the transaction fails closed")
            )
        if self._rank(tx) is None:
            out.append(
                (
                    m.INPUT_CHECK_LEVEL,
                    "field 'actor_level' is missing or not a declared authority "
                    "level; the transaction fails closed",
                )
            )
        return out

    # --- conditions ----------------------------------------------------------------------
    def _leaf(self, tx: Mapping[str, Any], c: m.Comparison | m.Membership) -> bool:
        raw = self._raw(tx, c.attribute)
        if isinstance(c, m.Membership):
            if all(isinstance(v, Decimal) for v in c.values):
                d = self._dec(c.attribute, raw)
                if d is None:
                    raise _Missing(c.attribute)
                return any(d == v for v in c.values)
            t = _text(raw)
            if t is None:
                raise _Missing(c.attribute)
            return t in {str(v) for v in c.values}
        left: object
        right: object
        if c.attribute == "actor_level" and c.operator not in ("eq", "ne"):
            left, right = self._rank(tx), self.ranks.get(str(c.value))
            if left is None:
                raise _Missing("actor_level")
        elif isinstance(c.value, Decimal):
            left, right = self._dec(c.attribute, raw), c.value
        else:
            left, right = _text(raw), c.value
        if left is None:
            raise _Missing(c.attribute)
        op = c.operator
        if op == "eq":
            return left == right
        if op == "ne":
            return left != right
        if op == "gt":
            return left > right  # type: ignore[operator]
        if op == "ge":
            return left >= right  # type: ignore[operator]
        if op == "lt":
            return left < right  # type: ignore[operator]
        return left <= right  # type: ignore[operator]

    def holds(self, tx: Mapping[str, Any], c: m.Condition) -> bool:
        """Evaluate a condition; every leaf is read (no short cut), so a missing field always shows."""
        missing: list[str] = []

        def ev(x: m.Condition) -> bool:
            if isinstance(x, m.Comparison | m.Membership):
                try:
                    return self._leaf(tx, x)
                except _Missing as e:
                    missing.append(e.field)
                    return False
            if isinstance(x, m.AllOf):
                results = [ev(o) for o in x.operands]
                return all(results)
            if isinstance(x, m.AnyOf):
                results = [ev(o) for o in x.operands]
                return any(results)
            return not ev(x.operand)

        result = ev(c)
        if missing:
            raise _Missing(", ".join(sorted(set(missing))))
        return result

    # --- rules ---------------------------------------------------------------------------
    @staticmethod
    def applies(rule: m.Rule, tx: Mapping[str, Any]) -> bool:
        t = tx.get("type")
        return not rule.applies_to or (isinstance(t, str) and t in rule.applies_to)

    def fires(self, rule: m.DecisionRule, tx: Mapping[str, Any]) -> str | None:
        """Why a decision rule rejects the transaction, or None. The rule is assumed to match its type."""
        if isinstance(rule, m.ApprovalRule):
            amount = self._amount(tx)
            if amount is None:
                return "field 'amount' is missing or not a decimal"
            if amount <= rule.threshold:
                return None
            rank = self._rank(tx)
            if rank is None:
                return "field 'actor_level' is missing or unknown"
            if rank < rule.required.rank:
                return f"amount {amount} > {rule.threshold} requires {rule.required.code} or above"
            return None
        if isinstance(rule, m.SegregationOfDutyRule):
            a, e = _text(tx.get("approver_id")), _text(tx.get("executor_id"))
            if a is None or e is None:
                return "approver_id or executor_id is missing"
            return "approver is also the executor" if a == e else None
        try:
            if not self.holds(tx, rule.condition):
                return None
        except _Missing as e:
            return f"missing field(s): {e.field}"
        if rule.override is None:
            return "restriction holds"
        rank = self._rank(tx)
        if rank is None:
            return "field 'actor_level' is missing or unknown"
        return None if rank >= rule.override.rank else "restriction holds below the override authority"

    def effect_matches(
        self, rule: m.NotificationRule | m.AuditLogRule, tx: Mapping[str, Any], decision: str
    ) -> bool:
        if rule.event == "Approved" and decision != "APPROVE":
            return False
        if rule.event == "Rejected" and decision != "REJECT":
            return False
        if rule.min_authority is not None:
            rank = self._rank(tx)
            if rank is None or rank < rule.min_authority.rank:
                return False
        if isinstance(rule, m.NotificationRule) and rule.threshold is not None:
            amount = self._amount(tx)
            if amount is None or amount <= rule.threshold:
                return False
        return True

    def decide(self, tx: Mapping[str, Any]) -> Outcome:
        fired: list[tuple[str, str]] = self.input_checks(tx)
        t = tx.get("type")
        has_type = isinstance(t, str)
        candidates = self.policy.rules if not has_type else self._by_type.get(t, self._untyped)
        for rule in candidates:
            if rule.kind not in m.DECISION_KINDS:
                continue
            if rule.applies_to and not has_type:
                fired.append((rule.iri, "field 'type' is missing"))
                continue
            if not self.applies(rule, tx):
                continue
            why = self.fires(rule, tx)  # type: ignore[arg-type]
            if why is not None:
                fired.append((rule.iri, why))
        decision = "REJECT" if fired else "APPROVE"
        notes: list[tuple[str, str]] = []
        audit: list[tuple[str, str, tuple[str, ...]]] = []
        for rule in candidates:
            if (
                isinstance(rule, m.NotificationRule | m.AuditLogRule)
                and self.applies(rule, tx)
                and self.effect_matches(rule, tx, decision)
            ):
                if isinstance(rule, m.NotificationRule):
                    notes.extend((rule.iri, to) for to in rule.recipients)
                else:
                    audit.append((rule.iri, rule.ledger, rule.flags))
        return Outcome(decision, tuple(fired), tuple(notes), tuple(audit))


def comparable(
    decision: Mapping[str, Any],
) -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...], tuple[Any, ...]]:
    """The part of a decision JSON that any two correct implementations must agree on."""
    return (
        decision["decision"],
        tuple(sorted(f["rule"] for f in decision["fired"])),
        tuple(sorted((n["rule"], n["recipient"]) for n in decision["notifications"])),
        tuple(sorted((a["rule"], a["ledger"], tuple(a["flags"])) for a in decision["audit"])),
    )
