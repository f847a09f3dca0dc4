"""Whether a transaction lies in a region: the meaning of a ``when`` constraint, read straight
from the transaction's JSON values (independently of the atoms the analysis computes with).

Each field is read as the reference interpreter reads it: ``type`` and ``actor_level`` are
texts only when they are strings; other fields have a text view (a string; ``true``/``false``;
the digits of a number; none for an absent value, null, an array or an object) and a decimal
view (of an attribute: the number, or the string read as a decimal; of the other fields: their
text read as a decimal). Every decimal is read by the document's ``amount_reading``:
``trimmed`` (both sides language 1.0: surrounding whitespace is ignored), ``plain`` (both 1.1: a
plain decimal string exactly; anything else is no decimal) or ``mixed`` (one of each: a value
that is a decimal only once trimmed is its own class, matched only by ``"padded": true``;
bounds, ``decimal: true`` and, for the amount, ``in`` without it mean a plain one).
The constraint keys are documented in :mod:`.render`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")
READINGS = ("trimmed", "plain", "mixed")
_KEYS = {
    "missing",
    "in",
    "not_in",
    "decimal",
    "gt",
    "ge",
    "lt",
    "le",
    "text_gt",
    "text_ge",
    "text_lt",
    "text_le",
    "padded",
}


def text_view(v: object) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal) and v.is_finite():
        return str(v)
    return None


def decimal_view(v: object) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, Decimal):
        return v if v.is_finite() else None
    if isinstance(v, str) and _PLAIN.fullmatch(v.strip()):
        return Decimal(v.strip())
    return None


def strict_view(v: object) -> Decimal | None:
    """The decimal view of language 1.1: as :func:`decimal_view`, but a string exactly plain."""
    if isinstance(v, str):
        return Decimal(v) if _PLAIN.fullmatch(v) else None
    return decimal_view(v)


def _views(src: object, reading: str) -> tuple[Decimal | None, bool]:
    """(the decimal view, whether it is padded) of a value under a reading."""
    lenient = decimal_view(src)
    if reading == "trimmed":
        return lenient, False
    strict = strict_view(src)
    if reading == "plain":
        return strict, False
    return lenient, lenient is not None and strict is None


def _order(a: Any, op: str, b: Any) -> bool:
    return bool({"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op])


def _generic(c: Mapping[str, Any], text: str | None, dec: Decimal | None, padded: bool = False) -> bool:
    if padded and "padded" not in c and any(k in c for k in ("decimal", "gt", "ge", "lt", "le")):
        return False  # a decimal to one side only: matched only by "padded": true
    for key, val in c.items():
        if key not in _KEYS:
            raise ValueError(f"unknown constraint {key!r}")
        if key == "padded":
            ok = padded is bool(val)
        elif key == "missing":
            ok = (text is None) is bool(val)
        elif key == "in":
            ok = text is not None and text in val
        elif key == "not_in":
            ok = text is None or text not in val
        elif key == "decimal":
            ok = (dec is not None) is bool(val)
        elif key.startswith("text_"):
            ok = text is not None and _order(text, key[5:], val)
        else:
            ok = dec is not None and _order(dec, key, Decimal(val))
        if not ok:
            return False
    return True


def _code(v: object, reading: str) -> tuple[str | None, Decimal | None, bool]:
    t = v if isinstance(v, str) else None
    return t, *_views(t, reading)


def _party(v: object, reading: str) -> tuple[str | None, Decimal | None, bool]:
    t = text_view(v)  # a party is read through its text
    return t, *_views(t, reading)


def amount_class(raw: object, reading: str) -> tuple[str, Decimal | None]:
    """("missing" | "plain" | "padded", the decimal) of an amount under a reading."""
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal | str):
        return "missing", None
    if isinstance(raw, int):
        return "plain", Decimal(raw)
    if isinstance(raw, Decimal):
        return ("plain", raw) if raw.is_finite() else ("missing", None)
    if _PLAIN.fullmatch(raw):
        return "plain", Decimal(raw)
    if _PLAIN.fullmatch(raw.strip()):
        if reading == "trimmed":
            return "plain", Decimal(raw.strip())
        if reading == "mixed":
            return "padded", Decimal(raw.strip())
    return "missing", None


def _amount(c: Mapping[str, Any], raw: object, reading: str) -> bool:
    cls, dec = amount_class(raw, reading)
    want_padded = c.get("padded")
    if want_padded is not None and (cls == "padded") is not bool(want_padded):
        return False
    if want_padded is False and cls != "plain":
        return False
    valued = any(k in c for k in ("in", "not_in", "gt", "ge", "lt", "le"))
    if valued and reading == "mixed" and want_padded is None and cls != "plain":
        return False
    for key, val in c.items():
        if key == "padded":
            continue
        if key == "missing":
            if (cls == "missing") is not bool(val):
                return False
        elif key in ("in", "not_in"):
            if dec is None or (str(dec) in val) is (key == "not_in"):
                return False
        elif key in ("gt", "ge", "lt", "le"):
            if dec is None or not _order(dec, key, Decimal(val)):
                return False
        else:
            raise ValueError(f"unknown amount constraint {key!r}")
    return True


def _parties(c: object, tx: Mapping[str, Any]) -> bool:
    a, e = text_view(tx.get("approver_id")), text_view(tx.get("executor_id"))
    if isinstance(c, bool):
        return a is not None and e is not None and (a == e) is c
    if isinstance(c, Mapping) and set(c) == {"missing"}:
        return (a is None or e is None) is bool(c["missing"])
    raise ValueError(f"unknown approver_is_executor constraint {c!r}")


def contains(when: Mapping[str, Any], tx: Mapping[str, Any], reading: str = "trimmed") -> bool:
    """Whether transaction ``tx`` satisfies every constraint of ``when``."""
    if reading not in READINGS:
        raise ValueError(f"unknown amount reading {reading!r}")
    for key, c in when.items():
        if key in ("type", "actor_level"):
            ok = _generic(c, *_code(tx.get(key), reading))
        elif key == "amount":
            ok = _amount(c, tx.get("amount"), reading)
        elif key == "approver_is_executor":
            ok = _parties(c, tx)
        elif key in ("approver_id", "executor_id"):
            ok = _generic(c, *_party(tx.get(key), reading))
        elif key == "attributes":
            attrs = tx.get("attributes")
            for name, ac in c.items():
                raw = attrs.get(name) if isinstance(attrs, Mapping) else None
                if not _generic(ac, text_view(raw), *_views(raw, reading)):
                    return False
            ok = True
        else:
            raise ValueError(f"unknown field {key!r} in a region")
        if not ok:
            return False
    return True


def region_of(doc: Mapping[str, Any], tx: Mapping[str, Any]) -> int | None:
    """The index of the region of an impact document that holds ``tx`` (None: its outcome does
    not change). Regions are disjoint, so there is at most one."""
    reading = str(doc.get("amount_reading", "trimmed"))
    for i, r in enumerate(doc.get("regions") or []):
        if contains(r["when"], tx, reading):
            return i
    return None
