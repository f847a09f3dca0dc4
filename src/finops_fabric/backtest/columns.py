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

A batch from Parquet keeps its columns as they are typed (dictionaries, decimals, integers,
booleans): the kernel reads each value as the interpreter reads the Python value it stands for,
once per distinct value, so no row is converted; only ``type`` and ``actor_level`` columns of
anything but strings are read as missing.

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

    columns: dict[str, pa.Array]  # the normalised columns (see the module doc), plus "day"
    n: int
    first_row: int = 1  # row numbers first_row, first_row + 1, ... unless ``row_numbers`` says
    row_numbers: np.ndarray[Any, np.dtype[np.int64]] | None = None  # line numbers, decision ids
    slow_rows: np.ndarray[Any, np.dtype[np.bool_]] | None = None  # None: no row goes slow
    txs: Sequence[Mapping[str, Any]] | None = None  # the parsed transactions, when there are
    source: pa.Table | None = None  # the source's own columns (Parquet)
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def row(self, i: int) -> int:
        """Row ``i``'s number: its line (a file) or its decision id (a log)."""
        return int(self.row_numbers[i]) if self.row_numbers is not None else self.first_row + i

    @property
    def table(self) -> pa.Table:
        return pa.table(self.columns)

    def column(self, name: str) -> pa.Array:
        got = self.columns.get(name)
        if got is None:
            got = self.columns[name] = pa.nulls(self.n, pa.string())
        return got

    def slow(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        if self.slow_rows is None:
            return np.zeros(self.n, dtype=bool)
        return self.slow_rows

    def transaction(self, i: int) -> dict[str, Any]:
        """Row ``i`` as the transaction it was given as (a dict, as an enforcer takes it)."""
        if self.txs is not None:
            return dict(self.txs[i])
        assert self.source is not None
        return row_dict(self.source, i)

    def transactions(self, idx: Sequence[int]) -> list[dict[str, Any]]:
        """Rows ``idx`` as transactions (from a table, converted together)."""
        if self.txs is not None or not len(idx):
            return [self.transaction(int(i)) for i in idx]
        assert self.source is not None
        rows = self.source.take(pa.array(np.asarray(idx, dtype=np.int64))).to_pylist()
        return [_fold(row) for row in rows]


def row_dict(source: pa.Table, i: int) -> dict[str, Any]:
    """One row of a Parquet table as a transaction: ``attributes.<name>`` columns (and an
    ``attributes`` struct) make its attributes; a null cell is an absent field."""
    return _fold(source.slice(i, 1).to_pylist()[0])


def _fold(row: Mapping[str, Any]) -> dict[str, Any]:
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


def _texts(values: list[Any], read: Any, slow: list[int], offset: int = 0) -> list[str | None]:
    """Each value's text by ``read`` (a string as it is, without a call); rows that must go slow
    are added to ``slow``."""
    out: list[str | None] = []
    for i, v in enumerate(values):
        if type(v) is str:
            out.append(v)
        elif v is None:
            out.append(None)
        else:
            t, s = read(v)
            out.append(t)
            if s:
                slow.append(i + offset)
    return out


def from_dicts(
    txs: Sequence[Mapping[str, Any]],
    rows: Sequence[int],
    attributes: Iterable[str],
    days: Sequence[str | None] | None = None,
) -> Batch:
    """A batch from parsed transactions (JSON Lines, the decision log)."""
    names = sorted(set(attributes) - set(CORE))
    slow: list[int] = []
    cols: dict[str, list[Any]] = {}
    ids = [tx.get("id") for tx in txs]
    cols["id"] = [v if type(v) is str or v is None else str(v) for v in ids]
    for code in ("type", "actor_level"):
        cols[code] = [v if isinstance(v := tx.get(code), str) else None for tx in txs]
    cols["amount"] = _texts([tx.get("amount") for tx in txs], amount_of, slow)
    for p in PARTIES:
        cols[p] = _texts([tx.get(p) for tx in txs], text_of, slow)
    if names:
        attrs = [a if isinstance(a := tx.get("attributes"), Mapping) else {} for tx in txs]
        for name in names:
            cols[attr_column(name)] = _texts([a.get(name) for a in attrs], text_of, slow)
    if days is not None:
        cols["day"] = list(days)
    else:
        cols["day"] = [
            next((d for f in TIME_FIELDS if (d := day_of(tx.get(f))) is not None), None) for tx in txs
        ]
    slow_rows = None
    if slow:
        slow_rows = np.zeros(len(txs), dtype=bool)
        slow_rows[slow] = True
    arrays = {k: pa.array(v, pa.string()) for k, v in cols.items()}
    return Batch(
        arrays,
        len(txs),
        row_numbers=np.asarray(rows, dtype=np.int64),
        slow_rows=slow_rows,
        txs=list(txs),
    )


# --- Arrow sources (Parquet) ---------------------------------------------------------------------


def is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def is_text_like(arr: pa.Array) -> bool:
    """A string column, or a dictionary of strings."""
    t = arr.type
    return is_text(t) or (pa.types.is_dictionary(t) and is_text(t.value_type))


def plain(arr: pa.Array) -> pa.Array:
    """A dictionary array decoded (any other array as it is)."""
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _code_column(arr: pa.Array) -> pa.Array:
    """``type``/``actor_level``: strings as they are (dictionaries kept), anything else missing."""
    return arr if is_text_like(arr) else pa.nulls(len(arr), pa.string())


def _day_column(c: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(c.type):
        return pa.DictionaryArray.from_arrays(c.indices, _day_column(c.dictionary))
    if pa.types.is_timestamp(c.type) or pa.types.is_date(c.type):
        return pc.strftime(c, format="%Y-%m-%d")
    if is_text(c.type):
        head = pc.utf8_slice_codeunits(c.cast(pa.string()), 0, 10)
        ok = pc.match_substring_regex(head, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
        return pc.if_else(ok, head, pa.scalar(None, pa.string()))
    return pa.nulls(len(c), pa.string())


def from_arrow(source: pa.Table, first_row: int, attributes: Iterable[str]) -> Batch:
    """A batch from a slice of a Parquet table (row numbers from ``first_row``).

    Columns keep their Arrow type (a dictionary stays a dictionary, a decimal amount stays a
    decimal): the kernel reads each the way the interpreter reads the Python value the column
    holds, so nothing is converted row by row. Only ``type`` and ``actor_level`` are narrowed:
    a column of anything but strings holds no code."""
    names = sorted(set(attributes) - set(CORE))
    n = source.num_rows
    cols = set(source.column_names)
    out: dict[str, pa.Array] = {}
    out["id"] = source.column("id").combine_chunks() if "id" in cols else pa.nulls(n, pa.string())
    struct = source.column("attributes").combine_chunks() if "attributes" in cols else None
    for name in (*CORE, *names):
        col = column_of(name)
        arr: pa.Array | None = None
        if col in cols:
            arr = source.column(col).combine_chunks()
        elif (
            name not in CORE
            and struct is not None
            and pa.types.is_struct(struct.type)
            and struct.type.get_field_index(name) >= 0
        ):
            arr = pc.struct_field(struct, name)
        if arr is None:
            out[col] = pa.nulls(n, pa.string())
        else:
            out[col] = _code_column(arr) if name in ("type", "actor_level") else arr
    day = pa.nulls(n, pa.string())
    for f in TIME_FIELDS:
        if f in cols:
            day = _day_column(source.column(f).combine_chunks())
            break
    out["day"] = day
    return Batch(out, n, first_row=first_row, source=source)
