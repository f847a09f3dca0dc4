"""The audit trail: verify the receipt ledger, state every transition of O, rebuild O from ΔO.

The store's ``ledger`` table is the only source: a generation exists if and only if a ledger row
says so. Verification reads the database read-only and never changes the store.

Checks, in order, each naming the row (``seq``), the receipt hash and what is wrong:

1. every row: the body is a JSON object (``unreadable``); ``receipt.schema`` (``schema``); the
   receipt hash re-computed over the canonical payload (``altered``); the ledger's index
   columns agree with the body (``altered``); the body is stored in the canonical form mu
   writes (``rewritten``); a signature by a key of the TRUST FILE verifies
   (``untrusted_signer``, ``bad_signature``);
2. the hash chain: the first row's ``previous_receipt_hash`` is null and every other row links
   to the row before it. A link to a hash that is not in the ledger is a deleted (or replaced)
   row (``deleted``); a link to a row elsewhere is a reordering (``reordered``); the same
   receipt twice is ``duplicated``; seq numbers that jump (``seq_gap``) or stop short of the
   number SQLite issued (``truncated``) are gaps too;
3. every transition: a generation's O snapshot is in the store and hash-checks
   (``snapshot_missing``, ``snapshot_corrupt``), O ⊨ Σ when validated again
   (``invalid_transition``), its ΔO is in the store (``delta_missing``, ``delta_corrupt``). A
   rejection receipt is a valid stop: the O in force is unchanged;
4. with ``rebuild``: O rebuilt from ΔO alone reproduces the receipted hash(O) at every step
   (``rebuild_mismatch``).

A *policy change* is a generation whose O differs from the O in force before it (the first
generation, from no policy at all, is one); its rule diff is ``diffing.diff_policies`` between
the two O snapshots, field by field. Regenerating the same O is not a change.

TRUST FILE (``--trust=FILE``): the public keys whose signatures count; a receipt signed only by
other keys fails. Without it: the store's operator key plus every ``<store>/keys/trusted/*.pub``.
Two formats:

- JSON: ``{"keys": [{"path": "operator.pub"}, {"keyid": "<64 hex>", "pem": "-----BEGIN ...",
  "kinds": ["replay"]}]}``. Each key is a ``path`` to a PEM public key (relative to the trust
  file's folder) or an inline ``pem``; ``keyid`` is optional and, when given, must be the
  key's id (securesystemslib key id, as in receipts); ``kinds`` optionally limits the receipt
  kinds the key may sign;
- text: one PEM public key path per line (relative to the file's folder), optionally followed
  by the kinds it may sign (``auditor.pub replay,approval``); inline PEM blocks are accepted;
  ``#`` starts a comment.

Tree head: the Merkle root (:mod:`finops_fabric.merkle`) over the ledger's receipt hashes in
order, ``{"tree_size", "root_hash", "timestamp", "signatures"}``, signed like a receipt (Ed25519
over the RFC 8785 canonical JSON of the document without ``signatures``, same key ids).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from finops_fabric.canonical import canonical_json, is_sha256, sha256_hex
from finops_fabric.errors import CheckFailed, FabricError, InputError, Location
from finops_fabric.keys import Ed25519PrivateKey, Ed25519PublicKey, key_id, load_public_key
from finops_fabric.merkle import MerkleTree, verify_consistency, verify_inclusion
from finops_fabric.receipts import REQUIRED_KEYS, check_schema, load_receipt, receipt_payload
from finops_fabric.store import Store

__all__ = [
    "TREE_HEAD_KEYS",
    "AuditResult",
    "Gap",
    "Ledger",
    "Row",
    "Trust",
    "TrustedKey",
    "audit_trail",
    "consistency_from",
    "default_trust",
    "load_trust",
    "prove_inclusion",
    "read_ledger",
    "resolve_receipt",
    "sign_tree_head",
    "verify_tree_head",
]

Progress = Callable[[str], None]
TREE_HEAD_KEYS = ("tree_size", "root_hash", "timestamp")


def _quiet(_: str) -> None:
    return None


def short(digest: object) -> str:
    """``sha256:1234abcd…`` for people; the full hash stays in the JSON."""
    text = str(digest)
    return text[:15] + "…" if is_sha256(text) else text


# --- trust ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedKey:
    keyid: str
    key: Ed25519PublicKey
    source: str
    kinds: frozenset[str] | None = None  # None: every kind

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keyid": self.keyid, "source": self.source}
        if self.kinds is not None:
            out["kinds"] = sorted(self.kinds)
        return out


@dataclass
class Trust:
    keys: dict[str, TrustedKey] = field(default_factory=dict)
    source: str = "default"

    def add(self, key: Ed25519PublicKey, source: str, kinds: Iterable[str] | None = None) -> None:
        kid = key_id(key)
        self.keys[kid] = TrustedKey(kid, key, source, frozenset(kinds) if kinds is not None else None)

    def to_list(self) -> list[dict[str, Any]]:
        return [k.to_dict() for k in sorted(self.keys.values(), key=lambda k: k.keyid)]


def default_trust(store: Store) -> Trust:
    """The store's operator key plus every ``<store>/keys/trusted/*.pub``."""
    trust = Trust(source="default: the operator key and keys/trusted/*.pub")
    if store.operator_public_key_path.exists():
        trust.add(store.operator_public_key(), str(store.operator_public_key_path))
    trusted_dir = store.keys_dir / "trusted"
    if trusted_dir.is_dir():
        for pub in sorted(trusted_dir.glob("*.pub")):
            trust.add(load_public_key(pub), str(pub))
    if not trust.keys:
        raise InputError(
            f"no trusted keys: {store.operator_public_key_path} is missing and {trusted_dir} holds no *.pub",
            code="audit.no_trust",
            hint="give --trust=FILE listing the public keys whose receipts you accept",
        )
    return trust


