"""One storage interface for what the daemon persists, two backends (SQLite, PostgreSQL).

- :func:`open_storage` (``home``, ``env``, ``database_url``): the environment's
  :class:`Storage`, migrated (a database newer than the code is refused);
- :func:`database_for`: which database an environment uses (``--database``, else
  ``environments.<env>.database`` of config.json, else SQLite); :func:`redact` hides passwords.
"""

from finops_fabric.storage.base import (
    SHADOW_COLUMNS,
    DecisionLog,
    Storage,
    StorageUnavailable,
    default_process,
    external_storage,
    open_storage,
)
from finops_fabric.storage.config import database_for, redact, scheme_of
from finops_fabric.storage.migrations import LATEST, SchemaTooNew

__all__ = [
    "LATEST",
    "SHADOW_COLUMNS",
    "DecisionLog",
    "SchemaTooNew",
    "Storage",
    "StorageUnavailable",
    "database_for",
    "default_process",
    "external_storage",
    "open_storage",
    "redact",
    "scheme_of",
]
