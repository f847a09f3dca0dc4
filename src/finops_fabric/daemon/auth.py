"""Bearer tokens for the daemon: ``<store>/tokens.json`` holds SHA-256 hashes, never a token.

Roles and what they may do::

    operator  decide, read
    deployer  deploy (and roll back), read
    auditor   read

A token carries one or more roles. ``mu daemon`` writes a token for the local operator to
``<store>/daemons/<env>.token`` (mode 0600) with the roles operator and deployer, so the
person who started the daemon can deploy to it and decide through it with no setup.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finops_fabric.canonical import write_bytes_atomic
from finops_fabric.errors import InputError, Location

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "TokenBook",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke",
    "revoke_local",
]

PERMISSIONS: dict[str, frozenset[str]] = {
    "operator": frozenset({"decide", "read"}),
    "deployer": frozenset({"deploy", "read"}),
    "auditor": frozenset({"read"}),
}
ROLES = tuple(PERMISSIONS)
TOKEN_PREFIX = "mu_"  # noqa: S105 - a prefix, not a secret
ID_LENGTH = 12  # a token's id: the first hex digits of its SHA-256 (never the token itself)
MIN_ID_PREFIX = 6


def tokens_path(home: Path) -> Path:
    return Path(home) / "tokens.json"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    lock = Path(home) / ".tokens.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read {path}: {exc}", code="tokens.unreadable", location=Location(file=str(path))
        ) from exc
    tokens = doc.get("tokens") if isinstance(doc, dict) else None
    if not isinstance(tokens, list):
        raise InputError(
            f"{path} is not a token list", code="tokens.unreadable", location=Location(file=str(path))
        )
    return [t for t in tokens if isinstance(t, dict)]


def _write(path: Path, tokens: list[dict[str, Any]]) -> None:
    data = json.dumps({"tokens": tokens}, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    write_bytes_atomic(path, data, mode=0o600)


def read_tokens(home: Path) -> list[dict[str, Any]]:
    """The entries of ``<home>/tokens.json`` (hashes, roles, labels)."""
    return _read(tokens_path(home))


def add_token_entry(home: Path, entry: dict[str, Any]) -> None:
    with _locked(home):
        path = tokens_path(home)
        _write(path, [*_read(path), entry])


def remove_token_entry(home: Path, sha256: str) -> bool:
    with _locked(home):
        path = tokens_path(home)
        tokens = _read(path)
        kept = [t for t in tokens if t.get("sha256") != sha256]
        if len(kept) != len(tokens):
            _write(path, kept)
        return len(kept) != len(tokens)


def _check_roles(roles: list[str]) -> None:
    bad = [r for r in roles if r not in PERMISSIONS]
    if bad or not roles:
        raise InputError(
            f"unknown role {', '.join(bad) or '(none)'}; roles are: {', '.join(ROLES)}", code="tokens.role"
        )


def create_token(
    home: Path, roles: list[str], *, local_env: str | None = None, label: str = "", storage: Any = None
) -> str:
    """Make a new token with ``roles``, store only its hash, and return it (shown once).
    ``local_env``: the local operator's token for that env, replacing the previous one.
    ``storage``: keep the hash in that environment's database (every daemon of it accepts the
    token) rather than in the store's tokens.json."""
    _check_roles(roles)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    entry: dict[str, Any] = {
        "sha256": hash_token(token),
        "roles": sorted(set(roles)),
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "label": label,
    }
    if local_env is not None:
        entry["local_env"] = local_env
    if storage is not None:
        storage.put_token(entry)
        return token
    path = tokens_path(home)
    with _locked(home):
        tokens = [t for t in _read(path) if local_env is None or t.get("local_env") != local_env]
        tokens.append(entry)
        _write(path, tokens)
    return token


def revoke_local(home: Path, env: str) -> None:
    """Remove the local operator's token of ``env`` (at daemon shutdown)."""
    path = tokens_path(home)
    with _locked(home):
        tokens = _read(path)
        kept = [t for t in tokens if t.get("local_env") != env]
        if len(kept) != len(tokens):
            _write(path, kept)


def token_id(entry: dict[str, Any]) -> str:
    return str(entry.get("sha256", ""))[:ID_LENGTH]


