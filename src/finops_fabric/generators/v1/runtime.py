"""Runtime of an enforcer made by generator v1 (copied verbatim into A as runtime.py).

It normalises a transaction once, runs the decision rules that apply to its type, then the
notification and audit rules, and returns a Decision. It uses only the standard library and
does no I/O: the hot path is pure computation.
"""

import re
from decimal import Decimal

APPROVE = "APPROVE"
REJECT = "REJECT"
_PLAIN_DECIMAL = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*").fullmatch


def to_decimal(value):
    """A decimal from an int, a Decimal or a string in plain decimal notation; else None.

    Binary floats and booleans are refused: money is never a float.
    """
    if type(value) is str:
        return Decimal(value) if _PLAIN_DECIMAL(value) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    return None


def to_text(value):
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    return None


class Tx:
    """A transaction normalised once: the fields every rule reads, with None for missing."""

    __slots__ = ("amount", "amount_text", "approver", "attributes", "executor", "id", "level", "rank", "type")

    def __init__(self, raw, ranks):
        get = raw.get
        self.id = get("id")
        t = get("type")
        self.type = t if type(t) is str else None
        amount = get("amount")
        amount = to_decimal(amount)
        self.amount = amount
        self.amount_text = None if amount is None else str(amount)
        level = get("actor_level")
        if type(level) is str:
            self.level = level
            self.rank = ranks.get(level)
        else:
            self.level = self.rank = None
        a = get("approver_id")
        self.approver = a if type(a) is str else to_text(a)
        e = get("executor_id")
        self.executor = e if type(e) is str else to_text(e)
        attrs = get("attributes")
        self.attributes = attrs if type(attrs) is dict else {}

    def dec(self, name):
        if name == "amount":
            return self.amount
        if name in ("type", "actor_level", "approver_id", "executor_id"):
            return to_decimal(self.text(name))
        return to_decimal(self.attributes.get(name))

    def text(self, name):
        if name == "type":
            return self.type
        if name == "actor_level":
            return self.level
        if name == "approver_id":
            return self.approver
        if name == "executor_id":
            return self.executor
        if name == "amount":
            return self.amount_text
        return to_text(self.attributes.get(name))


class Decision:
    __slots__ = ("audit", "decision", "enforcer_hash", "fired", "notifications", "transaction_id")

    def __init__(self, transaction_id, decision, fired, notifications, audit, enforcer_hash):
        self.transaction_id = transaction_id
        self.decision = decision
        self.fired = fired
        self.notifications = notifications
        self.audit = audit
        self.enforcer_hash = enforcer_hash

    def to_dict(self):
        return {
            "transaction_id": self.transaction_id,
            "decision": self.decision,
            "fired": [{"rule": r, "reason": why} for r, why in self.fired],
            "notifications": [{"rule": r, "recipient": to} for r, to in self.notifications],
            "audit": [{"rule": r, "ledger": led, "flags": list(flags)} for r, led, flags in self.audit],
            "enforcer_hash": self.enforcer_hash,
        }


def _missing_type(rule):
    return "field 'type' is missing; rule " + rule + " applies to specific types, so it fails closed"


class Enforcer:
    """Decides transactions with the rule modules of one A."""

    def __init__(self, ranks, modules, enforcer_hash):
        self.ranks = dict(ranks)
        self.enforcer_hash = enforcer_hash
        decision = sorted((m for m in modules if m.KIND == "decision"), key=lambda m: m.RULE)
        effects = sorted((m for m in modules if m.KIND != "decision"), key=lambda m: m.RULE)
        self.modules = tuple(sorted(modules, key=lambda m: m.RULE))
        types = sorted({t for m in self.modules for t in m.APPLIES_TO})
        self._decide_by_type = {
            t: tuple(m.check for m in decision if not m.APPLIES_TO or t in m.APPLIES_TO) for t in types
        }
        self._effects_by_type = {
            t: tuple(m for m in effects if not m.APPLIES_TO or t in m.APPLIES_TO) for t in types
        }
        self._decide_any = tuple(m.check for m in decision if not m.APPLIES_TO)
        self._effects_any = tuple(m for m in effects if not m.APPLIES_TO)
        self._typed_rules = tuple(m.RULE for m in decision if m.APPLIES_TO)

    def transaction(self, raw):
        return Tx(raw, self.ranks)

    def decide(self, raw):
        tx = Tx(raw, self.ranks)
        t = tx.type
        if t is None:
            fired = [hit for check in self._decide_any if (hit := check(tx)) is not None]
            if self._typed_rules:
                fired.extend((r, _missing_type(r)) for r in self._typed_rules)
                fired.sort()
            effects = self._effects_any
        else:
            fired = [
                hit
                for check in self._decide_by_type.get(t, self._decide_any)
                if (hit := check(tx)) is not None
            ]
            effects = self._effects_by_type.get(t, self._effects_any)
        outcome = REJECT if fired else APPROVE
        notifications = []
        audit = []
        for m in effects:
            if m.matches(tx, outcome):
                if m.KIND == "notification":
                    notifications.extend((m.RULE, to) for to in m.RECIPIENTS)
                else:
                    audit.append((m.RULE, m.LEDGER, m.FLAGS))
        return Decision(tx.id, outcome, fired, notifications, audit, self.enforcer_hash)
