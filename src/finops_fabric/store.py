"""The workspace ("store"): the operator key, the receipt ledger, content-addressed objects.

Layout of ``<home>`` (default ``./.fabric``, else ``--home`` or ``FABRIC_HOME``)::

    keys/operator.key   Ed25519 private key (0600)     keys/operator.pub   its public key
    fabric.db           SQLite (WAL): the ledger, one unbroken hash chain of receipts
    objects/<kind>/<hex>  content-addressed bytes, named by their SHA-256
    cache/<hex>           generation cache entries (self-checking)

Every file appears complete or not at all (temporary file + rename). The ledger appends in
one ``BEGIN IMMEDIATE`` transaction: read the latest receipt hash, link, seal, insert, so two
processes appending at once still produce one chain. A unique index on
``previous_receipt_hash`` (and on the single genesis row) makes a fork impossible at the
database level as well.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .canonical import canonical_json, is_sha256, sha256_hex, write_bytes_atomic
from .errors import CheckFailed, InputError, Location
from .files import PRIVATE_FILE, private_dir, private_file
from .keys import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    generate_keypair,
    load_private_key,
    load_public_key,
    public_key_pem,
)
from .receipts import RECEIPT_FORMAT, add_signature, seal

__all__ = ["DEFAULT_HOME", "ENV_HOME", "SCHEMA", "InitResult", "Store"]

ENV_HOME = "FABRIC_HOME"
DEFAULT_HOME = ".fabric"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
    receipt_hash          TEXT UNIQUE NOT NULL,
    kind                  TEXT NOT NULL,
    previous_receipt_hash TEXT UNIQUE,
    ontology_hash         TEXT,
    enforcer_hash         TEXT,
    body                  TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_genesis
    ON ledger ((previous_receipt_hash IS NULL)) WHERE previous_receipt_hash IS NULL;
CREATE INDEX IF NOT EXISTS ledger_kind ON ledger (kind, seq);
CREATE INDEX IF NOT EXISTS ledger_ontology ON ledger (ontology_hash);
CREATE INDEX IF NOT EXISTS ledger_enforcer ON ledger (enforcer_hash);
"""

_KIND = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_BUSY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class InitResult:
    """What :meth:`Store.init` did: ``created`` is False when the store existed already;
    ``keys_created`` is False when an existing operator key was kept."""

    home: Path
    created: bool
    keys_created: bool

    def message(self) -> str:
        if self.created:
            return f"created store at {self.home} with operator key {self.home / 'keys' / 'operator.pub'}"
        kept = "kept the existing operator key" if not self.keys_created else "created an operator key"
        return f"store at {self.home} exists already; {kept}"


def _nested_str(obj: Mapping[str, Any], section: str, key: str) -> str | None:
    inner = obj.get(section)
    value = inner.get(key) if isinstance(inner, Mapping) else None
    return value if isinstance(value, str) else None


