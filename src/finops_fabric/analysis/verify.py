"""Every witness decided before anyone reads it: by both generated enforcers (built now, in a
temporary directory, by each side's generator) and by the reference interpreter of each side's
language. A witness on which they do not show the region's stated difference is a defect of the
analysis or of a generator, and :func:`check_witnesses` says which.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
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


#: One generated enforcer's answer for a witness: ("ok", the comparable decision) or ("error", why).
Enforced = tuple[str, Any]


def decide_with(enforcer: Any, txs: Sequence[Mapping[str, Any]]) -> list[Enforced]:
    out: list[Enforced] = []
    for tx in txs:
        try:
            out.append(("ok", comparable(enforcer.decide(dict(tx)).to_dict())))
        except Exception as e:  # a generated enforcer that crashes is a defect to name
            out.append(("error", f"it raised {type(e).__name__}: {e}"))
    return out


@dataclass
class Deciders:
    """The reference interpreters of both sides and, to check the generated code too, both
    enforcers (loaded) or their answers for the witnesses (in region order)."""

    old_interpreter: Interpreter
    new_interpreter: Interpreter
    old_enforcer: Any = None
    new_enforcer: Any = None
    old_enforced: list[Enforced] | None = None
    new_enforced: list[Enforced] | None = None


def check_witnesses(
    regions: Sequence[tuple[Mapping[str, Any], Signature, str]], deciders: Deciders
) -> list[dict[str, Any]]:
    """(witness, stated signature, summary) per region → the defects found (empty: all hold)."""
    txs = [tx for tx, _, _ in regions]
    enforced = {
        "old": deciders.old_enforced
        if deciders.old_enforced is not None
        else (decide_with(deciders.old_enforcer, txs) if deciders.old_enforcer is not None else None),
        "new": deciders.new_enforced
        if deciders.new_enforced is not None
        else (decide_with(deciders.new_enforcer, txs) if deciders.new_enforcer is not None else None),
    }
    defects: list[dict[str, Any]] = []
    for i, (tx, stated, summary) in enumerate(regions):
        oi, ni = deciders.old_interpreter.decide(tx), deciders.new_interpreter.decide(tx)
        problem = mismatch(stated, observed(oi, ni))
        where = "the reference interpreters"
        if problem is None:
            for side, oracle in (("old", oi), ("new", ni)):
                answers = enforced[side]
                if answers is None:
                    continue
                status, got = answers[i]
                if status != "ok":
                    problem, where = str(got), f"the {side} enforcer"
                    break
                if got != oracle.comparable():
                    problem, where = (
                        "its decision differs from the reference interpreter's",
                        f"the {side} enforcer",
                    )
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


def _workdir() -> Path:
    """A private temporary directory, in memory (/dev/shm) where there is one: a thousand small
    rule files are written there in milliseconds (on a disk-backed /tmp, in most of a second)."""
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp below makes a private (0700) directory there
    fast = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="mu-impact-", dir=fast))


Side = tuple[generators.Generator, m.Policy, str]


def _enforce(side: Side, txs: Sequence[Mapping[str, Any]]) -> tuple[str, list[Enforced]]:
    """hash(A) of the enforcer ``side``'s generator builds, and its answers for ``txs``."""
    workdir = _workdir()
    try:
        enforcer = build_enforcer(*side, workdir=workdir)
        return str(enforcer.hash), decide_with(enforcer, txs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def enforced_by_both(
    old: Side, new: Side, txs: Sequence[Mapping[str, Any]]
) -> tuple[tuple[str, list[Enforced]], tuple[str, list[Enforced]]]:
    """Both sides' enforcers built, loaded and asked about ``txs``. With more than one CPU and no
    other thread running, the old side is done in a forked child while this process does the new
    one (building and loading A is most of the time); the child's answers come back pickled
    through a pipe, and if it fails for any reason the old side is done here."""
    import pickle
    import threading

    if not hasattr(os, "fork") or (os.cpu_count() or 1) < 2 or threading.active_count() != 1:
        return _enforce(old, txs), _enforce(new, txs)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the old side, sent back, then leave without any clean-up
        code = 0
        try:
            os.close(read_fd)
            view = memoryview(pickle.dumps(_enforce(old, txs)))
            while view:
                view = view[os.write(write_fd, view) :]
        except BaseException:  # the parent does the old side itself
            code = 1
        os._exit(code)
    os.close(write_fd)
    try:
        mine = _enforce(new, txs)
        chunks = []
        while chunk := os.read(read_fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    theirs: tuple[str, list[Enforced]] | None = None
    if os.waitstatus_to_exitcode(status) == 0:
        try:
            theirs = pickle.loads(b"".join(chunks))  # noqa: S301 - our own child, through our own pipe
        except Exception:  # do it here instead
            theirs = None
    return (theirs if theirs is not None else _enforce(old, txs)), mine
