"""What an auditor reads first: the receipts counted by what they record, each one labelled, and
what each environment runs, from which O, approved by whom, since when.

Receipts are counted by *class*, their kind refined by what they say: a ``deployment`` receipt of
``mu receipt --deployment`` (``event: state``) is an ``attestation`` of what runs, not a
deployment; a deployment or rollback whose operational gate failed switched nothing
(``failed_deployment``, ``failed_rollback``). A generation is a policy change when it changed
hash(O) (the transitions say which), else a regeneration of the same O; a rejection is an attempt
that stopped at a gate, never a change.

Approvals name their approver as the compliance roster does (the roster version the approval was
signed under), with the approver's own signature checked against that member's key. Everything
here is read from the ledger rows the audit already holds: nothing is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from finops_fabric.audit.ledger import Row
from finops_fabric.errors import CheckFailed

__all__ = ["annotate", "approver", "by_kind", "counts_line", "environments", "receipt_class", "relabel"]

# Each class: (singular, plural) for the summary line, in the order the line names them.
NAMES: dict[str, tuple[str, str]] = {
    "policy_change": ("policy change (generation)", "policy changes (generations)"),
    "regeneration": ("regeneration of the same O", "regenerations of the same O"),
    "rejection": ("rejected attempt", "rejected attempts"),
    "deployment": ("deployment", "deployments"),
    "failed_deployment": ("failed deployment", "failed deployments"),
    "rollback": ("rollback", "rollbacks"),
    "failed_rollback": ("failed rollback", "failed rollbacks"),
    "attestation": ("attestation", "attestations"),
    "approval": ("approval", "approvals"),
    "roster": ("roster version", "roster versions"),
    "replay": ("replay", "replays"),
    "kaizen": ("kaizen", "kaizens"),
    "diagnosis": ("diagnosis", "diagnoses"),
}
SWITCHES = ("deployment", "rollback")  # classes that changed what an environment runs


def receipt_class(row: Row) -> str:
    """The row's kind, refined by what the receipt says (see the module's description)."""
    kind, doc = row.receipt_kind, row.doc or {}
    if kind in SWITCHES:
        if doc.get("event", "deploy") == "state":
            return "attestation"
        operational = ((doc.get("gates") or {}).get("operational") or {}).get("status")
        if operational != "PASS":
            return f"failed_{kind}"
    return kind


def by_kind(rows: Sequence[Row]) -> dict[str, int]:
    """How many receipts of each class (``generation`` counts every generation)."""
    return dict(sorted(Counter(receipt_class(r) for r in rows).items()))


def counts_line(kinds: Mapping[str, int], changes: int) -> str:
    """ "3 policy changes (generations), 2 rejected attempts, 1 deployment, …" (in a fixed order,
    then any other kind by name); policy changes are always named, the rest when present."""
    counts = {"policy_change": changes, "regeneration": kinds.get("generation", 0) - changes}
    counts |= {k: n for k, n in kinds.items() if k != "generation"}
    parts = [f"{changes} {NAMES['policy_change'][changes != 1]}"]
    for key in [*NAMES, *sorted(set(counts) - set(NAMES))]:
        n = counts.get(key, 0)
        if key == "policy_change" or n <= 0:
            continue
        singular, plural = NAMES.get(key, (f"{key} receipt", f"{key} receipts"))
        parts.append(f"{n} {plural if n != 1 else singular}")
    return ", ".join(parts)


# --- each receipt, labelled ---------------------------------------------------------------------


def _rosters(rows: Sequence[Row]) -> tuple[list[Any], str | None]:
    """The roster versions in the ledger (chain verified), or why they cannot be trusted."""
    from finops_fabric.approvals import ROSTER_KIND, roster_chain

    docs = [r.doc for r in rows if r.receipt_kind == ROSTER_KIND and r.doc is not None]
    try:
        return roster_chain(docs), None
    except CheckFailed as exc:
        return [], exc.message


def approver(doc: Mapping[str, Any], rosters: Sequence[Any], problem: str | None) -> dict[str, Any]:
    """Who signed an approval, as the roster names them, and whether their signature verifies."""
    from finops_fabric.approvals import verify_approval

    signer = doc.get("signer") if isinstance(doc.get("signer"), Mapping) else {}
    keyid = signer.get("keyid") if isinstance(signer, Mapping) else None
    out: dict[str, Any] = {"keyid": keyid, "name": None, "verified": False}
    out |= {"ontology_hash": doc.get("ontology_hash"), "override": doc.get("override")}
    wanted = doc.get("roster_version")
    ordered = sorted(rosters, key=lambda r: (r.version != wanted, -r.version))
    for roster in ordered:
        try:
            found = verify_approval(doc, roster, any_override=True)
        except CheckFailed as exc:
            out["problem"] = exc.message
            continue
        out |= {"name": found.signer, "verified": True, "roster_version": roster.version}
        out.pop("problem", None)
        return out
    if not rosters:
        out["problem"] = problem or "the ledger holds no compliance roster"
    return out


def annotate(chain: list[dict[str, Any]], rows: Sequence[Row], all_rows: Sequence[Row]) -> None:
    """Add to each chain entry its ``class``, its ``label`` and what an auditor reads on its
    card: the environment of a deployment, rollback or attestation, the approver of an approval."""
    rosters, problem = _rosters(all_rows)
    for entry, row in zip(chain, rows, strict=True):
        cls, doc = receipt_class(row), row.doc or {}
        entry["class"] = cls
        entry["label"] = NAMES.get(cls, (cls.replace("_", " "),))[0].removesuffix(" (generation)")
        if row.receipt_kind in SWITCHES:
            entry["env"] = doc.get("env")
            entry["runs"] = (doc.get("outputs") or {}).get("enforcer_hash")
            if cls.startswith("failed_"):
                evidence = ((doc.get("gates") or {}).get("operational") or {}).get("evidence") or {}
                entry["reason"] = evidence.get("reason")
            if cls == "attestation":
                entry["as_of"] = doc.get("as_of")
        if cls == "approval":
            entry["approver"] = approver(doc, rosters, problem)


def relabel(chain: list[dict[str, Any]], transitions: Sequence[Mapping[str, Any]]) -> None:
    """A generation that did not change hash(O) is a regeneration, not a policy change."""
    changed = {t["seq"]: bool(t.get("changed_o")) for t in transitions if t.get("kind") == "generation"}
    for entry in chain:
        if entry.get("class") == "generation":
            entry["label"] = "policy change" if changed.get(entry["seq"], True) else NAMES["regeneration"][0]


# --- what each environment runs -----------------------------------------------------------------


def environments(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """For each environment with a deployment in ``rows``: what its latest deployment or rollback
    runs (A and O), since when, by which receipt, and who of the roster approved that O."""
    from finops_fabric.approvals import APPROVAL_KIND

    rosters, problem = _rosters(rows)
    latest: dict[str, Row] = {}
    for row in rows:
        if receipt_class(row) in SWITCHES and isinstance((row.doc or {}).get("env"), str):
            latest[str((row.doc or {})["env"])] = row
    approvals = [r.doc for r in rows if r.receipt_kind == APPROVAL_KIND and r.doc is not None]
    out = []
    for env, row in sorted(latest.items()):
        doc = row.doc or {}
        ontology = (doc.get("inputs") or {}).get("ontology_hash")
        approved = [
            a
            for a in (
                approver(d, rosters[-1:], problem) for d in approvals if d.get("ontology_hash") == ontology
            )
            if a["verified"] and a["override"] is None
        ]
        out.append(
            {
                "env": env,
                "enforcer_hash": (doc.get("outputs") or {}).get("enforcer_hash"),
                "ontology_hash": ontology,
                "since": doc.get("time"),
                "seq": row.seq,
                "receipt_hash": row.hash,
                "by": row.receipt_kind,
                "approved_by": sorted({str(a["name"]) for a in approved}),
            }
        )
    return out
