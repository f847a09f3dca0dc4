"""Which database an environment uses, and how a database URL is shown.

``mu daemon --env=ENV --database=URL`` wins; otherwise ``<store>/config.json``::

    {"environments": {"production": {"database": "postgresql://fabric@db.example.com/fabric_production"}}}

and otherwise the embedded default, SQLite in ``<store>/daemon-<ENV>.db``. A URL's password is
never printed: :func:`redact` replaces it (and a ``password=`` parameter) with ``***``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from finops_fabric.errors import InputError, Location

__all__ = ["configured_environments", "database_for", "redact", "scheme_of"]

_SCHEMES = ("postgresql", "postgres", "sqlite")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a malformed database URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{host}"
    query = _PASSWORD_PARAM.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scheme_of(url: str) -> str:
    """``postgresql`` or ``sqlite``; :class:`InputError` (``storage.url``) for anything else."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise InputError(
            f"{redact(url)!r} is not a database URL this daemon can use: give "
            "postgresql://USER@HOST[:PORT]/DATABASE (or sqlite:///PATH)",
            code="storage.url",
        )
    return "sqlite" if scheme == "sqlite" else "postgresql"


def configured_environments(home: Path) -> list[str]:
    """The environments whose database config.json names (sorted); none when it names none."""
    path = Path(home) / "config.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    envs = doc.get("environments") if isinstance(doc, dict) else None
    if not isinstance(envs, dict):
        return []
    return sorted(str(e) for e, v in envs.items() if isinstance(v, dict) and v.get("database"))


def database_for(home: Path, env: str, override: str | None = None) -> str | None:
    """The database URL ``env`` uses (``override``, else ``environments.<env>.database`` of the
    store's config.json), or ``None`` for the embedded SQLite default."""
    if override:
        scheme_of(override)
        return override
    path = Path(home) / "config.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read {path}: {exc}", code="config.unreadable", location=Location(file=str(path))
        ) from exc
    envs = doc.get("environments") if isinstance(doc, dict) else None
    entry = envs.get(env) if isinstance(envs, dict) else None
    if entry is None:
        return None
    url = entry.get("database") if isinstance(entry, dict) else None
    if url is None and isinstance(entry, dict):
        return None
    if not isinstance(url, str) or not url:
        raise InputError(
            f"{path}: environments.{env}.database must be a database URL (postgresql://…)",
            code="config.database",
            location=Location(file=str(path)),
        )
    scheme_of(url)
    return url
