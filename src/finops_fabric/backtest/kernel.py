"""The batch kernel: the typed model of O compiled to column operations over a :class:`Batch`.

It decides exactly as the reference interpreter (and so every generated enforcer) does, in the
policy language version it is given (1.0 or 1.1), for every row of a batch at once:

- money is exact: each batch's amounts become integers scaled by 10**S (S: the most fraction
  digits of any amount in the batch), every constant is compared through its exact floor or
  ceiling at that scale, never through a binary float; an amount too long for a 64-bit integer
  at that scale sends its row to the interpreter;
- each condition leaf on a field other than the amount is evaluated once per distinct value of
  that field (by the interpreter's own leaf semantics, on the value as given) and spread over the
  rows by the dictionary indices, so a leaf costs one pass over a column;
- rows marked ``slow`` (values whose notation the columns cannot carry) are decided one by one
  by the interpreter.

The result is an :class:`Outcomes`: for each row, the fired rules (with language 1.1's input
checks under their ``fab:FailClosed/<field>`` IRIs), notifications and audit entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from finops_fabric import model as m
from finops_fabric.backtest.columns import Batch, column_of, is_text, is_text_like, plain
from finops_fabric.backtest.outcomes import Mask, Outcomes
from finops_fabric.interpreter import Interpreter, _Missing, _text

I64 = np.ndarray[Any, np.dtype[np.int64]]
_PLAIN = r"^[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)$"
_PLAIN_WS = r"^[ \t\n\r\x0b\x0c]*[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)[ \t\n\r\x0b\x0c]*$"
#: Characters Python's str.strip() removes beyond ASCII white space (a 1.0 amount with one of
#: them around it is read by the interpreter, row by row).
_ODD_SPACE = r"[\x1c-\x1f]|[^\x00-\x7f]"
MAX_SCALE = 12
_I64_MAX = 2**63 - 1
_I64_MIN = -(2**63)


class KernelError(Exception):
    """A policy construction the kernel cannot decide exactly (never guessed at)."""


class Amounts:
    """A batch's amounts as exact scaled integers, for one reading (1.0 or 1.1)."""

    def __init__(self, valid: Mask, scaled: I64, scale: int, slow: Mask) -> None:
        self.valid = valid  # the reading accepts the amount (a decimal, sign not checked)
        self.scaled = scaled  # value * 10**scale where valid (0 elsewhere)
        self.scale = scale
        self.slow = slow  # rows the columns cannot decide exactly

    def compare(self, op: str, value: Decimal) -> Mask:
        """``amount <op> value`` for every row (False where the amount is not valid)."""
        x = value.scaleb(self.scale)
        a = self.scaled
        if op in ("eq", "ne"):
            if x != x.to_integral_value():
                eq = np.zeros(len(a), dtype=bool)
            else:
                xi = int(x)
                eq = (a == xi) if _I64_MIN <= xi <= _I64_MAX else np.zeros(len(a), dtype=bool)
            return (eq if op == "eq" else ~eq) & self.valid
        # a is an integer: a > x ⇔ a > floor(x); a >= x ⇔ a >= ceil(x); a < x ⇔ a < ceil(x) ...
        lo, hi = int(x.to_integral_value(ROUND_FLOOR)), int(x.to_integral_value(ROUND_CEILING))
        bound = lo if op in ("gt", "le") else hi
        if bound > _I64_MAX:
            res = np.full(len(a), op in ("lt", "le"))
        elif bound < _I64_MIN:
            res = np.full(len(a), op in ("gt", "ge"))
        elif op == "gt":
            res = a > bound
        elif op == "ge":
            res = a >= bound
        elif op == "lt":
            res = a < bound
        else:
            res = a <= bound
        return res & self.valid

    def near(self, value: Decimal, within: Decimal) -> Mask:
        """Rows whose amount is within ``within`` of ``value`` (inclusive)."""
        return self.compare("ge", value - within) & self.compare("le", value + within)


def _decimal128_to_int64(arr: pa.Array) -> tuple[I64, Mask]:
    """The unscaled integers of a decimal128 array (0 for nulls), and where they fit int64."""
    n = len(arr)
    buf = arr.buffers()[1]
    words = np.frombuffer(buf, dtype=np.int64, count=2 * (arr.offset + n))[2 * arr.offset :]
    low, high = words[0::2], words[1::2]
    fits = high == (low >> 63)
    return low.copy(), fits


