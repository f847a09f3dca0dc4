"""Language 1.1 reads every decimal a rule reads strictly (an attribute's string must be a plain
decimal exactly; a party or code is read through its text), 1.0 trims: the impact analysis cuts
such fields per language and kaizen's complete case set holds the values only one language reads
as decimals, so `mu kaizen` 2 → 3 names them as differences of the language."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from finops_fabric.analysis.cases import kaizen_cases
from finops_fabric.analysis.impact import SideInfo, impact
from finops_fabric.analysis.region import region_of
from finops_fabric.analysis.verify import Deciders, check_witnesses
from finops_fabric.interpreter import Interpreter

HASH = "sha256:" + "0" * 64
_CMP = '[ a fab:Comparison ; fab:attribute "{}" ; fab:operator fab:{} ; fab:value {} ]'
_IN = '[ a fab:Membership ; fab:attribute "{}" ; fab:value {} ]'


def _rules(score: str) -> str:
    return "".join(
        f'ex:{name} a fab:RestrictionRule ; rdfs:label "{name}" ; fab:condition {cond} .\n'
        for name, cond in [
            ("score", _CMP.format("score", "ge", score)),
            ("bucket", _IN.format("bucket", "3, 100")),
            ("approver", _CMP.format("approver_id", "eq", "100")),
            ("level", _CMP.format("actor_level", "ne", "2")),
        ]
    )


#: Values of a field compared with a decimal: plain, spaced (1.0 only), signed, exponent ...
ODD: list[object] = [
    "0.5", " 0.5 ", "0.9 ", "\t0.9", "+0.9", " +0.9", "1e2", "1E+2", "100", " 100 ", "+100", "3", " 3",
    100, 3, Decimal("1E+2"), Decimal("100.0"), Decimal("1E-7"), True, "x", None,
]  # fmt: skip


def _txs(policies: SimpleNamespace) -> list[dict[str, Any]]:
    out = []
    for v in ODD:
        out.append(policies.tx(attributes={"score": v, "bucket": 1}))
        out.append(policies.tx(attributes={"score": "0.1", "bucket": v}))
        out.append(policies.tx(approver_id=v))
        out.append(policies.tx(actor_level=v))
    return out


@pytest.mark.parametrize("langs", [("1.0", "1.1"), ("1.1", "1.0"), ("1.1", "1.1"), ("1.0", "1.0")])
def test_impact_between_two_policies_cuts_strictly_read_decimals_per_language(
    policies: SimpleNamespace, langs: tuple[str, str]
) -> None:
    old, new = policies.policy_of(_rules("0.75")), policies.policy_of(_rules("0.8"))
    result = impact(SideInfo(old, HASH, langs[0]), SideInfo(new, HASH, langs[1]))
    io, inn = Interpreter(old, langs[0]), Interpreter(new, langs[1])
    assert (
        check_witnesses([(r.witness, r.signature, r.summary) for r in result.regions], Deciders(io, inn))
        == []
    )
    doc = result.to_dict()
    for tx in _txs(policies):  # sound and complete on exactly these inputs
        i = region_of(doc, tx)
        differs = io.decide(tx).comparable() != inn.decide(tx).comparable()
        assert differs == (i is not None), (tx, i is not None and doc["regions"][i]["when"])
    spaced = policies.tx(attributes={"score": " 0.5 ", "bucket": 1})
    hit = region_of(doc, spaced)
    if langs[0] != langs[1]:
        assert hit is not None
        when = doc["regions"][hit]["when"]
        assert when["attributes"]["score"].get("padded") is True, when
        strict_side = "new" if langs[1] == "1.1" else "old"
        assert any(r.endswith("#score") for r in doc["regions"][hit][strict_side]["fired"])
        assert "whitespace-padded" in doc["regions"][hit]["summary"]
    else:
        assert hit is None  # both sides read the spaced value alike: only 0.75 → 0.8 differs


def test_kaizen_cases_hold_what_only_language_1_0_reads_as_a_decimal(policies: SimpleNamespace) -> None:
    policy = policies.policy_of(_rules("0.75"))
    one = kaizen_cases(policy, ["1.1"]).cases
    both = kaizen_cases(policy, ["1.0", "1.1"]).cases
    old, new = Interpreter(policy, "1.0"), Interpreter(policy, "1.1")

    def spaced(cases: list[dict[str, Any]], pick: Any) -> list[dict[str, Any]]:
        return [c for c in cases if isinstance(v := pick(c), str) and v != v.strip() and v.strip()]

    def attr(name: str) -> Any:
        return lambda c: (c.get("attributes") or {}).get(name)

    for pick in (
        attr("score"),
        attr("bucket"),
        lambda c: c.get("approver_id"),
        lambda c: c.get("actor_level"),
    ):
        found = spaced(both, pick)
        assert found, "no padded value in the two-language case set"
        assert any(old.decide(c).comparable() != new.decide(c).comparable() for c in found)
        assert not spaced(one, pick)  # one language: a padded value is just one more non-number


def test_kaizen_2_to_3_names_strictly_read_decimals_as_language_differences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import finops_fabric.kaizen as kz
    from finops_fabric.kaizen import kaizen
    from finops_fabric.store import Store

    harness = pytest.importorskip("harness")
    o = harness.copy_example(tmp_path)
    (o / "strict.ttl").write_text(
        "@prefix fab: <https://w3id.org/finops-fabric/ns#> .\n"
        "@prefix ex: <https://example.com/acme/policy#> .\n"
        "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
        "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
        'ex:score-limit a fab:RestrictionRule ; rdfs:label "Scores of 0.75 or more are blocked" ;\n'
        '    fab:appliesTo ex:purchase ; fab:condition [ a fab:Comparison ; fab:attribute "score" ;\n'
        '    fab:operator fab:ge ; fab:value "0.75"^^xsd:decimal ] ; fab:overrideAuthority ex:Board .\n'
    )
    monkeypatch.setattr(kz, "LISTED", 10**6)
    store = Store(tmp_path / "store")
    store.init()
    result = kaizen(o, "2", "3", store, count=50)
    assert result.behaviour_equivalent is False
    assert result.oracle_total == {"from": 0, "to": 0}  # each A agrees with the oracle of its language
    assert result.counterexamples_by_language == result.counterexamples_total
    named = [ce for ce in result.counterexamples if ce.get("strict_decimals")]
    assert named and all(ce["strict_decimals"] == ["attributes.score"] for ce in named)
    assert any(not ce["input_checks"] for ce in named)  # explained by the strict reading alone
    for ce in named:
        score = ce["transaction"]["attributes"]["score"]
        assert isinstance(score, str) and score != score.strip()
