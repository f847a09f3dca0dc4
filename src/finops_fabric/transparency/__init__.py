"""Tamper-evident logs in the manner of Certificate Transparency, independent of any database.

Every row of an auditable log (the daemon's decisions and audit entries, the store's receipt
ledger) is a leaf of a hash chain and of an RFC 9162 Merkle tree; the writer signs tree heads
and keeps them outside the database, where a witness can keep copies; verification recomputes
everything from the rows and names, by id, what was changed, removed, inserted or reordered,
and never calls a log shorter than a signed head verified.

- :mod:`.chain`: records, leaf hashes, the chain, :class:`CompactRange` (the tree's right edge);
- :mod:`.heads`: signed heads, the directory of head files, handing heads to a witness;
- :mod:`.verify`: :func:`verify_log` over an iterator of rows, whatever stores them.

The storage code (SQLite today) only turns its rows into :class:`LogRow` and back.
"""

from finops_fabric.transparency.chain import (
    GENESIS,
    CompactRange,
    Value,
    chain_hash,
    from_hex,
    record_bytes,
    record_leaf,
    record_writer,
    to_hex,
)
from finops_fabric.transparency.heads import (
    HeadDirectory,
    HeadFile,
    Verifier,
    check_head,
    head_payload,
    head_range,
    make_head,
    now_stamp,
    post_head,
    read_head,
    resume,
    sign_head,
    verifiers,
)
from finops_fabric.transparency.verify import (
    Finding,
    KnownHead,
    LogReport,
    LogRow,
    gather_heads,
    verify_log,
)

__all__ = [
    "GENESIS",
    "CompactRange",
    "Finding",
    "HeadDirectory",
    "HeadFile",
    "KnownHead",
    "LogReport",
    "LogRow",
    "Value",
    "Verifier",
    "chain_hash",
    "check_head",
    "from_hex",
    "gather_heads",
    "head_payload",
    "head_range",
    "make_head",
    "now_stamp",
    "post_head",
    "read_head",
    "record_bytes",
    "record_leaf",
    "record_writer",
    "resume",
    "sign_head",
    "to_hex",
    "verifiers",
    "verify_log",
]
