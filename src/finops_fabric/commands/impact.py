"""`mu impact --old=O_old --new=O_new [--old-receipt=R] [--report=impact.html]`: the exact set of
transactions whose outcome a change of O alters, as disjoint regions with a checked witness each.

Exit 0 when O_new decides every transaction exactly as O_old (``equivalent: true``); 1 when it
does not (the regions say where), or when a witness is not decided as stated (a defect,
``impact.witness_defect``); 2 for unreadable input, a construction the analysis cannot decide
exactly, or a budget exceeded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import Out, progress_printer
from finops_fabric.errors import InputError

#: Regions listed in the human output (--verbose lists every one).
HUMAN_LIMIT = 60

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def cmd_impact(args: argparse.Namespace) -> int:
    from finops_fabric.analysis.run import analyse, checked, start
    from finops_fabric.analysis.sides import side_of_path, side_of_receipt

    if bool(args.old) == bool(args.old_receipt):
        raise InputError("give O_old as --old=O or --old-receipt=R (one of them)", code="cli.usage")
    if args.report and Path(args.report).suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--report={args.report}: the report is an .html file", code="cli.usage")
    progress = progress_printer(args)
    if args.old_receipt:
        from finops_fabric.store import Store

        old = side_of_receipt(args.old_receipt, Store.locate(args.home), args.old_generator)
    else:
        old = side_of_path(Path(args.old), args.old_generator)
    # each side's enforcer is built from the moment the side is read, while the rest goes on (the
    # second side's from the first's rule modules when both have the same generator)
    from finops_fabric.analysis.sides import generator

    jobs = [start(old, share=old.generator == generator(args.new_generator))]
    try:
        new = side_of_path(Path(args.new), args.new_generator)
        jobs.append(start(new, after=jobs[0]))
        progress("analysing the decision space of both policies")
        result = analyse(
            old, new, detail=args.detail, node_budget=args.max_nodes, region_budget=args.max_regions
        )
        doc = checked(result, old, new, progress, (jobs[0], jobs[1]))
    finally:
        for job in jobs:
            job.cancel()
    if args.report:
        from finops_fabric.analysis.html import write_impact_report

        write_impact_report(Path(args.report), doc, result)
    Out(args.json).emit(doc, lambda: human(doc, args))
    return 0 if doc["equivalent"] else 1


def human(doc: dict[str, Any], args: argparse.Namespace) -> list[str]:
    def side(s: dict[str, Any]) -> str:
        gen = s.get("generator") or {}
        return f"{s['ontology_hash']} (generator v{gen.get('version', '?')}, language {s['language']})"

    lines = [f"O_old {side(doc['old'])}", f"O_new {side(doc['new'])}"]
    if doc["equivalent"]:
        lines.append(
            "equivalent: every transaction gets the same decision, fired rules, notifications, audit"
        )
        return lines
    regions = doc["regions"]
    by = doc["checked_by"]
    lines.append(
        f"{len(regions)} region(s) where the outcome differs; each witness was decided by both "
        f"enforcers and the reference interpreter ({by['witnesses']} checked):"
    )
    shown = regions if args.verbose else regions[:HUMAN_LIMIT]
    for r in shown:
        lines.append(f"  {r['witness']['id']:>5}  {r['summary']}")
        if args.verbose:
            import json

            lines.append(f"         when    {json.dumps(r['when'], sort_keys=True)}")
            lines.append(f"         witness {json.dumps(r['witness'], sort_keys=True, default=str)}")
    if len(shown) < len(regions):
        lines.append(
            f"  … and {len(regions) - len(shown)} more (--verbose lists them, --json gives every value)"
        )
    if args.report:
        lines.append(f"report written to {args.report}")
    lines.append("not equivalent")
    return lines


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {n}")
    return n


def register(cmd: Register) -> None:
    from finops_fabric.analysis.engine import DEFAULT_NODE_BUDGET, DEFAULT_REGION_BUDGET

    sp = cmd("impact", cmd_impact, "the exact set of transactions whose outcome a change of O alters")
    sp.add_argument("--old", metavar="O_OLD", help="the policy in force")
    sp.add_argument(
        "--old-receipt", metavar="R", help="O_old from a generation receipt's snapshot (file or sha256:…)"
    )
    sp.add_argument("--new", required=True, metavar="O_NEW", help="the proposed policy")
    sp.add_argument(
        "--old-generator",
        metavar="V",
        help="decide O_old by this generator (default: the receipt's, else the default)",
    )
    sp.add_argument(
        "--new-generator", metavar="V", help="decide O_new by this generator (default: the default)"
    )
    sp.add_argument(
        "--detail",
        choices=("decision", "rules"),
        default="decision",
        help="regions by decision and effects (default), or also by exactly which rules fire",
    )
    sp.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML report")
    sp.add_argument(
        "--max-regions",
        type=_positive,
        default=DEFAULT_REGION_BUDGET,
        metavar="N",
        help=f"stop (exit 2, with the count) past N regions (default {DEFAULT_REGION_BUDGET:,})",
    )
    sp.add_argument(
        "--max-nodes",
        type=_positive,
        default=DEFAULT_NODE_BUDGET,
        metavar="N",
        help=f"stop (exit 2) past N decision-diagram nodes for one type (default {DEFAULT_NODE_BUDGET:,})",
    )
