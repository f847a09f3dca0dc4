"""The case set complete for one O: every outcome O can produce is produced by some case, every
threshold is met exactly and one cent on either side, and a generator that moves a threshold by
a cent is caught."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policygen import policy_pair, transaction

from finops_fabric import model as m
from finops_fabric.analysis.cases import cells, complete_cases
from finops_fabric.analysis.mdd import BudgetExceeded
from finops_fabric.interpreter import Interpreter
from finops_fabric.kaizen import random_cases
from finops_fabric.pipeline import load_ontology
from finops_fabric.rdf.reader import read_policy

DATA = Path(__file__).parent / "data"


def policy(name: str) -> m.Policy:
    return read_policy(load_ontology(DATA / name).raw.triples)


def outcomes(interp: Interpreter, txs: list[dict[str, Any]]) -> set[Any]:
    return {interp.decide(tx).comparable() for tx in txs}


@pytest.mark.parametrize("name", ["t0", "t1", "t2"])
@pytest.mark.parametrize("language", ["1.0", "1.1"])
def test_every_outcome_of_random_transactions_is_an_outcome_of_a_case(name: str, language: str) -> None:
    p = policy(name)
    interp = Interpreter(p, language)
    cases = complete_cases(p, language)
    assert outcomes(interp, random_cases(p, 3000, seed=7)) <= outcomes(interp, cases)


def test_one_case_per_cell_and_the_cells_outcomes_are_the_cases() -> None:
    p = policy("t2")
    interp = Interpreter(p)
    cases = complete_cases(p)
    n_cells = sum(1 for _ in cells(p))
    assert len(cases) >= n_cells
    assert len({c["id"] for c in cases}) == len(cases)
    stated = {(fired, entries) for _, _, _, (fired, entries) in cells(p)}
    seen = {(tuple(sorted(r for r, _ in o.fired)), o) for o in (interp.decide(c) for c in cases)}
    assert {f for f, _ in stated} == {f for f, _ in seen}


def test_thresholds_are_met_exactly_and_a_cent_either_side() -> None:
    amounts = {c.get("amount") for c in complete_cases(policy("t0"))}
    assert {"50000.00", "49999.99", "50000.01"} <= amounts


def test_the_cases_tell_apart_a_threshold_moved_by_one() -> None:
    p = policy("t0")
    moved = replace(
        p,
        rules=tuple(
            replace(r, threshold=r.threshold + 1) if isinstance(r, m.ApprovalRule) else r for r in p.rules
        ),
    )
    a, b = Interpreter(p), Interpreter(moved)
    assert any(a.decide(c).comparable() != b.decide(c).comparable() for c in complete_cases(p))


def test_the_case_set_has_a_budget() -> None:
    with pytest.raises(BudgetExceeded) as err:
        complete_cases(policy("t2"), max_cases=10)
    assert err.value.budget == 10


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(policy_pair(), st.sampled_from(["1.0", "1.1"]), st.lists(transaction(), min_size=30, max_size=30))
def test_complete_for_random_policies(
    pair: tuple[m.Policy, m.Policy], language: str, txs: list[dict[str, Any]]
) -> None:
    p = pair[0]
    interp = Interpreter(p, language)
    assert outcomes(interp, txs) <= outcomes(interp, complete_cases(p, language))
