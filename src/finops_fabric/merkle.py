"""The ledger as a Merkle log: RFC 9162 (Certificate Transparency v2, §2.1) hashing and proofs.

The leaves are the ledger's receipt hashes in ledger order; a leaf's bytes are the 32 raw bytes
of the digest (``sha256:<hex>`` decoded), so a tree head can be recomputed with standard tools
from the list of receipt hashes alone.

- leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``;
- ``MTH({}) = SHA-256()``; ``MTH(D[n])`` splits at ``k``, the largest power of two smaller
  than ``n`` (§2.1.1);
- inclusion proofs ``PATH(m, D[n])`` and their verification (§2.1.3.1, §2.1.3.2);
- consistency proofs ``PROOF(m, D[n])`` and their verification (§2.1.4.1, §2.1.4.2).

Verification functions return ``True``/``False`` and never raise on malformed proofs.
RFC 9162 leaves two edge cases of consistency to the caller; they are decided here as the
transparency-dev/merkle reference does: ``first == second`` is consistent when the proof is
empty and the roots are equal; ``first == 0`` is consistent when the proof is empty and the
first root is the empty-tree hash (an empty log is a prefix of every log).

The tree is built once, level by level (O(n) hashes), and proofs are read from the levels, so
proving every leaf of a 10,000-receipt ledger costs no recomputation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "root_from_leaves",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
#: MTH of the empty tree: SHA-256 of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only log of leaves with RFC 9162 root, inclusion and consistency proofs.

    ``levels[0]`` holds the leaf hashes; ``levels[h][i]`` is the hash of the complete subtree of
    ``2**h`` leaves starting at leaf ``i * 2**h``. Any subtree that the RFC's recursive
    definitions visit is either such a complete subtree or a right edge, computed from them.
    """

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[leaf_hash(d) for d in leaves]]
        self._build()

    @classmethod
    def from_leaf_hashes(cls, hashes: Sequence[bytes]) -> MerkleTree:
        tree = cls.__new__(cls)
        tree.levels = [list(hashes)]
        tree._build()
        return tree

    def _build(self) -> None:
        level = self.levels[0]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            self.levels.append(level)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        return self.levels[0][index]

    def subtree_hash(self, start: int, end: int) -> bytes:
        """``MTH(D[start:end])`` for the ranges the RFC definitions use (``start`` aligned)."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        height = (n - 1).bit_length() if n > 1 else 0
        aligned = n == 1 << height and start % n == 0 and height < len(self.levels)
        if aligned and start >> height < len(self.levels[height]):
            return self.levels[height][start >> height]
        if n == 1:
            return self.levels[0][start]
        k = _split(n)
        return node_hash(self.subtree_hash(start, start + k), self.subtree_hash(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """``MTH(D[0:size])`` (the whole tree by default)."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"tree size {n} is outside 0..{self.size}")
        return self.subtree_hash(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """``PATH(index, D[0:size])`` (§2.1.3.1), leaf-side first."""
        n = self.size if size is None else size
        if not 0 <= index < n <= self.size:
            raise ValueError(f"no leaf {index} in a tree of size {n}")
        return self._path(index, 0, n)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self._path(m, start, start + k), self.subtree_hash(start + k, end)]
        return [*self._path(m - k, start + k, end), self.subtree_hash(start, start + k)]

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """``PROOF(first, D[0:second])`` (§2.1.4.1); empty when ``first`` is 0 or equals ``second``."""
        n = self.size if second is None else second
        if not 0 <= first <= n <= self.size:
            raise ValueError(f"no consistency proof from size {first} to size {n}")
        if first == 0 or first == n:
            return []
        return self._subproof(first, 0, n, True)

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self.subtree_hash(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, whole), self.subtree_hash(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.subtree_hash(start, start + k)]


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """``MTH`` of ``leaves`` (raw leaf bytes, not yet hashed)."""
    return MerkleTree(leaves).root()


def _well_formed(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove that ``leaf`` (a leaf *hash*) is entry ``index`` of
    the tree of ``tree_size`` leaves with ``root_hash``?"""
    if not _well_formed(leaf, root_hash, *path):
        return False
    # 1. If leaf_index is greater than or equal to tree_size, then stop and fail.
    if not 0 <= index < tree_size:
        return False
    # 2. Set fn to leaf_index and sn to tree_size - 1.  3. Set r to hash.
    fn, sn, r = index, tree_size - 1, leaf
    # 4. For each value p in the inclusion_path array:
    for p in path:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, r)
            # ii. If LSB(fn) is not set, right-shift fn and sn equally until either LSB(fn) is
            #     set or fn is 0.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            # Otherwise: set r to HASH(0x01 || r || p).
            r = node_hash(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. Compare sn to 0. Compare r against the root_hash.
    return sn == 0 and r == root_hash


def verify_consistency(
    first: int, second: int, path: Sequence[bytes], first_hash: bytes, second_hash: bytes
) -> bool:
    """RFC 9162 §2.1.4.2: does ``path`` prove that the tree of ``first`` leaves with
    ``first_hash`` is a prefix of the tree of ``second`` leaves with ``second_hash``?"""
    if not _well_formed(first_hash, second_hash, *path):
        return False
    if not 0 <= first <= second:
        return False
    if first == second:
        return not path and first_hash == second_hash
    if first == 0:
        return not path and first_hash == EMPTY_ROOT
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if not path:
        return False
    nodes = list(path)
    # 2. If first is an exact power of 2, then prepend first_hash to the consistency_path array.
    if first & (first - 1) == 0:
        nodes.insert(0, first_hash)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = nodes[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in nodes[1:]:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set fr to HASH(0x01 || c || fr). Set sr to HASH(0x01 || c || sr).
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # ii. If LSB(fn) is not set, then right-shift both fn and sn equally until either
            #     LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            # Otherwise: set sr to HASH(0x01 || sr || c).
            sr = node_hash(sr, c)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. Verify that fr equals first_hash, sr equals second_hash, and sn is 0.
    return fr == first_hash and sr == second_hash and sn == 0
