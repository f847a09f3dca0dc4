"""Leaves, the hash chain and the Merkle tree of an append-only log, over any row store.

A log row is a *record*: a flat JSON object of everything logged in the row, its id included.
Its **leaf hash** is the RFC 9162 leaf hash of the record's RFC 8785 canonical bytes,
``SHA-256(0x00 || JCS(record))``; its **chain hash** is ``SHA-256(previous chain hash || leaf
hash)``, starting from :data:`GENESIS` (32 zero bytes). Each row stores its leaf hash and the
previous row's chain hash, so a row that was changed, removed, inserted or moved breaks either
its own leaf or the link of the row after it.

The leaves are also the leaves of an RFC 9162 Merkle tree (:mod:`finops_fabric.merkle`).
:class:`CompactRange` keeps the tree's right edge (one subtree root per set bit of the size,
at most 64 hashes) so a writer extends the root in O(1) amortized hashes per row and a
verifier streams a log of any length in constant memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring as _quote  # the C version where it exists
from typing import Any

from finops_fabric.canonical import canonical_json
from finops_fabric.merkle import EMPTY_ROOT, HASH_SIZE, node_hash

__all__ = [
    "GENESIS",
    "CompactRange",
    "Value",
    "chain_hash",
    "from_hex",
    "record_bytes",
    "record_leaf",
    "record_writer",
    "to_hex",
]

#: The chain hash "before the first row".
GENESIS = bytes(HASH_SIZE)

#: What a record holds: the column values of one row.
Value = str | int | float | None

_MAX_SAFE = 2**53 - 1
_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def _plain(value: object) -> bool:
    """True when ``json.dumps`` writes ``value`` exactly as RFC 8785 does."""
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_MAX_SAFE <= value <= _MAX_SAFE
    if isinstance(value, float):
        # Python's repr and ECMAScript agree on the shortest digits; they differ in notation for
        # integral values (100.0 vs 100) and outside 1e-4 <= |x| < 1e16 (exponents).
        return math.isfinite(value) and not value.is_integer() and 1e-4 <= abs(value) < 1e16
    return False


def record_bytes(record: Mapping[str, Value]) -> bytes:
    """The RFC 8785 canonical bytes of a flat record (keys are ASCII column names).

    ``json.dumps`` (sorted keys, no whitespace, UTF-8) writes exactly the JCS bytes for strings,
    ``None`` and safe integers, and for the floats :func:`_plain` accepts; anything else goes
    through :func:`~finops_fabric.canonical.canonical_json`.
    """
    for value in record.values():
        if not _plain(value):
            return canonical_json(dict(record))
    return _encode(record).encode("utf-8")


_KEY = re.compile(r"[a-z_][a-z0-9_]{0,63}")


def _scalar(value: object) -> str:
    """A non-string value of a record in the fast path: ``null``, a safe integer, or a float
    Python and ECMAScript write alike."""
    if value is None:
        return "null"
    if value.__class__ is int and -_MAX_SAFE <= value <= _MAX_SAFE:
        return str(value)
    if value.__class__ is float and _plain(value):
        return repr(value)
    raise TypeError("not a plain value")


def record_writer(keys: Sequence[str]) -> Callable[[Sequence[Value]], bytes]:
    """A writer of :func:`record_bytes` for rows of these columns (values in this order), made
    for verifying millions of rows: one f-string over the sorted keys for strings, ``None``, safe
    integers and the floats :func:`record_bytes` writes directly; any other value goes through
    :func:`record_bytes`. Values past the last key (other columns of the same row) are ignored.
    ``keys`` are lowercase column names, so their code point and UTF-16 orders agree."""
    names = tuple(keys)
    if not all(_KEY.fullmatch(k) for k in names) or len(set(names)) != len(names):
        raise ValueError(f"record keys must be distinct column names: {names!r}")
    order = sorted(range(len(names)), key=names.__getitem__)
    # e.g. f'{{"a":{q(v[1]) if v[1].__class__ is str else s(v[1])},"b":...}}', keys checked above
    body = ",".join(f'"{names[i]}":{{q(v[{i}]) if v[{i}].__class__ is str else s(v[{i}])}}' for i in order)
    source = f"def write(v):\n    return f'{{{{{body}}}}}'.encode('utf-8')\n"
    scope: dict[str, Any] = {"q": _quote, "s": _scalar}
    exec(compile(source, "<record_writer>", "exec"), scope)  # noqa: S102 - built from checked names
    fast: Callable[[Sequence[Value]], bytes] = scope["write"]

    def write(values: Sequence[Value]) -> bytes:
        try:
            return fast(values)
        except (TypeError, UnicodeEncodeError):  # another value, or a lone surrogate
            return record_bytes(dict(zip(names, values[: len(names)], strict=True)))

    return write


def record_leaf(record: Mapping[str, Value]) -> bytes:
    """The RFC 9162 leaf hash of a record."""
    return hashlib.sha256(b"\x00" + record_bytes(record)).digest()


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    """``SHA-256(previous || leaf)``: the chain hash of a row."""
    return hashlib.sha256(previous + leaf).digest()


def to_hex(digest: bytes) -> str:
    return "sha256:" + digest.hex()


def from_hex(text: object) -> bytes | None:
    """The 32 bytes of ``sha256:<64 hex>``, or ``None`` when ``text`` is not that."""
    if not isinstance(text, str) or not text.startswith("sha256:") or len(text) != 71:
        return None
    try:
        raw = bytes.fromhex(text[7:])
    except ValueError:
        return None
    return raw if text[7:] == raw.hex() else None


class CompactRange:
    """The right edge of an RFC 9162 Merkle tree over ``size`` leaves: the roots of its perfect
    subtrees, largest first (one per set bit of ``size``)."""

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(nodes) != bin(size).count("1"):
            raise ValueError(f"a compact range of {size} leaves has {bin(size).count('1')} nodes")
        self.size = size
        self.nodes = list(nodes)

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.nodes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash: merge equal-sized subtrees as a binary counter carries."""
        node = leaf
        size = self.size
        nodes = self.nodes
        while size & 1:
            node = node_hash(nodes.pop(), node)
            size >>= 1
        nodes.append(node)
        self.size += 1

    def extend(self, leaves: Sequence[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """``MTH`` of the leaves so far (RFC 9162 §2.1.1): the subtree roots folded from the right."""
        if not self.nodes:
            return EMPTY_ROOT
        root = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            root = node_hash(node, root)
        return root

    def to_json(self) -> list[str]:
        return [to_hex(n) for n in self.nodes]

    @classmethod
    def from_json(cls, size: object, nodes: object) -> CompactRange | None:
        """The range written by :meth:`to_json`, or ``None`` when it is malformed."""
        if not isinstance(size, int) or isinstance(size, bool) or not isinstance(nodes, list):
            return None
        raw = [from_hex(n) for n in nodes]
        if any(r is None for r in raw):
            return None
        try:
            return cls(size, [r for r in raw if r is not None])
        except ValueError:
            return None
