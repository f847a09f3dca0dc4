"""Verify a chained log from an iterator of its rows and the signed heads that cover it.

:func:`verify_log` streams the rows in id order (constant memory, any storage behind the
iterator) and recomputes every leaf, every link and the Merkle root at each head's size. What
it finds is named by id:

- ``changed``: the row's content no longer hashes to its stored leaf hash;
- ``inserted``: a row without chain columns (written outside the log's writer);
- ``missing``: ids jump (``decision 18 is missing: ids jump from 17 to 19``);
- ``reordered``: a row links to an earlier row than the one before it, or its id repeats or
  goes backwards;
- ``chain_break``: a row does not link to the row before it (that row was replaced, or rows
  were removed and renumbered);
- ``rewritten``: the first ``size`` rows no longer hash to a signed head's root (or chain
  hash), although each row's own hashes were made to agree;
- ``truncated``: the log is shorter than a signed head: rows were deleted from the end
  (``removed`` when it still reaches the head's last id: rows went missing within);
- ``no_tree_head``, ``tree_head_untrusted``, ``tree_head_unreadable``: nothing trustworthy
  says how long the log was, so a deletion from the end cannot be ruled out.

The log verifies only when none of these was found.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from finops_fabric.errors import CheckFailed
from finops_fabric.merkle import node_hash
from finops_fabric.transparency.chain import GENESIS, CompactRange, from_hex, to_hex
from finops_fabric.transparency.heads import HeadDirectory, Verifier, check_head

__all__ = ["Finding", "KnownHead", "LogReport", "LogRow", "gather_heads", "verify_log"]

_RECENT = 1024  # how far back a misplaced row's link is looked up


class LogRow(NamedTuple):
    """One stored row: its id, the canonical bytes of its record, its stored leaf hash and the
    previous row's chain hash it stores (``None`` where a column is empty)."""

    id: int
    record: bytes
    leaf: bytes | None
    prev: bytes | None


@dataclass(frozen=True)
class Finding:
    """One problem: the row it names (``id``, ``None`` for the log as a whole), a stable code
    and a sentence."""

    id: int | None
    problem: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "problem": self.problem, "message": self.message}


@dataclass(frozen=True)
class KnownHead:
    """A signed head whose signature verified, and where it was found."""

    source: str
    head: dict[str, Any]

    @property
    def size(self) -> int:
        return int(self.head["tree_size"])

    @property
    def root(self) -> str:
        return str(self.head["root_hash"])

    def describe(self) -> str:
        return f"the head of {self.size} signed at {self.head.get('timestamp')} ({self.source})"


def gather_heads(
    directory: HeadDirectory | None,
    extra: Sequence[tuple[str, dict[str, Any]]],
    keys: Mapping[str, Verifier],
    *,
    log: str,
    env: str | None = None,
) -> tuple[list[KnownHead], list[Finding]]:
    """The newest head of ``directory`` and the ``extra`` heads (source, head), each checked
    against ``keys``; what could not be trusted becomes a finding."""
    found: list[tuple[str, dict[str, Any]]] = []
    findings: list[Finding] = []
    if directory is not None:
        newest = directory.newest()
        if newest is not None and newest.head is None:
            findings.append(
                Finding(None, "tree_head_unreadable", f"the tree head {newest.path}: {newest.error}")
            )
        elif newest is not None and newest.head is not None:
            found.append((str(newest.path), newest.head))
    found += extra
    heads: list[KnownHead] = []
    for source, head in found:
        try:
            check_head(head, keys, log=log, env=env)
        except CheckFailed as exc:
            findings.append(Finding(None, "tree_head_untrusted", f"the tree head {source}: {exc.message}"))
            continue
        heads.append(KnownHead(source, head))
    if not found:
        where = f" in {directory.path}" if directory is not None else ""
        findings.append(
            Finding(
                None,
                "no_tree_head",
                f"no signed tree head of this log was found{where}: a deletion from the end cannot "
                "be ruled out",
            )
        )
    return heads, findings


