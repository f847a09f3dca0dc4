"""Both sides' enforcers are built in forked children from the moment each side is read; their
answers are the enforcers' own, two jobs started one after the other both answer, a job no one
asks is stopped, and a generator that fails raises here as it would without a child."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from finops_fabric import generators
from finops_fabric.analysis import verify
from finops_fabric.analysis.verify import EnforcerJob, build_enforcer, decide_with, enforced_by_both
from finops_fabric.errors import CheckFailed
from finops_fabric.pipeline import load_ontology
from finops_fabric.rdf.reader import read_policy

DATA = Path(__file__).parent / "data"


def side(name: str, version: str = "3") -> verify.Side:
    onto = load_ontology(DATA / name)
    return generators.get(version), read_policy(onto.raw.triples), onto.hash


PARTIES = {"approver_id": "u", "executor_id": "v"}
TXS = [
    {"id": "a", "type": "purchase", "amount": "75000", "actor_level": "L1", **PARTIES},
    {"id": "b", "type": "purchase", "amount": "150000", "actor_level": "L2", **PARTIES},
    {"id": "c", "type": "PURCHASE", "amount": " 7 "},
]


def test_two_jobs_started_one_after_the_other_both_answer_as_their_enforcers_do() -> None:
    old, new = side("t0"), side("t1", "2")
    jobs = EnforcerJob(old), EnforcerJob(new)
    if verify._forkable():
        assert all(job.pid is not None for job in jobs)
    (old_hash, old_answers), (new_hash, new_answers) = enforced_by_both(jobs[0], jobs[1], TXS)
    for (gen, policy, oh), h, answers in ((old, old_hash, old_answers), (new, new_hash, new_answers)):
        here = build_enforcer(gen, policy, oh)
        assert h == here.hash and answers == decide_with(here, TXS)
    assert old_answers != new_answers and all(job.pid is None for job in jobs)


def test_a_job_no_one_asks_is_stopped() -> None:
    job = EnforcerJob(side("t0"))
    pid = job.pid
    job.cancel()
    assert job.pid is None
    if pid is not None:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind


def test_a_failing_generator_raises_here() -> None:
    gen, policy, oh = side("t0")
    broken = replace(policy, rules=(*policy.rules, policy.rules[0]))  # a rule twice: one artifact path
    job = EnforcerJob((gen, broken, oh))
    with pytest.raises(CheckFailed) as err:
        job.answers(TXS)
    assert err.value.code == "impact.build_failed"


def test_without_fork_the_work_is_done_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "_forkable", lambda: False)
    s = side("t0")
    job = EnforcerJob(s)
    assert job.pid is None
    h, answers = job.answers(TXS)
    here = build_enforcer(*s)
    assert h == here.hash and answers == decide_with(here, TXS)


@pytest.mark.parametrize("versions", [("3", "3"), ("3", "2")])
def test_the_second_side_built_from_the_first_sides_modules_is_the_same_enforcer(
    versions: tuple[str, str],
) -> None:
    """With the same generator the second side's files are made from the first child's rule
    modules (the same bytes a fresh build makes); with another they are not, and the first child
    does not wait on them."""
    old, new = side("t0", versions[0]), side("t1", versions[1])
    first = EnforcerJob(old, share=True)
    second = EnforcerJob(new, after=first)
    assert not first._modules_pending  # taken by the second job
    (old_hash, old_answers), (new_hash, new_answers) = enforced_by_both(first, second, TXS)
    for (gen, policy, oh), h, answers in ((old, old_hash, old_answers), (new, new_hash, new_answers)):
        here = build_enforcer(gen, policy, oh)
        assert h == here.hash and answers == decide_with(here, TXS)


def test_modules_made_for_one_policy_build_another_byte_for_byte() -> None:
    from finops_fabric.analysis.verify import generate

    (gen, p0, h0), (_, p1, h1) = side("t0"), side("t1")
    modules: dict[str, bytes] = {}
    generate(gen, p0, h0, modules)
    assert modules and generate(gen, p1, h1, modules) == generate(gen, p1, h1)