def _numeric_amounts(col: pa.Array) -> Amounts | None:
    """Amounts of a decimal or integer column: valid in every reading (a JSON number is), exact;
    None for a column of any other type."""
    n = len(col)
    valid = col.is_valid().to_numpy(zero_copy_only=False).copy()
    if pa.types.is_decimal128(col.type):
        scaled, fits = _decimal128_to_int64(col)
        ok = valid & fits
        return Amounts(valid, np.where(ok, scaled, 0), int(col.type.scale), valid & ~fits)
    if pa.types.is_integer(col.type):
        if pa.types.is_uint64(col.type):
            big = pc.fill_null(pc.greater(col, 2**63 - 1), False).to_numpy(zero_copy_only=False)
            small = pc.if_else(pa.array(big), pa.scalar(0, col.type), col)
            scaled = pc.fill_null(small, 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
            return Amounts(valid, scaled, 0, valid & big)
        scaled = pc.fill_null(col, 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        return Amounts(valid, scaled.copy(), 0, np.zeros(n, dtype=bool))
    if pa.types.is_decimal(col.type):  # decimal256 and others: one by one
        return Amounts(np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), 0, valid)
    return None


def read_amounts(batch: Batch, language: str) -> Amounts:
    """The amounts of a batch by the reading of ``language`` (cached per batch)."""
    key = ("amounts", language)
    got = batch._cache.get(key)
    if got is not None:
        return got  # type: ignore[no-any-return]
    col = plain(batch.column("amount"))
    n = batch.n
    numeric = _numeric_amounts(col)
    if numeric is not None:
        batch._cache[key] = numeric
        return numeric
    if not is_text(col.type):  # binary floats, booleans, objects: no reading accepts them
        out = Amounts(np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), 0, np.zeros(n, dtype=bool))
        batch._cache[key] = out
        return out
    text = col.cast(pa.string())
    strict = pc.fill_null(pc.match_substring_regex(text, _PLAIN), False)
    if language == "1.0":
        loose = pc.fill_null(pc.match_substring_regex(text, _PLAIN_WS), False)
        odd = pc.fill_null(pc.and_not(pc.match_substring_regex(text, _ODD_SPACE), loose), False)
        valid_arr = loose
        clean = pc.utf8_trim(text, characters=" \t\n\r\x0b\x0c")
    else:
        odd = pa.array(np.zeros(n, dtype=bool))
        valid_arr = strict
        clean = text
    valid = valid_arr.to_numpy(zero_copy_only=False).copy()
    slow = odd.to_numpy(zero_copy_only=False).copy()
    # the scale: the most fraction digits of any valid amount (capped; longer ones go slow)
    clean = pc.if_else(valid_arr, clean, pa.scalar(None, pa.string()))
    dot = pc.find_substring(clean, ".")
    length = pc.utf8_length(clean)
    frac = pc.if_else(pc.greater_equal(dot, 0), pc.subtract(pc.subtract(length, dot), 1), 0)
    frac_np = pc.fill_null(frac, 0).to_numpy(zero_copy_only=False)
    too_fine = frac_np > MAX_SCALE
    too_long = pc.fill_null(pc.greater(length, 36), False).to_numpy(zero_copy_only=False)
    wild = too_fine | too_long
    scale = int(frac_np[~wild].max()) if (~wild).any() and n else 0
    parse = valid & ~wild
    if wild.any():
        slow |= valid & wild
        clean = pc.if_else(pa.array(parse), clean, pa.scalar(None, pa.string()))
    dec = pc.cast(clean, pa.decimal128(38, scale))
    scaled, fits = _decimal128_to_int64(dec)
    overflow = parse & ~fits
    slow |= overflow
    scaled = np.where(parse & fits, scaled, 0)
    out = Amounts(valid, scaled, scale, slow)
    batch._cache[key] = out
    return out


