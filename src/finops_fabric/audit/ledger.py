"""The ledger as the audit reads it: its rows, read-only, and the checks each row must pass alone.

The store's ``ledger`` table is the only source: a generation exists if and only if a ledger row
says so. :func:`read_ledger` reads the database read-only and never changes the store.

:func:`check_row`, for every row: the body is a JSON object (``unreadable``);
``receipt.schema`` (``schema``); the receipt hash re-computed over the canonical payload
(``altered``); the ledger's index columns agree with the body (``altered``); the body is stored
in the canonical form mu writes (``rewritten``); a signature by a key of the trust file
verifies (``untrusted_signer``, ``bad_signature``). Each problem is a :class:`Gap` naming the
row (``seq``), the receipt hash and what is wrong.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from finops_fabric.audit.trust import Trust
from finops_fabric.canonical import canonical_json, is_sha256, sha256_hex
from finops_fabric.errors import CheckFailed, InputError, Location
from finops_fabric.receipts import REQUIRED_KEYS, check_schema, receipt_payload
from finops_fabric.store import Store

__all__ = ["Gap", "Ledger", "Row", "check_row", "read_ledger", "short"]


def short(digest: object) -> str:
    """``sha256:1234abcd…`` for people; the full hash stays in the JSON."""
    text = str(digest)
    return text[:15] + "…" if is_sha256(text) else text


# --- the ledger, read-only ----------------------------------------------------------------------


@dataclass
class Row:
    """One ledger row as stored: the index columns and the body (parsed when it is JSON)."""

    seq: int
    column_hash: str
    kind: str
    column_previous: str | None
    column_ontology: str | None
    column_enforcer: str | None
    body: str
    doc: dict[str, Any] | None

    @property
    def hash(self) -> str:
        """The receipt's own hash (from its body), else the index column's."""
        value = self.doc.get("receipt_hash") if self.doc is not None else None
        return value if isinstance(value, str) else self.column_hash

    @property
    def receipt_kind(self) -> str:
        """The receipt's own kind (from its body), else the index column's."""
        value = self.doc.get("kind") if self.doc is not None else None
        return value if isinstance(value, str) else self.kind

    @property
    def previous(self) -> str | None:
        if self.doc is not None and "previous_receipt_hash" in self.doc:
            value = self.doc["previous_receipt_hash"]
            return value if isinstance(value, str) else None
        return self.column_previous

    def get(self, section: str, key: str) -> Any:
        inner = self.doc.get(section) if self.doc is not None else None
        return inner.get(key) if isinstance(inner, dict) else None


@dataclass
class Ledger:
    rows: list[Row]
    issued_seq: int | None  # the highest seq SQLite has handed out (AUTOINCREMENT)
    path: Path


_Fetched = tuple[list[tuple[Any, ...]], int | None]


def _fetch(uri: str) -> _Fetched:
    db = sqlite3.connect(uri, uri=True, timeout=60.0)
    try:
        rows = db.execute(
            "SELECT seq, receipt_hash, kind, previous_receipt_hash, ontology_hash, enforcer_hash, body"
            " FROM ledger ORDER BY seq"
        ).fetchall()
        try:
            issued = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'ledger'").fetchone()
        except sqlite3.Error:
            issued = None
    finally:
        db.close()
    return rows, int(issued[0]) if issued and issued[0] is not None else None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def read_ledger(store: Store) -> Ledger:
    """Every ledger row in seq order, read without writing anything to the store.

    With no write-ahead log present, the database file alone is complete: it is read as
    immutable (SQLite then creates no ``-wal``/``-shm`` files) and the read is kept only if the
    file did not change meanwhile. Otherwise (a writer is active) a read-only connection is used.
    """
    store.require()
    path = store.db_path
    wal = Path(str(path) + "-wal")
    fetched: _Fetched | None = None
    try:
        if not wal.exists():
            before = _stamp(path)
            try:
                fetched = _fetch(f"file:{quote(str(path))}?immutable=1")
            except sqlite3.DatabaseError:
                fetched = None
            if wal.exists() or _stamp(path) != before:
                fetched = None
        if fetched is None:
            fetched = _fetch(f"file:{quote(str(path))}?mode=ro")
    except sqlite3.Error as exc:
        raise InputError(
            f"cannot read the ledger in {path}: {exc}",
            code="store.unreadable",
            location=Location(file=str(path)),
            hint="is this a mu store? another process may hold it; retry",
        ) from exc
    rows, issued = fetched
    out: list[Row] = []
    for seq, rh, kind, prev, oh, eh, body in rows:
        doc: dict[str, Any] | None = None
        if isinstance(body, str):
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError):
                parsed = None
            doc = parsed if isinstance(parsed, dict) else None
        out.append(
            Row(int(seq), str(rh), str(kind), prev, oh, eh, body if isinstance(body, str) else "", doc)
        )
    return Ledger(out, issued, path)


# --- gaps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    """One problem in the trail: where (seq, receipt hash), what (a stable code), in plain words."""

    seq: int | None
    receipt_hash: str | None
    problem: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "receipt_hash": self.receipt_hash,
            "problem": self.problem,
            "message": self.message,
        }

    @classmethod
    def at(cls, row: Row, problem: str, message: str) -> Gap:
        """A problem with one row: its seq and receipt hash, and both in front of the message."""
        return cls(row.seq, row.hash, problem, f"seq {row.seq} ({short(row.hash)}): {message}")


# --- fast, exact canonical bytes ----------------------------------------------------------------
#
# RFC 8785 in pure Python costs about 1 ms for a real 6 KB receipt, so a ledger of 10,000 would
# spend most of its time there. ``json.dumps`` (sorted keys, no spaces, UTF-8) writes the same
# bytes for most receipts, in C. It is only ever used where the result is proven exact:
# - the payload: if the fast bytes hash to the receipt's ``receipt_hash``, they ARE the sealed
#   bytes (SHA-256 is collision resistant), so the hash holds and the signatures are checked
#   over exactly those bytes; otherwise :func:`receipt_payload` decides, as always;
# - the stored body: the fast form counts as canonical only for values both write identically
#   (no float JCS writes differently, integers within ±(2**53 - 1), object keys within the BMP);
#   otherwise the body is compared with :func:`canonical_json`.

_MAX_SAFE = 2**53 - 1


def _fast_json(obj: object) -> str | None:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None


def _same_in_jcs(value: object) -> bool:
    """True when ``json.dumps`` writes ``value`` exactly as RFC 8785 does."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                if k and max(k) > "\uffff":  # UTF-16 and code point key order could differ
                    return False
                stack.append(x)
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        elif isinstance(v, int):
            if abs(v) > _MAX_SAFE:
                return False
        elif isinstance(v, float):
            r = repr(v)  # ECMAScript writes 100.0 as 100 and switches to exponents elsewhere
            if "e" in r or "n" in r or r.endswith(".0"):
                return False
        else:
            return False
    return True