@dataclass
class LogReport:
    """What :func:`verify_log` found."""

    noun: str
    plural: str
    size: int = 0
    first_id: int | None = None
    last_id: int | None = None
    root: bytes = b""
    chain: bytes = GENESIS
    findings: list[Finding] = field(default_factory=list)
    heads: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.findings

    @property
    def covered(self) -> int:
        """Rows covered by a signed head that matched."""
        ok = [h["tree_size"] for h in self.heads if h["status"] == "consistent"]
        return max(ok, default=0)

    def count(self, n: int) -> str:
        return f"{n} {self.noun if n == 1 else self.plural}"

    def summary(self) -> str:
        if self.verified:
            text = f"{self.count(self.size)}: leaf hashes, hash chain and Merkle root verified"
            if self.heads:
                text += f" against the signed head of {self.covered}"
            after = self.size - self.covered
            if after > 0:
                text += f"; the newest {self.count(after)} not yet covered by a signed head"
            return text + ", all verified"
        shown = "; ".join(f.message for f in self.findings[:3])
        more = f" (and {len(self.findings) - 3} more)" if len(self.findings) > 3 else ""
        return f"{self.count(self.size)}, NOT verified: {len(self.findings)} problem(s): {shown}{more}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "summary": self.summary(),
            "size": self.size,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "root_hash": to_hex(self.root) if self.root else None,
            "chain_hash": to_hex(self.chain),
            "covered_by_signed_head": self.covered,
            "heads": self.heads,
            "findings": [f.to_dict() for f in self.findings],
            "notes": self.notes,
        }


def _ids(first: int, last: int, noun: str, plural: str) -> str:
    if first == last:
        return f"{noun} {first} is missing"
    return f"{plural} {first}–{last} are missing"


def verify_log(
    rows: Iterable[LogRow],
    heads: Sequence[KnownHead],
    *,
    noun: str = "row",
    plural: str | None = None,
    first_id: int = 1,
    id_key: str = "id",
) -> LogReport:
    """Recompute every leaf, link and the Merkle root of the rows (in id order) and compare
    them with ``heads``; every problem named by id."""
    plural = plural or noun + "s"
    report = LogReport(noun, plural)
    out = report.findings
    pending = sorted(heads, key=lambda h: h.size)
    hi = 0
    while hi < len(pending) and pending[hi].size == 0:
        _check_head(report, pending[hi], CompactRange(), GENESIS, None, None)
        hi += 1
    tree = CompactRange()
    nodes = tree.nodes
    stored = true = GENESIS  # the chain from the stored hashes, and from the recomputed leaves
    recent: deque[tuple[bytes, int]] = deque(maxlen=_RECENT)
    prev_id = first_id - 1
    last_ok: KnownHead | None = None
    sha256 = hashlib.sha256
    for row in rows:
        rid, record, leaf, prev = row
        computed = sha256(b"\x00" + record).digest()
        if report.first_id is None:
            report.first_id = rid
        gap = False
        if rid > prev_id + 1:
            gap = True
            what = _ids(prev_id + 1, rid - 1, noun, plural)
            why = (
                f"ids jump from {prev_id} to {rid}"
                if report.size
                else f"the log starts at id {rid}, not {first_id}"
            )
            out.append(Finding(prev_id + 1, "missing", f"{what}: {why}"))
        elif rid <= prev_id:
            gap = True
            out.append(
                Finding(
                    rid, "reordered", f"{noun} {rid} follows {noun} {prev_id}: ids repeat or go backwards"
                )
            )
        if leaf is None or prev is None:
            out.append(
                Finding(
                    rid,
                    "inserted",
                    f"{noun} {rid} has no chain hashes: it was written outside the log's writer",
                )
            )
        else:
            if leaf != computed:
                was = _logged_as(record, leaf, id_key, rid)
                if was is not None:
                    out.append(
                        Finding(
                            rid,
                            "reordered",
                            f"{noun} {rid} was renumbered: its content was logged as {noun} {was}",
                        )
                    )
                else:
                    out.append(
                        Finding(rid, "changed", f"{noun} {rid} was changed: its leaf hash no longer matches")
                    )
            if prev != stored and not gap:
                earlier = next((i for c, i in reversed(recent) if c == prev), None)
                if earlier is not None:
                    out.append(
                        Finding(
                            rid,
                            "reordered",
                            f"{noun} {rid} is out of place: it links to {noun} {earlier}, "
                            f"but follows {noun} {prev_id}",
                        )
                    )
                elif report.size == 0:
                    out.append(
                        Finding(
                            rid,
                            "chain_break",
                            f"chain break at {noun} {rid}: the first row does not link to the start of "
                            f"the log ({plural} before it were removed)",
                        )
                    )
                else:
                    out.append(
                        Finding(
                            rid,
                            "chain_break",
                            f"chain break at {noun} {rid}: it does not link to {noun} {prev_id} (that row "
                            "was replaced, or rows were removed, inserted or reordered)",
                        )
                    )
        if leaf is not None and prev is not None and (prev != true or leaf != computed):
            stored = sha256(prev + leaf).digest()
            true = sha256(true + computed).digest()
        else:  # the stored hashes are the recomputed ones: one hash for both chains
            stored = true = sha256(true + computed).digest()
        recent.append((stored, rid))
        # the Merkle tree (CompactRange.append, inlined: this loop runs once per row)
        node, size = computed, report.size
        while size & 1:
            node = node_hash(nodes.pop(), node)
            size >>= 1
        nodes.append(node)
        report.size += 1
        tree.size = report.size
        prev_id = rid
        while hi < len(pending) and pending[hi].size == report.size:
            if _check_head(report, pending[hi], tree, true, last_ok, rid):
                last_ok = pending[hi]
            hi += 1
    report.last_id = prev_id if report.size else None
    report.root = tree.root()
    report.chain = true
    for head in pending[hi:]:
        lost = head.size - report.size
        have = f"the log has {report.count(report.size)}" if report.size else "the log is empty"
        # ids are positions (first_id, first_id + 1, ...): where the signed log ended
        end = first_id + head.size - 1
        problem = "truncated"
        if prev_id < end:
            cut = end - prev_id
            where = f"{report.count(cut)} {'was' if cut == 1 else 'were'} deleted from the end"
            where += f" (id {end})" if cut == 1 else f" (ids {prev_id + 1}–{end})"
        else:
            problem = "removed"
            where = f"{report.count(lost)} {'is' if lost == 1 else 'are'} missing (see the ids above)"
        out.append(
            Finding(
                None,
                problem,
                f"{have} but a signed head of {head.size} exists ({head.head.get('timestamp')}, "
                f"{head.source}): {where}",
            )
        )
        report.heads.append(_head_entry(head, "truncated"))
    return report


