"""A boundary corpus for a policy: transactions at and around every constant it compares with.

Every threshold exactly, 0.01 above and below, spelled as a string, an integer or a decimal and
with white space around it; every declared level, an undeclared one and none; every declared
type, an undeclared one and none; the approver equal to the executor, different, and missing;
each attribute a condition reads at each of its constants (and 0.01 beside numeric ones), as
text, number, boolean and missing; and the odd amounts (negative, exponent, float, NaN, empty).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from finops_fabric import model as m

CENT = Decimal("0.01")
ODD_AMOUNTS: tuple[Any, ...] = (
    "abc", "", "1e5", "+7", "-5", "-0", "NaN", "0.00", "007", " 50 ", "\t50\n", ".5", "5.",
    "\u00a050", 7, 0, -3, True, None, 1.5, Decimal("1E+3"), Decimal("-0.01"), Decimal("NaN"),
    "123456789012345678901234567890", "0.0000000000001",
)  # fmt: skip


def _spellings(d: Decimal) -> list[Any]:
    out: list[Any] = [str(d), f" {d}", d]
    if d == d.to_integral_value():
        out.append(int(d))
    return out


def _amounts(policies: list[m.Policy]) -> list[Any]:
    points: set[Decimal] = {Decimal(0)}
    for p in policies:
        for r in p.rules:
            if isinstance(r, m.ApprovalRule | m.NotificationRule) and r.threshold is not None:
                points.add(r.threshold)
            if isinstance(r, m.RestrictionRule):
                for leaf in m.condition_leaves(r.condition):
                    if leaf.attribute == "amount":
                        vals = leaf.values if isinstance(leaf, m.Membership) else (leaf.value,)
                        points |= {v for v in vals if isinstance(v, Decimal)}
    out: list[Any] = []
    for t in sorted(points):
        for d in (t - CENT, t, t + CENT):
            out += _spellings(d)
    return out + list(ODD_AMOUNTS)


def _attribute_values(policies: list[m.Policy]) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {}
    for p in policies:
        for r in p.rules:
            if not isinstance(r, m.RestrictionRule):
                continue
            for leaf in m.condition_leaves(r.condition):
                if leaf.attribute in ("amount", "type", "actor_level"):
                    continue
                pool = values.setdefault(leaf.attribute, [None, "other", True, ""])
                consts = leaf.values if isinstance(leaf, m.Membership) else (leaf.value,)
                for c in consts:
                    if isinstance(c, Decimal):
                        pool += [str(c), str(c - CENT), str(c + CENT), c, f" {c} "]
                        if c == c.to_integral_value():
                            pool.append(int(c))
                    else:
                        pool.append(c)
    return values


def boundary_corpus(policies: list[m.Policy], *, seed: int = 0, size: int = 4000) -> Iterator[dict[str, Any]]:
    """Transactions on the boundaries of ``policies`` (every amount × level × type at least once,
    the rest of each transaction drawn with ``random.Random(seed)``)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    amounts = _amounts(policies)
    levels: list[Any] = sorted({lv.code for p in policies for lv in p.levels}) + ["L9", "", 3, None]
    types: list[Any] = sorted({t.code for p in policies for t in p.types}) + ["loan", "PURCHASE", 7, None]
    attrs = _attribute_values(policies)
    parties: list[tuple[Any, Any]] = [
        ("a", "b"),
        ("a", "a"),
        (None, "a"),
        ("a", None),
        (1, "1"),
        (True, "true"),
    ]
    n = 0

    def make(amount: Any, level: Any, tx_type: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        tx: dict[str, Any] = {"id": f"b-{n}"}
        for k, v in (("amount", amount), ("actor_level", level), ("type", tx_type)):
            if v is not None:
                tx[k] = v
        approver, executor = rng.choice(parties)
        if approver is not None:
            tx["approver_id"] = approver
        if executor is not None:
            tx["executor_id"] = executor
        shape = rng.random()
        if shape < 0.9:
            chosen = {k: rng.choice(v) for k, v in attrs.items()}
            tx["attributes"] = {k: v for k, v in chosen.items() if v is not None}
        elif shape < 0.95:
            tx["attributes"] = ["not", "an", "object"]
        return tx

    for a in amounts:
        for lv in levels:
            for t in types:
                yield make(a, lv, t)
    while n < size:
        yield make(rng.choice(amounts), rng.choice(levels), rng.choice(types))
