"""The ledger's Merkle tree head: signing and checking it, and proofs of inclusion and consistency.

The tree is the Merkle tree (:mod:`finops_fabric.merkle`) over the ledger's receipt hashes in
order. Its head, ``{"tree_size", "root_hash", "timestamp", "signatures"}``, is signed like a
receipt (Ed25519 over the RFC 8785 canonical JSON of the document without ``signatures``, same
key ids). A later audit given a signed head proves the ledger still extends it
(:func:`consistency_from`); :func:`prove_inclusion` proves one receipt is in the tree.

The store signs a head at every append and keeps it outside the database
(``<store>/tree-heads/ledger/``); :func:`stored_head_gaps` checks the ledger against the newest
of them, so a ledger cut short or emptied is named, never "all verified".
"""

from __future__ import annotations

import os
from typing import Any

from finops_fabric.audit.ledger import Gap, Row, short
from finops_fabric.audit.trust import Trust
from finops_fabric.errors import CheckFailed
from finops_fabric.keys import Ed25519PrivateKey
from finops_fabric.merkle import MerkleTree, verify_consistency, verify_inclusion
from finops_fabric.store import Store, ledger_leaf
from finops_fabric.transparency import check_head, now_stamp, read_head, sign_head

__all__ = [
    "TREE_HEAD_KEYS",
    "consistency_from",
    "ledger_tree",
    "load_tree_head",
    "prove_inclusion",
    "sign_tree_head",
    "stored_head_gaps",
    "verify_tree_head",
]

TREE_HEAD_KEYS = ("tree_size", "root_hash", "timestamp")


def ledger_tree(rows: list[Row]) -> MerkleTree:
    """The Merkle tree over the ledger's receipt hashes (index column), in seq order."""
    return MerkleTree([ledger_leaf(r.column_hash) for r in rows])


def _hex(digest: bytes) -> str:
    return "sha256:" + digest.hex()


def sign_tree_head(
    tree: MerkleTree, private_key: Ed25519PrivateKey | None, timestamp: str | None = None
) -> dict[str, Any]:
    """``{"tree_size", "root_hash", "timestamp", "signatures"}``; unsigned without a key."""
    head = {"tree_size": tree.size, "root_hash": _hex(tree.root()), "timestamp": timestamp or now_stamp()}
    return sign_head(head, private_key)


def verify_tree_head(head: object, trust: Trust) -> str:
    """Check a tree head's form and that a trusted key signed it; return that key id.
    Raises :class:`CheckFailed` (``audit.tree_head``) otherwise."""
    return check_head(head, trust.keys, log="ledger")


def stored_head_gaps(store: Store, rows: list[Row], tree: MerkleTree, trust: Trust) -> list[Gap]:
    """The ledger against the newest signed head the store kept outside its database: none
    (``no_tree_head``), unreadable or untrusted (``tree_head_untrusted``), a ledger shorter than
    it (``truncated``, ``removed``), whose first ``tree_size`` receipts no longer hash to its
    root (``rewritten``), or with receipts after it (``unsigned``)."""
    heads = store.ledger_heads
    newest = heads.newest()
    if newest is None:
        began = store.ledger_heads_began()
        why = (
            f"its heads began {began}, so they were removed"
            if began is not None
            else "a store made before tree heads: `mu init` signs the first, over the ledger as it stands"
        )
        return [
            Gap(
                None,
                None,
                "no_tree_head",
                f"no signed tree head of the ledger in {heads.path} ({why}): a deletion of receipts "
                "from the end cannot be ruled out",
            )
        ]
    if newest.head is None:
        return [Gap(None, None, "tree_head_untrusted", f"the tree head {newest.path}: {newest.error}")]
    head = newest.head
    try:
        check_head(head, trust.keys, log="ledger")
    except CheckFailed as exc:
        return [Gap(None, None, "tree_head_untrusted", f"the tree head {newest.path}: {exc.message}")]
    size, when = int(head["tree_size"]), head.get("timestamp")
    have = (
        f"the ledger has {len(rows)} receipt{'s' if len(rows) != 1 else ''}"
        if rows
        else "the ledger is empty"
    )
    if size > tree.size:
        lost = size - tree.size
        signed = f"{have} but a signed head of {size} exists ({newest.path}, {when})"
        if rows and rows[-1].seq >= size:  # the ledger still reaches the head's end: rows went missing
            missing = f"{lost} receipt{'s are' if lost != 1 else ' is'} missing"
            return [Gap(None, None, "removed", f"{signed}: {missing}")]
        return [
            Gap(
                None,
                None,
                "truncated",
                f"{signed}: {lost} receipt{'s were' if lost != 1 else ' was'} deleted from the end",
            )
        ]
    gaps: list[Gap] = []
    if tree.size > size:  # the store signs a head at every append
        first = rows[size]
        gaps.append(
            Gap.at(
                first,
                "unsigned",
                f"{tree.size - size} receipt(s) from here on are not covered by a signed tree head (the "
                f"newest, {newest.path}, covers {size}; the store signs one at every append): written "
                "outside mu, or mu stopped between an append and its head (`mu init` signs one then)",
            )
        )
    if _hex(tree.root(size)) != head["root_hash"]:
        last = rows[size - 1].seq if size else None
        return [
            Gap(
                None,
                None,
                "rewritten",
                f"the first {size} receipts (up to seq {last}) no longer hash to the root signed at {when} "
                f"({newest.path}): receipts were changed, removed, inserted or reordered since",
            )
        ]
    return gaps


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
    return read_head(path)


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