def _pem_key(pem: str, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where}: not a readable PEM public key", code="audit.trust_invalid") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{where}: not an Ed25519 public key", code="audit.trust_invalid")
    return key


def load_trust(path: str | os.PathLike[str]) -> Trust:
    """Read a TRUST FILE (JSON or text, see the module docstring)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read trust file {p}: {getattr(exc, 'strerror', None) or exc}",
            code="audit.trust_unreadable",
            location=Location(file=str(p)),
        ) from exc
    trust = Trust(source=str(p))
    if text.lstrip().startswith("{"):
        _trust_json(trust, p, text)
    else:
        _trust_text(trust, p, text)
    if not trust.keys:
        raise InputError(f"trust file {p} lists no keys", code="audit.trust_invalid")
    return trust


def _trust_json(trust: Trust, p: Path, text: str) -> None:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"trust file {p} is not valid JSON: {exc.msg} (line {exc.lineno})",
            code="audit.trust_invalid",
            location=Location(file=str(p), line=exc.lineno),
        ) from exc
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise InputError(f'trust file {p} must be {{"keys": [...]}}', code="audit.trust_invalid")
    for i, entry in enumerate(entries):
        where = f"{p}: keys[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where} must be an object", code="audit.trust_invalid")
        kinds = entry.get("kinds")
        if kinds is not None and not (isinstance(kinds, list) and all(isinstance(k, str) for k in kinds)):
            raise InputError(f"{where}: kinds must be a list of receipt kinds", code="audit.trust_invalid")
        if isinstance(entry.get("pem"), str):
            key, source = _pem_key(entry["pem"], where), f"{p} keys[{i}]"
        elif isinstance(entry.get("path"), str):
            key_path = (p.parent / entry["path"]).resolve()
            key, source = load_public_key(key_path), str(key_path)
        else:
            raise InputError(f"{where} needs a `path` or a `pem`", code="audit.trust_invalid")
        claimed = entry.get("keyid")
        if claimed is not None and claimed != key_id(key):
            raise InputError(
                f"{where}: keyid {claimed} does not match the key (its id is {key_id(key)})",
                code="audit.trust_invalid",
            )
        trust.add(key, source, kinds)


def _trust_text(trust: Trust, p: Path, text: str) -> None:
    pem: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if pem is not None:
            pem.append(line)
            if line.startswith("-----END"):
                trust.add(_pem_key("\n".join(pem) + "\n", f"{p}:{number}"), f"{p}:{number}")
                pem = None
            continue
        if line.startswith("-----BEGIN"):
            pem = [line]
            continue
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise InputError(
                f"{p}:{number}: expected `PATH [kind,kind…]`, got {raw.strip()!r}",
                code="audit.trust_invalid",
                location=Location(file=str(p), line=number),
            )
        key_path = (p.parent / parts[0]).resolve()
        kinds = [k for k in parts[1].split(",") if k] if len(parts) == 2 else None
        trust.add(load_public_key(key_path), str(key_path), kinds)
    if pem is not None:
        raise InputError(f"{p}: a PEM block is not closed", code="audit.trust_invalid")


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


# --- gaps -------------------------------------------------------------------------------------


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


def _gap(row: Row | None, problem: str, message: str) -> Gap:
    if row is None:
        return Gap(None, None, problem, message)
    return Gap(row.seq, row.hash, problem, f"seq {row.seq} ({short(row.hash)}): {message}")


# --- fast, exact canonical bytes ------------------------------------------------------------------
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


# --- 1. every row -------------------------------------------------------------------------------


def check_row(row: Row, trust: Trust) -> tuple[list[Gap], list[str]]:
    """Schema, hash, columns, canonical storage and a trusted signature. Returns the gaps and
    the key ids whose signatures verified."""
    doc = row.doc
    if doc is None:
        return [_gap(row, "unreadable", "the stored body is not a JSON object: the row was altered")], []
    try:
        check_schema({k: doc[k] for k in REQUIRED_KEYS if k in doc})
        payload, actual = _payload(doc)  # the rest of the content must be canonicalizable too
    except CheckFailed as exc:
        return [_gap(row, "schema", f"not a well-formed receipt: {exc.message}")], []
    except InputError as exc:
        return [_gap(row, "schema", f"receipt content cannot be canonicalized: {exc.message}")], []
    gaps: list[Gap] = []
    if actual != doc["receipt_hash"]:
        gaps.append(
            _gap(
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
            _gap(row, "altered", "the ledger's index columns disagree with the receipt: " + "; ".join(differ))
        )
    if not _is_canonical(doc, row.body):
        gaps.append(
            _gap(
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
        try:
            trusted.key.verify(base64.b64decode(sig["sig"], validate=True), payload)
        except (binascii.Error, ValueError, InvalidSignature):
            failed.append(trusted.keyid)
            continue
        verified.append(trusted.keyid)
    gaps: list[Gap] = []
    if failed:
        gaps.append(
            _gap(
                row,
                "bad_signature",
                f"the signature by trusted key {', '.join(failed)} does not verify over the receipt",
            )
        )
    elif not verified:
        signers = ", ".join(sorted({str(s["keyid"]) for s in doc["signatures"]}))
        extra = f"; {'; '.join(limited)}" if limited else ""
        gaps.append(
            _gap(row, "untrusted_signer", f"signed only by key(s) {signers}, none trusted for it{extra}")
        )
    return verified, gaps


# --- 2. the hash chain --------------------------------------------------------------------------


def chain_gaps(rows: list[Row], issued_seq: int | None, start: int, end: int) -> list[Gap]:
    """Gaps in the links of rows[start:end] (each checked against the row before it)."""
    first_index: dict[str, int] = {}
    duplicate: set[int] = set()
    gaps: list[Gap] = []
    for i, row in enumerate(rows):
        if row.hash in first_index:
            duplicate.add(i)
            if start <= i < end:
                j = first_index[row.hash]
                gaps.append(
                    _gap(row, "duplicated", f"repeats the receipt already stored at seq {rows[j].seq}")
                )
        else:
            first_index[row.hash] = i
    before: Row | None = None
    for i in range(start):
        if i not in duplicate:
            before = rows[i]
    for i in range(start, end):
        row = rows[i]
        if i in duplicate:
            continue
        gaps += _link_gaps(row, before, rows, first_index)
        before = row
    if end == len(rows) and issued_seq is not None:
        last = rows[-1].seq if rows else 0
        if issued_seq > last:
            missing = issued_seq - last
            gaps.append(
                Gap(
                    None,
                    None,
                    "truncated",
                    f"the ledger ends at seq {last} but SQLite has issued seq numbers up to {issued_seq}: "
                    f"the newest {missing} receipt{'s were' if missing != 1 else ' was'} deleted",
                )
            )
    return gaps


def _link_gaps(row: Row, before: Row | None, rows: list[Row], index: dict[str, int]) -> list[Gap]:
    prev = row.previous
    if before is None:
        if prev is None:
            return []
        if prev in index:
            where = rows[index[prev]].seq
            return [_gap(row, "reordered", f"stands first but links back to seq {where} ({short(prev)})")]
        return [
            _gap(
                row,
                "deleted",
                f"the first row links to {prev}, which is not in the ledger: the receipt(s) before it "
                "were deleted",
            )
        ]
    jump = row.seq - before.seq - 1
    if prev == before.hash:
        if jump > 0:
            return [
                _gap(
                    row,
                    "seq_gap",
                    f"seq numbers jump from {before.seq} to {row.seq} although the hash link holds: "
                    f"{jump} row(s) were removed and the chain re-sealed, or rows were renumbered",
                )
            ]
        return []
    if prev is None:
        return [
            _gap(
                row, "reordered", f"claims to be the first receipt (no previous) but follows seq {before.seq}"
            )
        ]
    if prev not in index:
        lost = (
            f" (seq {before.seq + 1} is missing)"
            if jump == 1
            else f" (seq {before.seq + 1}–{row.seq - 1} are missing)"
            if jump > 1
            else ""
        )
        return [
            _gap(
                row,
                "deleted",
                f"links to {prev}, which is not in the ledger: the receipt between seq {before.seq} and "
                f"seq {row.seq} was deleted or replaced{lost}",
            )
        ]
    return [
        _gap(
            row,
            "reordered",
            f"follows seq {before.seq} in the ledger, but its hash link names the receipt at seq "
            f"{rows[index[prev]].seq} ({short(prev)}): rows are out of order",
        )
    ]


# --- 3. transitions -----------------------------------------------------------------------------


@dataclass
class _Snap:
    data: bytes | None = None
    policy: Any = None  # finops_fabric.model.Policy
    gaps: list[Gap] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)


# What O (identified by its hash, its bytes re-hashed on every read) reads and validates as
# under this version's Σ₀: deterministic, so kept for the life of the process.
_READ: dict[str, Any] = {}
_VALIDATED: dict[str, dict[str, Any]] = {}
_SIGMA0: list[str] = []
_CACHE_LIMIT = 512


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


class _Objects:
    """Reads O snapshots (each validated once per hash) and ΔO objects from the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._snaps: dict[str, _Snap] = {}
        self._deltas: dict[str, dict[str, list[str]] | Gap] = {}

    def sigma0(self) -> str:
        if not _SIGMA0:
            from finops_fabric.pipeline import schema_hash

            _SIGMA0.append(schema_hash(()))
        return _SIGMA0[0]

    def raw(self, kind: str, digest: str) -> bytes | tuple[str, str]:
        try:
            return self.store.get_object(kind, digest)
        except CheckFailed as exc:
            return ("corrupt", exc.message)
        except InputError as exc:
            return ("missing", exc.message)

    def snapshot(self, digest: str, validate: bool) -> _Snap:
        snap = self._snaps.get(digest)
        if snap is None:
            snap = self._snaps[digest] = self._load(digest)
        if validate and snap.data is not None and not snap.validation:
            self._validate(snap)
        return snap

    def _load(self, digest: str) -> _Snap:
        from finops_fabric.pipeline import load_snapshot
        from finops_fabric.rdf.reader import read_policy

        got = self.raw("ontology", digest)
        if isinstance(got, tuple):
            code = "snapshot_missing" if got[0] == "missing" else "snapshot_corrupt"
            return _Snap(gaps=[Gap(None, None, code, f"the O snapshot {digest}: {got[1]}")])
        snap = _Snap(data=got)
        if digest in _VALIDATED:
            snap.validation = _VALIDATED[digest]
        if digest not in _READ:
            try:
                policy = read_policy(load_snapshot(got, "snapshot.nq").raw.triples)
            except FabricError:
                policy = None
            _remember(_READ, digest, policy)
        snap.policy = _READ[digest]
        return snap

    def _validate(self, snap: _Snap) -> None:
        from finops_fabric.pipeline import load_snapshot, validate

        assert snap.data is not None
        digest = sha256_hex(snap.data)
        try:
            v = validate(load_snapshot(snap.data, "snapshot.nq"))
        except FabricError as exc:
            snap.validation = {
                "conforms": False,
                "violations": [{"gate": "ontology", "message": exc.message}],
            }
            _remember(_VALIDATED, digest, snap.validation)
            return
        snap.validation = {
            "conforms": v.conforms,
            "gates": {k: g["status"] for k, g in v.gates.items()},
            "violations": [
                {"gate": f.gate, "invariant": f.invariant, "focus": f.focus, "message": f.message}
                for f in v.violations
            ],
        }
        _remember(_VALIDATED, digest, snap.validation)

    def delta(self, digest: str) -> dict[str, list[str]] | Gap:
        if digest not in self._deltas:
            self._deltas[digest] = self._load_delta(digest)
        return self._deltas[digest]

    def _load_delta(self, digest: str) -> dict[str, list[str]] | Gap:
        got = self.raw("delta", digest)
        if isinstance(got, tuple):
            code = "delta_missing" if got[0] == "missing" else "delta_corrupt"
            return Gap(None, None, code, f"ΔO {digest}: {got[1]}")
        try:
            doc = json.loads(got)
        except ValueError:
            doc = None
        ok = isinstance(doc, dict) and all(
            isinstance(doc.get(k), list) and all(isinstance(x, str) for x in doc[k])
            for k in ("added", "removed")
        )
        if not ok:
            return Gap(
                None, None, "delta_corrupt", f'ΔO {digest} is not {{"added": [...], "removed": [...]}}'
            )
        assert isinstance(doc, dict)
        return {"added": list(doc["added"]), "removed": list(doc["removed"])}


