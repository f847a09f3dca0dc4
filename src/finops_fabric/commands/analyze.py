"""`mu analyze --ontology=O [--generator-version=V]`: what O's exact decision space says about its
rules: decision rules that never fire or only fail closed, rules shadowed by others, notification
and audit rules that never trigger, golden cases that no longer exercise the rule they name.

Exit 0 when there is no finding; 1 when there are findings (each names the rule and the types);
2 for an unreadable O.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import Out

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def cmd_analyze(args: argparse.Namespace) -> int:
    from finops_fabric.analysis.lint import analyze
    from finops_fabric.analysis.sides import side_of_path

    side = side_of_path(Path(args.ontology), args.generator_version)
    result = analyze(side.policy, side.info.language, side.info.ontology_hash)
    doc = result.to_dict()
    doc["generator"] = side.generator.describe()
    Out(args.json).emit(doc, lambda: human(doc))
    return 1 if result.findings else 0


def human(doc: dict[str, Any]) -> list[str]:
    from finops_fabric.analysis.summary import short

    def types(ts: list[str]) -> str:
        return ", ".join(ts)

    lines = [f"O {doc['ontology_hash']} (language {doc['language']})"]
    for f in doc["never_fires"]:
        lines.append(f"never fires      {short(f['rule'])}  on {types(f['types'])}")
    for f in doc["fails_closed_only"]:
        lines.append(
            f"fails closed only {short(f['rule'])}  on {types(f['types'])}: it rejects only transactions "
            "missing a field it reads"
        )
    for f in doc["shadowed"]:
        by = "; ".join(f"{t}: {', '.join(short(x) for x in cover)}" for t, cover in f["by"].items())
        lines.append(
            f"shadowed         {short(f['rule'])}  every rejection is made by another rule too ({by})"
        )
    for f in doc["never_triggers"]:
        lines.append(f"never triggers   {short(f['rule'])}  on {types(f['types'])}")
    for g in doc["golden"]:
        lines.append(f"golden case      {g['scenario']} names {short(g['rule'])}, but {g['why']}")
    for u in doc["unsupported"]:
        lines.append(f"not analysed     {u}")
    lines.append(f"{doc['findings']} finding(s)")
    return lines


def register(cmd: Register) -> None:
    sp = cmd(
        "analyze",
        cmd_analyze,
        "rules that never fire, shadowed rules, effects that never trigger, golden cases missing their rule",
    )
    sp.add_argument(
        "--ontology", required=True, metavar="O", help="the policy (a file or a directory of files)"
    )
    sp.add_argument(
        "--generator-version", metavar="V", help="judge O by this generator's language (default: the default)"
    )
