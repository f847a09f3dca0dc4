"""One line a compliance officer reads, for each region: who, what amount, what changes.

purchases over $50,000 up to $100,000 by L1: REJECT → APPROVE (approval-purchase no longer fires)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from finops_fabric import model as m


def short(iri: str) -> str:
    """A rule's name as people say it: the IRI's local name."""
    if iri.startswith(m.FAB + "FailClosed/"):
        return f"the fail-closed check of {iri.rsplit('/', 1)[1]}"
    for sep in ("#", "/", ":"):
        if sep in iri.rstrip(sep):
            return iri.rstrip(sep).rsplit(sep, 1)[1]
    return iri


def dollars(text: str) -> str:
    """A bound as money: $50,000, $1,000.50, $0.125."""
    d = Decimal(text)
    sign = "-" if d < 0 else ""
    d = abs(d)
    if d == d.to_integral_value():
        return f"{sign}${d:,.0f}"
    places = -int(d.as_tuple().exponent) if isinstance(d.as_tuple().exponent, int) else 2
    return f"{sign}${d:,.{max(2, places)}f}"


def plural(label: str) -> str:
    word = label if label[:2].isupper() else label[:1].lower() + label[1:]
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _either(items: Sequence[str], joiner: str = "or") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {joiner} " + items[-1]


def _bounds(c: Mapping[str, Any], money: bool) -> str:
    f = dollars if money else str
    lo = ("over", c["gt"]) if "gt" in c else ("from", c["ge"]) if "ge" in c else None
    hi = ("up to", c["le"]) if "le" in c else ("below", c["lt"]) if "lt" in c else None
    if lo and hi and lo[0] == "from" and hi[0] == "up to" and lo[1] == hi[1]:
        return f"of exactly {f(lo[1])}" if money else f"= {lo[1]}"
    if lo and hi:
        return f"{lo[0]} {f(lo[1])} {hi[0]} {f(hi[1])}"
    if lo:
        return f"over {f(lo[1])}" if lo[0] == "over" else f"of {f(lo[1])} or more" if money else f"≥ {lo[1]}"
    if hi:
        return f"{hi[0]} {f(hi[1])}" if money else ("≤ " if hi[0] == "up to" else "< ") + hi[1]
    return ""


def amount_phrase(c: Mapping[str, Any]) -> str:
    if c.get("missing") is True:
        return "with no readable amount"
    parts = []
    if c.get("padded") is True:
        parts.append("with a whitespace-padded amount")
    elif c.get("padded") is False or c.get("missing") is False:
        parts.append("with an amount")
    text = _bounds(c, True)
    if text:
        parts.append(text)
    if "in" in c:
        parts.append("with the amount written " + _either(c["in"]))
    if c.get("not_in"):
        parts.append("not written " + _either(c["not_in"]))
    return " ".join(parts)


def level_phrase(c: Mapping[str, Any], declared: Sequence[str]) -> str:
    """``declared``: every declared level code, lowest rank first."""
    if c.get("missing") is True:
        return "with no authority level"
    if "in" in c:
        return "by " + _either(c["in"])
    if "not_in" in c:
        left = [code for code in declared if code not in set(c["not_in"])]
        tail = "an undeclared level" if c.get("missing") is False else "an undeclared level or none"
        return "by " + _either([*left, tail])
    if c.get("missing") is False:
        return "by any level"
    return ""


def type_phrase(c: Mapping[str, Any] | None, labels: Mapping[str, str], declared: set[str]) -> str:
    if not c:
        return "transactions"
    if c.get("missing") is True:
        return "transactions without a type"
    if "in" in c:
        return _either([plural(labels.get(t, t)) for t in c["in"]], "and")
    if "not_in" in c:
        none = "" if c.get("missing") is False else " (or none)"
        if set(c["not_in"]) >= declared:
            return f"transactions of an undeclared type{none}"
        return f"transactions of any type but {_either(c['not_in'])}{none}"
    return "transactions with a type"


def parties_phrase(when: Mapping[str, Any]) -> str:
    same = when.get("approver_is_executor")
    out = []
    if same is True:
        out.append("approved and executed by the same person")
    elif same is False:
        out.append("with different approver and executor")
    elif isinstance(same, Mapping) and same.get("missing") is True:
        out.append("without an approver or executor")
    for key in ("approver_id", "executor_id"):
        if key in when:
            out.append(attribute_phrase(key, when[key]))
    return " and ".join(out)


def attribute_phrase(name: str, c: Mapping[str, Any]) -> str:
    """A clause about one attribute: "country is IR or KP", "risk_score is over 50"."""
    if c.get("missing") is True:
        return f"{name} is missing"
    parts = []
    if "in" in c:
        parts.append(f"{name} is {_either([repr(v) if v == '' else v for v in c['in']])}")
    if "not_in" in c:
        none = "" if c.get("missing") is False else " (or missing)"
        parts.append(f"{name} is not {_either(c['not_in'])}{none}")
    text = _bounds(c, False)
    if text:
        parts.append(f"{name} is {text}" if not text.startswith(("=", "≥", "≤", "<")) else f"{name} {text}")
    if c.get("padded") is True:
        parts.append(f"{name} is a whitespace-padded number")
    elif c.get("decimal") is False:
        parts.append(f"{name} is not a number")
    elif c.get("decimal") is True and not text:
        parts.append(f"{name} is a number")
    for key, sym in (("text_gt", ">"), ("text_ge", "≥"), ("text_lt", "<"), ("text_le", "≤")):
        if key in c:
            parts.append(f"{name} {sym} {c[key]!r} (as text)")
    if not parts and c.get("missing") is False:
        parts.append(f"{name} is given")
    return " and ".join(parts)


def outcome_phrase(sig: Any) -> str:
    def d(rejects: bool) -> str:
        return "REJECT" if rejects else "APPROVE"

    reasons = []
    partial = set(sig.partial)
    for rules, verb in ((sig.lost, "no longer"), (sig.gained, "now")):
        whole = [short(i) for i in rules if i not in partial]
        some = [short(i) for i in rules if i in partial]
        if whole:
            reasons.append(f"{_either(whole, 'and')} {verb} {'fires' if len(whole) == 1 else 'fire'}")
        if some:
            reasons.append(
                f"in part of it {_either(some, 'and')} {verb} {'fires' if len(some) == 1 else 'fire'}"
            )
    for entries, verb in ((sig.added, "now"), (sig.removed, "no longer")):
        who = sorted({e[2] for e in entries if e[0] == "notify"})
        if who:
            reasons.append(f"{verb} notifies {_either(who, 'and')}")
        ledgers = sorted({e[2] for e in entries if e[0] == "audit"})
        if ledgers:
            reasons.append(f"{verb} writes to the {_either(ledgers, 'and')} ledger")
        if not who and not ledgers and entries:
            reasons.append(f"{verb} records {len(entries)} entries")
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return f"{d(sig.old_rejects)} → {d(sig.new_rejects)}{why}"


def summary(
    when: Mapping[str, Any], sig: Any, labels: Mapping[str, str], types: set[str], levels: Sequence[str]
) -> str:
    who = [type_phrase(when.get("type"), labels, types)]
    if "amount" in when:
        who.append(amount_phrase(when["amount"]))
    if "actor_level" in when:
        who.append(level_phrase(when["actor_level"], levels))
    head = " ".join(p for p in who if p)
    extra = [parties_phrase(when)]
    clauses = [attribute_phrase(name, c) for name, c in sorted((when.get("attributes") or {}).items())]
    if clauses:
        extra.append("where " + " and ".join(clauses))
    tail = ", ".join(p for p in extra if p)
    return f"{head}{', ' + tail if tail else ''}: {outcome_phrase(sig)}"
