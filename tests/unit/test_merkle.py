"""The ledger's Merkle log against RFC 6962/9162 reference vectors and the RFC's own definitions.

Reference vectors: transparency-dev/merkle, ``proof/verify_test.go`` (the Go ``merkle`` package
that grew out of certificate-transparency-go), commit 02194e9afb6c1d95b5381350007963aa70fff472:
the eight leaves, the root of every prefix, and its inclusion and consistency proofs.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest

from finops_fabric.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
# ROOTS[n - 1] = MTH(LEAVES[:n])
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf number, 1-based as in the Go test; tree size; audit path)
INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (first size, second size, consistency proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def h(hexes: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


# --- a naive reference, written straight from the RFC's recursive definitions -------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def data(n: int) -> list[bytes]:
    return [f"receipt-{i}".encode() for i in range(n)]


# --- known vectors --------------------------------------------------------------------------


def test_hashing_is_domain_separated() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT


@pytest.mark.parametrize("n", range(1, 9))
def test_reference_roots(n: int) -> None:
    assert root_from_leaves(LEAVES[:n]).hex() == ROOTS[n - 1]
    tree = MerkleTree(LEAVES)
    assert tree.root(n).hex() == ROOTS[n - 1]


@pytest.mark.parametrize(("leaf", "size", "path"), INCLUSION)
def test_reference_inclusion_proofs(leaf: int, size: int, path: list[str]) -> None:
    tree = MerkleTree(LEAVES)
    assert tree.inclusion_proof(leaf - 1, size) == h(path)
    root = bytes.fromhex(ROOTS[size - 1])
    assert verify_inclusion(leaf_hash(LEAVES[leaf - 1]), leaf - 1, size, h(path), root)


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_reference_consistency_proofs(first: int, second: int, proof: list[str]) -> None:
    tree = MerkleTree(LEAVES)
    assert tree.consistency_proof(first, second) == h(proof)
    root1, root2 = bytes.fromhex(ROOTS[first - 1]), bytes.fromhex(ROOTS[second - 1])
    assert verify_consistency(first, second, h(proof), root1, root2)


def test_reference_proofs_do_not_verify_when_corrupted() -> None:
    """The probes of the Go test: wrong index, size, leaf, root; garbage; flipped bits."""
    some = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    for leaf, size, hexes in INCLUSION[1:]:
        path, i = h(hexes), leaf - 1
        root, lh = bytes.fromhex(ROOTS[size - 1]), leaf_hash(LEAVES[i])
        probes = [
            (i - 1, size, root, lh, path),
            (i + 1, size, root, lh, path),
            (i ^ 2, size, root, lh, path),
            (i, size * 2, root, lh, path),
            (i, size // 2, root, lh, path),
            (i, size, root, leaf_hash(b"WrongLeaf"), path),
            (i, size, EMPTY_ROOT, lh, path),
            (i, size, some, lh, path),
            (i, size, root, lh, [*path, root]),
            (i, size, root, lh, [root, *path]),
            (i, size, root, lh, [*path, b""]),
            (i, size, root, lh, path[:-1]),
        ]
        probes += [(i, size, root, lh, _flip(path, j, 8)) for j in range(len(path))]
        for probe in probes:
            assert not verify_inclusion(probe[3], probe[0], probe[1], probe[4], probe[2]), probe[:2]
    for first, second, hexes in CONSISTENCY[1:]:
        proof = h(hexes)
        r1, r2 = bytes.fromhex(ROOTS[first - 1]), bytes.fromhex(ROOTS[second - 1])
        cprobes = [
            (first - 1, second, r1, r2, proof),
            (first + 1, second, r1, r2, proof),
            (first ^ 2, second, r1, r2, proof),
            (first, second * 2, r1, r2, proof),
            (first, second // 2, r1, r2, proof),
            (first, second, some, r2, proof),
            (first, second, r1, some, proof),
            (first, second, r2, r1, proof),
            (first, second, r1, r2, []),
            (first, second, r1, r2, [*proof, r1]),
            (first, second, r1, r2, [*proof, r2]),
            (first, second, r1, r2, [r1, *proof]),
            (first, second, r1, r2, [r2, *proof]),
            (first, second, r1, r2, [proof[0], *proof]),
            (first, second, r1, r2, proof[:-1]),
        ]
        cprobes += [(first, second, r1, r2, _flip(proof, j, 16)) for j in range(len(proof))]
        for a, b, x, y, p in cprobes:
            assert not verify_consistency(a, b, p, x, y), (a, b)


def test_consistency_edge_cases() -> None:
    root = bytes.fromhex(ROOTS[0])
    assert verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    assert verify_consistency(0, 5, [], EMPTY_ROOT, bytes.fromhex(ROOTS[4]))
    assert not verify_consistency(0, 5, [EMPTY_ROOT], EMPTY_ROOT, bytes.fromhex(ROOTS[4]))
    assert verify_consistency(1, 1, [], root, root)
    assert not verify_consistency(1, 1, [], root, EMPTY_ROOT)
    assert not verify_consistency(1, 1, [EMPTY_ROOT], root, root)
    assert not verify_consistency(2, 1, [], root, root)
    assert not verify_inclusion(leaf_hash(b"x"), 0, 0, [], EMPTY_ROOT)


def _flip(path: list[bytes], j: int, bit: int) -> list[bytes]:
    out = list(path)
    out[j] = bytes([out[j][0] ^ bit]) + out[j][1:]
    return out


# --- properties over sizes 1..40 ------------------------------------------------------------


def test_tree_matches_the_rfc_definitions_up_to_40() -> None:
    d = data(40)
    tree = MerkleTree(d)
    for n in range(0, 41):
        assert tree.root(n) == ref_mth(d[:n])
        assert MerkleTree(d[:n]).root() == ref_mth(d[:n])
        for m in range(n):
            assert tree.inclusion_proof(m, n) == ref_path(m, d[:n])
        for m in range(1, n):
            assert tree.consistency_proof(m, n) == ref_subproof(m, d[:n], True)


def test_every_inclusion_proof_verifies_and_every_tampered_one_fails() -> None:
    d = data(40)
    tree = MerkleTree(d)
    for n in range(1, 41):
        root = tree.root(n)
        for m in range(n):
            path = tree.inclusion_proof(m, n)
            assert verify_inclusion(tree.leaf(m), m, n, path, root), (m, n)
            assert not verify_inclusion(leaf_hash(b"forged"), m, n, path, root)
            assert not verify_inclusion(tree.leaf(m), m, n, path, tree.root(n - 1) if n > 1 else EMPTY_ROOT)
            if n > 1:
                assert not verify_inclusion(tree.leaf(m), (m + 1) % n, n, path, root)
            for j in range(len(path)):
                assert not verify_inclusion(tree.leaf(m), m, n, _flip(path, j, 1), root)
            if path:
                assert not verify_inclusion(tree.leaf(m), m, n, path[:-1], root)
            assert not verify_inclusion(tree.leaf(m), m, n, [*path, root], root)


def test_every_consistency_proof_verifies_and_every_tampered_one_fails() -> None:
    d = data(40)
    tree = MerkleTree(d)
    for m, n in itertools.combinations_with_replacement(range(1, 41), 2):
        proof = tree.consistency_proof(m, n)
        r1, r2 = tree.root(m), tree.root(n)
        assert verify_consistency(m, n, proof, r1, r2), (m, n)
        if m == n:
            continue
        assert not verify_consistency(m, n, proof, r2 if r1 != r2 else EMPTY_ROOT, r2)
        assert not verify_consistency(m, n, proof, r1, r1)
        assert not verify_consistency(n, m, proof, r2, r1)
        for j in range(len(proof)):
            assert not verify_consistency(m, n, _flip(proof, j, 1), r1, r2), (m, n, j)
        assert not verify_consistency(m, n, proof[:-1], r1, r2)
        assert not verify_consistency(m, n, [*proof, r2], r1, r2)


def test_a_rewritten_prefix_is_not_consistent() -> None:
    """The log's promise: nothing before the old tree head was removed or rewritten."""
    d = data(20)
    old = MerkleTree(d[:12])
    rewritten = MerkleTree([*d[:5], b"rewritten", *d[6:]])
    truncated_then_regrown = MerkleTree([*d[:11], *d[12:]])
    for tree in (rewritten, truncated_then_regrown):
        proof = tree.consistency_proof(12)
        assert not verify_consistency(12, tree.size, proof, old.root(), tree.root())
    honest = MerkleTree(d)
    assert verify_consistency(12, 20, honest.consistency_proof(12), old.root(), honest.root())


def test_bad_arguments_are_refused() -> None:
    tree = MerkleTree(data(3))
    with pytest.raises(ValueError):
        tree.inclusion_proof(3)
    with pytest.raises(ValueError):
        tree.consistency_proof(4)
    with pytest.raises(ValueError):
        tree.root(4)
    assert MerkleTree.from_leaf_hashes([tree.leaf(0), tree.leaf(1), tree.leaf(2)]).root() == tree.root()
