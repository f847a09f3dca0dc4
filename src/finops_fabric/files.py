"""Reading the small documents a user hands to `mu` (receipts, DSSE envelopes, keys): one way to
read a file with errors that name it, and one strict JSON reader whose errors name the line.

Each caller picks the noun (``what``) and the error-code prefix (``receipt``, ``envelope``,
``keys``) so its messages and codes stay its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import InputError, Location

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "parse_strict_json",
    "private_dir",
    "private_file",
    "read_file",
    "strict_json_loads",
]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """``mkdir -p path``: each directory it creates is 0700 whatever the umask (existing ones are
    left as they are). ``OSError`` is left to the caller."""
    missing: list[Path] = []
    p = Path(path)
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR)
        except FileExistsError:
            if not d.is_dir():
                raise
            continue
        os.chmod(d, PRIVATE_DIR)  # exact bits: mkdir's mode is filtered by the umask
    return Path(path)


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 (whatever the umask) unless it exists; an existing
    file is left as it is. ``OSError`` is left to the caller."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, PRIVATE_FILE)
    except FileExistsError:
        return Path(path)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return Path(path)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def strict_json_loads(text: str | bytes) -> Any:
    """JSON that is UTF-8, has no duplicate keys and no NaN/Infinity; ``ValueError`` otherwise
    (``json.JSONDecodeError`` keeps its line and column)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def read_file(
    p: Path,
    what: str,
    prefix: str,
    *,
    max_bytes: int | None = None,
    too_large_as: str | None = None,
    too_large_code: str | None = None,
    directory_code: str | None = None,
) -> bytes:
    """The bytes of ``p``; :class:`InputError` ``<prefix>.missing`` when there is no file and
    ``<prefix>.unreadable`` when it cannot be read; larger than ``max_bytes`` is
    ``too_large_code`` (default ``<prefix>.unreadable``), "too large to be a ``too_large_as``"
    (default ``what``), and no more than ``max_bytes + 1`` bytes are read of any file (a
    device or a pipe too). A directory is named as such when
    ``directory_code`` is given (else it is an unreadable file)."""
    loc = Location(file=str(p))

    def too_large() -> InputError:
        return InputError(
            f"{p} is too large to be a {too_large_as or what}",
            code=too_large_code or f"{prefix}.unreadable",
            location=loc,
        )

    try:
        if max_bytes is None:
            return p.read_bytes()
        if p.stat().st_size > max_bytes:
            raise too_large()
        with p.open("rb") as fh:  # at most one byte more than allowed, whatever the file is
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise too_large()
        return data
    except FileNotFoundError as exc:
        raise InputError(f"no {what} at {p}", code=f"{prefix}.missing", location=loc) from exc
    except IsADirectoryError as exc:
        if directory_code is None:
            raise InputError(
                f"cannot read {what} {p}: {exc.strerror or exc}", code=f"{prefix}.unreadable", location=loc
            ) from exc
        raise InputError(f"{p} is a directory, not a {what}", code=directory_code, location=loc) from exc
    except OSError as exc:
        raise InputError(
            f"cannot read {what} {p}: {exc.strerror or exc}", code=f"{prefix}.unreadable", location=loc
        ) from exc


def parse_strict_json(raw: bytes, p: Path, what: str, code: str) -> Any:
    """:func:`strict_json_loads` of a file's bytes; :class:`InputError` ``code`` naming the line
    of a byte that is not UTF-8 or of the JSON error."""
    try:
        return strict_json_loads(raw)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{what} {p} is not UTF-8 text (line {line})",
            code=code,
            location=Location(file=str(p), line=line),
        ) from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{what} {p} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            code=code,
            location=Location(file=str(p), line=exc.lineno),
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise InputError(
            f"{what} {p} is not valid JSON: {exc}", code=code, location=Location(file=str(p))
        ) from exc
