"""Signed tree heads of a log, and the directory of head files kept outside its database.

A head states what a log held when it was signed::

    {"log": "decisions", "env": "test", "tree_size": 17, "root_hash": "sha256:…",
     "chain_hash": "sha256:…", "timestamp": "2030-01-01T00:00:00Z",
     "compact_range": ["sha256:…", …], "signatures": [{"keyid": "…", "sig": "<base64>"}]}

``root_hash`` is the RFC 9162 Merkle root of the first ``tree_size`` leaves, ``chain_hash`` the
chain hash after row ``tree_size`` (logs with a row chain only), ``compact_range`` the tree's
right edge (:class:`~finops_fabric.transparency.chain.CompactRange`, it must fold to
``root_hash``), so a writer resumes from its newest head without re-reading the log. The
signature is Ed25519 over the RFC 8785 canonical JSON of everything but ``signatures``, with the
key ids receipts use; the receipt ledger's heads (``mu audit-trail --tree-head``) are the same
documents without ``chain_hash``.

:class:`HeadDirectory` writes one file per head, ``<size>.json`` (atomically, mode 0600, never
replaced by a head of a different root), plus ``latest.json``; :meth:`HeadDirectory.newest`
finds the newest head by file name as well as through ``latest.json``, so an older
``latest.json`` does not hide a newer head. :func:`post_head` hands a head to a witness.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature

from finops_fabric.canonical import canonical_json, is_sha256, write_bytes_atomic
from finops_fabric.errors import CheckFailed, InputError, Location
from finops_fabric.files import PRIVATE_FILE, private_dir
from finops_fabric.keys import Ed25519PrivateKey, Ed25519PublicKey, key_id
from finops_fabric.transparency.chain import CompactRange, from_hex, to_hex

__all__ = [
    "HeadDirectory",
    "HeadFile",
    "Verifier",
    "check_head",
    "head_payload",
    "head_range",
    "make_head",
    "now_stamp",
    "post_head",
    "read_head",
    "resume",
    "sign_head",
    "verifiers",
]

_NAME = re.compile(r"(0|[1-9][0-9]{0,18})\.json")
LATEST = "latest.json"


class Verifier(Protocol):
    """A trusted public key (e.g. :class:`finops_fabric.audit.TrustedKey`)."""

    def signed(self, sig: object, payload: bytes) -> bool: ...


class _PublicKey:
    def __init__(self, key: Ed25519PublicKey) -> None:
        self.key = key

    def signed(self, sig: object, payload: bytes) -> bool:
        try:
            self.key.verify(base64.b64decode(str(sig), validate=True), payload)
        except (binascii.Error, ValueError, InvalidSignature):
            return False
        return True


def verifiers(*keys: Ed25519PublicKey) -> dict[str, Verifier]:
    """Verifiers for these public keys, by key id."""
    return {key_id(k): _PublicKey(k) for k in keys}


def now_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_head(
    log: str,
    tree: CompactRange,
    *,
    env: str | None = None,
    chain: bytes | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The unsigned head of ``log`` over the leaves of ``tree``."""
    head: dict[str, Any] = {"log": log}
    if env is not None:
        head["env"] = env
    head.update(tree_size=tree.size, root_hash=to_hex(tree.root()))
    if chain is not None:
        head["chain_hash"] = to_hex(chain)
    head.update(timestamp=timestamp or now_stamp(), compact_range=tree.to_json())
    return head


def head_payload(head: Mapping[str, Any]) -> bytes:
    """The signed bytes: RFC 8785 of the head without ``signatures``."""
    return canonical_json({k: v for k, v in head.items() if k != "signatures"})


def sign_head(head: Mapping[str, Any], private_key: Ed25519PrivateKey | None) -> dict[str, Any]:
    """``head`` with ``signatures`` (empty without a key)."""
    body = {k: v for k, v in head.items() if k != "signatures"}
    sigs = []
    if private_key is not None:
        sigs.append(
            {
                "keyid": key_id(private_key.public_key()),
                "sig": base64.b64encode(private_key.sign(head_payload(body))).decode("ascii"),
            }
        )
    return {**body, "signatures": sigs}


