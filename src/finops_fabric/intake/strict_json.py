"""A strict JSON reader for what arrives from outside (transactions, request bodies).

Refused, each with a stable code (the caller puts its own prefix before it, ``tx.`` or
``deploy.``), an HTTP status, and the line and column where the problem is:

- ``too_large`` (413): more bytes than the limit;
- ``invalid_utf8`` (400): bytes that are not UTF-8 (an encoded surrogate is not UTF-8 either);
- ``invalid_json`` (400): not JSON;
- ``too_deep`` (400): arrays and objects nested deeper than the limit;
- ``duplicate_key`` (400): an object that names a key twice (JSON leaves the meaning open);
- ``lone_surrogate`` (400): a ``\\uD800``-``\\uDFFF`` escape that is not half of a pair;
- ``non_finite`` (400): ``NaN``, ``Infinity``, ``-Infinity`` (not JSON, though Python writes them);
- ``number_out_of_range`` (400): a number beyond ±(2**53 - 1), which other readers round.

Numbers without a fraction or exponent are read as ``int``, the others as ``Decimal``, never
as a binary float.

The common case costs one C parse: a size check, the UTF-8 decode, a count of brackets (a
body with no more ``{`` and ``[`` than the nesting limit cannot be too deep), a search for a
surrogate escape only when the text has a ``\\u`` at all, then the stdlib's C decoder with
hooks that refuse duplicates, constants and big numbers as they are met. Only a body that
fails, or that has many brackets or a surrogate escape, is walked token by token in Python
(:func:`_scan`), which finds the first problem in reading order and where it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "JsonRefused",
    "Limits",
    "loads",
    "too_large",
]

DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_MAX_DEPTH = 32
#: The largest integer every JSON reader keeps exact (I-JSON, RFC 7493 §2.2).
MAX_SAFE_INTEGER = 2**53 - 1

STATUS = {
    "too_large": 413,
    "invalid_utf8": 400,
    "invalid_json": 400,
    "too_deep": 400,
    "duplicate_key": 400,
    "lone_surrogate": 400,
    "non_finite": 400,
    "number_out_of_range": 400,
}


@dataclass(frozen=True)
class Limits:
    """``max_bytes``: the largest document (``None``: no limit); ``max_depth``: how deep
    arrays and objects may nest (a flat object is depth 1)."""

    max_bytes: int | None = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH


DEFAULT_LIMITS = Limits()


class JsonRefused(ValueError):
    """The document was refused: ``code`` (without prefix), ``message``, where (1-based
    ``line`` and ``column``, when known) and the HTTP ``status`` that fits."""

    def __init__(self, code: str, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)

    def where(self) -> str:
        if self.line is None:
            return ""
        return f"line {self.line}" + (f", column {self.column}" if self.column is not None else "")

    def __str__(self) -> str:
        where = self.where()
        return f"{self.message} ({where})" if where else self.message


class _Refusal(Exception):
    """Raised by the decoder's hooks; located afterwards by :func:`_scan`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _out_of_range(text: str) -> str:
    shown = text if len(text) <= 40 else text[:20] + "…" + text[-8:]
    return (
        f"the number {shown} is beyond ±(2^53 - 1), where JSON readers lose digits; "
        'send amounts and other large numbers as decimal strings ("105000.00")'
    )


def _non_finite(name: str) -> str:
    return f"{name} is not a JSON number (only finite numbers are); send amounts as decimal strings"


def _duplicate(key: str) -> str:
    return f"the key {json.dumps(key)} appears twice in one object; each key may appear once"


def _int(text: str) -> int:
    if len(text) < 16:  # at most 15 digits (or a sign and 14): always within ±(2**53 - 1)
        return int(text)
    value = int(text) if len(text) <= 20 else None
    if value is None or not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise _Refusal("number_out_of_range", _out_of_range(text))
    return value


def _decimal(text: str) -> Decimal:
    value = Decimal(text)
    if value.adjusted() >= 15 and value.copy_abs() > MAX_SAFE_INTEGER:  # copy_abs: exact, no context
        raise _Refusal("number_out_of_range", _out_of_range(text))
    return value


def _constant(name: str) -> Any:
    raise _Refusal("non_finite", _non_finite(name))


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refusal("duplicate_key", _duplicate(key))
            seen.add(key)
    return out


_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_float=_decimal, parse_int=_int, parse_constant=_constant
)
#: A \u escape of a UTF-16 surrogate (paired or not: the scan tells which).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def too_large(size: int | None, limit: int) -> JsonRefused:
    """The refusal of a document of ``size`` bytes (None: more than ``limit``, not read to the end)."""
    what = f"{size:,} bytes" if size is not None else f"more than {limit:,} bytes"
    return JsonRefused("too_large", f"the document is {what}; the limit is {limit:,} bytes")


