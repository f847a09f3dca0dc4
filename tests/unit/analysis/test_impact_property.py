"""The impact analysis is exact: for random policies, random changes and thousands of random
transactions, "the interpreters' outcomes differ" is "the transaction lies in a reported region",
and the region it lies in states its difference."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policygen import policy_pair, transaction

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.analysis.impact import SideInfo, impact
from finops_fabric.analysis.region import contains
from finops_fabric.analysis.verify import Deciders, check_witnesses, mismatch, observed
from finops_fabric.interpreter import Interpreter

HASH = "sha256:" + "0" * 64
#: IMPACT_EXAMPLES=2000 for a deeper run (the default keeps the unit suite quick).
EXAMPLES = int(os.environ.get("IMPACT_EXAMPLES", "120"))


def _check(
    old: m.Policy, new: m.Policy, langs: tuple[str, str], detail: str, txs: list[dict[str, Any]]
) -> None:
    result = impact(SideInfo(old, HASH, langs[0]), SideInfo(new, HASH, langs[1]), detail=detail)
    doc = result.to_dict()
    io, inn = Interpreter(old, langs[0]), Interpreter(new, langs[1])
    regions = result.regions
    # every witness lies in its own region and shows the stated difference
    assert check_witnesses([(r.witness, r.signature, r.summary) for r in regions], Deciders(io, inn)) == []
    reading = doc["amount_reading"]
    whens = [r["when"] for r in doc["regions"]]

    def holding(tx: dict[str, Any]) -> list[int]:
        return [i for i, w in enumerate(whens) if contains(w, tx, reading)]

    step = max(1, len(regions) // 60)  # (a sample of the witnesses when there are very many regions)
    for i in range(0, len(regions), step):
        assert holding(regions[i].witness) == [i], (regions[i].summary, regions[i].witness)
    for tx in txs:
        a, b = io.decide(tx), inn.decide(tx)
        hits = holding(tx)
        assert len(hits) <= 1, (tx, hits)  # disjoint
        differs = a.comparable() != b.comparable()
        assert differs == bool(hits), (tx, hits and regions[hits[0]].summary, a, b)
        if hits:
            problem = mismatch(regions[hits[0]].signature, observed(a, b))
            assert problem is None, (tx, regions[hits[0]].summary, problem)
    assert doc["equivalent"] == (not regions)


LANGS = st.sampled_from([("1.0", "1.0"), ("1.0", "1.0"), ("1.1", "1.1"), ("1.0", "1.1"), ("1.1", "1.0")])


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    policy_pair(),
    LANGS,
    st.sampled_from(["decision", "rules"]),
    st.lists(transaction(), min_size=40, max_size=40),
)
def test_reported_regions_are_exactly_the_changed_transactions(
    pair: tuple[m.Policy, m.Policy], langs: tuple[str, str], detail: str, txs: list[dict[str, Any]]
) -> None:
    _check(*pair, langs, detail, txs)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(policy_pair(), LANGS, st.lists(transaction(), min_size=20, max_size=20))
def test_a_policy_against_itself_is_equivalent_unless_the_language_differs(
    pair: tuple[m.Policy, m.Policy], langs: tuple[str, str], txs: list[dict[str, Any]]
) -> None:
    old, _ = pair
    result = impact(SideInfo(old, HASH, langs[0]), SideInfo(old, HASH, langs[1]))
    if langs[0] == langs[1]:
        assert result.equivalent and result.regions == []
    _check(old, old, langs, "decision", txs)


def _enforcer(version: str, policy: m.Policy) -> Any:
    """A's runtime built by generator ``version`` and loaded from memory, hashes as written."""
    import hashlib
    import json

    gen = generators.get(version)
    files = gen.build(policy, HASH, None)
    manifest = json.loads(files["manifest.json"])
    return gen.load(files, manifest, "sha256:" + hashlib.sha256(files["manifest.json"]).hexdigest())


GENERATORS = st.sampled_from([("1", "1"), ("2", "3"), ("3", "3"), ("3", "1")])


@settings(
    max_examples=max(1, EXAMPLES // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policy_pair(), GENERATORS)
def test_witnesses_hold_on_the_generated_enforcers(
    pair: tuple[m.Policy, m.Policy], versions: tuple[str, str]
) -> None:
    old, new = pair
    langs = generators.language(versions[0]), generators.language(versions[1])
    result = impact(SideInfo(old, HASH, langs[0]), SideInfo(new, HASH, langs[1]))
    deciders = Deciders(
        Interpreter(old, langs[0]),
        Interpreter(new, langs[1]),
        _enforcer(versions[0], old),
        _enforcer(versions[1], new),
    )
    regions = [(r.witness, r.signature, r.summary) for r in result.regions]
    assert check_witnesses(regions, deciders) == []