class Store:
    """One workspace directory. Cheap to construct; nothing is touched until a method runs."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home).expanduser().absolute()
        self.keys_dir = self.home / "keys"
        self.objects_dir = self.home / "objects"
        self.cache_dir = self.home / "cache"
        self.db_path = self.home / "fabric.db"
        self.operator_key_path = self.keys_dir / "operator.key"
        self.operator_public_key_path = self.keys_dir / "operator.pub"

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    # --- locating, creating, opening --------------------------------------------------------

    @classmethod
    def locate(cls, home: str | os.PathLike[str] | None = None) -> Store:
        """``home`` (``--home``) if given, else ``$FABRIC_HOME`` if set, else ``./.fabric``."""
        if home is not None and str(home):
            return cls(home)
        env = os.environ.get(ENV_HOME)
        if env:
            return cls(env)
        return cls(Path.cwd() / DEFAULT_HOME)

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Store:
        """Locate the store and require that it exists (see :meth:`require`)."""
        return cls.locate(home).require()

    def exists(self) -> bool:
        return self.db_path.is_file()

    def require(self) -> Store:
        """Return ``self`` if the store has been initialised, else raise :class:`InputError`."""
        if not self.exists():
            raise InputError(
                f"no store at {self.home}; run `mu init`",
                code="store.missing",
                location=Location(file=str(self.home)),
                hint=f"or point --home / {ENV_HOME} at an existing store",
            )
        return self

    def init(self) -> InitResult:
        """Create the store (directories, operator key pair, database). Idempotent: an existing
        store is completed if parts are missing, and an existing operator key is never replaced.
        """
        existed = self.exists()
        try:
            for d in (self.home, self.keys_dir, self.objects_dir, self.cache_dir):
                private_dir(d)  # 0700 whatever the umask
            private_file(self.db_path)  # 0600 before SQLite opens it (its -wal and -shm follow)
        except OSError as exc:
            raise InputError(
                f"cannot create store at {self.home}: {exc.strerror or exc}",
                code="store.unwritable",
                location=Location(file=str(self.home)),
            ) from exc
        keys_created = self._ensure_operator_key()
        with self._connect() as db:
            db.executescript(SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        return InitResult(home=self.home, created=not existed, keys_created=keys_created)

    def _ensure_operator_key(self) -> bool:
        key_path, pub_path = self.operator_key_path, self.operator_public_key_path
        if key_path.exists():
            if not pub_path.exists():  # recover the public half from the private key
                public = load_private_key(key_path).public_key()
                with contextlib.suppress(FileExistsError):
                    write_bytes_atomic(pub_path, public_key_pem(public), exclusive=True, mode=PRIVATE_FILE)
            return False
        if pub_path.exists():
            raise InputError(
                f"{pub_path} exists without its private key {key_path.name}",
                code="store.key_missing",
                location=Location(file=str(key_path)),
                hint="restore operator.key, or move operator.pub away to create a new key",
            )
        try:
            generate_keypair(self.keys_dir / "operator", public_mode=PRIVATE_FILE)
        except InputError as exc:
            if exc.code != "keys.exists":  # another process created it at the same moment
                raise
            return False
        return True

    # --- the operator key -------------------------------------------------------------------

    def operator_private_key(self) -> Ed25519PrivateKey:
        return load_private_key(self.operator_key_path)

    def operator_public_key(self) -> Ed25519PublicKey:
        return load_public_key(self.operator_public_key_path)

    # --- the ledger -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(
                f"cannot open {self.db_path}: {exc}",
                code="store.unreadable",
                location=Location(file=str(self.db_path)),
            ) from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            yield db
        except sqlite3.Error as exc:
            raise InputError(
                f"store database error: {exc}",
                code="store.database",
                location=Location(file=str(self.db_path)),
                hint="another mu process may hold the store; retry, or check the file is a mu store",
            ) from exc
        finally:
            db.close()

    def append(
        self,
        receipt_without_hash: Mapping[str, Any],
        private_key: Ed25519PrivateKey | None = None,
        *,
        cosigners: Sequence[Ed25519PrivateKey] = (),
    ) -> dict[str, Any]:
        """Link ``receipt_without_hash`` to the ledger, seal it and store it; return it sealed.

        In one ``BEGIN IMMEDIATE`` transaction: read the latest receipt hash, set
        ``previous_receipt_hash`` (``None`` for the first receipt), seal with ``private_key``
        (default: the operator key) plus any ``cosigners``, insert. ``format`` defaults to
        :data:`~finops_fabric.receipts.RECEIPT_FORMAT`; ``kind`` is required.
        """
        if "receipt_hash" in receipt_without_hash or "signatures" in receipt_without_hash:
            raise ValueError("append() takes an unsealed receipt (no receipt_hash or signatures)")
        kind = receipt_without_hash.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ValueError("a receipt needs a non-empty string `kind`")
        draft = dict(receipt_without_hash)
        draft.setdefault("format", RECEIPT_FORMAT)
        canonical_json(draft)  # refuse unrepresentable content before taking the lock
        self.require()
        signer = private_key if private_key is not None else self.operator_private_key()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT receipt_hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
                draft["previous_receipt_hash"] = row[0] if row else None
                sealed = seal(draft, signer)
                for cosigner in cosigners:
                    sealed = add_signature(sealed, cosigner)
                db.execute(
                    "INSERT INTO ledger (receipt_hash, kind, previous_receipt_hash,"
                    " ontology_hash, enforcer_hash, body) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        sealed["receipt_hash"],
                        kind,
                        sealed["previous_receipt_hash"],
                        _nested_str(sealed, "inputs", "ontology_hash"),
                        _nested_str(sealed, "outputs", "enforcer_hash"),
                        canonical_json(sealed).decode("utf-8"),
                    ),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return sealed

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        self.require()
        with self._connect() as db:
            rows = db.execute(sql, params).fetchall()
        out: list[dict[str, Any]] = []
        for seq, body in rows:
            try:
                doc = json.loads(body)
            except (TypeError, ValueError):
                doc = None
            if not isinstance(doc, dict):
                raise CheckFailed(
                    f"ledger entry {seq} in {self.db_path} is not a JSON object", code="store.ledger_corrupt"
                )
            out.append(doc)
        return out

    def receipts(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every receipt (or every receipt of ``kind``) in ledger order, oldest first."""
        if kind is None:
            return self._query("SELECT seq, body FROM ledger ORDER BY seq")
        return self._query("SELECT seq, body FROM ledger WHERE kind = ? ORDER BY seq", (kind,))

    def latest(self, kind: str | None = None) -> dict[str, Any] | None:
        """The newest receipt (of ``kind``), or ``None`` when there is none."""
        if kind is None:
            rows = self._query("SELECT seq, body FROM ledger ORDER BY seq DESC LIMIT 1")
        else:
            rows = self._query(
                "SELECT seq, body FROM ledger WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,)
            )
        return rows[0] if rows else None

    def find(self, receipt_hash: str) -> dict[str, Any] | None:
        """The receipt with this ``receipt_hash``, or ``None``."""
        rows = self._query("SELECT seq, body FROM ledger WHERE receipt_hash = ?", (receipt_hash,))
        return rows[0] if rows else None

    # --- content-addressed objects ----------------------------------------------------------

    def _object_path(self, kind: str, digest: str) -> Path:
        if not _KIND.fullmatch(kind):
            raise ValueError(f"bad object kind {kind!r}")
        if not is_sha256(digest):
            raise InputError(
                f"not a hash: {digest!r}",
                code="store.bad_digest",
                hint="hashes are written sha256:<64 lowercase hex>",
            )
        return self.objects_dir / kind / digest.removeprefix("sha256:")

    def put_object(self, data: bytes, kind: str, *, durable: bool = True) -> str:
        """Store ``data`` under ``objects/<kind>/<hex>``; return ``sha256:<hex>``. An existing
        object is verified and rewritten if its bytes are damaged."""
        digest = sha256_hex(data)
        path = self._object_path(kind, digest)
        try:
            if path.is_file() and sha256_hex(path.read_bytes()) == digest:
                return digest
            private_dir(path.parent)
            write_bytes_atomic(path, data, durable=durable, mode=PRIVATE_FILE)
        except OSError as exc:
            raise InputError(
                f"cannot write object {path}: {exc.strerror or exc}",
                code="store.unwritable",
                location=Location(file=str(path)),
            ) from exc
        return digest

    def get_object(self, kind: str, digest: str) -> bytes:
        """The bytes of an object, re-hashed: :class:`CheckFailed` (``store.object_corrupt``)
        if they do not match ``digest``, :class:`InputError` (``store.object_missing``) if absent."""
        path = self._object_path(kind, digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise InputError(
                f"object {digest} ({kind}) is not in the store {self.home}",
                code="store.object_missing",
                location=Location(file=str(path)),
            ) from exc
        except OSError as exc:
            raise InputError(
                f"cannot read object {path}: {exc.strerror or exc}",
                code="store.unreadable",
                location=Location(file=str(path)),
            ) from exc
        actual = sha256_hex(data)
        if actual != digest:
            raise CheckFailed(
                f"object {path} is corrupt: its bytes hash to {actual}, not {digest}",
                code="store.object_corrupt",
                location=Location(file=str(path)),
                hint="the store was modified outside mu; restore it from a backup",
            )
        return data

    def put_tree(self, files: Mapping[str, bytes]) -> dict[str, str]:
        """Store each file of an enforcer snapshot as a blob; return the listing path → digest."""
        listing = {name: self.put_object(data, "blob", durable=False) for name, data in sorted(files.items())}
        os.sync()  # one flush for the whole batch instead of an fsync per file
        return listing

    def get_tree(self, listing: Mapping[str, str]) -> dict[str, bytes]:
        """Read back a snapshot (path → digest), every blob verified."""
        return {name: self.get_object("blob", digest) for name, digest in sorted(listing.items())}

    # --- generation cache -------------------------------------------------------------------

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / hashlib.sha256(key.encode("utf-8")).hexdigest()

    def cache_get(self, key: str) -> bytes | None:
        """The cached bytes for ``key``, or ``None`` (also when the entry is damaged)."""
        try:
            raw = self._cache_path(key).read_bytes()
        except OSError:
            return None
        header, sep, data = raw.partition(b"\n")
        if not sep or header.decode("ascii", "replace") != sha256_hex(data):
            return None
        return data

    def cache_put(self, key: str, data: bytes) -> None:
        """Remember ``data`` for ``key`` (atomic; the entry carries its own hash)."""
        path = self._cache_path(key)
        try:
            private_dir(path.parent)
            # A cache entry lost in a crash is only a miss, and a damaged one fails its own hash.
            entry = sha256_hex(data).encode("ascii") + b"\n" + data
            write_bytes_atomic(path, entry, durable=False, mode=PRIVATE_FILE)
        except OSError as exc:
            raise InputError(
                f"cannot write cache entry {path}: {exc.strerror or exc}",
                code="store.unwritable",
                location=Location(file=str(path)),
            ) from exc
