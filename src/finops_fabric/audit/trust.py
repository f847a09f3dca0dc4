"""The audit's TRUST FILE: which public keys' signatures count, and for which receipt kinds.

``mu audit-trail --trust=FILE`` names the keys whose signatures count; a receipt signed only by
other keys fails. Without it (:func:`default_trust`): the store's operator key plus every
``<store>/keys/trusted/*.pub``. Two formats (:func:`load_trust`):

- JSON: ``{"keys": [{"path": "operator.pub"}, {"keyid": "<64 hex>", "pem": "-----BEGIN ...",
  "kinds": ["replay"]}]}``. Each key is a ``path`` to a PEM public key (relative to the trust
  file's folder) or an inline ``pem``; ``keyid`` is optional and, when given, must be the
  key's id (securesystemslib key id, as in receipts); ``kinds`` optionally limits the receipt
  kinds the key may sign;
- text: one PEM public key path per line (relative to the file's folder), optionally followed
  by the kinds it may sign (``auditor.pub replay,approval``); inline PEM blocks are accepted;
  ``#`` starts a comment.

:meth:`TrustedKey.signed` is the one place a signature (receipt or tree head) is checked.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from finops_fabric.errors import InputError, Location
from finops_fabric.keys import Ed25519PublicKey, key_id, load_public_key
from finops_fabric.store import Store

__all__ = ["Trust", "TrustedKey", "default_trust", "load_trust"]


@dataclass(frozen=True)
class TrustedKey:
    """A public key whose signatures count: its id, where it was read from, the kinds it may sign."""

    keyid: str
    key: Ed25519PublicKey
    source: str
    kinds: frozenset[str] | None = None  # None: every kind

    def signed(self, sig: object, payload: bytes) -> bool:
        """Whether ``sig`` (base64) is this key's Ed25519 signature over ``payload``."""
        try:
            self.key.verify(base64.b64decode(str(sig), validate=True), payload)
        except (binascii.Error, ValueError, InvalidSignature):
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keyid": self.keyid, "source": self.source}
        if self.kinds is not None:
            out["kinds"] = sorted(self.kinds)
        return out


@dataclass
class Trust:
    """The trusted keys by key id, and where the list came from (a trust file or the default)."""

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