def _overridden(doc: dict[str, Any]) -> set[str]:
    """Invariants a receipted compliance override let through (best effort over the places a
    receipt may record one: ``override``, ``overrides``, ``inputs.override``, and the invariant
    gate's evidence ``override``/``overridden``)."""
    found: set[str] = set()

    def take(value: object) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            take(value.get("invariant"))
            take(value.get("invariants"))
        elif isinstance(value, list):
            for v in value:
                take(v)

    inputs = doc.get("inputs") if isinstance(doc.get("inputs"), dict) else {}
    gates = doc.get("gates") if isinstance(doc.get("gates"), dict) else {}
    inv = gates.get("invariant") if isinstance(gates, dict) else None
    evidence = inv.get("evidence") if isinstance(inv, dict) else None
    for value in (doc.get("override"), doc.get("overrides"), (inputs or {}).get("override")):
        take(value)
    if isinstance(evidence, dict):
        take(evidence.get("override"))
        take(evidence.get("overridden"))
    return found


def _rules(policy: Any) -> list[str]:
    return sorted(r.iri for r in policy.rules) if policy is not None else []


def _labels(policy: Any, iris: list[str]) -> dict[str, str]:
    if policy is None:
        return {}
    wanted = set(iris)
    return {r.iri: r.label for r in policy.rules if r.iri in wanted and isinstance(r.label, str)}


