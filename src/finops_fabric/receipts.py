"""Receipts: the bytes that are hashed and signed, sealing, and verification.

A receipt is a plain JSON object. :func:`receipt_payload` is the ONE definition of the bytes
that are hashed and signed: the RFC 8785 canonical JSON of the receipt without its top-level
``receipt_hash`` and ``signatures``. ``receipt_hash`` is ``sha256:<hex>`` of those bytes and
each signature is Ed25519 over the same bytes::

    {"format": "...", "kind": "generation", ..., "previous_receipt_hash": null,
     "receipt_hash": "sha256:...", "signatures": [{"keyid": "<64 hex>", "sig": "<base64>"}]}

:func:`verify_receipt` is an ordered sequence of named checks (``receipt.schema``,
``receipt.hash``, ``receipt.signature``); each returns ``None`` or raises
:class:`~finops_fabric.errors.CheckFailed` with its own code, so nothing is accepted by default.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from .canonical import canonical_json, is_sha256, sha256_hex, write_bytes_atomic
from .errors import CheckFailed, InputError, Location
from .files import parse_strict_json, read_file
from .keys import Ed25519PrivateKey, Ed25519PublicKey, key_id

__all__ = [
    "RECEIPT_FORMAT",
    "REQUIRED_KEYS",
    "add_signature",
    "check_hash",
    "check_schema",
    "check_signature",
    "load_receipt",
    "receipt_payload",
    "seal",
    "verify_receipt",
    "write_json_atomic",
]

#: The value of ``format`` in every receipt this product writes.
RECEIPT_FORMAT = "finops-fabric/receipt/v1"
#: Top-level keys every receipt has (``previous_receipt_hash`` may be null).
REQUIRED_KEYS = ("format", "kind", "previous_receipt_hash", "receipt_hash", "signatures")
_UNSIGNED_KEYS = frozenset({"receipt_hash", "signatures"})

Receipt = dict[str, Any]


def receipt_payload(receipt: dict[str, Any]) -> bytes:
    """The bytes that are hashed and signed: canonical JSON of the receipt minus
    ``receipt_hash`` and ``signatures`` (top level only)."""
    return canonical_json({k: v for k, v in receipt.items() if k not in _UNSIGNED_KEYS})


def _sign(payload: bytes, private_key: Ed25519PrivateKey) -> dict[str, str]:
    return {
        "keyid": key_id(private_key.public_key()),
        "sig": base64.b64encode(private_key.sign(payload)).decode("ascii"),
    }


def seal(receipt: dict[str, Any], private_key: Ed25519PrivateKey) -> Receipt:
    """A new receipt: ``receipt`` (any old hash and signatures dropped) with ``receipt_hash``
    and one signature by ``private_key``. The input is not modified."""
    body = {k: copy.deepcopy(v) for k, v in receipt.items() if k not in _UNSIGNED_KEYS}
    payload = canonical_json(body)
    body["receipt_hash"] = sha256_hex(payload)
    body["signatures"] = [_sign(payload, private_key)]
    return body


def add_signature(receipt: dict[str, Any], private_key: Ed25519PrivateKey) -> Receipt:
    """A new receipt with one more signature (e.g. an approver's) over the same payload.

    Refuses (``CheckFailed``, ``receipt.hash``) to sign a receipt whose content no longer
    matches its ``receipt_hash``. Signing twice with the same key adds nothing.
    """
    check_schema(receipt)
    check_hash(receipt)
    out = copy.deepcopy(receipt)
    payload = receipt_payload(out)
    signature = _sign(payload, private_key)
    if not any(s["keyid"] == signature["keyid"] and s["sig"] == signature["sig"] for s in out["signatures"]):
        out["signatures"].append(signature)
    return out


# --- verification: named checks, each raises or returns None ---------------------------------


def _fail(code: str, message: str, hint: str | None = None) -> CheckFailed:
    return CheckFailed(message, code=code, hint=hint)


def check_schema(receipt: object) -> None:
    """``receipt.schema``: the required keys are present and well formed."""
    code = "receipt.schema"
    if not isinstance(receipt, dict):
        raise _fail(code, f"a receipt is a JSON object, not {type(receipt).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in receipt]
    if missing:
        raise _fail(code, "receipt lacks required key(s): " + ", ".join(missing))
    for key in ("format", "kind"):
        if not isinstance(receipt[key], str) or not receipt[key]:
            raise _fail(code, f"receipt `{key}` must be a non-empty string")
    if not is_sha256(receipt["receipt_hash"]):
        raise _fail(code, "receipt_hash must be written sha256:<64 lowercase hex>")
    previous = receipt["previous_receipt_hash"]
    if previous is not None and not is_sha256(previous):
        raise _fail(code, "previous_receipt_hash must be null or sha256:<64 lowercase hex>")
    signatures = receipt["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise _fail(code, "signatures must be a non-empty list", hint="the receipt is unsigned")
    for i, sig in enumerate(signatures):
        if not (
            isinstance(sig, dict) and isinstance(sig.get("keyid"), str) and isinstance(sig.get("sig"), str)
        ):
            raise _fail(code, f"signatures[{i}] must be an object with string `keyid` and `sig`")
    try:
        receipt_payload(receipt)
    except InputError as exc:
        raise _fail(code, f"receipt content cannot be canonicalized: {exc.message}") from exc


def check_hash(receipt: dict[str, Any]) -> None:
    """``receipt.hash``: the SHA-256 of the payload equals ``receipt_hash``."""
    actual = sha256_hex(receipt_payload(receipt))
    if actual != receipt["receipt_hash"]:
        raise _fail(
            "receipt.hash",
            f"receipt content does not match its receipt_hash (recorded {receipt['receipt_hash']}, "
            f"computed {actual})",
            hint="the receipt was changed after it was sealed",
        )


def check_signature(receipt: dict[str, Any], public_key: Ed25519PublicKey) -> None:
    """``receipt.signature``: a signature carries this key's id and verifies over the payload."""
    kid = key_id(public_key)
    candidates = [s for s in receipt["signatures"] if s["keyid"] == kid]
    if not candidates:
        signers = ", ".join(sorted({str(s["keyid"]) for s in receipt["signatures"]}))
        raise _fail(
            "receipt.signature", f"receipt is not signed by key {kid}", hint=f"it is signed by: {signers}"
        )
    payload = receipt_payload(receipt)
    for candidate in candidates:
        try:
            raw = base64.b64decode(candidate["sig"], validate=True)
            public_key.verify(raw, payload)
        except (binascii.Error, ValueError, InvalidSignature):
            continue
        return
    raise _fail("receipt.signature", f"signature by key {kid} does not verify")


_CHECKS: tuple[tuple[str, Callable[[dict[str, Any], Ed25519PublicKey], None]], ...] = (
    ("receipt.schema", lambda r, _k: check_schema(r)),
    ("receipt.hash", lambda r, _k: check_hash(r)),
    ("receipt.signature", check_signature),
)


def verify_receipt(receipt: dict[str, Any], public_key: Ed25519PublicKey) -> None:
    """Run ``receipt.schema``, ``receipt.hash``, ``receipt.signature`` in order.

    Returns ``None`` when every check holds; raises :class:`CheckFailed` (with the failing
    check's code) at the first that does not.
    """
    for _name, check in _CHECKS:
        check(receipt, public_key)


# --- files ------------------------------------------------------------------------------------


def load_receipt(path: str | os.PathLike[str]) -> Receipt:
    """Read a receipt file. :class:`InputError` for a missing or unreadable file
    (``receipt.missing``/``receipt.unreadable``), invalid JSON naming the line
    (``receipt.invalid_json``; duplicate keys and NaN/Infinity are refused too), or a document
    that is not an object (``receipt.not_object``). Content is checked by :func:`verify_receipt`.
    """
    p = Path(path)
    loc = Location(file=str(p))
    doc = parse_strict_json(read_file(p, "receipt", "receipt"), p, "receipt", "receipt.invalid_json")
    if not isinstance(doc, dict):
        raise InputError(
            f"receipt {p} is a JSON {type(doc).__name__}, not an object",
            code="receipt.not_object",
            location=loc,
        )
    return doc


def write_json_atomic(path: str | os.PathLike[str], obj: object) -> Path:
    """Write ``obj`` as pretty JSON (sorted keys, 2-space indent, trailing newline) so the file
    appears complete or not at all. The hash of a receipt is over its canonical payload, not
    over these bytes. Raises :class:`InputError` when the file cannot be written."""
    p = Path(path)
    try:
        text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
        data = text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        raise InputError(f"cannot write {p} as JSON: {exc}", code="fabric.not_json") from exc
    try:
        return write_bytes_atomic(p, data)
    except OSError as exc:
        raise InputError(
            f"cannot write {p}: {exc.strerror or exc}",
            code="fabric.file_unwritable",
            location=Location(file=str(p)),
        ) from exc