def check_head(
    head: object,
    keys: Mapping[str, Verifier],
    *,
    log: str | None = None,
    env: str | None = None,
) -> str:
    """Check a head's form, that it is the head of ``log`` (and ``env``), and that a trusted key
    signed it; return that key id. Raises :class:`CheckFailed` (``audit.tree_head``)."""

    def fail(msg: str) -> CheckFailed:
        return CheckFailed(msg, code="audit.tree_head")

    if not isinstance(head, dict):
        raise fail("a tree head is a JSON object")
    size, root, sigs = head.get("tree_size"), head.get("root_hash"), head.get("signatures")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise fail("tree_size must be a whole number ≥ 0")
    if not is_sha256(root):
        raise fail("root_hash must be sha256:<64 lowercase hex>")
    if not isinstance(head.get("timestamp"), str):
        raise fail("timestamp must be a string")
    if log is not None and head.get("log", "ledger") != log:  # no "log": `mu audit-trail --tree-head`
        raise fail(f"this is a head of the {head.get('log', 'ledger')!r} log, not of the {log!r} log")
    if env is not None and head.get("env") != env:
        raise fail(f"this is a head of environment {head.get('env')!r}, not of {env!r}")
    if "chain_hash" in head and from_hex(head["chain_hash"]) is None:
        raise fail("chain_hash must be sha256:<64 lowercase hex>")
    if not isinstance(sigs, list) or not sigs:
        raise fail("the tree head is not signed")
    payload = head_payload(head)
    for sig in sigs:
        if not isinstance(sig, dict) or sig.get("keyid") not in keys:
            continue
        if not keys[sig["keyid"]].signed(sig.get("sig"), payload):
            raise fail(f"the tree head's signature by trusted key {sig['keyid']} does not verify")
        return str(sig["keyid"])
    raise fail("the tree head is not signed by a trusted key")


def head_range(head: Mapping[str, Any]) -> CompactRange | None:
    """The head's compact range, if it has one that folds to its ``root_hash``."""
    tree = CompactRange.from_json(head.get("tree_size"), head.get("compact_range"))
    if tree is None or to_hex(tree.root()) != head.get("root_hash"):
        return None
    return tree


def read_head(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A head file as a JSON object; :class:`InputError` (``audit.tree_head_unreadable``)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_bytes())
    except OSError as exc:
        raise InputError(
            f"cannot read tree head {p}: {exc.strerror or exc}",
            code="audit.tree_head_unreadable",
            location=Location(file=str(p)),
        ) from exc
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(
            f"tree head {p} is not valid JSON: {exc}",
            code="audit.tree_head_unreadable",
            location=Location(file=str(p)),
        ) from exc
    if not isinstance(doc, dict):
        raise InputError(
            f"tree head {p} is not a JSON object",
            code="audit.tree_head_unreadable",
            location=Location(file=str(p)),
        )
    return doc


@dataclass(frozen=True)
class HeadFile:
    """One head file: its path and the head, or why it could not be read."""

    path: Path
    head: dict[str, Any] | None
    error: str | None = None

    @property
    def size(self) -> int:
        size = self.head.get("tree_size") if self.head is not None else None
        return size if isinstance(size, int) and not isinstance(size, bool) else -1