def transitions(
    rows: list[Row], start: int, end: int, objects: _Objects, progress: Progress = _quiet
) -> tuple[list[dict[str, Any]], list[Gap]]:
    """Each generation and rejection in rows[start:end]: O before → O after, valid, rule diff."""
    from finops_fabric.diffing import diff_policies

    in_force: str | None = None
    for row in rows[:start]:
        oh = row.get("inputs", "ontology_hash")
        if row.receipt_kind == "generation" and row.doc is not None and is_sha256(oh):
            in_force = oh
    in_force_policy = objects.snapshot(in_force, validate=False).policy if in_force else None
    out: list[dict[str, Any]] = []
    gaps: list[Gap] = []
    for row in rows[start:end]:
        if row.doc is None or row.receipt_kind not in ("generation", "rejection"):
            continue
        oh = row.get("inputs", "ontology_hash")
        t: dict[str, Any] = {
            "seq": row.seq,
            "receipt_hash": row.hash,
            "kind": row.receipt_kind,
            "time": row.doc.get("time"),
            "from": in_force,
            "to": in_force,
            "ontology_hash": oh,
            "valid": True,
            "changed_o": False,
            "added": [],
            "removed": [],
            "changed": [],
            "notes": [],
        }
        out.append(t)
        if row.receipt_kind == "rejection":
            t["status"] = "rejected"
            t["reason"] = row.doc.get("reason")
            t["compliance_override_required"] = bool(row.doc.get("compliance_override_required"))
            t["notes"].append("a rejection is a valid stop: no A was made and the O in force is unchanged")
            continue
        t["status"] = "generated"
        own: list[Gap] = []
        if not is_sha256(oh):
            own.append(
                _gap(row, "invalid_transition", "the generation receipt names no inputs.ontology_hash")
            )
        else:
            progress(f"seq {row.seq}: validating O {short(oh)} against Σ")
            snap = objects.snapshot(oh, validate=True)
            own += [_gap(row, g.problem, g.message) for g in snap.gaps]
            own += _validity(row, snap, objects, t)
            t["to"] = oh
            t["changed_o"] = oh != in_force
            t["rules"] = len(_rules(snap.policy)) if snap.policy is not None else None
            if snap.policy is not None and in_force is None:
                t["added"] = _rules(snap.policy)
            elif snap.policy is not None and in_force_policy is not None:
                d = diff_policies(in_force_policy, snap.policy)
                t["added"], t["removed"], t["changed"] = d["added"], d["removed"], d["changed"]
            elif t["changed_o"]:
                t["notes"].append("no rule diff: an O snapshot it would compare is missing or unreadable")
            t["labels"] = {**_labels(in_force_policy, t["removed"]), **_labels(snap.policy, t["added"])}
            in_force, in_force_policy = oh, snap.policy
        dh = row.get("inputs", "delta_hash")
        if not is_sha256(dh):
            own.append(_gap(row, "delta_missing", "the receipt names no ΔO (inputs.delta_hash)"))
        else:
            got = objects.delta(dh)
            if isinstance(got, Gap):
                own.append(_gap(row, got.problem, got.message))
        t["valid"] = not own
        gaps += own
    return out, gaps