def _payload(doc: dict[str, Any]) -> tuple[bytes, str]:
    """The signed bytes and their hash; the fast form when it provably equals them."""
    fast = _fast_json({k: v for k, v in doc.items() if k not in ("receipt_hash", "signatures")})
    if fast is not None:
        try:
            data = fast.encode("utf-8")
        except UnicodeEncodeError:
            data = b""
        if data and sha256_hex(data) == doc["receipt_hash"]:
            return data, doc["receipt_hash"]
    exact = receipt_payload(doc)
    return exact, sha256_hex(exact)


def _is_canonical(doc: dict[str, Any], body: str) -> bool:
    if _fast_json(doc) == body and _same_in_jcs(doc):
        return True
    try:
        return canonical_json(doc).decode("utf-8") == body
    except InputError:
        return False


# --- every row ----------------------------------------------------------------------------------


def check_row(row: Row, trust: Trust) -> tuple[list[Gap], list[str]]:
    """Schema, hash, columns, canonical storage and a trusted signature. Returns the gaps and
    the key ids whose signatures verified."""
    doc = row.doc
    if doc is None:
        return [Gap.at(row, "unreadable", "the stored body is not a JSON object: the row was altered")], []
    try:
        check_schema({k: doc[k] for k in REQUIRED_KEYS if k in doc})
        payload, actual = _payload(doc)  # the rest of the content must be canonicalizable too
    except CheckFailed as exc:
        return [Gap.at(row, "schema", f"not a well-formed receipt: {exc.message}")], []
    except InputError as exc:
        return [Gap.at(row, "schema", f"receipt content cannot be canonicalized: {exc.message}")], []
    gaps: list[Gap] = []
    if actual != doc["receipt_hash"]:
        gaps.append(
            Gap.at(
                row,
                "altered",
                f"its content does not match its receipt_hash (recorded {doc['receipt_hash']}, "
                f"computed {actual}): the receipt was changed after it was sealed",
            )
        )
    columns = {
        "receipt_hash": (row.column_hash, doc["receipt_hash"]),
        "kind": (row.kind, doc["kind"]),
        "previous_receipt_hash": (row.column_previous, doc["previous_receipt_hash"]),
        "ontology_hash": (row.column_ontology, _str_or_none(row.get("inputs", "ontology_hash"))),
        "enforcer_hash": (row.column_enforcer, _str_or_none(row.get("outputs", "enforcer_hash"))),
    }
    differ = [f"{name} (column {c!r}, body {b!r})" for name, (c, b) in columns.items() if c != b]
    if differ:
        gaps.append(
            Gap.at(
                row, "altered", "the ledger's index columns disagree with the receipt: " + "; ".join(differ)
            )
        )
    if not _is_canonical(doc, row.body):
        gaps.append(
            Gap.at(
                row,
                "rewritten",
                "the stored body is not the canonical JSON mu writes: the row was rewritten outside mu",
            )
        )
    if actual != doc["receipt_hash"]:
        return gaps, []  # the signatures cover the sealed content, which is gone: "altered" says it
    signers, sig_gaps = _check_signatures(row, doc, payload, trust)
    return gaps + sig_gaps, signers


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _check_signatures(
    row: Row, doc: dict[str, Any], payload: bytes, trust: Trust
) -> tuple[list[str], list[Gap]]:
    verified: list[str] = []
    failed: list[str] = []
    limited: list[str] = []
    for sig in doc["signatures"]:
        trusted = trust.keys.get(sig["keyid"])
        if trusted is None:
            continue
        if trusted.kinds is not None and doc["kind"] not in trusted.kinds:
            limited.append(f"{trusted.keyid} (trusted only for {', '.join(sorted(trusted.kinds))})")
            continue
        if trusted.signed(sig["sig"], payload):
            verified.append(trusted.keyid)
        else:
            failed.append(trusted.keyid)
    gaps: list[Gap] = []
    if failed:
        gaps.append(
            Gap.at(
                row,
                "bad_signature",
                f"the signature by trusted key {', '.join(failed)} does not verify over the receipt",
            )
        )
    elif not verified:
        signers = ", ".join(sorted({str(s["keyid"]) for s in doc["signatures"]}))
        extra = f"; {'; '.join(limited)}" if limited else ""
        gaps.append(
            Gap.at(row, "untrusted_signer", f"signed only by key(s) {signers}, none trusted for it{extra}")
        )
    return verified, gaps
