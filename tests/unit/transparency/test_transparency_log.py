"""finops_fabric.transparency: records, the chain, the compact range against the RFC 9162 tree,
signed heads and their directory, and verify_log naming what was done to a log."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finops_fabric.canonical import canonical_json
from finops_fabric.errors import CheckFailed
from finops_fabric.keys import generate_keypair, load_private_key, load_public_key
from finops_fabric.merkle import MerkleTree, leaf_hash
from finops_fabric.transparency import (
    GENESIS,
    CompactRange,
    HeadDirectory,
    KnownHead,
    LogRow,
    chain_hash,
    check_head,
    gather_heads,
    head_range,
    make_head,
    record_bytes,
    record_leaf,
    resume,
    sign_head,
    verifiers,
    verify_log,
)

values = st.one_of(
    st.none(),
    st.text(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)


@given(st.dictionaries(st.text(alphabet="abcdefghij_", min_size=1, max_size=8), values, max_size=8))
@settings(max_examples=300, deadline=None)
def test_record_bytes_are_rfc8785(record: dict[str, object]) -> None:
    assert record_bytes(record) == canonical_json(record)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=300))
@settings(max_examples=60, deadline=None)
def test_compact_range_root_is_the_rfc9162_root_at_every_size(n: int) -> None:
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(n)]
    tree = CompactRange()
    full = MerkleTree(leaves)
    for i, data in enumerate(leaves):
        assert tree.root() == full.root(i)
        tree.append(leaf_hash(data))
    assert tree.root() == full.root() and tree.size == n
    again = CompactRange.from_json(n, tree.to_json())
    assert again is not None and again.root() == tree.root()


def _rows(n: int) -> list[LogRow]:
    out, chain = [], GENESIS
    for i in range(1, n + 1):
        record = record_bytes({"id": i, "outcome": "REJECT" if i % 2 else "APPROVE"})
        leaf = record_leaf({"id": i, "outcome": "REJECT" if i % 2 else "APPROVE"})
        out.append(LogRow(i, record, leaf, chain))
        chain = chain_hash(chain, leaf)
    return out


def _head(rows: list[LogRow], size: int) -> KnownHead:
    tree, chain = CompactRange(), GENESIS
    for r in rows[:size]:
        assert r.leaf is not None
        tree.append(r.leaf)
        chain = chain_hash(chain, r.leaf)
    return KnownHead("witness", make_head("decisions", tree, env="test", chain=chain))


def _problems(rows: list[LogRow], heads: list[KnownHead]) -> list[tuple[int | None, str]]:
    report = verify_log(iter(rows), heads, noun="decision")
    return [(f.id, f.problem) for f in report.findings]


def test_verify_log_names_every_kind_of_tampering() -> None:
    rows = _rows(10)
    head = _head(rows, 10)
    report = verify_log(iter(rows), [head], noun="decision")
    assert report.verified and report.covered == 10 and "all verified" in report.summary()
    # an outcome flipped in place
    flipped = list(rows)
    flipped[4] = rows[4]._replace(record=rows[4].record.replace(b"REJECT", b"APPROVE"))
    assert _problems(flipped, [head]) == [(5, "changed"), (None, "rewritten")]
    # a middle row deleted
    assert _problems(rows[:6] + rows[7:], [head]) == [(7, "missing"), (None, "removed")]
    # the newest rows deleted, or every row
    assert _problems(rows[:7], [head]) == [(None, "truncated")]
    report = verify_log(iter(rows[:7]), [head], noun="decision")
    assert "3 decisions were deleted from the end (ids 8–10)" in report.findings[0].message
    assert (
        "the log is empty but a signed head of 10 exists" in verify_log(iter([]), [head]).findings[0].message
    )
    # a forged row without chain hashes
    forged = LogRow(11, record_bytes({"id": 11, "outcome": "APPROVE"}), None, None)
    assert _problems([*rows, forged], [head]) == [(11, "inserted")]

    # rows swapped (ids exchanged with their contents)
    def moved(row: LogRow, new_id: int) -> LogRow:  # the stored record names the row's id
        return row._replace(id=new_id, record=row.record.replace(b'"id":%d' % row.id, b'"id":%d' % new_id))

    swapped = list(rows)
    swapped[3], swapped[4] = moved(rows[4], 4), moved(rows[3], 5)
    found = _problems(swapped, [head])
    assert (4, "reordered") in found and (5, "reordered") in found and (None, "rewritten") in found
    messages = [f.message for f in verify_log(iter(swapped), [head], noun="decision").findings]
    assert "decision 4 was renumbered: its content was logged as decision 5" in messages


def test_a_rewritten_chain_is_found_only_by_the_signed_head() -> None:
    rows = _rows(6)
    head = _head(rows, 6)
    # the insider recomputes every leaf and link after changing decision 3
    chain, forged = GENESIS, []
    for r in rows:
        record = r.record.replace(b"REJECT", b"APPROVE") if r.id == 3 else r.record
        leaf = hashlib.sha256(b"\x00" + record).digest()
        forged.append(LogRow(r.id, record, leaf, chain))
        chain = chain_hash(chain, leaf)
    assert verify_log(iter(forged), [], noun="decision").verified  # on its own it holds ...
    report = verify_log(iter(forged), [_head(rows, 2), head], noun="decision")  # ... not against heads
    assert [(f.id, f.problem) for f in report.findings] == [(None, "rewritten")]
    assert "after the 2 covered by an earlier head" in report.findings[0].message


@pytest.fixture
def operator(tmp_path: Path) -> tuple[object, object]:
    key, pub = generate_keypair(tmp_path / "operator")
    return load_private_key(key), load_public_key(pub)


def test_heads_are_signed_and_verified_with_the_operator_public_key(operator: tuple[object, object]) -> None:
    private, public = operator
    rows = _rows(5)
    head = sign_head(_head(rows, 5).head, private)  # type: ignore[arg-type]
    keys = verifiers(public)  # type: ignore[arg-type]
    assert check_head(head, keys, log="decisions", env="test") == head["signatures"][0]["keyid"]
    tree = head_range(head)
    assert tree is not None and tree.size == 5
    with pytest.raises(CheckFailed, match="does not verify"):
        check_head({**head, "tree_size": 4}, keys)
    with pytest.raises(CheckFailed, match="not of the 'audit' log"):
        check_head(head, keys, log="audit")
    with pytest.raises(CheckFailed, match="environment 'test', not of 'production'"):
        check_head(head, keys, env="production")
    with pytest.raises(CheckFailed, match="not signed"):
        check_head(sign_head(head, None), keys)


def test_head_directory_files_latest_and_conflicts(tmp_path: Path, operator: tuple[object, object]) -> None:
    private, public = operator
    rows = _rows(4)
    heads = HeadDirectory(tmp_path / "heads")
    assert heads.newest() is None
    for size in (2, 4):
        heads.write(sign_head(_head(rows, size).head, private))  # type: ignore[arg-type]
    assert heads.sizes() == [2, 4]
    for name in ("2.json", "4.json", "latest.json"):
        assert stat.S_IMODE((heads.path / name).stat().st_mode) == 0o600
    newest = heads.newest()
    assert newest is not None and newest.size == 4
    # an older latest.json does not hide a newer numbered head
    (heads.path / "latest.json").write_text((heads.path / "2.json").read_text())
    newest = heads.newest()
    assert newest is not None and newest.size == 4
    # a head of the same size with another root is never written over the first
    other = _head(_rows(4)[:3] + [_rows(5)[4]._replace(id=4)], 4).head
    with pytest.raises(CheckFailed, match="another root"):
        heads.write(sign_head(other, private))  # type: ignore[arg-type]
    keys = verifiers(public)  # type: ignore[arg-type]
    found, problems = gather_heads(heads, [], keys, log="decisions", env="test")
    assert [h.size for h in found] == [4] and problems == []
    (heads.path / "4.json").write_text(
        json.dumps({**json.loads((heads.path / "4.json").read_text()), "tree_size": 9})
    )
    found, problems = gather_heads(heads, [], keys, log="decisions", env="test")
    assert found == [] and problems[0].problem == "tree_head_untrusted"
    _, problems = gather_heads(HeadDirectory(tmp_path / "none"), [], keys, log="decisions")
    assert problems[0].problem == "no_tree_head"


def test_resume_refuses_a_log_shorter_than_its_head(tmp_path: Path, operator: tuple[object, object]) -> None:
    private, public = operator
    rows = _rows(6)
    heads = HeadDirectory(tmp_path / "heads")
    heads.write(sign_head(_head(rows, 4).head, private))  # type: ignore[arg-type]
    keys = verifiers(public)  # type: ignore[arg-type]
    leaves = [r.leaf for r in rows]

    def after(n: int) -> list[bytes]:
        return [x for x in leaves[n:] if x is not None]

    got = resume(heads, keys, 6, after, log="decisions", env="test")
    assert got is not None
    tree, head = got
    assert "sha256:" + tree.root().hex() == _head(rows, 6).head["root_hash"] and head["tree_size"] == 4
    with pytest.raises(CheckFailed, match="holds 3 entries but a signed head of 4 exists"):
        resume(heads, keys, 3, after, log="decisions", env="test")
    with pytest.raises(CheckFailed, match="rewritten"):
        resume(heads, keys, 6, after, log="decisions", env="test", chain_at=lambda n: GENESIS)
