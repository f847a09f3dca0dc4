"""Receipts as in-toto attestations: a Statement v1 in a DSSE envelope.

An auditor with a standard DSSE library (e.g. securesystemslib) and the signer's public key
can check a receipt without this product. The layers, outermost first:

* the DSSE v1 JSON envelope (secure-systems-lab/dsse ``envelope.md``)::

      {"payloadType": "application/vnd.in-toto+json",
       "payload": "<base64 of the canonical JSON of the Statement>",
       "signatures": [{"keyid": "<securesystemslib key id>", "sig": "<base64 Ed25519>"}]}

  Each signature is Ed25519 over ``PAE(payloadType, payload)`` (:func:`pae`, DSSE
  ``protocol.md``), never over the payload alone, so the type is authenticated too. The key id
  is :func:`~finops_fabric.keys.key_id`, the one securesystemslib computes for the key.

* the in-toto Statement v1 (in-toto/attestation ``spec/v1/statement.md``)::

      {"_type": "https://in-toto.io/Statement/v1",
       "subject": [{"name": "<artifact path>", "digest": {"sha256": "<64 hex>"}}, ...],
       "predicateType": "https://w3id.org/finops-fabric/receipt/v1",
       "predicate": <the receipt, unchanged, with its receipt_hash and signatures>}

  The subjects are the artifacts of A recorded in ``outputs.artifacts``, sorted by name; a
  receipt without artifacts (a rejection, say) has itself as the one subject, named
  ``receipt`` with its ``receipt_hash`` as digest.

:func:`verify_envelope` follows the DSSE verification order (decode, signature over PAE,
payload type, parse) and then checks the Statement and the receipt inside it; each check has
its own :class:`~finops_fabric.errors.CheckFailed` code.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
import re
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from .canonical import canonical_json, is_sha256
from .errors import CheckFailed
from .files import parse_strict_json, read_file, strict_json_loads
from .keys import Ed25519PrivateKey, Ed25519PublicKey, key_id
from .receipts import check_hash, check_schema

__all__ = [
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "RECEIPT_SUBJECT",
    "STATEMENT_TYPE",
    "envelope",
    "load_envelope",
    "pae",
    "statement",
    "subjects",
    "verify_envelope",
]

#: DSSE payload type of an in-toto attestation (in-toto/attestation spec/v1/envelope.md).
PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: ``_type`` of an in-toto Statement v1.
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: ``predicateType`` of a FinOps Fabric receipt.
PREDICATE_TYPE = "https://w3id.org/finops-fabric/receipt/v1"
#: The subject name of a receipt without artifacts (it attests to itself).
RECEIPT_SUBJECT = "receipt"

_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_MAX_ENVELOPE = 64 * 1024 * 1024


# --- building ---------------------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding, the bytes a signature covers::

        "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

    with ``type`` the UTF-8 bytes of ``payload_type`` and LEN the byte length in ASCII decimal
    without leading zeros."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def _artifact_digests(receipt: dict[str, Any]) -> dict[str, str]:
    """``outputs.artifacts`` (path → ``sha256:<hex>``) of a receipt; empty when it has none."""
    outputs = receipt.get("outputs")
    if not isinstance(outputs, dict) or outputs.get("artifacts") is None:
        return {}
    artifacts = outputs["artifacts"]
    if not isinstance(artifacts, dict):
        raise CheckFailed("receipt outputs.artifacts must be an object (path → hash)", code="dsse.artifacts")
    for path, digest in artifacts.items():
        if not path or not is_sha256(digest):
            raise CheckFailed(
                f"receipt outputs.artifacts[{path!r}] must be written sha256:<64 lowercase hex>",
                code="dsse.artifacts",
            )
    return artifacts


def subjects(receipt: dict[str, Any]) -> list[dict[str, Any]]:
    """The Statement subjects of a receipt: each artifact (sorted by name), or the receipt
    itself when it records no artifacts."""
    artifacts = _artifact_digests(receipt)
    if not artifacts:
        receipt_hash = receipt.get("receipt_hash")
        if not isinstance(receipt_hash, str) or not is_sha256(receipt_hash):
            raise CheckFailed("receipt_hash must be written sha256:<64 lowercase hex>", code="receipt.schema")
        return [{"name": RECEIPT_SUBJECT, "digest": {"sha256": receipt_hash.removeprefix("sha256:")}}]
    return [
        {"name": path, "digest": {"sha256": artifacts[path].removeprefix("sha256:")}}
        for path in sorted(artifacts)
    ]


def statement(receipt: dict[str, Any]) -> dict[str, Any]:
    """The in-toto Statement v1 whose predicate is ``receipt`` (a copy; the input is untouched)."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects(receipt),
        "predicateType": PREDICATE_TYPE,
        "predicate": copy.deepcopy(receipt),
    }


