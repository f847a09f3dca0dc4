"""`mu validate --ontology=O [--schema=Σ …] [--golden [--generator-version=V]]`: the ontology
gate (O ⊨ Σ) and the invariant gate; with ``--golden``, a dry run of the golden gate on a
throwaway A (:func:`finops_fabric.pipeline.dry_run`: nothing is written to the store).
Exit 0 when O conforms (and, with ``--golden``, every golden case passed and A agrees with the
reference interpreter); 1 otherwise; 2 for bad invocation or input.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import Out, finding_line

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def cmd_validate(args: argparse.Namespace) -> int:
    from finops_fabric.pipeline import dry_run, load_ontology, validate

    onto = load_ontology(Path(args.ontology))
    schemas = [Path(s) for s in args.schema]
    dry = dry_run(onto, schemas, args.generator_version) if args.golden else None
    v = dry.validation if dry is not None else validate(onto, schemas)
    violations = [f.to_dict() for f in v.violations]
    warnings = [f.to_dict() for f in v.findings if f.severity == "warning"]
    doc: dict[str, Any] = {
        "conforms": v.conforms,
        "ontology_hash": onto.hash,
        "violations": violations,
        "warnings": warnings,
        "gates": v.gates,
        "rules": len(v.policy.rules) if v.policy else None,
    }
    if dry is not None:
        doc["dry_run"] = dry_run_doc(dry)

    def human() -> list[str]:
        lines = [finding_line(f) for f in violations + warnings]
        if v.conforms:
            lines.append(
                f"O conforms to Σ: {len(v.policy.rules) if v.policy else 0} rules, "
                f"{len(warnings)} warning(s); {onto.hash}"
            )
        else:
            lines.append(f"O does not conform: {len(violations)} problem(s)")
        if dry is not None:
            lines += dry_run_lines(dry)
        return lines

    Out(args.json).emit(doc, human)
    if dry is not None:
        return 0 if dry.ok else 1
    return 0 if v.conforms else 1


def dry_run_doc(dry: Any) -> dict[str, Any]:
    """The golden gate of a dry run, as ``mu validate --golden --json`` prints it."""
    g = dry.golden
    return {
        "ok": dry.ok,
        "store_written": False,
        "generator": dry.generator,
        "enforcer_hash": dry.enforcer_hash,
        "golden": {"status": "PASS" if g.ok else "FAIL", **g.evidence()} if g is not None else None,
    }


def dry_run_lines(dry: Any) -> list[str]:
    from finops_fabric.golden import failure_lines

    g = dry.golden
    if g is None:
        return ["dry run: the golden cases were not run (O does not conform)"]
    lines = [line for f in g.failures for line in failure_lines(f)]
    lines += [f"A and the reference interpreter disagree: {d}" for d in g.disagreements[:3]]
    verdict = "PASS" if g.ok else "FAIL"
    lines.append(
        f"dry run (generator v{dry.generator['version']}, nothing written to the store): golden {verdict}, "
        f"{g.passed} of {len(g.cases)} golden cases passed, {g.derived_rule_checks + g.derived_whole_checks} "
        "derived cases checked against the reference interpreter"
    )
    return lines


def register(cmd: Register) -> None:
    sp = cmd(
        "validate",
        cmd_validate,
        "ontology gate (O ⊨ Σ) and invariant gate; --golden: a dry run of the golden cases",
    )
    sp.add_argument("--ontology", required=True, metavar="O", help="the policy (file or directory)")
    sp.add_argument(
        "--schema", action="append", default=[], metavar="Σ", help="extra SHACL shapes (repeatable)"
    )
    sp.add_argument(
        "--golden",
        action="store_true",
        help="also run the golden cases on a throwaway A, as the golden gate does (nothing is stored)",
    )
    sp.add_argument(
        "--generator-version",
        metavar="V",
        help="with --golden: the generator to build A with (default: the default)",
    )