def list_tokens(home: Path, storage: Any = None) -> list[dict[str, Any]]:
    """Every token of the store (or of ``storage``), by id (a prefix of its hash): roles, label,
    when created."""
    out = []
    for t in _read(tokens_path(home)) if storage is None else storage.token_entries():
        row = {
            "id": token_id(t),
            "roles": sorted(str(r) for r in t.get("roles", [])),
            "label": str(t.get("label", "")),
            "created": str(t.get("created", "")),
        }
        if "local_env" in t:
            row["local_env"] = str(t["local_env"])
        out.append(row)
    return out


def revoke(home: Path, token_id_prefix: str, storage: Any = None) -> dict[str, Any]:
    """Remove the one token whose hash starts with ``token_id_prefix``; a running daemon stops
    accepting it at its next request (it re-reads the file when it changes). Returns its row."""
    prefix = token_id_prefix.strip().lower()
    if len(prefix) < MIN_ID_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
        raise InputError(
            f"--id={token_id_prefix!r} is not a token id (at least {MIN_ID_PREFIX} hex digits, "
            "as `mu daemon token list` shows)",
            code="tokens.bad_id",
        )
    path = tokens_path(home)
    lock = _locked(home) if storage is None else contextlib.nullcontext()  # a storage locks its own
    with lock:
        tokens = _read(path) if storage is None else storage.token_entries()
        where = path if storage is None else storage.where
        hits = [t for t in tokens if str(t.get("sha256", "")).startswith(prefix)]
        if not hits:
            raise InputError(
                f"no token has id {prefix} in {where}",
                code="tokens.unknown_id",
                hint="`mu daemon token list` shows the ids",
            )
        if len(hits) > 1:
            raise InputError(
                f"id {prefix} matches {len(hits)} tokens; give more of its digits", code="tokens.ambiguous_id"
            )
        if storage is not None:
            storage.delete_token(str(hits[0].get("sha256")))
        else:
            _write(path, [t for t in tokens if t is not hits[0]])
    row = {"id": token_id(hits[0]), "roles": sorted(str(r) for r in hits[0].get("roles", []))}
    row["label"] = str(hits[0].get("label", ""))
    return row


class TokenBook:
    """The token hashes of a store, re-read when ``tokens.json`` changes (one ``stat`` a request)."""

    #: How often the tokens of a database (shared by a fleet) are read again, in seconds: a
    #: token revoked there is refused by every daemon within this time.
    SHARED_REFRESH_S = 1.0

    def __init__(self, home: Path, storage: Any = None) -> None:
        self.path = tokens_path(home)
        self._stamp: tuple[int, int, int] | None = None
        self._roles: dict[str, frozenset[str]] = {}
        self._storage = storage
        self._shared: dict[str, frozenset[str]] = {}
        self._shared_at = -1e9

    def _refresh_shared(self) -> None:
        now = time.monotonic()
        if now - self._shared_at < self.SHARED_REFRESH_S:
            return
        self._shared_at = now
        try:
            tokens = self._storage.token_entries()
        except Exception:
            tokens = []  # the database is unreachable: its tokens let nobody in meanwhile
        self._shared = {
            str(t.get("sha256")): frozenset(r for r in t.get("roles", []) if r in PERMISSIONS) for t in tokens
        }

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp == self._stamp:
            return
        try:
            tokens = _read(self.path)
        except InputError:
            tokens = []  # an unreadable token file lets nobody in
        self._roles = {
            str(t.get("sha256")): frozenset(r for r in t.get("roles", []) if r in PERMISSIONS) for t in tokens
        }
        self._stamp = stamp

    def roles(self, token: str) -> frozenset[str] | None:
        """The roles of ``token``, or ``None`` when it is not a known token."""
        self._refresh()
        digest = hash_token(token)
        for known, roles in self._roles.items():
            if hmac.compare_digest(known, digest):
                return roles
        if self._storage is not None:
            self._refresh_shared()
            for known, roles in self._shared.items():
                if hmac.compare_digest(known, digest):
                    return roles
        return None

    @staticmethod
    def allows(roles: frozenset[str], permission: str) -> bool:
        return any(permission in PERMISSIONS[r] for r in roles)
