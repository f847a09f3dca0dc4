"""The strict JSON reader: what it refuses (code, HTTP status, line and column), and that what
it accepts reads exactly as the stdlib reads it, with Decimal for fractions."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finops_fabric.daemon.decision_log import dumps_exact
from finops_fabric.intake.strict_json import DEFAULT_LIMITS, MAX_SAFE_INTEGER, JsonRefused, Limits, loads


def refusal(doc: bytes | str, limits: Limits = DEFAULT_LIMITS) -> JsonRefused:
    with pytest.raises(JsonRefused) as info:
        loads(doc, limits)
    return info.value


@pytest.mark.parametrize(
    ("doc", "code", "line", "column"),
    [
        (b'{"a": 9007199254740992}', "number_out_of_range", 1, 7),
        (b'{"a": -9007199254740992}', "number_out_of_range", 1, 7),
        (b'{"a":\n  [1, 1e16]}', "number_out_of_range", 2, 7),
        (b'{"a": 1.5E+300}', "number_out_of_range", 1, 7),
        (b'{"a": 1e999999999}', "number_out_of_range", 1, 7),
        (b'{"a": ' + b"9" * 5000 + b"}", "number_out_of_range", 1, 7),
        (b'{"a": NaN}', "non_finite", 1, 7),
        (b'{"a": Infinity}', "non_finite", 1, 7),
        (b'{"a":\n-Infinity}', "non_finite", 2, 1),
        (b'{"a": "\\ud800"}', "lone_surrogate", 1, 7),
        (b'{"a": "x\\udfff"}', "lone_surrogate", 1, 7),
        (b'{"\\ud800": 1}', "lone_surrogate", 1, 2),
        (b'{"a": "\\ude00\\ud83d"}', "lone_surrogate", 1, 7),  # a pair in the wrong order
        (b'{"a": 1,\n "a": 2}', "duplicate_key", 2, 2),
        (b'{"a": 1, "\\u0061": 2}', "duplicate_key", 1, 10),  # the same key, escaped
        (b'{"x": {"a": 1, "b": {"a": 2, "a": 3}}}', "duplicate_key", 1, 30),
        (b'{"x": ' + b"[" * 40 + b"]" * 40 + b"}", "too_deep", 1, 38),
        (b"[" * 30_000 + b"]" * 30_000, "too_deep", 1, 33),
        (b'{"a": "\xff"}', "invalid_utf8", 1, 8),
        (b'{"a": "\xed\xa0\x80"}', "invalid_utf8", 1, 8),  # a surrogate encoded in UTF-8
        (b'{"a":\n "\xc3"}', "invalid_utf8", 2, 3),
        (b"{not json", "invalid_json", 1, 2),
        (b'{"a": 1}\n{"b": 2}', "invalid_json", 2, 1),
        (b"", "invalid_json", 1, 1),
    ],
)
def test_refused_with_code_and_place(doc: bytes, code: str, line: int, column: int) -> None:
    exc = refusal(doc)
    assert (exc.code, exc.line, exc.column) == (code, line, column), str(exc)
    assert exc.status == 400
    assert f"line {line}" in str(exc)


def test_the_first_problem_in_reading_order_is_named() -> None:
    exc = refusal(b'{"a": NaN, "b": 1e999, "a": 1}')
    assert exc.code == "non_finite"
    exc = refusal(b'{"b": 1e999, "a": NaN}')
    assert exc.code == "number_out_of_range"


def test_size_limit_is_413_before_anything_is_parsed() -> None:
    exc = refusal(b'{"a": "' + b"x" * 70_000 + b'"}')
    assert (exc.code, exc.status) == ("too_large", 413)
    assert "65,536" in exc.message
    assert loads(b'{"a": "' + b"x" * 70_000 + b'"}', Limits(max_bytes=None))["a"] == "x" * 70_000
    assert refusal(b"[1]", Limits(max_bytes=2)).code == "too_large"


def test_depth_limit_is_exact() -> None:
    limits = Limits(max_depth=3)
    assert loads(b"[[[1]]]", limits) == [[[1]]]
    assert refusal(b"[[[[1]]]]", limits).code == "too_deep"
    # brackets inside strings do not count
    assert loads(b'{"a": "[[[[[[[[[[{{{{{{{{{{"}', limits) == {"a": "[[[[[[[[[[{{{{{{{{{{"}
    # many brackets side by side are not deep
    wide = b"[" + b",".join([b'{"a": [1]}'] * 200) + b"]"
    assert len(loads(wide, limits)) == 200


def test_accepted_numbers() -> None:
    doc = loads(b'{"i": 9007199254740991, "n": -9007199254740991, "d": 1.50, "e": 1e2, "z": -0}')
    assert doc == {
        "i": MAX_SAFE_INTEGER,
        "n": -MAX_SAFE_INTEGER,
        "d": Decimal("1.50"),
        "e": Decimal("1E+2"),
        "z": 0,
    }
    assert type(doc["i"]) is int and type(doc["d"]) is Decimal
    assert str(doc["d"]) == "1.50"  # kept as written
    assert loads(b'{"tiny": 1e-400}')["tiny"] == Decimal("1e-400")


def test_pairs_and_text() -> None:
    assert loads(b'{"a": "\\ud83d\\ude00", "\\u00e9": "\\u2028"}') == {"a": "\U0001f600", "é": "\u2028"}
    assert loads('{"a": "é"}') == {"a": "é"}
    assert refusal('{"a": "\ud800"}').code == "invalid_utf8"  # a str given with a surrogate
    # an escaped backslash before u is not an escape
    assert loads(b'{"a": "\\\\ud800"}') == {"a": "\\ud800"}


_text = st.text(st.characters(codec="utf-8"), max_size=12)
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**15), max_value=10**15, places=4)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_values, st.booleans())
def test_what_is_accepted_reads_as_the_stdlib_reads_it(value: Any, ascii_only: bool) -> None:
    text = dumps_exact(value)  # decimals as JSON numbers, exactly
    if ascii_only:  # every non-ASCII character as a \u escape (astral ones as a surrogate pair)
        text = "".join(ch if ord(ch) < 128 else json.dumps(ch)[1:-1] for ch in text)
    expected = json.loads(text, parse_float=Decimal)
    assert loads(text.encode("utf-8"), Limits(max_bytes=None, max_depth=64)) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_are_a_value_or_a_refusal(data: bytes) -> None:
    try:
        loads(data)
    except JsonRefused as exc:
        assert exc.code in {
            "invalid_json",
            "invalid_utf8",
            "non_finite",
            "number_out_of_range",
            "lone_surrogate",
        }
