"""`mu impact` as a library call: analyse, check every witness, return the document.

Errors map to the CLI's exit codes: a construction the analysis does not cut exactly or a
budget exceeded is bad input (exit 2, ``impact.unsupported`` / ``impact.budget``); a witness that
the generated enforcers or the interpreters do not decide as stated is a defect (exit 1,
``impact.witness_defect``), and nothing is printed as if it held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from finops_fabric.analysis.engine import DEFAULT_NODE_BUDGET, DEFAULT_REGION_BUDGET
from finops_fabric.analysis.fields import Unsupported
from finops_fabric.analysis.impact import Impact, impact
from finops_fabric.analysis.mdd import BudgetExceeded
from finops_fabric.analysis.sides import LoadedSide
from finops_fabric.analysis.verify import Deciders, EnforcerJob, check_witnesses, enforced_by_both
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.interpreter import Interpreter

DETAILS = ("decision", "rules")


def analyse(
    old: LoadedSide,
    new: LoadedSide,
    *,
    detail: str = "decision",
    node_budget: int = DEFAULT_NODE_BUDGET,
    region_budget: int = DEFAULT_REGION_BUDGET,
) -> Impact:
    """The impact of old → new; analysis limits become :class:`InputError`s."""
    if detail not in DETAILS:
        raise InputError(f"--detail={detail}: choose one of {', '.join(DETAILS)}", code="cli.usage")
    try:
        return impact(old.info, new.info, detail=detail, node_budget=node_budget, region_budget=region_budget)
    except Unsupported as exc:
        raise InputError(
            f"the analysis cannot decide this change exactly: {exc}",
            code="impact.unsupported",
            hint="backtest the change on recorded transactions instead (`mu backtest`)",
        ) from exc
    except BudgetExceeded as exc:
        raise InputError(
            f"the analysis stopped: {exc}",
            code="impact.budget",
            hint="raise --max-regions (or --max-nodes), or compare a smaller change",
        ) from exc


def start(side: LoadedSide, *, share: bool = False, after: EnforcerJob | None = None) -> EnforcerJob:
    """Start building and loading one side's enforcer (in a forked child, when there can be one)
    as soon as the side is read; :func:`checked` asks it about the witnesses. ``share``: the
    other side has the same generator and will take the rule modules this job makes (``after=``
    this job)."""
    return EnforcerJob((side.generator, side.policy, side.info.ontology_hash), share=share, after=after)


def checked(
    result: Impact,
    old: LoadedSide,
    new: LoadedSide,
    progress: Callable[[str], None],
    jobs: tuple[EnforcerJob, EnforcerJob] | None = None,
) -> dict[str, Any]:
    """Decide every witness with both generated enforcers and both interpreters; the document,
    or :class:`CheckFailed` ``impact.witness_defect`` naming each witness that did not hold.
    ``jobs``: both sides' enforcers already being built (see :func:`start`); stopped here when
    there is no witness to decide."""
    deciders = Deciders(
        Interpreter(old.policy, old.info.language), Interpreter(new.policy, new.info.language)
    )
    regions = [(r.witness, r.signature, r.summary) for r in result.regions]
    checked_by: dict[str, Any] = {"interpreters": [old.info.language, new.info.language]}
    if regions:
        progress(f"building both enforcers (generator v{old.generator.version} and v{new.generator.version})")
        (old_hash, old_answers), (new_hash, new_answers) = enforced_by_both(
            jobs[0] if jobs else (old.generator, old.policy, old.info.ontology_hash),
            jobs[1] if jobs else (new.generator, new.policy, new.info.ontology_hash),
            [tx for tx, _, _ in regions],
        )
        deciders.old_enforced, deciders.new_enforced = old_answers, new_answers
        checked_by["enforcers"] = {"old": old_hash, "new": new_hash}
        progress(f"checking {len(regions)} witnesses")
        defects = check_witnesses(regions, deciders)
        if defects:
            first = defects[0]
            raise CheckFailed(
                f"{len(defects)} witness(es) do not show the stated difference; the first, "
                f'{first["witness"]}, for "{first["region"]}": {first["decided_by"]}: {first["problem"]}',
                code="impact.witness_defect",
                hint="this is a defect of the analysis or of a generator; nothing was reported as holding",
            )
    elif jobs:
        for job in jobs:
            job.cancel()
    doc = result.to_dict()
    doc["checked_by"] = {**checked_by, "witnesses": len(regions)}
    return doc