def loads(data: bytes | str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The JSON value of ``data``, or :class:`JsonRefused` saying what is wrong and where."""
    if isinstance(data, str):
        size = len(data.encode("utf-8", "surrogatepass"))
        text = data
    else:
        size = len(data)
        text = ""
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise too_large(size, limits.max_bytes)
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line, column = _position_bytes(data, exc.start)
            raise JsonRefused(
                "invalid_utf8", f"byte 0x{data[exc.start]:02x} is not UTF-8 ({exc.reason})", line, column
            ) from None
    elif _has_surrogate(text):
        found = next(i for i, ch in enumerate(text) if "\ud800" <= ch <= "\udfff")
        line, column = _position(text, found)
        raise JsonRefused("invalid_utf8", "the text holds a lone UTF-16 surrogate", line, column)
    if (
        text.count("{") + text.count("[") > limits.max_depth
        or ("\\u" in text and _SURROGATE_ESCAPE.search(text) is not None)
    ) and (found_early := _scan(text, limits.max_depth)) is not None:
        raise found_early
    try:
        return _DECODER.decode(text)
    except _Refusal as refusal:
        located = _scan(text, limits.max_depth)
        if located is not None:
            raise located from None
        raise JsonRefused(refusal.code, refusal.message) from None
    except json.JSONDecodeError as exc:
        located = _scan(text, limits.max_depth)
        if located is not None:
            raise located from None
        raise JsonRefused("invalid_json", f"not valid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:  # not reached: the bracket count or the scan stops it first
        raise JsonRefused("too_deep", f"nested deeper than {limits.max_depth} levels") from None
    except (
        ArithmeticError,
        ValueError,
    ) as exc:  # not reached: the hooks refuse what Decimal or int would not take
        raise JsonRefused("invalid_json", f"not valid JSON: {exc}") from None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _position_bytes(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    return line, len(data[start:offset].decode("utf-8", "replace")) + 1


# --- the located scan -------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
      (?P<ws>[\ \t\n\r]+)
    | (?P<str>"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")
    | (?P<num>-?(?:0|[1-9][0-9]*)(?P<frac>(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?))
    | (?P<open>[\[{])
    | (?P<close>[\]}])
    | (?P<punct>[:,])
    | (?P<lit>true|false|null)
    | (?P<const>NaN|-?Infinity)
    """,
    re.VERBOSE,
)


class _Frame:
    __slots__ = ("is_object", "keys", "want_key")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        self.keys: set[str] = set()
        self.want_key = is_object


def _scan(text: str, max_depth: int) -> JsonRefused | None:
    """The first refusable thing in ``text`` in reading order (too deep, a duplicate key, a lone
    surrogate, a non-finite or out-of-range number), located; ``None`` when there is none
    before the end or before the first thing that is not JSON (the decoder names that)."""
    stack: list[_Frame] = []
    pos, end = 0, len(text)
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None:
            return None
        kind = m.lastgroup
        start, pos = pos, m.end()
        if kind == "ws":
            continue
        frame = stack[-1] if stack else None
        if kind == "open":
            if len(stack) >= max_depth:
                return JsonRefused(
                    "too_deep",
                    f"arrays and objects are nested deeper than {max_depth} levels",
                    *_position(text, start),
                )
            stack.append(_Frame(m.group() == "{"))
        elif kind == "close":
            if not stack:
                return None
            stack.pop()
        elif kind == "punct":
            if frame is not None and frame.is_object and m.group() == ",":
                frame.want_key = True
        elif kind == "str":
            token = m.group()
            value = json.loads(token) if "\\" in token else token[1:-1]
            if "\\u" in token and _has_surrogate(value):
                return JsonRefused(
                    "lone_surrogate",
                    "a \\u escape names half of a UTF-16 surrogate pair without its other half",
                    *_position(text, start),
                )
            if frame is not None and frame.want_key:
                frame.want_key = False
                if value in frame.keys:
                    return JsonRefused("duplicate_key", _duplicate(value), *_position(text, start))
                frame.keys.add(value)
        elif kind == "num":
            token = m.group()
            try:
                (_decimal if m.group("frac") else _int)(token)
            except _Refusal as refusal:
                return JsonRefused(refusal.code, refusal.message, *_position(text, start))
            except (ArithmeticError, ValueError):
                return None
        elif kind == "const":
            return JsonRefused("non_finite", _non_finite(m.group()), *_position(text, start))
    return None