def _validity(row: Row, snap: _Snap, objects: _Objects, t: dict[str, Any]) -> list[Gap]:
    if snap.data is None:
        return []
    assert row.doc is not None
    v = snap.validation
    t["validation"] = v
    receipted_sigma = row.get("inputs", "schema_hash")
    if receipted_sigma != objects.sigma0():
        names = row.get("inputs", "schemas") or []
        extra = f" plus {', '.join(map(str, names))}" if names else ""
        t["notes"].append(
            "re-validated under the base shapes Σ₀ of this version; "
            f"the receipt's Σ ({short(receipted_sigma)}) was Σ₀{extra}"
        )
    if v.get("conforms"):
        return []
    bad = v.get("violations", [])
    overridden = _overridden(row.doc)
    if overridden and all(x.get("gate") == "invariant" and x.get("invariant") in overridden for x in bad):
        t["notes"].append(
            f"passes under a receipted compliance override for: {', '.join(sorted(overridden))}"
        )
        return []
    first = "; ".join(str(x.get("message")) for x in bad[:3]) or "the policy cannot be read"
    more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
    return [
        _gap(
            row,
            "invalid_transition",
            f"O {short(row.get('inputs', 'ontology_hash'))} does not satisfy Σ: {first}{more}",
        )
    ]


# --- 4. rebuild O from ΔO -----------------------------------------------------------------------


def _lines(data: bytes) -> frozenset[str]:
    return frozenset(line for line in data.decode("utf-8").split("\n") if line)


