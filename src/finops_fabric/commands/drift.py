"""`mu drift --enforcer=A_prod [--ontology=O]`: regenerate from the latest receipted O and compare
with what runs; explain each difference. Exit 0 when identical, 1 on drift, 2 for bad input.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from finops_fabric.cli import Out, progress_printer

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def cmd_drift(args: argparse.Namespace) -> int:
    from finops_fabric.drift import detect_drift, explain
    from finops_fabric.store import Store

    report = detect_drift(
        Path(args.enforcer),
        Store.locate(args.home),
        ontology=Path(args.ontology) if args.ontology else None,
        progress=progress_printer(args),
    )
    Out(args.json).emit(report.to_dict(), lambda: explain(report))
    return 1 if report.drift else 0


def register(cmd: Register) -> None:
    sp = cmd(
        "drift",
        cmd_drift,
        "regenerate A from the latest receipted O and compare it with what runs; explain each difference",
    )
    sp.add_argument("--enforcer", required=True, metavar="A_PROD", help="the enforcer that runs")
    sp.add_argument("--ontology", metavar="O", help="also check whether O now differs from the receipted O")
