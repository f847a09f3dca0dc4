"""Every witness decided before anyone reads it: by both generated enforcers (built now by each
side's generator, every file checked against the manifest, and loaded) and by the reference
interpreter of each side's language. A witness on which they do not show the region's stated
difference is a defect of the analysis or of a generator, and :func:`check_witnesses` says which.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


#: Rule modules by their cache key (:func:`finops_fabric.generators.v3.rule_cache_key`: the
#: generator, its source and the rule's own content), as ``mu generate`` keeps them in the store.
Modules = dict[str, bytes]


def generate(
    gen: generators.Generator, policy: m.Policy, ontology_hash: str, modules: Modules | None = None
) -> dict[str, bytes]:
    """Every file of A as ``gen`` builds it from ``policy``; ``modules``: rule modules already
    made for the same content (used, and filled)."""
    cache = (modules.get, modules.__setitem__) if modules is not None else None
    try:
        return gen.build(policy, ontology_hash, cache)
    except CheckFailed:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise CheckFailed(
            f"generator v{gen.version} cannot build an enforcer from this O: {e}", code="impact.build_failed"
        ) from e


def build_enforcer(
    gen: generators.Generator, policy: m.Policy, ontology_hash: str, files: dict[str, bytes] | None = None
) -> Any:
    """A's runtime built from ``policy`` by ``gen`` (or its ``files`` as :func:`generate` made
    them) and loaded with every check ``mu generate``'s output gets on loading: the manifest
    canonical JSON, every listed file present with its SHA-256, no other file, the generator
    installed with the source the manifest names. The files are checked and loaded as built, in
    memory (writing them to a temporary directory and reading them back would check the same
    bytes)."""
    from finops_fabric.enforcer import (
        MANIFEST,
        Enforcer,
        check_files,
        enforcer_hash_of_manifest,
        parse_manifest,
    )

    if files is None:
        files = generate(gen, policy, ontology_hash)
    where = f"A built by generator v{gen.version}"
    manifest = parse_manifest(files[MANIFEST], where)
    problems = check_files(files, manifest)
    if problems:  # (a generator that lists its own files wrongly)
        detail = "; ".join(f"{p.artifact} {p.problem}" for p in problems)
        raise CheckFailed(f"{where} does not match its manifest: {detail}", code="impact.build_failed")
    enforcer = Enforcer(where, files, manifest, enforcer_hash_of_manifest(files[MANIFEST]))
    if enforcer.ontology_hash != ontology_hash:
        raise CheckFailed(
            f"{where} names O {enforcer.ontology_hash}, not {ontology_hash}", code="impact.build_failed"
        )
    return enforcer


Side = tuple[generators.Generator, m.Policy, str]


def _enforce(side: Side, txs: Sequence[Mapping[str, Any]]) -> tuple[str, list[Enforced]]:
    """hash(A) of the enforcer ``side``'s generator builds, and its answers for ``txs``."""
    enforcer = build_enforcer(*side)
    return str(enforcer.hash), decide_with(enforcer, txs)


def _forkable() -> bool:
    import threading

    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1 and threading.active_count() == 1


