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
        whole, dot, frac = value.partition(".")
        if whole.isdigit() and whole.isascii() and (not dot or (frac.isdigit() and frac.isascii())):
            return Decimal(value)  # the common case, without the regular expression
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
    """A transaction normalised once: what most rules read is computed up front, the rest
    (approver, executor, the amount as text) only when a rule asks. None means missing."""

    __slots__ = ("amount", "attributes", "level", "rank", "raw", "type")

    def __init__(self, raw, ranks):
        self.raw = raw
        get = raw.get
        t = get("type")
        self.type = t if type(t) is str else None
        amount = get("amount")
        if type(amount) is str:  # the common case inline: plain digits with an optional fraction
            whole, dot, frac = amount.partition(".")
            if whole.isdigit() and whole.isascii() and (not dot or (frac.isdigit() and frac.isascii())):
                self.amount = Decimal(amount)
            else:
                self.amount = to_decimal(amount)
        else:
            self.amount = to_decimal(amount)
        level = get("actor_level")
        if type(level) is str:
            self.level = level
            self.rank = ranks.get(level)
        else:
            self.level = self.rank = None
        attrs = get("attributes")
        self.attributes = attrs if type(attrs) is dict else {}

    @property
    def amount_text(self):
        return None if self.amount is None else str(self.amount)

    @property
    def approver(self):
        return to_text(self.raw.get("approver_id"))

    @property
    def executor(self):
        return to_text(self.raw.get("executor_id"))

    def dec(self, name):
        if name == "amount":
            return self.amount
        if name in ("type", "actor_level", "approver_id", "executor_id"):
            return to_decimal(self.text(name))
        return to_decimal(self.attributes.get(name))

    def attr_text(self, name):
        return to_text(self.attributes.get(name))

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
        self.modules = tuple(sorted(modules, key=lambda m: m.RULE))
        decision = [m for m in self.modules if m.KIND == "decision"]
        notes = [m for m in self.modules if m.KIND == "notification"]
        audits = [m for m in self.modules if m.KIND == "audit"]

        def for_type(mods, t):
            return [m for m in mods if not m.APPLIES_TO or (t is not None and t in m.APPLIES_TO)]

        types = sorted({t for m in self.modules for t in m.APPLIES_TO})
        self._plans = {}
        for t in [*types, None]:
            mods = for_type(decision, t)
            self._plans[t] = (
                # An approval rule can only fire when the amount is missing or above its threshold:
                # those are checked by threshold first, so the common case costs no call at all.
                tuple(
                    sorted(
                        ((m.THRESHOLD, m.check) for m in mods if m.RULE_CLASS == "approval"),
                        key=lambda p: p[0],
                    )
                ),
                tuple(m.check for m in mods if m.RULE_CLASS != "approval"),
                tuple((m.matches, tuple((m.RULE, to) for to in m.RECIPIENTS)) for m in for_type(notes, t)),
                tuple((m.matches, (m.RULE, m.LEDGER, m.FLAGS)) for m in for_type(audits, t)),
            )
        self._any = self._plans.pop(None)
        self._typed_rules = tuple(m.RULE for m in decision if m.APPLIES_TO)

    def transaction(self, raw):
        return Tx(raw, self.ranks)

    def decide(self, raw):
        tx = Tx(raw, self.ranks)
        t = tx.type
        approvals, checks, notes, audits = self._plans.get(t, self._any) if t is not None else self._any
        fired = [hit for check in checks if (hit := check(tx)) is not None]
        amount = tx.amount
        for threshold, check in approvals:
            if amount is not None and amount <= threshold:
                break  # sorted by threshold: no later approval rule can fire either
            hit = check(tx)
            if hit is not None:
                fired.append(hit)
        if t is None and self._typed_rules:
            fired.extend((r, _missing_type(r)) for r in self._typed_rules)
        if len(fired) > 1:
            fired.sort()
        outcome = REJECT if fired else APPROVE
        notifications = []
        for matches, pairs in notes:
            if matches(tx, outcome):
                notifications += pairs
        audit = [entry for matches, entry in audits if matches(tx, outcome)]
        return Decision(raw.get("id"), outcome, fired, notifications, audit, self.enforcer_hash)