def _joined(lines: Iterable[str]) -> bytes:
    return "".join(line + "\n" for line in sorted(lines)).encode("utf-8", "surrogatepass")


def _recanonicalized(data: bytes) -> bytes | None:
    import pyoxigraph as ox

    from finops_fabric.rdf.canon import canonical_nquads

    try:
        triples = [q.triple for q in ox.parse(data, ox.RdfFormat.N_QUADS)]
        return canonical_nquads(triples)
    except (SyntaxError, ValueError, FabricError):
        return None


def rebuild(
    rows: list[Row], start: int, end: int, objects: _Objects, progress: Progress = _quiet
) -> tuple[list[dict[str, Any]], list[Gap]]:
    """Apply each generation's ΔO to the O it was taken against; the result must hash to the
    receipted hash(O). The first ΔO is taken against nothing, so the chain rebuilds from empty."""
    states: dict[str, frozenset[str]] = {}
    steps: list[dict[str, Any]] = []
    gaps: list[Gap] = []
    for row in rows[start:end]:
        if row.doc is None or row.receipt_kind != "generation":
            continue
        oh, base_hash = row.get("inputs", "ontology_hash"), row.get("inputs", "previous_ontology_hash")
        dh = row.get("inputs", "delta_hash")
        step: dict[str, Any] = {
            "seq": row.seq,
            "receipt_hash": row.hash,
            "ontology_hash": oh,
            "base": base_hash,
        }
        steps.append(step)
        delta = objects.delta(dh) if is_sha256(dh) else None
        if not is_sha256(oh) or not isinstance(delta, dict):
            step.update(reproduced=False, method=None, message="no ΔO to apply (see the gaps)")
            continue
        step["added"], step["removed"] = len(delta["added"]), len(delta["removed"])
        progress(f"seq {row.seq}: applying ΔO (+{step['added']} −{step['removed']} lines)")
        bases: list[tuple[str, frozenset[str] | None]] = []
        if base_hash is None:
            bases.append(("from nothing", frozenset()))
        elif base_hash in states:
            bases.append(("on the rebuilt previous O", states[base_hash]))
        else:
            snap = objects.snapshot(base_hash, validate=False) if is_sha256(base_hash) else _Snap()
            seed = _lines(snap.data) if snap.data is not None else None
            bases.append(("on the stored snapshot of the previous O (not rebuilt from ΔO)", seed))
        if base_hash is not None:
            bases.append(("from nothing (ΔO was taken against an empty O)", frozenset()))
        done = False
        for how, base in bases:
            if base is None:
                continue
            lines = (base - frozenset(delta["removed"])) | frozenset(delta["added"])
            data = _joined(lines)
            method = "lines"
            if sha256_hex(data) != oh:
                again = _recanonicalized(data)
                if again is None or sha256_hex(again) != oh:
                    continue
                data, lines, method = again, _lines(again), "recanonicalized"
            states[oh] = lines
            step.update(reproduced=True, method=method, applied=how, message=f"reproduces {short(oh)}")
            done = True
            break
        if not done:
            step.update(reproduced=False, method=None)
            step["message"] = f"applying ΔO {short(dh)} does not reproduce the receipted hash(O) {short(oh)}"
            gaps.append(_gap(row, "rebuild_mismatch", step["message"]))
    return steps, gaps


# --- tree heads and proofs ----------------------------------------------------------------------


def _leaf(receipt_hash: str) -> bytes:
    return bytes.fromhex(receipt_hash[7:]) if is_sha256(receipt_hash) else receipt_hash.encode("utf-8")


def ledger_tree(rows: list[Row]) -> MerkleTree:
    """The Merkle tree over the ledger's receipt hashes (index column), in seq order."""
    return MerkleTree([_leaf(r.column_hash) for r in rows])


def _hex(digest: bytes) -> str:
    return "sha256:" + digest.hex()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_tree_head(
    tree: MerkleTree, private_key: Ed25519PrivateKey | None, timestamp: str | None = None
) -> dict[str, Any]:
    """``{"tree_size", "root_hash", "timestamp", "signatures"}``; unsigned without a key."""
    head: dict[str, Any] = {
        "tree_size": tree.size,
        "root_hash": _hex(tree.root()),
        "timestamp": timestamp or _now(),
    }
    sigs = []
    if private_key is not None:
        payload = canonical_json(head)
        sigs.append(
            {
                "keyid": key_id(private_key.public_key()),
                "sig": base64.b64encode(private_key.sign(payload)).decode("ascii"),
            }
        )
    return {**head, "signatures": sigs}


