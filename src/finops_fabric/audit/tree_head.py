"""The ledger's Merkle tree head: signing and checking it, and proofs of inclusion and consistency.

The tree is the Merkle tree (:mod:`finops_fabric.merkle`) over the ledger's receipt hashes in
order. Its head, ``{"tree_size", "root_hash", "timestamp", "signatures"}``, is signed like a
receipt (Ed25519 over the RFC 8785 canonical JSON of the document without ``signatures``, same
key ids). A later audit given a signed head proves the ledger still extends it
(:func:`consistency_from`); :func:`prove_inclusion` proves one receipt is in the tree.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from finops_fabric.audit.ledger import Row, short
from finops_fabric.audit.trust import Trust
from finops_fabric.canonical import canonical_json, is_sha256
from finops_fabric.errors import CheckFailed, InputError, Location
from finops_fabric.keys import Ed25519PrivateKey, key_id
from finops_fabric.merkle import MerkleTree, verify_consistency, verify_inclusion

__all__ = [
    "TREE_HEAD_KEYS",
    "consistency_from",
    "ledger_tree",
    "load_tree_head",
    "prove_inclusion",
    "sign_tree_head",
    "verify_tree_head",
]

TREE_HEAD_KEYS = ("tree_size", "root_hash", "timestamp")


def _leaf(receipt_hash: str) -> bytes:
    return bytes.fromhex(receipt_hash[7:]) if is_sha256(receipt_hash) else receipt_hash.encode("utf-8")


def ledger_tree(rows: list[Row]) -> MerkleTree:
    """The Merkle tree over the ledger's receipt hashes (index column), in seq order."""
    return MerkleTree([_leaf(r.column_hash) for r in rows])


def _hex(digest: bytes) -> str:
    return "sha256:" + digest.hex()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_tree_head(
    tree: MerkleTree, private_key: Ed25519PrivateKey | None, timestamp: str | None = None
) -> dict[str, Any]:
    """``{"tree_size", "root_hash", "timestamp", "signatures"}``; unsigned without a key."""
    head: dict[str, Any] = {
        "tree_size": tree.size,
        "root_hash": _hex(tree.root()),
        "timestamp": timestamp or _now(),
    }
    sigs = []
    if private_key is not None:
        payload = canonical_json(head)
        sigs.append(
            {
                "keyid": key_id(private_key.public_key()),
                "sig": base64.b64encode(private_key.sign(payload)).decode("ascii"),
            }
        )
    return {**head, "signatures": sigs}


def verify_tree_head(head: object, trust: Trust) -> str:
    """Check a tree head's form and that a trusted key signed it; return that key id.
    Raises :class:`CheckFailed` (``audit.tree_head``) otherwise."""

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
    if not isinstance(sigs, list) or not sigs:
        raise fail("the tree head is not signed")
    payload = canonical_json({k: v for k, v in head.items() if k != "signatures"})
    for sig in sigs:
        if not isinstance(sig, dict) or sig.get("keyid") not in trust.keys:
            continue
        if not trust.keys[sig["keyid"]].signed(sig.get("sig"), payload):
            raise fail(f"the tree head's signature by trusted key {sig['keyid']} does not verify")
        return str(sig["keyid"])
    raise fail("the tree head is not signed by a trusted key")


def prove_inclusion(rows: list[Row], tree: MerkleTree, receipt_hash: str) -> dict[str, Any]:
    """The audit path of a receipt in the ledger tree, verified."""
    index = next((i for i, r in enumerate(rows) if receipt_hash in (r.column_hash, r.hash)), None)
    if index is None:
        return {"receipt_hash": receipt_hash, "included": False, "verified": False, "tree_size": tree.size}
    path = tree.inclusion_proof(index)
    ok = verify_inclusion(tree.leaf(index), index, tree.size, path, tree.root())
    return {
        "receipt_hash": receipt_hash,
        "seq": rows[index].seq,
        "included": True,
        "leaf_index": index,
        "tree_size": tree.size,
        "leaf_hash": _hex(tree.leaf(index)),
        "audit_path": [_hex(p) for p in path],
        "root_hash": _hex(tree.root()),
        "verified": ok,
    }


def load_tree_head(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an earlier tree head (a JSON object) for :func:`consistency_from`."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(
            f"cannot read tree head {p}: {exc.strerror or exc}",
            code="audit.tree_head_unreadable",
            location=Location(file=str(p)),
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(
            f"tree head {p} is not valid JSON: {exc}",
            code="audit.tree_head_unreadable",
            location=Location(file=str(p)),
        ) from exc
    if not isinstance(doc, dict):
        raise InputError(f"tree head {p} is not a JSON object", code="audit.tree_head_unreadable")
    return doc


def consistency_from(old: dict[str, Any], tree: MerkleTree, trust: Trust) -> dict[str, Any]:
    """Prove that the ledger now extends the log of an earlier signed tree head."""
    out: dict[str, Any] = {"tree_size": tree.size, "root_hash": _hex(tree.root())}
    try:
        out["old_signed_by"] = verify_tree_head(old, trust)
    except CheckFailed as exc:
        return {**out, "consistent": False, "problem": "tree_head_untrusted", "message": exc.message}
    m, old_root = int(old["tree_size"]), bytes.fromhex(str(old["root_hash"])[7:])
    out.update(old_tree_size=m, old_root_hash=old["root_hash"])
    if m > tree.size:
        return {
            **out,
            "consistent": False,
            "problem": "log_truncated",
            "message": f"the earlier tree head covers {m} receipts but the ledger now holds {tree.size}: "
            f"{m - tree.size} receipt(s) were removed",
        }
    proof = tree.consistency_proof(m)
    ok = verify_consistency(m, tree.size, proof, old_root, tree.root())
    out.update(proof=[_hex(p) for p in proof], consistent=ok)
    if ok:
        out["message"] = (
            f"the ledger of {tree.size} receipts extends the earlier one of {m}: nothing removed or rewritten"
        )
    else:
        out["problem"] = "log_rewritten"
        out["message"] = (
            f"the first {m} receipts no longer hash to the earlier root {short(old['root_hash'])}: "
            "receipts were removed, replaced or reordered since that tree head"
        )
    return out
