"""Changes with known answers: the cascading change of scenario 1.2 (t0 → t1), a sanctions list
gaining a country, an override authority lowered, a rule deleted, a reformatted O, other level
or type vocabularies, language 1.0 against 1.1."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from finops_fabric.analysis.impact import Impact, SideInfo, impact
from finops_fabric.analysis.region import region_of
from finops_fabric.analysis.verify import Deciders, check_witnesses
from finops_fabric.interpreter import Interpreter
from finops_fabric.pipeline import load_ontology
from finops_fabric.rdf.reader import read_policy

DATA = Path(__file__).parent / "data"
EX = "https://example.com/acme/policy#"


def side(path: Path, language: str = "1.0") -> SideInfo:
    onto = load_ontology(path)
    return SideInfo(read_policy(onto.raw.triples), onto.hash, language)


def edited(tmp_path: Path, base: str, name: str, old: str, new: str) -> Path:
    out = tmp_path / name
    shutil.copytree(DATA / base, out)
    for f in out.glob("*.ttl"):
        text = f.read_text()
        if old in text:
            f.write_text(text.replace(old, new))
            return out
    raise AssertionError(f"{old!r} is not in {base}")


def checked(result: Impact) -> list[dict[str, Any]]:
    """The regions as JSON, after every witness was decided by both interpreters."""
    deciders = Deciders(
        Interpreter(result.old.policy, result.old.language),
        Interpreter(result.new.policy, result.new.language),
    )
    assert check_witnesses([(r.witness, r.signature, r.summary) for r in result.regions], deciders) == []
    regions: list[dict[str, Any]] = result.to_dict()["regions"]
    return regions


def find(regions: list[dict[str, Any]], **when: Any) -> dict[str, Any]:
    hits = [r for r in regions if all(r["when"].get(k) == v for k, v in when.items())]
    assert len(hits) == 1, (when, [r["summary"] for r in regions])
    return hits[0]


def test_the_cascading_change_t0_to_t1() -> None:
    regions = checked(impact(side(DATA / "t0"), side(DATA / "t1")))
    purchase = {"in": ["purchase"]}
    flip = find(regions, type=purchase, amount={"gt": "50000", "le": "100000"})
    assert flip["when"]["actor_level"] == {"not_in": ["L2", "L3", "CFO", "Board"]}  # L1, undeclared, none
    assert (flip["old"], flip["new"]) == (
        {"decision": "REJECT", "fired": [EX + "approval-purchase"]},
        {"decision": "APPROVE", "fired": []},
    )
    assert flip["effects"]["notified_added"] == [
        {"rule": EX + "notify-finance", "recipient": "finance@acme.example"}
    ]
    assert flip["summary"].startswith("purchases over $50,000 up to $100,000 by L1")
    assert "REJECT → APPROVE (approval-purchase no longer fires" in flip["summary"]
    back = find(regions, type=purchase, amount={"gt": "100000"}, actor_level={"in": ["L2"]})
    assert (back["old"]["decision"], back["new"]["decision"]) == ("APPROVE", "REJECT")
    assert back["new"]["fired"] == [EX + "approval-purchase"]
    senior = find(regions, type=purchase, actor_level={"in": ["L3", "CFO", "Board"]})
    assert senior["when"]["amount"] == {"missing": False}
    assert {e["recipient"] for e in senior["effects"]["notified_added"]} == {"audit@acme.example"}
    assert senior["effects"]["audit_added"] == [
        {"rule": EX + "audit-senior", "ledger": "immutable", "flags": ["L3_override"]}
    ]
    # the rejections that stay rejections now notify finance (onEvent AnyDecision)
    assert find(regions, type=purchase, amount={"missing": True})["summary"].endswith(
        "REJECT → REJECT (now notifies finance@acme.example)"
    )
    assert len(regions) == 7


def test_a_region_holds_exactly_its_transactions() -> None:
    doc = impact(side(DATA / "t0"), side(DATA / "t1")).to_dict()
    tx = {
        "type": "purchase",
        "amount": "75000.00",
        "actor_level": "L1",
        "approver_id": "a",
        "executor_id": "b",
    }
    i = region_of(doc, tx)
    assert i is not None and doc["regions"][i]["new"]["decision"] == "APPROVE"
    assert region_of(doc, {**tx, "amount": "100000.01"}) != i
    assert region_of(doc, {**tx, "amount": "50000"}) is None  # not above the old threshold: unchanged
    assert region_of(doc, {**tx, "amount": "100000", "actor_level": "L2"}) is None


def test_a_sanctions_list_gains_a_country(tmp_path: Path) -> None:
    new = edited(
        tmp_path, "t2", "t2b", 'fab:value "IR", "KP", "SY", "CU"', 'fab:value "IR", "KP", "SY", "CU", "RU"'
    )
    regions = checked(impact(side(DATA / "t2"), side(new)))
    assert regions
    for r in regions:
        assert r["when"]["type"] == {"in": ["wire"]}
        assert r["when"]["attributes"]["country"] == {"in": ["RU"]}
        assert r["new"]["fired"] == [EX + "sanctions"] and r["old"]["fired"] == []
    assert {(r["old"]["decision"], r["new"]["decision"]) for r in regions} == {
        ("APPROVE", "REJECT"),
        ("REJECT", "REJECT"),
    }


def test_an_override_authority_lowered(tmp_path: Path) -> None:
    new = edited(tmp_path, "t2", "t2c", "fab:overrideAuthority ex:CFO", "fab:overrideAuthority ex:L3")
    regions = checked(impact(side(DATA / "t2"), side(new)))
    assert regions
    for r in regions:
        assert r["when"]["actor_level"] == {"in": ["L3"]}
        assert r["when"]["attributes"]["vendor_risk"] == {"in": ["high"]}
        assert r["old"]["fired"] == [EX + "fraud-wire"] and r["new"]["fired"] == []
    flip = [r for r in regions if r["new"]["decision"] == "APPROVE"]
    assert flip and all(r["when"]["amount"].get("gt") == "25000" for r in flip)


def test_a_rule_deleted(tmp_path: Path) -> None:
    new = tmp_path / "t2d"
    shutil.copytree(DATA / "t2", new)
    wire = new / "wire.ttl"
    text = wire.read_text()
    start = text.index("ex:sod-wire a fab:SegregationOfDutyRule")
    end = text.index("\n\n", start)
    wire.write_text(text[:start] + text[end:])
    regions = checked(impact(side(DATA / "t2"), side(new)))
    assert regions
    for r in regions:
        assert r["old"]["fired"] == [EX + "sod-wire"] and r["new"]["fired"] == []
        if r["when"]["type"] == {"missing": True}:  # a typed rule fails closed without a type
            continue
        assert r["when"]["type"] == {"in": ["wire"]}
        assert r["when"]["approver_is_executor"] in (True, {"missing": True})


def test_a_reformatted_policy_is_equivalent(tmp_path: Path) -> None:
    again = tmp_path / "again"
    again.mkdir()
    text = "\n".join((DATA / "t2" / n).read_text() for n in ("wire.ttl", "rules.ttl", "common.ttl"))
    text = text.replace("fab:condition [ a fab:Membership", "fab:condition [ a fab:Membership ")  # spacing
    (again / "all.ttl").write_text(text)
    result = impact(side(DATA / "t2"), side(again))
    assert result.equivalent and result.to_dict()["regions"] == []


def test_a_level_renamed(tmp_path: Path) -> None:
    new = edited(tmp_path, "t0", "t0r", 'fab:code "L2"', 'fab:code "Level2"')
    regions = checked(impact(side(DATA / "t0"), side(new)))
    # "L2" is now undeclared (fails the approval rule above $50k) and "Level2" is new (was undeclared)
    l2 = [r for r in regions if r["when"].get("actor_level") == {"in": ["L2"]}]
    level2 = [r for r in regions if r["when"].get("actor_level") == {"in": ["Level2"]}]
    assert l2 and l2[0]["when"]["amount"] == {"gt": "50000"} and l2[0]["new"]["decision"] == "REJECT"
    assert level2 and level2[0]["new"]["decision"] == "APPROVE"


def test_a_type_added_t1_to_t2() -> None:
    regions = checked(impact(side(DATA / "t1"), side(DATA / "t2")))
    assert {r["when"]["type"]["in"][0] for r in regions if "in" in r["when"].get("type", {})} == {"wire"}
    assert all(
        r["old"]["decision"] == "APPROVE" for r in regions if r["when"].get("type") == {"in": ["wire"]}
    )
    missing = find(regions, type={"missing": True})  # a typed rule fails closed without a type
    assert missing["new"]["fired"] == sorted(
        EX + n for n in ("approval-wire", "approval-wire-large", "fraud-wire", "sanctions", "sod-wire")
    )


def test_language_1_0_against_1_1() -> None:
    result = impact(side(DATA / "t1", "1.0"), side(DATA / "t1", "1.1"))
    regions = checked(result)
    assert result.amount_reading == "mixed"
    fail_closed = "https://w3id.org/finops-fabric/ns#FailClosed/"
    assert all(
        set(r["new"]["fired"]) & {fail_closed + f for f in ("type", "amount", "actor_level")} for r in regions
    )
    padded = [r for r in regions if r["when"].get("amount", {}).get("padded") is True]
    assert padded
    doc = result.to_dict()
    tx = {
        "type": "purchase",
        "amount": " 500.00 ",
        "actor_level": "L1",
        "approver_id": "a",
        "executor_id": "b",
    }
    i = region_of(doc, tx)
    assert i is not None and doc["regions"][i]["new"]["decision"] == "REJECT"
    assert region_of(doc, {**tx, "amount": "500.00"}) is None


@pytest.mark.parametrize("langs", [("1.1", "1.1"), ("1.0", "1.0")])
def test_the_same_language_on_both_sides_changes_nothing(langs: tuple[str, str]) -> None:
    assert impact(side(DATA / "t2", langs[0]), side(DATA / "t2", langs[1])).equivalent


def test_rules_detail_names_exactly_the_rules(tmp_path: Path) -> None:
    result = impact(side(DATA / "t1"), side(DATA / "t2"), detail="rules")
    regions = checked(result)
    assert all("fired_in_part" not in r for r in regions)
    assert len(regions) > len(impact(side(DATA / "t1"), side(DATA / "t2")).regions)