def verify_tree_head(head: object, trust: Trust) -> str:
    """Check a tree head's form and that a trusted key signed it; return that key id.
    Raises :class:`CheckFailed` (``audit.tree_head``) otherwise."""

    def fail(msg: str) -> CheckFailed:
        return CheckFailed(msg, code="audit.tree_head")

    if not isinstance(head, dict):
        raise fail("a tree head is a JSON object")
    size, root, sigs = head.get("tree_size"), head.get("root_hash"), head.get("signatures")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise fail("tree_size must be a whole number ≥ 0")
    if not is_sha256(root):
        raise fail("root_hash must be sha256:<64 lowercase hex>")
    if not isinstance(head.get("timestamp"), str):
        raise fail("timestamp must be a string")
    if not isinstance(sigs, list) or not sigs:
        raise fail("the tree head is not signed")
    payload = canonical_json({k: v for k, v in head.items() if k != "signatures"})
    for sig in sigs:
        if not isinstance(sig, dict) or sig.get("keyid") not in trust.keys:
            continue
        try:
            trust.keys[sig["keyid"]].key.verify(base64.b64decode(str(sig.get("sig")), validate=True), payload)
        except (binascii.Error, ValueError, InvalidSignature):
            raise fail(f"the tree head's signature by trusted key {sig['keyid']} does not verify") from None
        return str(sig["keyid"])
    raise fail("the tree head is not signed by a trusted key")


def prove_inclusion(rows: list[Row], tree: MerkleTree, receipt_hash: str) -> dict[str, Any]:
    """The audit path of a receipt in the ledger tree, verified."""
    index = next((i for i, r in enumerate(rows) if receipt_hash in (r.column_hash, r.hash)), None)
    if index is None:
        return {"receipt_hash": receipt_hash, "included": False, "verified": False, "tree_size": tree.size}
    path = tree.inclusion_proof(index)
    ok = verify_inclusion(tree.leaf(index), index, tree.size, path, tree.root())
    return {
        "receipt_hash": receipt_hash,
        "seq": rows[index].seq,
        "included": True,
        "leaf_index": index,
        "tree_size": tree.size,
        "leaf_hash": _hex(tree.leaf(index)),
        "audit_path": [_hex(p) for p in path],
        "root_hash": _hex(tree.root()),
        "verified": ok,
    }


