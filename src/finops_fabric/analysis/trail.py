"""What each change of O in the ledger did: the impact between consecutive generation receipts'
O snapshots, for ``mu audit-trail --report``.

Each side is decided by the language of the generator its receipt pins. Witnesses are decided by
both sides' reference interpreters (an audit reads the ledger; it builds no enforcers). A change
whose snapshots are missing, or that the analysis cannot decide exactly or within its budget,
says so instead of listing regions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.analysis.fields import Unsupported
from finops_fabric.analysis.impact import SideInfo, impact
from finops_fabric.analysis.mdd import BudgetExceeded
from finops_fabric.analysis.verify import Deciders, check_witnesses, language_of
from finops_fabric.canonical import is_sha256
from finops_fabric.errors import FabricError
from finops_fabric.interpreter import Interpreter
from finops_fabric.store import Store

#: Regions listed per change (all are counted); the budget keeps an audit of a long ledger bounded.
LISTED = 50
REGION_BUDGET = 2_000


def _language(receipt: Mapping[str, Any] | None) -> str:
    inputs = receipt.get("inputs") if receipt is not None else None
    gen = inputs.get("generator") if isinstance(inputs, Mapping) else None
    version = gen.get("version") if isinstance(gen, Mapping) else None
    try:
        return language_of(generators.get(str(version))) if version is not None else "1.0"
    except FabricError:
        return "1.0"


class _Policies:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, m.Policy | None] = {}

    def get(self, digest: str) -> m.Policy | None:
        if digest not in self._cache:
            from finops_fabric.pipeline import load_snapshot
            from finops_fabric.rdf.reader import read_policy

            try:
                data = self.store.get_object("ontology", digest)
                self._cache[digest] = read_policy(load_snapshot(data, f"snapshot {digest}").raw.triples)
            except FabricError:
                self._cache[digest] = None
        return self._cache[digest]


def change_impact(old: SideInfo, new: SideInfo) -> dict[str, Any]:
    """The impact of one change, as the audit report shows it."""
    try:
        result = impact(old, new, region_budget=REGION_BUDGET)
    except (Unsupported, BudgetExceeded) as exc:
        return {"error": str(exc)}
    deciders = Deciders(Interpreter(old.policy, old.language), Interpreter(new.policy, new.language))
    defects = check_witnesses([(r.witness, r.signature, r.summary) for r in result.regions], deciders)
    doc = result.to_dict()
    out: dict[str, Any] = {
        "equivalent": doc["equivalent"],
        "languages": [old.language, new.language],
        "regions_total": len(doc["regions"]),
        "regions": [
            {k: r[k] for k in ("summary", "when", "old", "new", "effects", "witness")}
            for r in doc["regions"][:LISTED]
        ],
        "checked_by": "the reference interpreters of both sides",
    }
    if defects:
        out["defects"] = defects
    return out


def add_impacts(store: Store, transitions: Sequence[dict[str, Any]], progress: Callable[[str], None]) -> None:
    """Set ``impact`` on every generation transition that changed O from an earlier O, or that
    decides the same O by another language version (a generator of another language)."""
    policies = _Policies(store)
    previous_language: str | None = None
    for t in transitions:
        if t.get("kind") != "generation" or t.get("status") != "generated":
            continue
        receipt = store.find(str(t.get("receipt_hash"))) if is_sha256(t.get("receipt_hash")) else None
        language = _language(receipt)
        before, after = t.get("from"), t.get("to")
        relanguaged = previous_language is not None and previous_language != language
        if (t.get("changed_o") or relanguaged) and is_sha256(before) and is_sha256(after):
            assert isinstance(before, str) and isinstance(after, str)
            old_p, new_p = policies.get(before), policies.get(after)
            if old_p is None or new_p is None:
                t["impact"] = {"error": "an O snapshot of this change is missing or unreadable"}
            else:
                progress(f"seq {t.get('seq')}: impact of the change")
                t["impact"] = change_impact(
                    SideInfo(old_p, before, previous_language or language), SideInfo(new_p, after, language)
                )
        previous_language = language
