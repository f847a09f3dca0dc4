"""Hypothesis strategies for the policy language: random typed models of O, random changes ΔO,
and random transactions that hit O's constants, their neighbours and every odd input."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from finops_fabric import model as m

EX = "https://example.com/gen#"
TYPES = ("purchase", "wire", "refund")
ATTRS = ("country", "risk", "channel")  # compared as text and as decimals
ORDERED = "name"  # ordered as text only
TEXTS = ("US", "IR", "KP", "1", "1.0", "01", "high", "")
DECS = tuple(Decimal(x) for x in ("0", "1", "1.0", "2.5", "50", "100", "1000"))
THRESHOLDS = tuple(Decimal(x) for x in ("1", "50", "50.5", "100", "1000"))
WORDS = ("a", "b", "m", "mz", "z")
OPS = ("gt", "ge", "lt", "le", "eq", "ne")
VOCABS = (
    (("L1", 1), ("L2", 2), ("L3", 3), ("CFO", 4)),
    (("L1", 1), ("L2", 2), ("L3", 3), ("CFO", 4)),
    (("L1", 1), ("Level2", 2), ("L3", 3), ("CFO", 4)),  # L2 renamed
    (("L1", 1), ("L2", 3), ("L3", 2), ("CFO", 4)),  # ranks swapped
    (("L1", 1), ("L2", 2), ("L3", 3), ("CFO", 4), ("Board", 5)),  # one added
)


def levels_of(vocab: tuple[tuple[str, int], ...]) -> tuple[m.AuthorityLevel, ...]:
    return tuple(
        sorted(
            (m.AuthorityLevel(EX + code, code, rank) for code, rank in vocab),
            key=lambda lv: (lv.rank, lv.code),
        )
    )


@st.composite
def leaf(draw: st.DrawFn, levels: tuple[m.AuthorityLevel, ...], types: tuple[str, ...]) -> m.Condition:
    kind = draw(st.sampled_from(("attr", "attr", "attr", "amount", "level", "type", "party", "ordered")))
    if kind == "ordered":
        return m.Comparison(ORDERED, draw(st.sampled_from(OPS)), draw(st.sampled_from(WORDS)))
    if kind == "level":
        if draw(st.integers(min_value=0, max_value=5)) == 0:  # a level code read as a decimal
            return m.Comparison("actor_level", draw(st.sampled_from(("eq", "ne"))), Decimal(3))
        if draw(st.booleans()):
            return m.Comparison(
                "actor_level", draw(st.sampled_from(OPS)), draw(st.sampled_from([lv.code for lv in levels]))
            )
        codes = [lv.code for lv in levels] + ["L9"]
        return m.Membership(
            "actor_level", tuple(sorted(set(draw(st.lists(st.sampled_from(codes), min_size=1, max_size=3)))))
        )
    if kind == "type":
        if draw(st.integers(min_value=0, max_value=5)) == 0:  # a type read as a decimal
            return m.Membership("type", (Decimal(7), Decimal("7.5")))
        pool = [*types, "loan"]
        if draw(st.booleans()):
            return m.Comparison("type", draw(st.sampled_from(("eq", "ne"))), draw(st.sampled_from(pool)))
        return m.Membership(
            "type", tuple(sorted(set(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2)))))
        )
    party = draw(st.sampled_from(("approver_id", "executor_id")))
    attr = {"attr": draw(st.sampled_from(ATTRS)), "amount": "amount", "party": party}[kind]
    if draw(st.booleans()):
        numeric = draw(st.booleans())
        if numeric:
            return m.Comparison(attr, draw(st.sampled_from(OPS)), draw(st.sampled_from(DECS)))
        return m.Comparison(attr, draw(st.sampled_from(("eq", "ne"))), draw(st.sampled_from(TEXTS + ("a",))))
    values_pool: list[m.Value] = (
        [*DECS, *TEXTS] if kind != "party" else ["a", "b", "1", Decimal(1), Decimal(100)]
    )
    values = draw(st.lists(st.sampled_from(values_pool), min_size=1, max_size=3))
    return m.Membership(attr, tuple(sorted(set(values), key=lambda v: (isinstance(v, str), str(v)))))


def condition(levels: tuple[m.AuthorityLevel, ...], types: tuple[str, ...]) -> st.SearchStrategy[m.Condition]:
    base = leaf(levels, types)
    return st.recursive(
        base,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda ops: m.AllOf(tuple(ops))),
            st.lists(inner, min_size=1, max_size=3).map(lambda ops: m.AnyOf(tuple(ops))),
            inner.map(m.Not),
        ),
        max_leaves=4,
    )


@st.composite
def rule(draw: st.DrawFn, name: str, levels: tuple[m.AuthorityLevel, ...], types: tuple[str, ...]) -> m.Rule:
    applies = tuple(sorted(set(draw(st.lists(st.sampled_from(types), max_size=2))))) if types else ()
    common = {"iri": EX + name, "label": name, "rationale": None, "applies_to": applies}
    kind = draw(
        st.sampled_from(
            ("approval", "approval", "sod", "restriction", "restriction", "notification", "audit")
        )
    )
    level = st.sampled_from(levels)
    if kind == "approval":
        t = draw(st.sampled_from(THRESHOLDS))
        return m.ApprovalRule(**common, threshold=t, threshold_text=str(t), required=draw(level))
    if kind == "sod":
        return m.SegregationOfDutyRule(**common)
    if kind == "restriction":
        return m.RestrictionRule(
            **common,
            condition=draw(condition(levels, types)),
            override=draw(st.one_of(st.none(), level)),
            fraud_check=draw(st.booleans()),
        )
    event = draw(st.sampled_from(("Approved", "Rejected", "AnyDecision")))
    min_auth = draw(st.one_of(st.none(), level))
    if kind == "notification":
        t = draw(st.one_of(st.none(), st.sampled_from(THRESHOLDS)))
        who = tuple(
            sorted(set(draw(st.lists(st.sampled_from(("fin@x", "risk@x", "ops@x")), min_size=1, max_size=2))))
        )
        return m.NotificationRule(
            **common,
            event=event,
            recipients=who,
            min_authority=min_auth,
            threshold=t,
            threshold_text=None if t is None else str(t),
        )
    flags = tuple(sorted(set(draw(st.lists(st.sampled_from(("sox", "pci")), max_size=2)))))
    return m.AuditLogRule(
        **common,
        event=event,
        ledger=draw(st.sampled_from(("immutable", "sox"))),
        min_authority=min_auth,
        flags=flags,
    )


def _uses(r: m.Rule) -> set[tuple[str, int]]:
    """The levels (code, rank) a rule refers to: a copied rule needs them all on its new side."""
    out: set[tuple[str, int]] = set()
    for lv in (getattr(r, "required", None), getattr(r, "override", None), getattr(r, "min_authority", None)):
        if lv is not None:
            out.add((lv.code, lv.rank))
    if isinstance(r, m.RestrictionRule):
        for leaf_ in m.condition_leaves(r.condition):
            if (
                leaf_.attribute == "actor_level"
                and isinstance(leaf_, m.Comparison)
                and leaf_.operator not in ("eq", "ne")
            ):
                out.add((str(leaf_.value), -1))
    return out


def _fits(r: m.Rule, levels: tuple[m.AuthorityLevel, ...], types: tuple[str, ...]) -> bool:
    have = {(lv.code, lv.rank) for lv in levels}
    codes = {lv.code for lv in levels}
    for code, rank in _uses(r):
        if (rank == -1 and code not in codes) or (rank != -1 and (code, rank) not in have):
            return False
    return set(r.applies_to) <= set(types)


def policy(rules: list[m.Rule], levels: tuple[m.AuthorityLevel, ...], types: tuple[str, ...]) -> m.Policy:
    return m.Policy(
        iri=EX + "policy",
        title="generated",
        version=None,
        types=tuple(m.TransactionType(EX + t, t, t.title()) for t in sorted(types)),
        levels=levels,
        roles=(),
        rules=tuple(sorted(rules, key=lambda r: r.iri)),
        golden=(),
    )


@st.composite
def policy_pair(draw: st.DrawFn) -> tuple[m.Policy, m.Policy]:
    """O_old and O_new = O_old with random changes: rules kept, redrawn, dropped or added;
    maybe another level vocabulary or another set of types."""
    old_vocab = draw(st.sampled_from(VOCABS[:2]))
    new_vocab = draw(st.sampled_from(VOCABS)) if draw(st.booleans()) else old_vocab
    old_levels, new_levels = levels_of(old_vocab), levels_of(new_vocab)
    old_types = tuple(sorted(set(draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3)))))
    new_types = (
        old_types
        if draw(st.booleans())
        else tuple(sorted(set(draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3)))))
    )
    n = draw(st.integers(min_value=1, max_value=5))
    old_rules = [draw(rule(f"r{i}", old_levels, old_types)) for i in range(n)]
    new_rules = []
    for i, r in enumerate(old_rules):
        action = draw(st.sampled_from(("keep", "keep", "keep", "redraw", "drop")))
        if action == "keep" and _fits(r, new_levels, new_types):
            new_rules.append(r)
        elif action != "drop":
            new_rules.append(draw(rule(f"r{i}", new_levels, new_types)))
    for i in range(draw(st.integers(min_value=0, max_value=2))):
        new_rules.append(draw(rule(f"n{i}", new_levels, new_types)))
    return policy(old_rules, old_levels, old_types), policy(new_rules, new_levels, new_types)


def _amounts() -> st.SearchStrategy[Any]:
    near = st.sampled_from([*THRESHOLDS, *DECS]).flatmap(
        lambda d: st.sampled_from(
            [str(d), str(d + Decimal("0.01")), str(d - Decimal("0.01")), f" {d} ", d, str(d) + "0"]
        )
    )
    odd = st.sampled_from(
        ["abc", "", "1e5", "+7", "-5", "-0", "NaN", "0.00", 7, 0, True, None, 1.5, "\t50\n", "007"]
    )
    return st.one_of(near, odd, st.integers(min_value=-5, max_value=2000))


def _value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([*TEXTS, *WORDS, "other", "zz", "1.00", " 1 ", "2.5", "50", "100.0", "-1"]),
        # decimals only language 1.0 reads (spaced), and spellings both or neither read
        st.sampled_from([" 2.5 ", "50 ", "\t100", " 1.0", "+50", "+ 1", "1e2", "1E+3", " 0 ", "-1 "]),
        st.sampled_from([*DECS, Decimal("1E+3"), Decimal("0.0000001")]),
        st.sampled_from([1, 0, 50, 100, True, False, None, ["x"]]),
    )


@st.composite
def transaction(draw: st.DrawFn) -> dict[str, Any]:
    tx: dict[str, Any] = {"id": "t"}
    fields = {
        "type": st.sampled_from([*TYPES, "loan", "", "7", " 7.0", "7 ", "+7", 7, None]),
        "amount": _amounts(),
        "actor_level": st.sampled_from(
            ["L1", "L2", "Level2", "L3", "CFO", "Board", "L9", "", "3", "3.0", " 3", "3e0", 3, None]
        ),
        "approver_id": st.sampled_from(["a", "b", "1", "1.0", " 1 ", 1, Decimal("1E+2"), True, None]),
        "executor_id": st.sampled_from(["a", "b", "1", "1 ", 1, Decimal("1E-7"), None]),
    }
    for key, strategy in fields.items():
        v = draw(strategy)
        if v is not None or draw(st.booleans()):
            tx[key] = v
    shape = draw(st.sampled_from(("dict", "dict", "dict", "none", "list")))
    if shape == "dict":
        tx["attributes"] = {
            k: draw(_value()) for k in (*ATTRS, ORDERED) if draw(st.integers(min_value=0, max_value=4))
        }
    elif shape == "list":
        tx["attributes"] = ["not", "a", "dict"]
    return tx
