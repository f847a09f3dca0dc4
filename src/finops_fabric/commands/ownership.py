"""`mu ownership --repo=DIR [--receipt=R] [--ontology-path=REL …]`: prove from the git history of
O's repository that compliance owns the rules: every change to hash(O) approved by a roster
member, no hand edits to generated code, every A in the history receipted, and the production
receipt bound to an approved O. Exit 0 when all hold, 1 on any violation, 2 for bad input (not a
git repository, a shallow clone, missing objects, no roster in the store).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from finops_fabric.cli import Out, progress_printer

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def cmd_ownership(args: argparse.Namespace) -> int:
    from finops_fabric.ownership import check_ownership, explain
    from finops_fabric.store import Store

    started = time.monotonic()
    report = check_ownership(
        Path(args.repo),
        Store.locate(args.home),
        receipt=args.receipt,
        ontology_paths=args.ontology_path,
        progress=progress_printer(args),
    )
    elapsed = time.monotonic() - started
    doc = report.to_dict()
    doc["seconds"] = round(elapsed, 3)
    Out(args.json).emit(doc, lambda: [*explain(report), f"({elapsed:.1f} s)"])
    return 0 if report.owned else 1


def register(cmd: Register) -> None:
    sp = cmd(
        "ownership",
        cmd_ownership,
        "prove from git history: O changes approved by the roster, no hand edits to generated code, "
        "the production receipt bound to an approved O",
    )
    sp.add_argument("--repo", required=True, metavar="DIR", help="the git repository that holds O")
    sp.add_argument(
        "--receipt",
        metavar="R",
        help="the production receipt (file or hash); default: the store's latest production "
        "deployment, else its latest generation receipt",
    )
    sp.add_argument(
        "--ontology-path",
        action="append",
        default=[],
        metavar="REL",
        help="a file or directory of O, relative to --repo (repeatable); default: every RDF file "
        "outside generated-enforcer directories",
    )
