"""Ed25519 signing keys: generate, load, and name them.

A key pair is two PEM files: ``NAME.key`` (PKCS#8, unencrypted, mode 0600 from the moment it
exists) and ``NAME.pub`` (SubjectPublicKeyInfo). A key is named by its *key id*, following the
securesystemslib / TUF / in-toto convention (``SSlibKey.from_crypto`` +
``compute_default_keyid``): the lowercase hex SHA-256 of the canonical JSON of

    {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": <64-hex raw public key>}}

so a receipt's signatures can be checked with the same key ids by standard supply-chain tools.
(securesystemslib canonicalizes with OLPC canonical JSON; for this dict of ASCII strings the
bytes are identical to RFC 8785, which is what :func:`canonical_json` produces.)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import canonical_json, write_bytes_atomic
from .errors import InputError, Location
from .files import read_file

__all__ = [
    "KEYTYPE",
    "SCHEME",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "generate_keypair",
    "key_id",
    "keypair_paths",
    "load_private_key",
    "load_public_key",
    "public_key_hex",
    "public_key_pem",
]

KEYTYPE = "ed25519"
SCHEME = "ed25519"
PRIVATE_KEY_MODE = 0o600
_MAX_KEY_FILE = 64 * 1024


def keypair_paths(out_prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(NAME.key, NAME.pub)`` for the prefix ``NAME`` (a dot in NAME is kept, not a suffix)."""
    prefix = Path(out_prefix)
    if prefix.name in ("", ".", ".."):
        raise InputError(
            f"{str(out_prefix)!r} does not name a key",
            code="keys.bad_name",
            hint="e.g. `mu keygen --out alice`",
        )
    return prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")


def generate_keypair(
    out_prefix: str | os.PathLike[str], *, public_mode: int | None = None
) -> tuple[Path, Path]:
    """Create a new Ed25519 key pair at ``NAME.key`` and ``NAME.pub``; return both paths.

    The private key file is created with mode 0600 (never readable by others, not even for an
    instant) and appears complete or not at all; the public key with ``public_mode`` (default:
    0666 less the umask). Existing files are never replaced: if either
    file exists, :class:`InputError` (code ``keys.exists``) is raised and nothing is written.
    """
    key_path, pub_path = keypair_paths(out_prefix)
    for existing in (key_path, pub_path):
        if existing.exists() or existing.is_symlink():
            raise _exists_error(existing)
    try:
        key_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"cannot create directory {key_path.parent}: {exc.strerror or exc}",
            code="keys.unwritable",
            location=Location(file=str(key_path.parent)),
        ) from exc

    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    public_pem = public_key_pem(private_key.public_key())
    _write_new(key_path, private_pem, PRIVATE_KEY_MODE)
    try:
        _write_new(pub_path, public_pem, public_mode)
    except BaseException:
        with contextlib.suppress(OSError):
            key_path.unlink()
        raise
    return key_path, pub_path


def _write_new(path: Path, data: bytes, mode: int | None) -> None:
    try:
        write_bytes_atomic(path, data, mode=mode, exclusive=True)
    except FileExistsError as exc:
        raise _exists_error(path) from exc
    except OSError as exc:
        raise InputError(
            f"cannot write {path}: {exc.strerror or exc}",
            code="keys.unwritable",
            location=Location(file=str(path)),
        ) from exc


def _exists_error(path: Path) -> InputError:
    return InputError(
        f"{path} already exists; refusing to overwrite a key",
        code="keys.exists",
        location=Location(file=str(path)),
        hint="choose another name, or move the old key away yourself",
    )


def _read_key_file(path: Path, what: str) -> bytes:
    return read_file(
        path,
        what,
        "keys",
        max_bytes=_MAX_KEY_FILE,
        too_large_code="keys.invalid",
        directory_code="keys.unreadable",
    )


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load an unencrypted PEM (PKCS#8) Ed25519 private key, e.g. ``NAME.key``.

    Raises :class:`InputError` with code ``keys.missing``, ``keys.unreadable``,
    ``keys.encrypted``, ``keys.invalid`` (not a PEM private key) or ``keys.not_ed25519``.
    """
    p = Path(path)
    data = _read_key_file(p, "private key")
    loc = Location(file=str(p))
    if b"PRIVATE KEY-----" not in data:
        hint = "this looks like a public key; pass NAME.key" if b"PUBLIC KEY-----" in data else None
        raise InputError(f"{p} is not a PEM private key", code="keys.invalid", location=loc, hint=hint)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # the key is encrypted and no password was given
        raise InputError(
            f"{p} is an encrypted private key",
            code="keys.encrypted",
            location=loc,
            hint="use an unencrypted key as written by `mu keygen`",
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(
            f"{p} is not a readable PEM private key: {exc}", code="keys.invalid", location=loc
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(
            f"{p} is a {type(key).__name__}, not an Ed25519 key",
            code="keys.not_ed25519",
            location=loc,
            hint="create one with `mu keygen --out NAME`",
        )
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load a PEM (SubjectPublicKeyInfo) Ed25519 public key, e.g. ``NAME.pub``.

    Raises :class:`InputError` with code ``keys.missing``, ``keys.unreadable``, ``keys.invalid``
    (not a PEM public key; a private key file is refused too) or ``keys.not_ed25519``.
    """
    p = Path(path)
    data = _read_key_file(p, "public key")
    loc = Location(file=str(p))
    if b"PUBLIC KEY-----" not in data or b"PRIVATE KEY-----" in data:
        hint = "this is a private key; pass the public key NAME.pub" if b"PRIVATE KEY-----" in data else None
        raise InputError(f"{p} is not a PEM public key", code="keys.invalid", location=loc, hint=hint)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(
            f"{p} is not a readable PEM public key: {exc}", code="keys.invalid", location=loc
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(
            f"{p} is a {type(key).__name__}, not an Ed25519 key", code="keys.not_ed25519", location=loc
        )
    return key


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """The public key as a SubjectPublicKeyInfo PEM document (the content of ``NAME.pub``)."""
    return public_key.public_bytes(
        encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_hex(public_key: Ed25519PublicKey) -> str:
    """The 32 raw bytes of the public key as 64 lowercase hex digits."""
    raw = public_key.public_bytes(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)
    return raw.hex()


def _keyid_of(key_dict: Mapping[str, object]) -> str:
    """Hex SHA-256 of the canonical JSON of a securesystemslib key dict (no ``sha256:`` prefix)."""
    return hashlib.sha256(canonical_json(key_dict)).hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    """The securesystemslib key id of an Ed25519 public key (64 lowercase hex digits)."""
    return _keyid_of({"keytype": KEYTYPE, "scheme": SCHEME, "keyval": {"public": public_key_hex(public_key)}})