def per_value(arr: pa.Array, fn: Any, null: Any) -> np.ndarray[Any, Any]:
    """``fn`` (an Arrow compute function) of each row's value as a NumPy array, nulls as ``null``;
    for a dictionary array computed once per dictionary entry."""
    if pa.types.is_dictionary(arr.type):
        per_entry = pc.fill_null(fn(arr.dictionary), null).to_numpy(zero_copy_only=False)
        table = np.append(per_entry, np.asarray([null], dtype=per_entry.dtype))
        idx = pc.fill_null(arr.indices, len(per_entry)).to_numpy(zero_copy_only=False)
        return table[idx]  # type: ignore[no-any-return]
    return pc.fill_null(fn(arr), null).to_numpy(zero_copy_only=False).copy()  # type: ignore[no-any-return]


def distinct(arr: pa.Array) -> tuple[list[Any], np.ndarray[Any, Any]]:
    """(the distinct values of a column as Python values, None last; each row's index)."""
    if pa.types.is_dictionary(arr.type):
        values = arr.dictionary.to_pylist() + [None]
        idx = pc.fill_null(arr.indices, len(values) - 1).to_numpy(zero_copy_only=False)
        return values, idx
    try:
        enc = pc.dictionary_encode(arr)
    except pa.ArrowNotImplementedError:  # lists, structs ...: never a text or a decimal
        return [None], np.zeros(len(arr), dtype=np.int64)
    values = enc.dictionary.to_pylist() + [None]
    idx = pc.fill_null(enc.indices, len(values) - 1).to_numpy(zero_copy_only=False)
    return values, idx


def _text_tx(field_name: str, raw: object) -> dict[str, Any]:
    if field_name in ("type", "amount", "actor_level", "approver_id", "executor_id"):
        return {} if raw is None else {field_name: raw}
    return {"attributes": {} if raw is None else {field_name: raw}}


