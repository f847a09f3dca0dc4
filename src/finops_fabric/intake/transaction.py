"""Transactions as they arrive: one reader for the daemon's request bodies and for the files
given to ``mu decide``, ``mu test --transaction`` and ``mu diagnose``.

A transaction is one JSON object read by :func:`~finops_fabric.intake.strict_json.loads`
(no duplicate keys, lone surrogates, NaN/Infinity, numbers beyond ±(2**53 - 1), nesting
deeper than 32, or more bytes than the limit), whose ``id``, when present, is a string.
Values are kept as given: ``" 1000 "`` stays that string (the enforcer judges it).

Every refusal is a :class:`TransactionRefused` (an :class:`~finops_fabric.errors.InputError`,
exit 2) with a stable code ``tx.<what>`` and the HTTP status that fits it (400, 413 or 422).

The byte limit is 64 KiB unless ``<store>/config.json`` says otherwise::

    {"daemon": {"max_body_bytes": 131072}}

(``mu daemon --max-body-bytes=N`` overrides it for one daemon).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finops_fabric.errors import InputError, Location
from finops_fabric.files import read_file
from finops_fabric.intake.strict_json import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_BYTES,
    JsonRefused,
    Limits,
    loads,
    too_large,
)

__all__ = [
    "MAX_BODY_CAP",
    "TransactionRefused",
    "body_limit",
    "parse_transaction",
    "read_transaction",
    "refused",
]

#: The largest limit a configuration may set (a transaction is a small document).
MAX_BODY_CAP = 16 * 1024 * 1024
CONFIG_KEY = "max_body_bytes"


class TransactionRefused(InputError):
    """A transaction (or request body) that is refused; ``status`` is the HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int,
        location: Location | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message, code=code, location=location)
        self.status = status
        self.line = line
        self.column = column

    def details(self) -> dict[str, Any]:
        """``line`` and ``column`` for an HTTP error body, when known."""
        out: dict[str, Any] = {}
        if self.line is not None:
            out["line"] = self.line
        if self.column is not None:
            out["column"] = self.column
        return out


def refused(exc: JsonRefused, prefix: str, source: str | None = None) -> TransactionRefused:
    """``exc`` as a :class:`TransactionRefused` with code ``<prefix>.<code>``; ``source`` names
    the file (the location then holds it and the line)."""
    where = exc.where()
    message = exc.message + (f" ({where})" if where else "")
    location = Location(file=source, line=exc.line) if source else None
    return TransactionRefused(
        message,
        code=f"{prefix}.{exc.code}",
        status=exc.status,
        location=location,
        line=exc.line,
        column=exc.column,
    )


def parse_transaction(
    body: bytes, limits: Limits = DEFAULT_LIMITS, *, source: str | None = None
) -> dict[str, Any]:
    """The transaction in ``body``; :class:`TransactionRefused` when it is not acceptable."""
    try:
        tx = loads(body, limits)
    except JsonRefused as exc:
        raise refused(exc, "tx", source) from None
    loc = Location(file=source) if source else None
    if not isinstance(tx, dict):
        raise TransactionRefused(
            "a transaction is one JSON object", code="tx.not_object", status=400, location=loc
        )
    tx_id = tx.get("id", "")
    if not isinstance(tx_id, str):
        shown = json.dumps(tx_id, default=str)
        raise TransactionRefused(
            f"the transaction id must be a string (or absent), not {shown[:40]}",
            code="tx.id_not_string",
            status=422,
            location=loc,
        )
    return tx


def read_transaction(path: Path, limits: Limits | None = None) -> dict[str, Any]:
    """A transaction file: :class:`InputError` (exit 2) naming the file and line of what is wrong."""
    limits = limits if limits is not None else DEFAULT_LIMITS
    if limits.max_bytes is not None:
        try:
            size: int | None = path.stat().st_size if path.is_file() else None
        except OSError:
            size = None  # read_file names the problem
        if size is not None and size > limits.max_bytes:
            raise refused(too_large(size, limits.max_bytes), "tx", str(path))
    raw = read_file(
        path,
        "transaction",
        "tx",
        max_bytes=limits.max_bytes,
        too_large_code="tx.too_large",
        directory_code="tx.unreadable",
    )
    return parse_transaction(raw, limits, source=str(path))


def body_limit(home: Path | None, override: int | None = None) -> int:
    """The byte limit of a transaction: ``override`` if given, else ``daemon.max_body_bytes``
    of ``<home>/config.json``, else 64 KiB. :class:`InputError` for a value that is not a whole
    number of bytes between 1 and 16 MiB, or for a config.json that cannot be read."""
    if override is not None:
        return _check_limit(override, "--max-body-bytes")
    if home is None:
        return DEFAULT_MAX_BYTES
    path = Path(home) / "config.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return DEFAULT_MAX_BYTES
    except OSError as exc:
        raise InputError(
            f"cannot read {path}: {exc.strerror or exc}",
            code="config.unreadable",
            location=Location(str(path)),
        ) from exc
    try:
        doc = loads(raw, Limits(max_bytes=None, max_depth=64))
    except JsonRefused as exc:
        raise InputError(
            f"{path}: {exc}", code="config.unreadable", location=Location(str(path), exc.line)
        ) from None
    section = doc.get("daemon") if isinstance(doc, dict) else None
    if not isinstance(section, dict) or CONFIG_KEY not in section:
        return DEFAULT_MAX_BYTES
    return _check_limit(section[CONFIG_KEY], f"{path}: daemon.{CONFIG_KEY}")


def _check_limit(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BODY_CAP:
        raise InputError(
            f"{what} must be a whole number of bytes from 1 to {MAX_BODY_CAP:,}, not {value!r}",
            code="config.max_body_bytes",
        )
    return value
