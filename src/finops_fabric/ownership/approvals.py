"""The approvals on offer (the store's, those generation receipts carry, and every
``*.approval.json`` committed on any branch), each verified against the compliance roster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from finops_fabric.approvals import Approval
from finops_fabric.errors import FabricError
from finops_fabric.ownership.git import _Git
from finops_fabric.store import Store


@dataclass
class _Approvals:
    by_hash: dict[str, list[Approval]] = field(default_factory=dict)
    overrides: dict[str, list[Approval]] = field(default_factory=dict)
    ignored: list[dict[str, str]] = field(default_factory=list)  # source, ontology_hash, reason

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_hash.values())

    def why_not(self, ontology_hash: str) -> str:
        """Why nothing counts as an approval of ``ontology_hash`` (for a violation's detail)."""
        reasons = [
            f"{i['source']}: {i['reason']}" for i in self.ignored if i["ontology_hash"] == ontology_hash
        ]
        reasons += [
            f"{a.signer} signed only an override of invariant {a.override!r} for it, not an approval of O"
            for a in self.overrides.get(ontology_hash, [])
        ]
        return f" (not counted: {'; '.join(reasons[:3])})" if reasons else ""


def _approval_docs(git: _Git, store: Store) -> list[tuple[str, object]]:
    """Every approval document on offer: the ledger's, those generation receipts carry, and every
    ``*.approval.json`` blob committed on any branch of the repository."""
    from finops_fabric.approvals import APPROVAL_SUFFIX, stored_approvals
    from finops_fabric.files import strict_json_loads

    docs: list[tuple[str, object]] = [(f"ledger of {store.home}", d) for d in stored_approvals(store.home)]
    for r in store.receipts("generation"):
        for carried in r.get("approvals") or []:
            if isinstance(carried, Mapping):
                docs.append((f"generation receipt {r.get('receipt_hash')}", carried.get("approval")))
    seen: set[str] = set()
    for line in git.must("rev-list", "--all", "--objects").decode("utf-8", "surrogateescape").splitlines():
        oid, _, path = line.partition(" ")
        if not path.endswith(APPROVAL_SUFFIX) or oid in seen:
            continue
        seen.add(oid)
        source = f"{path} (blob {oid[:12]})"
        try:
            docs.append((source, strict_json_loads(git.read(oid, "blob"))))
        except ValueError as e:
            docs.append((source, f"not valid JSON: {e}"))
    return docs


def _approvals(git: _Git, store: Store) -> _Approvals:
    from finops_fabric.approvals import load_roster, verify_approval

    roster = load_roster(store.home)
    result, unique = _Approvals(), set()
    for source, doc in _approval_docs(git, store):
        if not isinstance(doc, Mapping):
            reason = doc if isinstance(doc, str) else "not a JSON object"
            result.ignored.append({"source": source, "ontology_hash": "", "reason": reason})
            continue
        try:
            approval = verify_approval(doc, roster, any_override=True)
        except FabricError as e:
            claimed = doc.get("ontology_hash")
            result.ignored.append(
                {
                    "source": source,
                    "ontology_hash": claimed if isinstance(claimed, str) else "",
                    "reason": e.message,
                }
            )
            continue
        if approval.approval_hash in unique:
            continue
        unique.add(approval.approval_hash)
        into = result.overrides if approval.override is not None else result.by_hash
        into.setdefault(approval.ontology_hash, []).append(approval)
    return result


def _signers(approvals: Sequence[Approval]) -> list[dict[str, str]]:
    return [{"keyid": a.keyid, "signer": a.signer, "approval_hash": a.approval_hash} for a in approvals]
