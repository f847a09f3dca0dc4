"""`mu kaizen --ontology=O --from-generator=V1 --to-generator=V2 [--random=N] [--seed=S]`:
build A from the same O with both generators and prove the decisions unchanged, on a case set
complete for O (see :func:`finops_fabric.analysis.cases.kaizen_cases`) and seeded random cases.

Exit 0 when every case decides exactly alike (and as the reference interpreter does); 1 when
the new generator changes behaviour (the counterexamples are listed; the kaizen receipt is
written all the same), when O fails its gates or a build is not deterministic; 2 for an unknown
generator version or unreadable input.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from finops_fabric.cli import Out, progress_printer

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def cmd_kaizen(args: argparse.Namespace) -> int:
    from finops_fabric.kaizen import kaizen
    from finops_fabric.receipts import write_json_atomic
    from finops_fabric.store import Store

    result = kaizen(
        Path(args.ontology),
        args.from_generator,
        args.to_generator,
        Store.locate(args.home),
        count=args.random,
        seed=args.seed,
        schemas=[Path(s) for s in args.schema],
        progress=progress_printer(args),
    )
    assert result.receipt is not None
    if args.receipt:
        write_json_atomic(Path(args.receipt), result.receipt)
    doc = result.to_dict()

    def human() -> list[str]:
        c = result.cases
        lines = [
            f"{'KAIZEN' if result.accepted else 'REFUSED'}: generator v{doc['from']} → v{doc['to']} on O "
            f"{result.ontology_hash}: {result.verdict.replace('_', ' ')}",
            f"  A: {result.from_enforcer_hash} → {result.to_enforcer_hash} "
            f"({result.artifacts_differing} artifacts differ, {result.artifacts_identical} identical)",
            f"  {result.cases_compared} cases compared: {c['golden']} golden, {c['inputs']} refused inputs, "
            + (
                f"{c['complete']} of the set complete for O (languages "
                f"{', '.join(result.case_set.get('languages', []))})"
                if result.case_set.get("kind") == "complete"
                else f"{c['boundary']} boundary, {c['rule_edges']} rule edges (sampled: "
                f"{result.case_set.get('reason')})"
            )
            + f", {c['random']} random (seed {result.seed})",
            f"  decisions that differ: {result.counterexamples_total}; disagreements with the reference "
            f"interpreter: v{doc['from']} {result.oracle_total['from']}, "
            f"v{doc['to']} {result.oracle_total['to']}",
        ]
        langs = result.languages
        if result.counterexamples_by_language is not None:
            lines.append(
                f"  policy language {langs['from']} → {langs['to']}: {result.counterexamples_by_language} of "
                f"the {result.counterexamples_total} differences are its input checks (fail closed on an "
                "undeclared type, a bad or negative amount, an undeclared level)"
            )
        for ce in result.counterexamples:
            checks = f" [{', '.join(ce['input_checks'])}]" if ce.get("input_checks") else ""
            lines.append(f"  counterexample ({ce['category']}){checks}: {ce['transaction']}")
            lines.append(f"    v{doc['from']}: {ce['old_decision']}")
            lines.append(f"    v{doc['to']}: {ce['new_decision']}")
        lines.append(f"kaizen receipt {doc['receipt_hash']}")
        if not result.accepted and result.counterexamples_by_language is not None:
            lines.append(
                "generators of different policy languages decide differently by design: adopting the "
                "newer one is a change of behaviour, for compliance to approve, not a kaizen"
            )
        elif not result.accepted:
            lines.append(
                "a generator change that alters behaviour is not a kaizen: it goes to compliance as a ΔO"
            )
        return lines

    Out(args.json).emit(doc, human)
    return 0 if result.accepted else 1


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative: {n}")
    return n


def register(cmd: Register) -> None:
    from finops_fabric.kaizen import DEFAULT_RANDOM, DEFAULT_SEED

    sp = cmd(
        "kaizen",
        cmd_kaizen,
        "regenerate O with two generator versions, prove behaviour unchanged, sign a kaizen receipt",
    )
    sp.add_argument("--ontology", required=True, metavar="O", help="the policy to compare both generators on")
    sp.add_argument("--from-generator", required=True, metavar="V1", help="the generator in use")
    sp.add_argument("--to-generator", required=True, metavar="V2", help="the newer generator")
    sp.add_argument(
        "--random",
        type=_count,
        default=DEFAULT_RANDOM,
        metavar="N",
        help=f"seeded random transactions to compare as well (default {DEFAULT_RANDOM})",
    )
    sp.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, metavar="S", help=f"their seed (default {DEFAULT_SEED})"
    )
    sp.add_argument("--schema", action="append", default=[], metavar="Σ", help="extra SHACL shapes")
    sp.add_argument("--receipt", metavar="FILE", help="also write the kaizen receipt here")