def _send(fd: int, data: bytes) -> None:
    """One message: its length, then its bytes (a child forked later holds a copy of the write
    end too, so the reader cannot wait for the end of the pipe)."""
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int) -> bytes:
    def exactly(n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise OSError("the pipe closed before the whole message came")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    return exactly(int.from_bytes(exactly(8), "big"))


class EnforcerJob:
    """One side's enforcer, built and loaded in a forked child from the moment the side is read
    (while the other side is read and the analysis runs), which then waits for the witnesses,
    decides them and sends its answers back; both through pipes, pickled. Without fork, or when
    the child fails for any reason, :meth:`answers` builds the enforcer here instead (so a
    generator's error is raised here, as it would be without a child).

    ``share``: the child sends the rule modules it made first, for ``after=`` of a job of the
    other side with the same generator: that job makes its files here from them (most rules of
    two versions of one O are the same, and so are their modules) and its child only loads."""

    def __init__(self, side: Side, *, share: bool = False, after: EnforcerJob | None = None) -> None:
        self.side = side
        self.pid: int | None = None
        self._to_child = self._from_child = -1
        self._modules_pending = False
        if not _forkable():
            return
        files: dict[str, bytes] | None = None
        if after is not None:
            modules = after.modules()  # (taken even when unused: the other child waits to send them)
            if modules is not None and after.side[0] == side[0]:
                try:
                    files = generate(side[0], side[1], side[2], modules)
                except Exception:  # the child (or answers()) makes them, and says what went wrong
                    files = None
        witnesses_r, witnesses_w = os.pipe()
        answers_r, answers_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (witnesses_r, witnesses_w, answers_r, answers_w):
                os.close(fd)
            return
        if pid == 0:  # the child: build and load, wait for the witnesses, answer, leave
            code = 0
            try:
                os.close(witnesses_w)
                os.close(answers_r)
                if files is None:
                    made: Modules | None = {} if share else None
                    files = generate(*side, made)
                    if made is not None:
                        _send(answers_w, pickle.dumps(made))
                enforcer = build_enforcer(*side, files)
                txs = pickle.loads(_receive(witnesses_r))  # noqa: S301 - our parent, through our pipe
                _send(answers_w, pickle.dumps((str(enforcer.hash), decide_with(enforcer, txs))))
            except BaseException:  # the parent does this side itself
                code = 1
            os._exit(code)
        os.close(witnesses_r)
        os.close(answers_w)
        self.pid, self._to_child, self._from_child = pid, witnesses_w, answers_r
        self._modules_pending = share

    def modules(self) -> Modules | None:
        """The rule modules the child made (``share``), once; None if it sent none."""
        if not self._modules_pending or self.pid is None:
            return None
        self._modules_pending = False
        try:
            got = pickle.loads(_receive(self._from_child))  # noqa: S301 - our own child, through our own pipe
        except Exception:  # the child failed: answers() redoes this side here
            return None
        return got if isinstance(got, dict) else None

    def answers(self, txs: Sequence[Mapping[str, Any]]) -> tuple[str, list[Enforced]]:
        """hash(A) and A's answers for ``txs`` (the child's, else built and decided here)."""
        got: tuple[str, list[Enforced]] | None = None
        if self.pid is not None:
            data = b""
            try:
                self.modules()  # (not asked for by a job of the other side)
                _send(self._to_child, pickle.dumps([dict(tx) for tx in txs]))
                data = _receive(self._from_child)
            except OSError:
                data = b""
            finally:
                ok = self._reap()
            if ok and data:
                try:
                    got = pickle.loads(data)  # noqa: S301 - our own child, through our own pipe
                except Exception:  # do it here instead
                    got = None
        return got if got is not None else _enforce(self.side, txs)

    def cancel(self) -> None:
        """No witnesses after all (or the analysis failed): stop the child."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> bool:
        for fd in (self._to_child, self._from_child):
            if fd >= 0:
                os.close(fd)
        self._to_child = self._from_child = -1
        pid, self.pid = self.pid, None
        if pid is None:
            return False
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) == 0


def enforced_by_both(
    old: Side | EnforcerJob, new: Side | EnforcerJob, txs: Sequence[Mapping[str, Any]]
) -> tuple[tuple[str, list[Enforced]], tuple[str, list[Enforced]]]:
    """Both sides' enforcers built, loaded and asked about ``txs``: each in a forked child (see
    :class:`EnforcerJob`; already started, or started now), or here."""
    jobs = [s if isinstance(s, EnforcerJob) else EnforcerJob(s) for s in (old, new)]
    try:
        return jobs[0].answers(txs), jobs[1].answers(txs)
    finally:
        for job in jobs:
            job.cancel()