class HeadDirectory:
    """``<dir>/<size>.json`` for every head written, and ``<dir>/latest.json``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"HeadDirectory({str(self.path)!r})"

    def sizes(self) -> list[int]:
        """The sizes of the numbered head files, ascending."""
        try:
            names = [e.name for e in os.scandir(self.path)]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise InputError(
                f"cannot list the tree heads in {self.path}: {exc.strerror or exc}",
                code="audit.tree_head_unreadable",
                location=Location(file=str(self.path)),
            ) from exc
        return sorted(int(n[:-5]) for n in names if _NAME.fullmatch(n))

    def _file(self, path: Path) -> HeadFile:
        try:
            return HeadFile(path, read_head(path))
        except InputError as exc:
            return HeadFile(path, None, exc.message)

    def get(self, size: int) -> HeadFile | None:
        path = self.path / f"{size}.json"
        return self._file(path) if path.exists() else None

    def newest(self) -> HeadFile | None:
        """The head of the largest size among ``latest.json`` and the numbered files (an
        unreadable file is returned as such: it is evidence that something changed)."""
        found: list[HeadFile] = []
        sizes = self.sizes()
        if sizes:
            found.append(self._file(self.path / f"{sizes[-1]}.json"))
        latest = self.path / LATEST
        if latest.exists():
            found.append(self._file(latest))
        bad = [f for f in found if f.head is None]
        if bad:
            return bad[0]
        return max(found, key=lambda f: f.size) if found else None

    def write(self, head: Mapping[str, Any]) -> Path:
        """Write ``<size>.json`` (never replacing a head of that size with another root) and
        move ``latest.json`` forward. Raises :class:`CheckFailed` on a conflicting head and
        :class:`InputError` when the directory cannot be written."""
        size = int(head["tree_size"])
        data = json.dumps(head, sort_keys=True, indent=1).encode("utf-8") + b"\n"
        target = self.path / f"{size}.json"
        try:
            private_dir(self.path)
            try:
                write_bytes_atomic(target, data, mode=PRIVATE_FILE, exclusive=True)
            except FileExistsError:
                existing = self._file(target)
                if existing.head is None or existing.head.get("root_hash") != head["root_hash"]:
                    raise CheckFailed(
                        f"a signed head of {size} entries with another root exists at {target}: "
                        "the log was rewritten after that head was signed",
                        code="audit.tree_head_conflict",
                        location=Location(file=str(target)),
                    ) from None
            latest = self._file(self.path / LATEST)
            if latest.head is None or latest.size <= size:
                write_bytes_atomic(self.path / LATEST, data, mode=PRIVATE_FILE)
        except OSError as exc:
            raise InputError(
                f"cannot write the tree head {target}: {exc.strerror or exc}",
                code="audit.tree_head_unwritable",
                location=Location(file=str(target)),
            ) from exc
        return target


def post_head(url: str, head: Mapping[str, Any], timeout: float = 5.0) -> str | None:
    """POST a head as JSON to a witness; ``None`` when it answered 2xx, else why not."""
    if not url.startswith(("http://", "https://")):
        return f"the witness URL {url!r} is not http(s)"
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=json.dumps(head, sort_keys=True).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"the witness at {url} answered {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"the witness at {url} could not be reached: {exc}"
    return None if 200 <= status < 300 else f"the witness at {url} answered {status}"


def resume(
    directory: HeadDirectory,
    keys: Mapping[str, Verifier],
    size: int,
    leaves_after: Callable[[int], Iterable[bytes]],
    *,
    log: str,
    env: str | None = None,
    noun: str = "entries",
    chain_at: Callable[[int], bytes | None] | None = None,
) -> tuple[CompactRange, dict[str, Any]] | None:
    """Resume a log's Merkle tree from its newest signed head: the head's compact range, then
    the leaves of the rows after it (``leaves_after(head size)``). ``None`` when the directory
    holds no head. Raises :class:`CheckFailed` when the head is unreadable, untrusted or
    malformed, when the log (``size`` rows) is shorter than the head, or when the chain hash of
    its row ``tree_size`` (``chain_at``) is not the signed one: a writer must not extend such
    a log, or its next head would vouch for what was cut or rewritten."""
    newest = directory.newest()
    if newest is None:
        return None
    where = Location(file=str(newest.path))
    if newest.head is None:
        raise CheckFailed(
            f"the newest tree head {newest.path} cannot be read: {newest.error}",
            code="audit.tree_head_unreadable",
            location=where,
        )
    head = newest.head
    check_head(head, keys, log=log, env=env)
    tree = head_range(head)
    if tree is None:
        raise CheckFailed(
            f"the tree head {newest.path} has no compact range that folds to its root",
            code="audit.tree_head",
            location=where,
        )
    if size < tree.size:
        raise CheckFailed(
            f"the log holds {size} {noun} but a signed head of {tree.size} exists ({newest.path}, "
            f"{head.get('timestamp')}): {tree.size - size} of them were deleted",
            code="audit.log_truncated",
            location=where,
        )
    signed_chain = from_hex(head.get("chain_hash")) if "chain_hash" in head else None
    if chain_at is not None and signed_chain is not None and chain_at(tree.size) != signed_chain:
        raise CheckFailed(
            f"row {tree.size} of the log does not carry the chain hash signed in {newest.path} "
            f"({head.get('timestamp')}): the log was rewritten up to there",
            code="audit.log_rewritten",
            location=where,
        )
    tree.extend(list(leaves_after(tree.size)))
    return tree, head
