"""Transactions as columns: one Arrow table per batch, in the form the kernel reads.

A batch is normalised so that every value keeps exactly the meaning the reference interpreter
(:mod:`finops_fabric.interpreter`) gives the raw JSON value, and nothing else:

- ``type`` and ``actor_level``: the value when it is a string, else null (a number, a boolean or
  an object is as missing as an absent field, to every rule);
- ``approver_id``, ``executor_id`` and each attribute a policy reads (``attributes.<name>``): the
  value's text as the interpreter reads it (a string as it is, an integer in decimal, a boolean
  as ``true``/``false``, a finite decimal in plain notation), else null;
- ``amount``: the string as given, or an integer or finite decimal in plain notation; null for
  anything else (a binary float, a boolean, an object): no reading of the language accepts those.

A value the plain text cannot carry exactly (a decimal whose notation has an exponent, such as a
JSON ``1E+3``, which the interpreter reads as a number but which a string ``"1E+3"`` is not)
marks its row ``slow``: the kernel decides such rows with the interpreter itself, one by one.

Each batch keeps what the rows were (the parsed transactions, or the source's Arrow columns) so
that any row can be shown or re-decided by a real enforcer exactly as it was given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: Fields the interpreter reads from the transaction itself; any other name is an attribute.
CORE = ("type", "amount", "actor_level", "approver_id", "executor_id")
PARTIES = ("approver_id", "executor_id")
#: Fields whose first ten characters, when they are a date, give a row's day (in this order).
TIME_FIELDS = ("timestamp", "time", "decided_at", "created_at", "date")
ATTR_PREFIX = "attributes."


def attr_column(name: str) -> str:
    return ATTR_PREFIX + name


def column_of(field_name: str) -> str:
    return field_name if field_name in CORE else attr_column(field_name)


def text_of(value: object) -> tuple[str | None, bool]:
    """(the interpreter's text of a party or attribute value, whether the row must go slow)."""
    if value is None:
        return None, False
    if isinstance(value, bool):
        return ("true" if value else "false"), False
    if isinstance(value, str):
        return value, False
    if isinstance(value, int):
        return str(value), False
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None, False
        s = str(value)
        return s, _PLAIN.fullmatch(s) is None
    return None, False


def amount_of(value: object) -> tuple[str | None, bool]:
    """(the amount's text as the kernel reads it, whether the row must go slow)."""
    if isinstance(value, str):
        return value, False
    if isinstance(value, bool) or value is None:
        return None, False
    if isinstance(value, int):
        return str(value), False
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None, False
        s = str(value)
        return (s, False) if _PLAIN.fullmatch(s) else (None, True)
    return None, False


def day_of(value: object) -> str | None:
    if isinstance(value, str) and _DAY.match(value[:10]):
        return value[:10]
    return None


@dataclass
class Batch:
    """One batch of transactions in columns, and how to get each row back as it was given."""

    table: pa.Table  # the normalised columns (see the module doc), plus "day" and "slow"
    rows: np.ndarray[Any, np.dtype[np.int64]]  # each row's line number (file) or decision id (log)
    numeric: frozenset[str] = frozenset()  # columns whose source was a number type (Arrow)
    txs: Sequence[Mapping[str, Any]] | None = None  # the parsed transactions, when there are
    source: pa.Table | None = None  # the source's own columns (Parquet, CSV)
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return int(self.table.num_rows)

    def column(self, name: str) -> pa.Array:
        key = ("col", name)
        got = self._cache.get(key)
        if got is None:
            if name in self.table.column_names:
                got = self.table.column(name).combine_chunks()
            else:
                got = pa.nulls(self.n, pa.string())
            self._cache[key] = got
        return got

    def slow(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        out: np.ndarray[Any, np.dtype[np.bool_]] = self.table.column("slow").to_numpy(zero_copy_only=False)
        return out

    def transaction(self, i: int) -> dict[str, Any]:
        """Row ``i`` as the transaction it was given as (a dict, as an enforcer takes it)."""
        if self.txs is not None:
            return dict(self.txs[i])
        assert self.source is not None
        return row_dict(self.source, i)

    def transactions(self, idx: Iterable[int]) -> list[dict[str, Any]]:
        return [self.transaction(int(i)) for i in idx]


def row_dict(source: pa.Table, i: int) -> dict[str, Any]:
    """One row of a Parquet/CSV table as a transaction: ``attributes.<name>`` columns (and an
    ``attributes`` struct) make its attributes; a null cell is an absent field."""
    row = source.slice(i, 1).to_pylist()[0]
    tx: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    for k, v in row.items():
        if k.startswith(ATTR_PREFIX):
            if v is not None:
                attrs[k[len(ATTR_PREFIX) :]] = v
        elif k == "attributes" and isinstance(v, Mapping):
            attrs.update({a: b for a, b in v.items() if b is not None})
        elif v is not None:
            tx[k] = v
    if attrs or any(k.startswith(ATTR_PREFIX) or k == "attributes" for k in row):
        tx["attributes"] = attrs
    return tx


def from_dicts(
    txs: Sequence[Mapping[str, Any]],
    rows: Sequence[int],
    attributes: Iterable[str],
    days: Sequence[str | None] | None = None,
) -> Batch:
    """A batch from parsed transactions (JSON Lines, the decision log)."""
    names = sorted(set(attributes) - set(CORE))
    cols: dict[str, list[Any]] = {
        k: [] for k in ("id", *CORE, *(attr_column(a) for a in names), "day", "slow")
    }
    for i, tx in enumerate(txs):
        slow = False
        tid = tx.get("id")
        cols["id"].append(None if tid is None else str(tid))
        t = tx.get("type")
        cols["type"].append(t if isinstance(t, str) else None)
        lv = tx.get("actor_level")
        cols["actor_level"].append(lv if isinstance(lv, str) else None)
        a, s = amount_of(tx.get("amount"))
        cols["amount"].append(a)
        slow |= s
        for p in PARTIES:
            v, s = text_of(tx.get(p))
            cols[p].append(v)
            slow |= s
        raw_attrs = tx.get("attributes")
        attrs = raw_attrs if isinstance(raw_attrs, Mapping) else {}
        for name in names:
            v, s = text_of(attrs.get(name))
            cols[attr_column(name)].append(v)
            slow |= s
        if days is not None:
            cols["day"].append(days[i])
        else:
            cols["day"].append(next((d for f in TIME_FIELDS if (d := day_of(tx.get(f))) is not None), None))
        cols["slow"].append(slow)
    arrays = {k: pa.array(v, pa.bool_() if k == "slow" else pa.string()) for k, v in cols.items()}
    return Batch(pa.table(arrays), np.asarray(rows, dtype=np.int64), txs=list(txs))


# --- Arrow sources (Parquet, CSV) ---------------------------------------------------------------


def _as_text(arr: pa.ChunkedArray | pa.Array, name: str, numeric: set[str]) -> tuple[pa.Array, pa.Array]:
    """(text column, slow mask) of one source column read as a party/attribute/amount/code."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    n = len(arr)
    false = pa.array(np.zeros(n, dtype=bool))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(pa.string()), false
    if pa.types.is_dictionary(t):
        return _as_text(arr.dictionary_decode(), name, numeric)
    if pa.types.is_boolean(t):
        if name in ("type", "actor_level", "amount"):
            return pa.nulls(n, pa.string()), false
        return pc.if_else(arr, "true", "false").cast(pa.string()), false
    if pa.types.is_integer(t):
        if name in ("type", "actor_level"):
            return pa.nulls(n, pa.string()), false
        numeric.add(name)
        return pc.cast(arr, pa.string()), false
    if pa.types.is_decimal(t):
        if name in ("type", "actor_level"):
            return pa.nulls(n, pa.string()), false
        numeric.add(name)
        if t.scale <= 6:  # Arrow writes such decimals exactly as Python's str() does
            return pc.cast(arr, pa.string()), false
        texts = [text_of(v) for v in arr.to_pylist()]
        return pa.array([x for x, _ in texts], pa.string()), pa.array([s for _, s in texts], pa.bool_())
    # binary floats, dates, lists, structs ...: no reading of the language accepts them
    return pa.nulls(n, pa.string()), false


def from_arrow(source: pa.Table, first_row: int, attributes: Iterable[str]) -> Batch:
    """A batch from a slice of a Parquet/CSV table (row numbers from ``first_row``)."""
    names = sorted(set(attributes) - set(CORE))
    n = source.num_rows
    numeric: set[str] = set()
    out: dict[str, pa.Array] = {}
    slow = pa.array(np.zeros(n, dtype=bool))
    if "id" in source.column_names:
        out["id"] = pc.cast(source.column("id").combine_chunks(), pa.string())
    else:
        out["id"] = pa.nulls(n, pa.string())
    struct = source.column("attributes").combine_chunks() if "attributes" in source.column_names else None
    for name in (*CORE, *names):
        col = column_of(name)
        if col in source.column_names:
            arr: pa.Array | None = source.column(col).combine_chunks()
        elif name not in CORE and struct is not None and pa.types.is_struct(struct.type):
            arr = pc.struct_field(struct, name) if struct.type.get_field_index(name) >= 0 else None
        else:
            arr = None
        if arr is None:
            out[col] = pa.nulls(n, pa.string())
            continue
        text, s = _as_text(arr, col, numeric)
        out[col] = text
        slow = pc.or_(slow, s)
    day = pa.nulls(n, pa.string())
    for f in TIME_FIELDS:
        if f in source.column_names:
            c = source.column(f).combine_chunks()
            if pa.types.is_timestamp(c.type) or pa.types.is_date(c.type):
                day = pc.strftime(c, format="%Y-%m-%d")
            elif pa.types.is_string(c.type) or pa.types.is_large_string(c.type):
                head = pc.utf8_slice_codeunits(c.cast(pa.string()), 0, 10)
                ok = pc.match_substring_regex(head, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
                day = pc.if_else(ok, head, pa.scalar(None, pa.string()))
            else:
                continue
            break
    out["day"] = day
    out["slow"] = slow
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    return Batch(pa.table(out), rows, numeric=frozenset(numeric), source=source)