class Kernel:
    """One policy (its typed model) in one language version, compiled for batches."""

    def __init__(self, policy: m.Policy, language: str) -> None:
        if language not in m.LANGUAGE_VERSIONS:
            raise KernelError(f"unknown policy language version {language!r}")
        self.policy = policy
        self.language = language
        self.interpreter = Interpreter(policy, language)
        self.type_codes = sorted(t.code for t in policy.types)
        self.levels = sorted((lv.code, lv.rank) for lv in policy.levels)
        self.decision_rules = [r for r in policy.rules if r.kind in m.DECISION_KINDS]
        self.effect_rules = [r for r in policy.rules if isinstance(r, m.NotificationRule | m.AuditLogRule)]

    # --- what the kernel reads ---------------------------------------------------------------
    def attributes(self) -> set[str]:
        """The attribute names (beyond the core fields) the policy's conditions read."""
        out: set[str] = set()
        for r in self.policy.rules:
            if isinstance(r, m.RestrictionRule):
                out |= {leaf.attribute for leaf in m.condition_leaves(r.condition)}
        return out

    def thresholds(self) -> list[Decimal]:
        """Every amount the policy compares a transaction's amount with."""
        out: set[Decimal] = set()
        for r in self.policy.rules:
            threshold = r.threshold if isinstance(r, m.ApprovalRule | m.NotificationRule) else None
            if threshold is not None:
                out.add(threshold)
            elif isinstance(r, m.RestrictionRule):
                for leaf in m.condition_leaves(r.condition):
                    if leaf.attribute == "amount":
                        vals = leaf.values if isinstance(leaf, m.Membership) else (leaf.value,)
                        out |= {v for v in vals if isinstance(v, Decimal)}
        out.add(Decimal(0))  # language 1.1 refuses negative amounts
        return sorted(out)

    # --- columns -----------------------------------------------------------------------------
    def _type_in(self, batch: Batch, codes: Sequence[str]) -> Mask:
        key = ("type_in", tuple(codes))
        got = batch._cache.get(key)
        if got is None:
            value_set = pa.array(list(codes), pa.string())
            got = per_value(batch.column("type"), lambda a: pc.is_in(a, value_set=value_set), False)
            batch._cache[key] = got
        return got

    def _ranks(self, batch: Batch) -> tuple[I64, Mask]:
        key = ("ranks", tuple(self.levels))
        got = batch._cache.get(key)
        if got is None:
            codes = pa.array([c for c, _ in self.levels], pa.string())
            idx = per_value(batch.column("actor_level"), lambda a: pc.index_in(a, value_set=codes), -1)
            has = idx >= 0
            ranks_np = np.asarray([r for _, r in self.levels] or [0], dtype=np.int64)
            got = (np.where(has, ranks_np[np.where(has, idx, 0)], 0).astype(np.int64), has)
            batch._cache[key] = got
        return got

    def _dictionary(self, batch: Batch, col: str) -> tuple[list[Any], np.ndarray[Any, Any]]:
        """(distinct values, with None last; each row's index into them)."""
        key = ("dict", col)
        got = batch._cache.get(key)
        if got is None:
            got = distinct(batch.column(col))
            batch._cache[key] = got
        return got

    # --- conditions ----------------------------------------------------------------------------
    def _leaf(self, batch: Batch, leaf: m.Comparison | m.Membership) -> tuple[Mask, Mask]:
        """(holds, missing) of one leaf for every row."""
        key = ("leaf", self.language, tuple(self.levels), leaf)
        got = batch._cache.get(key)
        if got is not None:
            return got  # type: ignore[no-any-return]
        if leaf.attribute == "amount" and (
            (isinstance(leaf, m.Comparison) and isinstance(leaf.value, Decimal))
            or (isinstance(leaf, m.Membership) and all(isinstance(v, Decimal) for v in leaf.values))
        ):
            am = read_amounts(batch, self.language)
            if isinstance(leaf, m.Comparison):
                holds = am.compare(leaf.operator, leaf.value)  # type: ignore[arg-type]
            else:
                holds = np.zeros(batch.n, dtype=bool)
                for v in leaf.values:
                    holds |= am.compare("eq", v)  # type: ignore[arg-type]
            got = (holds, ~am.valid)
        else:
            values, idx = self._dictionary(batch, column_of(leaf.attribute))
            codes = np.empty(len(values), dtype=np.int8)
            for j, raw in enumerate(values):
                try:
                    codes[j] = 1 if self.interpreter._leaf(_text_tx(leaf.attribute, raw), leaf) else 0
                except _Missing:
                    codes[j] = 2
                except Exception as exc:
                    raise KernelError(
                        f"the condition on {leaf.attribute!r} cannot be decided for the value {raw!r}: {exc}"
                    ) from exc
            per_row = codes[idx]
            got = (per_row == 1, per_row == 2)
        batch._cache[key] = got
        return got

    def _condition(self, batch: Batch, c: m.Condition) -> tuple[Mask, Mask]:
        if isinstance(c, m.Comparison | m.Membership):
            return self._leaf(batch, c)
        if isinstance(c, m.Not):
            v, miss = self._condition(batch, c.operand)
            return ~v, miss
        parts = [self._condition(batch, o) for o in c.operands]
        value = parts[0][0].copy()
        missing = parts[0][1].copy()
        for v, miss in parts[1:]:
            if isinstance(c, m.AllOf):
                value &= v
            else:
                value |= v
            missing |= miss
        return value, missing

    # --- deciding --------------------------------------------------------------------------------
    def decide(self, batch: Batch) -> Outcomes:
        n = batch.n
        out = Outcomes(n)
        am = read_amounts(batch, self.language)
        rank, has_rank = self._ranks(batch)
        has_type = per_value(batch.column("type"), pc.is_valid, False)
        if self.language == "1.1":
            out.fired[m.INPUT_CHECK_TYPE] = ~self._type_in(batch, self.type_codes)
            out.fired[m.INPUT_CHECK_AMOUNT] = ~am.valid | am.compare("lt", Decimal(0))
            out.fired[m.INPUT_CHECK_LEVEL] = ~has_rank
        for rule in self.decision_rules:
            if isinstance(rule, m.ApprovalRule):
                f = ~am.valid | (am.compare("gt", rule.threshold) & (~has_rank | (rank < rule.required.rank)))
            elif isinstance(rule, m.SegregationOfDutyRule):
                f = self._same_parties(batch)
            else:
                assert isinstance(rule, m.RestrictionRule)
                holds, missing = self._condition(batch, rule.condition)
                # a missing field fires the rule whatever the actor's authority
                if rule.override is not None:
                    holds = holds & (~has_rank | (rank < rule.override.rank))
                f = holds | missing
            if rule.applies_to:
                f = (f & self._type_in(batch, rule.applies_to)) | ~has_type
            out.fired[rule.iri] = f
        reject = out.reject
        for er in self.effect_rules:
            if er.event == "Approved":
                act = ~reject
            elif er.event == "Rejected":
                act = reject.copy()
            else:
                act = np.ones(n, dtype=bool)
            if er.applies_to:
                act &= self._type_in(batch, er.applies_to)
            if er.min_authority is not None:
                act &= has_rank & (rank >= er.min_authority.rank)
            if isinstance(er, m.NotificationRule):
                if er.threshold is not None:
                    act &= am.compare("gt", er.threshold)
                for to in er.recipients:
                    key = (er.iri, to)
                    out.notes[key] = out.notes[key] | act if key in out.notes else act
            else:
                akey = (er.iri, er.ledger, er.flags)
                out.audit[akey] = out.audit[akey] | act if akey in out.audit else act
        slow = am.slow if batch.slow_rows is None else batch.slow_rows | am.slow
        if slow.any():
            for i in np.flatnonzero(slow):
                out.set_row(int(i), self.interpreter.decide(batch.transaction(int(i))).comparable())
        return out

    def _same_parties(self, batch: Batch) -> Mask:
        """SoD: the approver's text is the executor's, or either is missing."""
        got = batch._cache.get("same_parties")
        if got is not None:
            return got  # type: ignore[no-any-return]
        a, e = batch.column("approver_id"), batch.column("executor_id")
        if (
            pa.types.is_dictionary(a.type)
            and is_text_like(a)
            and pa.types.is_dictionary(e.type)
            and is_text_like(e)
        ):
            # both dictionaries of strings: each row's value as its first position in a's dictionary
            ad = a.dictionary.cast(pa.string())

            def canon(arr: pa.Array) -> np.ndarray[Any, Any]:
                table = pc.fill_null(pc.index_in(arr.dictionary.cast(pa.string()), value_set=ad), -2)
                table_np = np.append(table.to_numpy(zero_copy_only=False), np.int64(-1)).astype(np.int64)
                idx = pc.fill_null(arr.indices, len(arr.dictionary)).to_numpy(zero_copy_only=False)
                return table_np[idx]  # type: ignore[no-any-return]

            ca, ce = canon(a), canon(e)
            # -1: missing; -2: a value the approver's dictionary does not hold (never equal to one it does)
            out = (ca == ce) & (ca >= 0) | (ca == -1) | (ce == -1)
            out |= (ca == -2) & (ce == -2) & self._equal_outside(a, e, ca, ce)
        elif is_text_like(a) and is_text_like(e):
            same = pc.fill_null(pc.equal(plain(a).cast(pa.string()), plain(e).cast(pa.string())), True)
            out = same.to_numpy(zero_copy_only=False).copy()
        else:  # numbers, booleans ...: compared by their text, as the interpreter does
            ids: dict[str, int] = {}
            mapped = []
            for arr in (a, e):
                values, idx = distinct(arr)
                table = np.asarray(
                    [-1 if (t := _text(v)) is None else ids.setdefault(t, len(ids)) for v in values],
                    dtype=np.int64,
                )
                mapped.append(table[idx])
            out = (mapped[0] == mapped[1]) | (mapped[0] < 0) | (mapped[1] < 0)
        batch._cache["same_parties"] = out
        return out  # type: ignore[no-any-return]

    @staticmethod
    def _equal_outside(a: pa.Array, e: pa.Array, ca: np.ndarray[Any, Any], ce: np.ndarray[Any, Any]) -> Mask:
        """Rows where neither value is in the approver's dictionary: compared as strings."""
        both = (ca == -2) & (ce == -2)
        out = np.zeros(len(ca), dtype=bool)
        if both.any():
            rows = pa.array(np.flatnonzero(both))
            sa, se = plain(a.take(rows)).cast(pa.string()), plain(e.take(rows)).cast(pa.string())
            out[np.flatnonzero(both)] = pc.fill_null(pc.equal(sa, se), False).to_numpy(zero_copy_only=False)
        return out

    def decide_rows(self, txs: Sequence[Mapping[str, Any]]) -> Outcomes:
        """Decide parsed transactions (a convenience for tests and small inputs)."""
        from finops_fabric.backtest.columns import from_dicts

        return self.decide(from_dicts(txs, range(1, len(txs) + 1), self.attributes()))