def load_tree_head(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(
            f"cannot read tree head {p}: {exc.strerror or exc}",
            code="audit.tree_head_unreadable",
            location=Location(file=str(p)),
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(
            f"tree head {p} is not valid JSON: {exc}",
            code="audit.tree_head_unreadable",
            location=Location(file=str(p)),
        ) from exc
    if not isinstance(doc, dict):
        raise InputError(f"tree head {p} is not a JSON object", code="audit.tree_head_unreadable")
    return doc


def consistency_from(old: dict[str, Any], tree: MerkleTree, trust: Trust) -> dict[str, Any]:
    """Prove that the ledger now extends the log of an earlier signed tree head."""
    out: dict[str, Any] = {"tree_size": tree.size, "root_hash": _hex(tree.root())}
    try:
        out["old_signed_by"] = verify_tree_head(old, trust)
    except CheckFailed as exc:
        return {**out, "consistent": False, "problem": "tree_head_untrusted", "message": exc.message}
    m, old_root = int(old["tree_size"]), bytes.fromhex(str(old["root_hash"])[7:])
    out.update(old_tree_size=m, old_root_hash=old["root_hash"])
    if m > tree.size:
        return {
            **out,
            "consistent": False,
            "problem": "log_truncated",
            "message": f"the earlier tree head covers {m} receipts but the ledger now holds {tree.size}: "
            f"{m - tree.size} receipt(s) were removed",
        }
    proof = tree.consistency_proof(m)
    ok = verify_consistency(m, tree.size, proof, old_root, tree.root())
    out.update(proof=[_hex(p) for p in proof], consistent=ok)
    if ok:
        out["message"] = (
            f"the ledger of {tree.size} receipts extends the earlier one of {m}: nothing removed or rewritten"
        )
    else:
        out["problem"] = "log_rewritten"
        out["message"] = (
            f"the first {m} receipts no longer hash to the earlier root {short(old['root_hash'])}: "
            "receipts were removed, replaced or reordered since that tree head"
        )
    return out


# --- the whole audit ----------------------------------------------------------------------------


def resolve_receipt(ref: str, flag: str) -> str:
    """A receipt given as a file or as its hash → its ``sha256:`` hash."""
    if is_sha256(ref):
        return ref
    p = Path(ref)
    if p.is_file():
        doc = load_receipt(p)
        h = doc.get("receipt_hash")
        if not is_sha256(h):
            raise InputError(f"{flag}={ref}: the receipt has no valid receipt_hash", code="audit.bad_receipt")
        return str(h)
    raise InputError(
        f"{flag}={ref} is neither a receipt file nor a receipt hash (sha256:<64 hex>)",
        code="cli.usage",
    )


@dataclass
class AuditResult:
    ledger: Ledger
    start: int
    end: int
    trust: Trust
    chain: list[dict[str, Any]]
    gaps: list[Gap]
    transitions: list[dict[str, Any]]
    tree: MerkleTree
    rebuild: list[dict[str, Any]] | None = None
    tree_head: dict[str, Any] | None = None
    inclusion: dict[str, Any] | None = None
    consistency: dict[str, Any] | None = None

    @property
    def rows(self) -> list[Row]:
        return self.ledger.rows[self.start : self.end]

    @property
    def changes(self) -> int:
        return sum(1 for t in self.transitions if t["kind"] == "generation" and t["changed_o"])

    @property
    def verified(self) -> bool:
        ok = not self.gaps
        if self.inclusion is not None:
            ok = ok and bool(self.inclusion.get("verified"))
        if self.consistency is not None:
            ok = ok and bool(self.consistency.get("consistent"))
        return ok

    def summary(self) -> str:
        n, m = self.changes, len(self.rows)
        head = f"{n} policy change{'s' if n != 1 else ''}, {m} receipt{'s' if m != 1 else ''}"
        if self.verified:
            return f"{head}, all verified"
        problems = [f"seq {g.seq} {g.problem}" if g.seq is not None else g.problem for g in self.gaps]
        if self.inclusion is not None and not self.inclusion.get("verified"):
            problems.append("inclusion not proven")
        if self.consistency is not None and not self.consistency.get("consistent"):
            problems.append(str(self.consistency.get("problem", "inconsistent log")))
        failed = len({g.seq for g in self.gaps if g.seq is not None})
        shown = ", ".join(problems[:6]) + (f" and {len(problems) - 6} more" if len(problems) > 6 else "")
        return f"{head}, NOT verified: {failed} receipt(s) failed; {len(problems)} problem(s): {shown}"

    def to_dict(self) -> dict[str, Any]:
        rows = self.rows
        return {
            "verified": self.verified,
            "summary": self.summary(),
            "receipts": len(rows),
            "changes": self.changes,
            "ledger": {
                "path": str(self.ledger.path),
                "size": len(self.ledger.rows),
                "issued_seq": self.ledger.issued_seq,
            },
            "range": {
                "from": rows[0].hash if rows else None,
                "to": rows[-1].hash if rows else None,
                "first_seq": rows[0].seq if rows else None,
                "last_seq": rows[-1].seq if rows else None,
            },
            "trust": {"source": self.trust.source, "keys": self.trust.to_list()},
            "gaps": [g.to_dict() for g in self.gaps],
            "chain": self.chain,
            "transitions": self.transitions,
            "rebuild": self.rebuild,
            "tree_head": self.tree_head,
            "inclusion": self.inclusion,
            "consistency": self.consistency,
        }


def _position(rows: list[Row], h: str, flag: str) -> int:
    for i, r in enumerate(rows):
        if h in (r.hash, r.column_hash):
            return i
    raise CheckFailed(
        f"{flag}: receipt {h} is not in the ledger",
        code="audit.not_in_ledger",
        hint="a receipt the ledger does not hold is itself a gap in the trail",
    )


def audit_trail(
    store: Store,
    trust: Trust,
    *,
    start_hash: str | None = None,
    end_hash: str | None = None,
    do_rebuild: bool = False,
    progress: Progress = _quiet,
) -> AuditResult:
    """Verify the ledger (or the rows from ``start_hash`` to ``end_hash``, inclusive)."""
    progress(f"reading the ledger {store.db_path}")
    ledger = read_ledger(store)
    rows = ledger.rows
    start = _position(rows, start_hash, "--from") if start_hash else 0
    end = _position(rows, end_hash, "--to") + 1 if end_hash else len(rows)
    if start >= end and rows:
        raise InputError("--from names a receipt after --to", code="cli.usage")
    progress(f"checking {end - start} receipts: schema, hash, signature")
    gaps: list[Gap] = []
    chain: list[dict[str, Any]] = []
    for row in rows[start:end]:
        row_gaps, signers = check_row(row, trust)
        gaps += row_gaps
        chain.append(
            {
                "seq": row.seq,
                "receipt_hash": row.hash,
                "kind": row.receipt_kind,
                "time": row.doc.get("time") if row.doc else None,
                "previous_receipt_hash": row.previous,
                "ontology_hash": row.column_ontology,
                "enforcer_hash": row.column_enforcer,
                "signed_by": signers,
            }
        )
    gaps += chain_gaps(rows, ledger.issued_seq, start, end)
    objects = _Objects(store)
    trans, t_gaps = transitions(rows, start, end, objects, progress)
    gaps += t_gaps
    steps = None
    if do_rebuild:
        steps, r_gaps = rebuild(rows, start, end, objects, progress)
        gaps += r_gaps
    gaps.sort(key=lambda g: (g.seq is None, g.seq or 0))
    bad = {g.seq: [x.problem for x in gaps if x.seq == g.seq] for g in gaps if g.seq is not None}
    for entry in chain:
        entry["problems"] = bad.get(entry["seq"], [])
        entry["verified"] = not entry["problems"]
    progress("computing the Merkle tree head")
    return AuditResult(ledger, start, end, trust, chain, gaps, trans, ledger_tree(rows), steps)
