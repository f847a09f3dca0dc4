"""Every witness decided before anyone reads it: by both generated enforcers (built now, in a
temporary directory, by each side's generator) and by the reference interpreter of each side's
language. A witness on which they do not show the region's stated difference is a defect of the
analysis or of a generator, and :func:`check_witnesses` says which.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.analysis.engine import Signature
from finops_fabric.errors import CheckFailed
from finops_fabric.interpreter import Interpreter, Outcome, comparable


def language_of(gen: generators.Generator) -> str:
    """The policy language version a generator implements (1.0 for generators 1 and 2, 1.1 from
    generator 3 on): each side of an analysis is decided in its generator's language."""
    return gen.language


def observed(old: Outcome, new: Outcome) -> Signature:
    """The exact signature of one transaction from the two sides' outcomes."""
    fo = {r for r, _ in old.fired}
    fn = {r for r, _ in new.fired}
    eo = {("notify", r, to) for r, to in old.notifications} | {
        ("audit", r, led, tuple(fl)) for r, led, fl in old.audit
    }
    en = {("notify", r, to) for r, to in new.notifications} | {
        ("audit", r, led, tuple(fl)) for r, led, fl in new.audit
    }
    return Signature(
        old.decision == "REJECT",
        new.decision == "REJECT",
        tuple(sorted(fo - fn)),
        tuple(sorted(fn - fo)),
        tuple(sorted(en - eo, key=repr)),
        tuple(sorted(eo - en, key=repr)),
    )


def mismatch(stated: Signature, seen: Signature) -> str | None:
    """Why a transaction's observed difference is not the one a region states (None: it is)."""
    if (stated.old_rejects, stated.new_rejects) != (seen.old_rejects, seen.new_rejects):
        return "the decisions differ from the stated ones"
    if (stated.added, stated.removed) != (seen.added, seen.removed):
        return "the notifications or audit entries differ from the stated ones"
    partial = set(stated.partial)
    for name, said, got in (("old", stated.lost, seen.lost), ("new", stated.gained, seen.gained)):
        must = {r for r in said if r not in partial}
        if not must <= set(got) or not set(got) <= set(said):
            return (
                f"the rules firing on the {name} side only are {sorted(got)}, not the stated {sorted(said)}"
            )
    if stated.fired_differs and not (seen.lost or seen.gained):
        return "the fired rules were stated to differ and do not"
    if not stated.differs:
        return "the region states no difference"
    return None


@dataclass
class Deciders:
    """The two generated enforcers (or None when only the interpreters check) and interpreters."""

    old_interpreter: Interpreter
    new_interpreter: Interpreter
    old_enforcer: Any = None
    new_enforcer: Any = None


def check_witnesses(
    regions: Sequence[tuple[Mapping[str, Any], Signature, str]], deciders: Deciders
) -> list[dict[str, Any]]:
    """(witness, stated signature, summary) per region → the defects found (empty: all hold)."""
    defects: list[dict[str, Any]] = []
    for tx, stated, summary in regions:
        oi, ni = deciders.old_interpreter.decide(tx), deciders.new_interpreter.decide(tx)
        problem = mismatch(stated, observed(oi, ni))
        where = "the reference interpreters"
        if problem is None:
            for side, enforcer, oracle in (
                ("old", deciders.old_enforcer, oi),
                ("new", deciders.new_enforcer, ni),
            ):
                if enforcer is None:
                    continue
                try:
                    got = comparable(enforcer.decide(dict(tx)).to_dict())
                except Exception as e:  # a generated enforcer that crashes is a defect to name
                    problem, where = f"it raised {type(e).__name__}: {e}", f"the {side} enforcer"
                    break
                if got != oracle.comparable():
                    problem = "its decision differs from the reference interpreter's"
                    where = f"the {side} enforcer"
                    break
        if problem is not None:
            defects.append({"witness": dict(tx), "region": summary, "decided_by": where, "problem": problem})
    return defects


def build_enforcer(gen: generators.Generator, policy: m.Policy, ontology_hash: str, workdir: Path) -> Any:
    """A's runtime built from ``policy`` by ``gen`` into ``workdir`` and loaded from there with
    every artifact hash verified (as ``mu generate`` would write it)."""
    from finops_fabric.enforcer import load_enforcer
    from finops_fabric.pipeline import write_tree

    try:
        files = gen.build(policy, ontology_hash, None)
    except CheckFailed:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise CheckFailed(
            f"generator v{gen.version} cannot build an enforcer from this O: {e}", code="impact.build_failed"
        ) from e
    root = workdir / f"A-v{gen.version}-{len(list(workdir.iterdir()))}"
    root.mkdir()
    write_tree(root, files, durable=False)
    return load_enforcer(root)


def with_enforcers(
    old: tuple[generators.Generator, m.Policy, str],
    new: tuple[generators.Generator, m.Policy, str],
    use: Callable[[Any, Any], Any],
) -> Any:
    """Build both enforcers in a temporary directory (in memory, /dev/shm, where there is one: a
    thousand small files are written in milliseconds there), call ``use(old_A, new_A)``, clean up."""
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp below makes a private (0700) directory there
    fast = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    workdir = Path(tempfile.mkdtemp(prefix="mu-impact-", dir=fast))
    try:
        a = build_enforcer(*old, workdir=workdir)
        b = build_enforcer(*new, workdir=workdir)
        return use(a, b)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
