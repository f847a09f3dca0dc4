"""One side's rules as decision diagrams over the space of one type atom.

The encoding follows the reference interpreter (``interpreter.py``) line by line:

- an approval rule fires when the amount is missing, or above the threshold with a level that
  is missing, undeclared or ranked below the required one;
- a segregation-of-duty rule fires when the approver or the executor is missing, or both are
  the same text;
- a restriction fires when any leaf of its condition finds its field missing (every leaf is
  read), or when the condition holds and the actor's rank is missing or below the override;
- a notification or audit rule matches by the decision, the minimum authority (a missing or
  undeclared level never matches) and, for notifications, amount > threshold;
- language 1.1 adds its three input checks (type, amount, level) as rules of their own IRIs.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from finops_fabric import model as m
from finops_fabric.analysis.fields import TextField, Unsupported, point_of
from finops_fabric.analysis.mdd import Manager
from finops_fabric.analysis.space import AMOUNT, LEVEL, PARTIES, Side, Space, applies


class Encoder:
    """The diagrams of one side's rules (fires, matches) over one space."""

    def __init__(self, mgr: Manager, space: Space, side: Side, type_field: TextField) -> None:
        self.mgr = mgr
        self.space = space
        self.side = side
        self.ranks = side.ranks
        self.type_text = space.type_atom.text
        self.type_field = type_field
        keys = space.keys
        self.level_var = keys.index(LEVEL) if LEVEL in keys else -1
        self.amount_var = keys.index(AMOUNT) if AMOUNT in keys else -1
        self.parties_var = keys.index(PARTIES) if PARTIES in keys else -1
        self.level_ranks: list[int | None] = []
        if space.level is not None:
            for a in space.level.atoms:
                code = point_of(a.text)
                self.level_ranks.append(self.ranks.get(code) if code is not None else None)
        self.cells = space.amount.cells(side) if space.amount is not None else []
        self._cache: dict[object, int] = {}

    def _cached(self, key: object, make: Callable[[], int]) -> int:
        got = self._cache.get(key)
        if got is None:
            got = self._cache[key] = make()
        return got

    # --- building blocks ---------------------------------------------------------------------
    def rank_ok(self, rank: int) -> int:
        """The actor's rank is known and at least ``rank``."""
        return self._cached(
            ("rank_ok", rank),
            lambda: self.mgr.of_bools(
                self.level_var, [r is not None and r >= rank for r in self.level_ranks]
            ),
        )

    def level_missing(self) -> int:
        return self._cached(
            "level_missing", lambda: self.mgr.of_bools(self.level_var, [r is None for r in self.level_ranks])
        )

    def amount_missing(self) -> int:
        return self._cached(
            "amount_missing", lambda: self.mgr.of_bools(self.amount_var, [c is None for c in self.cells])
        )

    def amount_above(self, threshold: Decimal) -> int:
        """The amount is readable and strictly above ``threshold``."""
        assert self.space.amount is not None
        p = self.space.amount.cuts.point(threshold)
        return self._cached(
            ("above", p),
            lambda: self.mgr.of_bools(self.amount_var, [c is not None and c > p for c in self.cells]),
        )

    def level_rank(self, code: str, rule: m.Rule) -> int:
        rank = self.ranks.get(code)
        if rank is None:
            raise Unsupported(
                f"rule {rule.iri} compares actor_level with {code!r}, which is not an authority level code"
            )
        return rank

    # --- conditions --------------------------------------------------------------------------
    def leaf(self, leaf: m.Comparison | m.Membership, rule: m.Rule) -> tuple[int, int]:
        """(holds, missing) of one leaf: holds is False where the field is missing."""
        key = ("leaf", leaf)
        got = self._cache.get(key)
        if got is not None:
            return got, self._cache[("leaf_missing", leaf)]
        mgr = self.mgr
        a = leaf.attribute
        values: list[bool | None]
        if a == "type":
            v = self.type_field.leaf_value(self.space.type_atom, leaf, self.side.strict)
            holds, missing = mgr.terminal(v is True), mgr.terminal(v is None)
        else:
            if a == "amount":
                assert self.space.amount is not None
                var, values = self.amount_var, self.space.amount.leaf_values(leaf, self.side)
            elif a == "actor_level":
                assert self.space.level is not None
                var = self.level_var
                if isinstance(leaf, m.Comparison) and leaf.operator not in ("eq", "ne"):
                    k = self.level_rank(str(leaf.value), rule)
                    values = [None if r is None else _cmp(r, leaf.operator, k) for r in self.level_ranks]
                else:
                    values = self.space.level.leaf_values(leaf, self.side.strict)
            elif a in ("approver_id", "executor_id"):
                assert self.space.parties is not None
                var, values = self.parties_var, self.space.parties.leaf_values(leaf, self.side.strict)
            else:
                var = self.space.var("attr:" + a)
                values = self.space.attributes[a].leaf_values(leaf, self.side.strict)
            holds = mgr.of_bools(var, [v is True for v in values])
            missing = mgr.of_bools(var, [v is None for v in values])
        self._cache[key] = holds
        self._cache[("leaf_missing", leaf)] = missing
        return holds, missing

    def condition(self, c: m.Condition, rule: m.Rule) -> tuple[int, int]:
        """(holds, any leaf missing) of a condition."""
        mgr = self.mgr
        if isinstance(c, m.Comparison | m.Membership):
            return self.leaf(c, rule)
        if isinstance(c, m.Not):
            h, miss = self.condition(c.operand, rule)
            return mgr.not_(h), miss
        parts = [self.condition(o, rule) for o in c.operands]
        holds = parts[0][0]
        for h, _ in parts[1:]:
            holds = mgr.and_(holds, h) if isinstance(c, m.AllOf) else mgr.or_(holds, h)
        return holds, mgr.any_of([miss for _, miss in parts])

    # --- rules -------------------------------------------------------------------------------
    def fires(self, rule: m.DecisionRule) -> int:
        """Where a decision rule of this side rejects (it must concern this type atom)."""
        mgr = self.mgr
        if rule.applies_to and self.type_text is None:
            return mgr.true  # a typed rule fails closed on a transaction without a type
        if isinstance(rule, m.ApprovalRule):
            low = mgr.not_(self.rank_ok(rule.required.rank))
            return mgr.or_(self.amount_missing(), mgr.and_(self.amount_above(rule.threshold), low))
        if isinstance(rule, m.SegregationOfDutyRule):
            assert self.space.parties is not None
            return mgr.of_bools(self.parties_var, self.space.parties.sod_fires())
        holds, missing = self.condition(rule.condition, rule)
        if rule.override is not None:
            holds = mgr.and_(holds, mgr.not_(self.rank_ok(rule.override.rank)))
        return mgr.or_(missing, holds)

    def holds(self, rule: m.DecisionRule) -> int:
        """Where a decision rule rejects a transaction that has every field it reads (its
        rejections that are not merely failing closed)."""
        mgr = self.mgr
        if rule.applies_to and self.type_text is None:
            return mgr.false
        known = mgr.not_(self.level_missing()) if self.level_var >= 0 else mgr.false
        if isinstance(rule, m.ApprovalRule):
            low = mgr.and_(known, mgr.not_(self.rank_ok(rule.required.rank)))
            return mgr.and_(self.amount_above(rule.threshold), low)
        if isinstance(rule, m.SegregationOfDutyRule):
            assert self.space.parties is not None
            return mgr.of_bools(self.parties_var, [a.same is True for a in self.space.parties.atoms])
        holds, missing = self.condition(rule.condition, rule)
        holds = mgr.and_(holds, mgr.not_(missing))
        if rule.override is not None:
            holds = mgr.and_(holds, mgr.and_(known, mgr.not_(self.rank_ok(rule.override.rank))))
        return holds

    def input_checks(self) -> list[tuple[str, int]]:
        """Language 1.1's checks as (IRI, where it fires); none in 1.0."""
        if not self.side.strict:
            return []
        mgr = self.mgr
        t = self.type_text
        declared = isinstance(t, tuple) and t[0] == "pt" and t[1] in self.side.type_codes
        assert self.space.amount is not None
        zero = self.space.amount.cuts.point(Decimal(0))
        bad_amount = mgr.of_bools(self.amount_var, [c is None or c < zero for c in self.cells])
        return [
            (m.INPUT_CHECK_AMOUNT, bad_amount),
            (m.INPUT_CHECK_LEVEL, self.level_missing()),
            (m.INPUT_CHECK_TYPE, mgr.false if declared else mgr.true),
        ]

    def decision_rules(self, known: dict[m.Rule, int] | None = None) -> list[tuple[str, int]]:
        """(IRI, fires) of every decision rule and input check concerning this type atom.
        ``known``: diagrams of the same rules on a side with the same levels and language."""
        out = self.input_checks()
        for r in self.side.policy.rules:
            if r.kind in m.DECISION_KINDS and (applies(r, self.type_text) or self.type_text is None):
                got = known.get(r) if known is not None else None
                out.append((r.iri, got if got is not None else self.fires(r)))  # type: ignore[arg-type]
        return out

    def decision_diagrams(self) -> dict[m.Rule, int]:
        """Rule → fires, for :meth:`decision_rules` of another side to reuse."""
        rules = [
            r
            for r in self.side.policy.rules
            if r.kind in m.DECISION_KINDS and (applies(r, self.type_text) or self.type_text is None)
        ]
        return {r: self.fires(r) for r in rules}  # type: ignore[arg-type]

    def effect(self, rule: m.NotificationRule | m.AuditLogRule) -> tuple[int, int]:
        """(matches if APPROVE, matches if REJECT) of a notification or audit rule."""
        mgr = self.mgr
        base = mgr.true
        if rule.min_authority is not None:
            base = self.rank_ok(rule.min_authority.rank)
        if isinstance(rule, m.NotificationRule) and rule.threshold is not None:
            base = mgr.and_(base, self.amount_above(rule.threshold))
        on_approve = base if rule.event in ("Approved", "AnyDecision") else mgr.false
        on_reject = base if rule.event in ("Rejected", "AnyDecision") else mgr.false
        return on_approve, on_reject

    def effect_rules(self) -> list[tuple[str, frozenset[tuple[object, ...]], int, int]]:
        """(IRI, entries, matches if APPROVE, matches if REJECT) of each effect rule of this type."""
        out = []
        for r in self.side.policy.rules:
            if isinstance(r, m.NotificationRule | m.AuditLogRule) and applies(r, self.type_text):
                entries: frozenset[tuple[object, ...]]
                if isinstance(r, m.NotificationRule):
                    entries = frozenset(("notify", r.iri, to) for to in r.recipients)
                else:
                    entries = frozenset({("audit", r.iri, r.ledger, r.flags)})
                out.append((r.iri, entries, *self.effect(r)))
        return out


def _cmp(a: int, op: str, b: int) -> bool:
    return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b, "eq": a == b, "ne": a != b}[op]
