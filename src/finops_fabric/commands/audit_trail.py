"""`mu audit-trail`: verify the receipt chain, name every gap, state each transition of O,
summarise what changed rule by rule, and sign the ledger's Merkle tree head.

Exit 0 when everything verified; 1 when a gap was found, an inclusion could not be proven or
the ledger is not consistent with an earlier tree head; 2 for bad invocation or input. The
store is only read (the operator key is read to sign the tree head).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.errors import InputError


def register(cmd: Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]) -> None:
    sp = cmd(
        "audit-trail",
        run,
        "verify the receipt chain, find gaps, state each transition, summarise what changed",
    )
    sp.add_argument("--from", dest="from_", metavar="R", help="first receipt (file or sha256:…)")
    sp.add_argument("--to", metavar="R", help="last receipt (file or sha256:…)")
    sp.add_argument(
        "--trust",
        metavar="FILE",
        help="public keys whose signatures count (JSON or text); "
        "default: the operator key and keys/trusted/*.pub",
    )
    sp.add_argument("--report", metavar="FILE.html|FILE.json", help="write the report (HTML page or JSON)")
    sp.add_argument(
        "--rebuild", action="store_true", help="rebuild O from ΔO at every step and check hash(O)"
    )
    sp.add_argument("--tree-head", metavar="FILE", help="write the signed Merkle tree head to FILE")
    sp.add_argument("--prove", metavar="RECEIPT_HASH", help="prove a receipt's inclusion in the ledger tree")
    sp.add_argument(
        "--consistency-from",
        metavar="OLD_TREE_HEAD.json",
        help="prove the ledger extends an earlier signed tree head (exit 1 if not)",
    )


def run(args: argparse.Namespace) -> int:
    from finops_fabric import audit
    from finops_fabric.cli import Out, progress_printer
    from finops_fabric.receipts import write_json_atomic
    from finops_fabric.report import write_report
    from finops_fabric.store import Store

    if args.report and Path(args.report).suffix.lower() not in (".html", ".htm", ".json"):
        raise InputError(f"--report={args.report}: the file must end in .html or .json", code="cli.usage")
    store = Store.open(args.home)
    trust = audit.load_trust(args.trust) if args.trust else audit.default_trust(store)
    start = audit.resolve_receipt(args.from_, "--from") if args.from_ else None
    end = audit.resolve_receipt(args.to, "--to") if args.to else None
    prove = audit.resolve_receipt(args.prove, "--prove") if args.prove else None
    old_head = audit.load_tree_head(args.consistency_from) if args.consistency_from else None
    progress = progress_printer(args)
    result = audit.audit_trail(
        store, trust, start_hash=start, end_hash=end, do_rebuild=args.rebuild, progress=progress
    )
    notes: list[str] = []
    try:
        key = store.operator_private_key()
    except InputError as exc:
        key = None
        notes.append(f"the tree head is unsigned: {exc.message}")
    result.tree_head = audit.sign_tree_head(result.tree, key)
    if prove is not None:
        result.inclusion = audit.prove_inclusion(result.ledger.rows, result.tree, prove)
    if old_head is not None:
        result.consistency = audit.consistency_from(old_head, result.tree, trust)
    doc = result.to_dict()
    if notes:
        doc["notes"] = notes
    if args.tree_head:
        write_json_atomic(Path(args.tree_head), result.tree_head)
    if args.report:
        from finops_fabric.analysis.trail import add_impacts

        add_impacts(store, doc["transitions"], progress)  # each change's regions, in the report
        write_report(Path(args.report), doc)
    Out(args.json).emit(doc, lambda: human(doc, args))
    return 0 if result.verified else 1


def _short(value: object) -> str:
    from finops_fabric.audit import short

    return short(value) if value is not None else "none"


def human(doc: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    verbose = bool(args.verbose)
    transitions = {t["seq"]: t for t in doc["transitions"]}
    for entry in doc["chain"]:
        status = "verified" if entry["verified"] else "FAILED: " + ", ".join(entry["problems"])
        label = entry.get("label") or entry["kind"]
        lines.append(
            f"seq {entry['seq']:<4} {label:<17} {entry.get('time') or '':<20} "
            f"{_short(entry['receipt_hash'])}  {status}"
        )
        lines += _card(entry)
        t = transitions.get(entry["seq"])
        if t is None:
            continue
        if t["status"] == "rejected":
            lines.append(f"     stopped: {t.get('reason')}; the O in force is unchanged (a valid stop)")
            continue
        if not t["changed_o"]:
            lines.append(f"     O unchanged ({_short(t['to'])})")
            continue
        counts = f"{len(t['added'])} added, {len(t['removed'])} removed, {len(t['changed'])} changed"
        lines.append(f"     O {_short(t['from'])} → {_short(t['to'])}: {counts}")
        lines += [f"       + {iri}" for iri in t["added"]] if t["from"] is not None or verbose else []
        lines += [f"       - {iri}" for iri in t["removed"]]
        for c in t["changed"]:
            lines.append(f"       ~ {c['rule']}")
            lines += [f"           {k}: {v['old']!r} → {v['new']!r}" for k, v in c["fields"].items()]
    if doc["gaps"]:
        lines.append("gaps:")
        lines += [f"  {g['problem']}: {g['message']}" for g in doc["gaps"]]
    if doc.get("rebuild") is not None:
        ok = sum(1 for s in doc["rebuild"] if s.get("reproduced"))
        lines.append(f"rebuild from ΔO: {ok} of {len(doc['rebuild'])} steps reproduce the receipted hash(O)")
        for s in doc["rebuild"]:
            mark = "ok  " if s.get("reproduced") else "FAIL"
            lines.append(f"  {mark} seq {s['seq']}: {s.get('message')}")
    head = doc["tree_head"]
    signer = ", ".join(s["keyid"][:16] + "…" for s in head["signatures"]) or "unsigned"
    lines.append(f"tree head: {head['tree_size']} receipts, root {head['root_hash']} (signed by {signer})")
    inc = doc.get("inclusion")
    if inc is not None:
        if inc.get("included"):
            proven = "proven" if inc["verified"] else "NOT proven"
            lines.append(
                f"inclusion of {_short(inc['receipt_hash'])}: leaf {inc['leaf_index']} of "
                f"{inc['tree_size']}, path of {len(inc['audit_path'])} hashes, {proven}"
            )
        else:
            lines.append(f"inclusion of {inc['receipt_hash']}: NOT in the ledger")
    con = doc.get("consistency")
    if con is not None:
        lines.append(f"consistency: {'ok' if con.get('consistent') else 'FAILED'}: {con.get('message')}")
    lines += [f"note: {n}" for n in doc.get("notes", [])]
    if args.report:
        lines.append(f"report written to {args.report}")
    if args.tree_head:
        lines.append(f"tree head written to {args.tree_head}")
    lines += [environment_line(e) for e in doc.get("environments") or []]
    lines.append(doc["summary"])
    return lines


def environment_line(e: dict[str, Any]) -> str:
    """ "production runs A … (O …, approved by alice) since …"."""
    approved = (
        f"approved by {', '.join(e['approved_by'])}" if e["approved_by"] else "not approved by the roster"
    )
    return (
        f"{e['env']} runs A {_short(e['enforcer_hash'])} (O {_short(e['ontology_hash'])}, {approved}) "
        f"since {e['since']} ({e['by']} seq {e['seq']})"
    )


def _card(entry: dict[str, Any]) -> list[str]:
    """What a deployment, rollback, attestation or approval says, under its chain line."""
    cls, env, runs = str(entry.get("class") or ""), entry.get("env"), _short(entry.get("runs"))
    if env is not None:
        if cls == "attestation":
            return [f"     attests that {env} runs A {runs} (as of {entry.get('as_of')})"]
        if cls.startswith("failed_"):
            return [f"     {env}: not switched ({entry.get('reason')}); it kept A {runs}"]
        return [f"     {env} now runs A {runs}"]
    a = entry.get("approver")
    if a is None:
        return []
    what = f"an override of {a['override']} for O" if a.get("override") else "O"
    who = a["name"] if a.get("verified") else f"key {a.get('keyid')} (NOT verified: {a.get('problem')})"
    return [f"     {who} approved {what} {_short(a.get('ontology_hash'))}"]
