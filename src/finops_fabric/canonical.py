"""Canonical bytes and hashes: RFC 8785 JSON, SHA-256 in the product's ``sha256:<hex>`` form.

Everything that is hashed or signed as JSON goes through :func:`canonical_json`, the RFC 8785
JSON Canonicalization Scheme (JCS) as implemented by the ``rfc8785`` package: object keys sorted
by their UTF-16 code units, no insignificant whitespace, numbers in their ECMAScript shortest
form. JCS cannot represent integers outside +/-(2**53 - 1) or floats that are not finite; such
values are refused with an :class:`~finops_fabric.errors.InputError`, never silently rounded.

This module also holds the one atomic-write primitive every writer of the product uses
(receipts, store objects, keys): the bytes go to a temporary file in the destination directory,
are flushed to disk, and are renamed into place, so a reader sees the whole file or nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Any, cast

import rfc8785

from .errors import InputError, Location

__all__ = [
    "SHA256_PATTERN",
    "canonical_json",
    "is_sha256",
    "sha256_file",
    "sha256_hex",
    "write_bytes_atomic",
]

#: The one written form of a hash: ``sha256:`` and 64 lowercase hex digits.
SHA256_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")

_CHUNK = 1 << 20


def canonical_json(obj: object) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``obj`` (dicts, lists, tuples, str, int, float,
    bool, None).

    Raises :class:`InputError` (code ``canonical.unrepresentable``) for values JCS cannot
    represent: integers beyond the IEEE 754 safe range, NaN or infinite floats, non-string keys,
    lone surrogates, or other Python types.
    """
    try:
        return bytes(rfc8785.dumps(cast(Any, obj)))
    except rfc8785.CanonicalizationError as exc:
        raise InputError(
            f"value cannot be written as canonical JSON (RFC 8785): {exc}",
            code="canonical.unrepresentable",
            hint="integers must lie within +/-(2**53 - 1), floats must be finite; "
            "write exact amounts as strings",
        ) from exc
    except RecursionError as exc:
        raise InputError(
            "value is nested too deeply to be written as canonical JSON",
            code="canonical.unrepresentable",
        ) from exc


def sha256_hex(data: bytes) -> str:
    """``sha256:`` followed by the 64 lowercase hex digits of the SHA-256 of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_sha256(value: object) -> bool:
    """True when ``value`` is a string written exactly ``sha256:<64 lowercase hex>``."""
    return isinstance(value, str) and SHA256_PATTERN.fullmatch(value) is not None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The ``sha256:<hex>`` of a file's bytes, read in chunks (any size, constant memory).

    Raises :class:`InputError` naming the file when it is missing or cannot be read.
    """
    p = Path(path)
    digest = hashlib.sha256()
    try:
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
    except FileNotFoundError as exc:
        raise InputError(
            f"no such file: {p}", code="fabric.file_missing", location=Location(file=str(p))
        ) from exc
    except IsADirectoryError as exc:
        raise InputError(
            f"{p} is a directory, not a file", code="fabric.file_unreadable", location=Location(file=str(p))
        ) from exc
    except OSError as exc:
        raise InputError(
            f"cannot read {p}: {exc.strerror or exc}",
            code="fabric.file_unreadable",
            location=Location(file=str(p)),
        ) from exc
    return "sha256:" + digest.hexdigest()


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    mode: int | None = None,
    exclusive: bool = False,
    durable: bool = True,
) -> Path:
    """Write ``data`` to ``path`` so that it appears complete or not at all.

    The bytes go to a fresh temporary file in the same directory (created with ``O_EXCL``),
    are fsynced, and are then moved into place; the directory is fsynced after the rename.

    ``mode``: when given, the file is created with exactly these permission bits from the very
    first moment (``0o600`` for a private key is never readable by others, not even briefly);
    otherwise the usual ``0o666`` filtered by the process umask.

    ``exclusive``: refuse to replace an existing file (``FileExistsError``); the final step is a
    hard link, which fails atomically when the name exists.

    ``durable``: fsync the file and its directory (the default). A caller writing many files
    passes ``False`` and makes the batch durable once with ``os.sync()``; atomicity (complete or
    absent) does not depend on it.

    Returns the path written. ``OSError`` is left to the caller, who knows what the file is.
    """
    target = Path(path)
    directory = target.parent
    tmp = directory / f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o666 if mode is None else mode)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # exact bits, whatever the umask
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            _link_exclusive(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if durable:
        _fsync_directory(directory)
    return target


def _link_exclusive(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` unless ``target`` exists (atomic where links work)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:
        # A file system without hard links: check, then rename (a narrow race remains).
        if target.exists() or target.is_symlink():
            raise FileExistsError(str(target)) from None
        os.replace(tmp, target)