def _logged_as(record: bytes, leaf: bytes, id_key: str, rid: int) -> int | None:
    """The id a row's stored leaf hash was computed with, when only its id changed (looked for
    among nearby ids: rows shifted by an insertion or a deletion, or swapped)."""
    key = b'"' + id_key.encode("ascii") + b'":'
    needle = key + str(rid).encode("ascii")
    at = -1
    for before in (b",", b"{"):
        for after in (b",", b"}"):
            at = record.find(before + needle + after)
            if at >= 0:
                break
        if at >= 0:
            break
    if at < 0:
        return None
    start, end = at + 1 + len(key), at + 1 + len(needle)
    for other in (rid - 1, rid + 1, rid - 2, rid + 2):
        if other < 0:
            continue
        alt = record[:start] + str(other).encode("ascii") + record[end:]
        if hashlib.sha256(b"\x00" + alt).digest() == leaf:
            return other
    return None


def _head_entry(head: KnownHead, status: str) -> dict[str, Any]:
    return {
        "source": head.source,
        "tree_size": head.size,
        "root_hash": head.root,
        "timestamp": head.head.get("timestamp"),
        "status": status,
    }


def _check_head(
    report: LogReport,
    head: KnownHead,
    tree: CompactRange,
    chain: bytes,
    last_ok: KnownHead | None,
    last_id: int | None,
) -> bool:
    root_ok = to_hex(tree.root()) == head.root
    signed_chain = from_hex(head.head.get("chain_hash")) if "chain_hash" in head.head else None
    chain_ok = signed_chain is None or signed_chain == chain
    if root_ok and chain_ok:
        report.heads.append(_head_entry(head, "consistent"))
        return True
    since = f" after the {last_ok.size} covered by an earlier head" if last_ok is not None else ""
    upto = f" (up to id {last_id})" if last_id is not None else ""
    report.findings.append(
        Finding(
            None,
            "rewritten",
            f"the first {report.count(head.size)}{upto} no longer hash to the root of {head.describe()}: "
            f"{report.plural}{since} were changed, removed, inserted or reordered since it was signed",
        )
    )
    report.heads.append(_head_entry(head, "rewritten"))
    return False