def envelope(receipt: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A DSSE envelope holding the Statement of ``receipt``, signed by ``private_key``.

    The receipt is checked first (``receipt.schema``, ``receipt.hash``): a receipt changed after
    it was sealed is not exported."""
    check_schema(receipt)
    check_hash(receipt)
    payload = canonical_json(statement(receipt))
    signature = private_key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {"keyid": key_id(private_key.public_key()), "sig": base64.b64encode(signature).decode("ascii")}
        ],
    }


# --- verification -----------------------------------------------------------------------------


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64 (DSSE verifiers must accept both), padding optional."""
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    if not _B64.fullmatch(text):
        raise ValueError("not base64")
    return base64.b64decode(text, validate=True)


def _malformed(message: str) -> CheckFailed:
    return CheckFailed(
        f"malformed DSSE envelope: {message}",
        code="dsse.malformed",
        hint="a DSSE envelope is {payloadType, payload (base64), signatures: [{keyid, sig (base64)}]}",
    )


def _decode(env: object) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    if not isinstance(env, dict):
        raise _malformed(f"a JSON object is expected, not {type(env).__name__}")
    if "receipt_hash" in env and "payload" not in env:
        raise CheckFailed(
            "this is a receipt, not a DSSE envelope",
            code="dsse.malformed",
            hint="check a receipt with `mu verify-receipt`, or export it with `mu receipt export`",
        )
    payload_type, payload_b64, signatures = env.get("payloadType"), env.get("payload"), env.get("signatures")
    if not isinstance(payload_type, str):
        raise _malformed("`payloadType` must be a string")
    if not isinstance(payload_b64, str):
        raise _malformed("`payload` must be a base64 string")
    try:
        payload = _b64decode(payload_b64)
    except (binascii.Error, ValueError) as exc:
        raise _malformed("`payload` is not valid base64") from exc
    if not isinstance(signatures, list) or not signatures:
        raise _malformed("`signatures` must be a non-empty list")
    decoded: list[tuple[str, bytes]] = []
    for i, sig in enumerate(signatures):
        if not isinstance(sig, dict) or not isinstance(sig.get("sig"), str):
            raise _malformed(f"signatures[{i}] must be an object with a base64 string `sig`")
        keyid = sig.get("keyid", "")
        if not isinstance(keyid, str):
            raise _malformed(f"signatures[{i}].keyid must be a string")
        try:
            raw = _b64decode(sig["sig"])
        except (binascii.Error, ValueError) as exc:
            raise _malformed(f"signatures[{i}].sig is not valid base64") from exc
        decoded.append((keyid, raw))
    return payload_type, payload, decoded


def _check_signature(
    payload_type: str, payload: bytes, signatures: list[tuple[str, bytes]], public_key: Ed25519PublicKey
) -> None:
    kid = key_id(public_key)
    # The key id is an unauthenticated hint (DSSE): a signature without one is tried as well.
    candidates = [raw for keyid, raw in signatures if keyid in (kid, "")]
    if not candidates:
        signers = ", ".join(sorted({keyid for keyid, _ in signatures}))
        raise CheckFailed(
            f"the envelope has no signature by key {kid}",
            code="dsse.no_signature",
            hint=f"it is signed by: {signers}",
        )
    message = pae(payload_type, payload)
    for raw in candidates:
        try:
            public_key.verify(raw, message)
        except InvalidSignature:
            continue
        return
    raise CheckFailed(
        f"the envelope's signature by key {kid} does not verify",
        code="dsse.signature",
        hint="the payload or its type was changed after signing, or another key signed it",
    )


def _not_statement(message: str) -> CheckFailed:
    return CheckFailed(f"the payload is not an in-toto Statement v1: {message}", code="dsse.statement")


def _parse_statement(payload: bytes) -> dict[str, Any]:
    try:
        doc = strict_json_loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError too
        raise _not_statement(f"not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise _not_statement(f"a JSON object is expected, not {type(doc).__name__}")
    if doc.get("_type") != STATEMENT_TYPE:
        raise _not_statement(f"`_type` is {doc.get('_type')!r}, not {STATEMENT_TYPE!r}")
    subject = doc.get("subject")
    if not isinstance(subject, list) or not subject:
        raise _not_statement("`subject` must be a non-empty list")
    for i, s in enumerate(subject):
        digest = s.get("digest") if isinstance(s, dict) else None
        if not isinstance(digest, dict) or not digest:
            raise _not_statement(f"subject[{i}] must have a non-empty `digest` object")
        if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in digest.items()):
            raise _not_statement(f"subject[{i}].digest must map algorithm names to hex strings")
        if "name" in s and not isinstance(s["name"], str):
            raise _not_statement(f"subject[{i}].name must be a string")
    if not isinstance(doc.get("predicateType"), str) or not doc["predicateType"]:
        raise _not_statement("`predicateType` must be a non-empty string")
    if "predicate" in doc and not isinstance(doc["predicate"], dict):
        raise _not_statement("`predicate` must be an object")
    return doc


def _subject_key(s: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (str(s.get("name", "")), tuple(sorted(s["digest"].items())))


def verify_envelope(env: object, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Verify a DSSE envelope made by :func:`envelope`; return its Statement.

    Raises :class:`CheckFailed`, at the first check that does not hold, with code:
    ``dsse.malformed`` (not an envelope, or bad base64), ``dsse.no_signature`` (no signature
    with this key's id), ``dsse.signature`` (it does not verify over PAE), ``dsse.payload_type``
    (not ``application/vnd.in-toto+json``), ``dsse.statement`` (the payload is not a Statement
    v1), ``dsse.predicate_type`` (not a FinOps Fabric receipt), ``dsse.predicate`` (the
    predicate is not a well-formed receipt), ``receipt.hash`` (the receipt does not match its
    own ``receipt_hash``), ``dsse.subject`` (the subjects are not the receipt's artifacts).
    """
    payload_type, payload, signatures = _decode(env)
    _check_signature(payload_type, payload, signatures, public_key)
    if payload_type != PAYLOAD_TYPE:
        raise CheckFailed(
            f"payloadType is {payload_type!r}, not {PAYLOAD_TYPE!r}",
            code="dsse.payload_type",
            hint="this envelope does not hold an in-toto Statement",
        )
    stmt = _parse_statement(payload)
    if stmt["predicateType"] != PREDICATE_TYPE:
        raise CheckFailed(
            f"predicateType is {stmt['predicateType']!r}, not {PREDICATE_TYPE!r}",
            code="dsse.predicate_type",
            hint="this attestation is not a FinOps Fabric receipt",
        )
    receipt = stmt.get("predicate")
    try:
        check_schema(receipt)
    except CheckFailed as exc:
        raise CheckFailed(
            f"the predicate is not a well-formed receipt: {exc.message}", code="dsse.predicate", hint=exc.hint
        ) from exc
    assert isinstance(receipt, dict)
    check_hash(receipt)
    try:
        expected = subjects(receipt)
    except CheckFailed as exc:
        raise CheckFailed(
            f"the predicate is not a well-formed receipt: {exc.message}", code="dsse.predicate"
        ) from exc
    if sorted(map(_subject_key, stmt["subject"])) != sorted(map(_subject_key, expected)):
        got = {_subject_key(s) for s in stmt["subject"]}
        want = {_subject_key(s) for s in expected}
        extra = sorted(name for name, _ in got - want)
        missing = sorted(name for name, _ in want - got)
        detail = "; ".join(
            part
            for part in (
                f"not in the receipt: {', '.join(extra)}" if extra else "",
                f"missing: {', '.join(missing)}" if missing else "",
            )
            if part
        )
        raise CheckFailed(
            "the Statement's subjects do not match the receipt's artifacts"
            + (f" ({detail})" if detail else ""),
            code="dsse.subject",
        )
    return stmt


# --- files ------------------------------------------------------------------------------------


def load_envelope(path: str | os.PathLike[str]) -> Any:
    """Read an envelope file as JSON. :class:`InputError` when it is missing or unreadable
    (``envelope.missing``/``envelope.unreadable``) or not JSON (``envelope.invalid_json``);
    its content is checked by :func:`verify_envelope`."""
    p = Path(path)
    raw = read_file(
        p,
        "envelope",
        "envelope",
        max_bytes=_MAX_ENVELOPE,
        too_large_as="DSSE envelope",
        directory_code="envelope.unreadable",
    )
    return parse_strict_json(raw, p, "envelope", "envelope.invalid_json")
