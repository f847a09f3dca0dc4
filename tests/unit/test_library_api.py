"""The library API of INTERFACES.md: every name imported from the top package and used."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from harness import EXAMPLE, copy_example

from finops_fabric.store import Store


def test_importing_the_package_stays_light() -> None:
    code = (
        "import sys, finops_fabric\n"
        "heavy = [m for m in ('finops_fabric.enforcer', 'finops_fabric.pipeline', 'rdflib', 'pyoxigraph',"
        " 'cryptography') if m in sys.modules]\n"
        "print(heavy)\n"
        "from finops_fabric import load_enforcer\n"
        "print('finops_fabric.enforcer' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True"]


def test_the_library_end_to_end(tmp_path: Path) -> None:
    import finops_fabric
    from finops_fabric import (
        CheckFailed,
        Decision,
        Enforcer,
        FabricError,
        InputError,
        enforcer_hash,
        generate,
        load_enforcer,
        ontology_hash,
        validate,
        verify_receipt,
    )

    assert set(finops_fabric.__all__) >= {"load_enforcer", "Enforcer", "Decision", "verify_receipt"}
    with pytest.raises(AttributeError):
        finops_fabric.no_such_name  # noqa: B018
    home = tmp_path / "store"
    Store(home).init()
    o = copy_example(tmp_path)

    h = ontology_hash(o)
    assert h.startswith("sha256:") and h == ontology_hash(EXAMPLE)
    v = validate(o)
    assert v.conforms and not v.violations

    result = generate(o, tmp_path / "A", home=home, receipt_file=tmp_path / "r.json")
    assert result.status == "generated"
    assert enforcer_hash(tmp_path / "A") == result.enforcer_hash == result.receipt["outputs"]["enforcer_hash"]

    enforcer = load_enforcer(tmp_path / "A")
    assert isinstance(enforcer, Enforcer) and enforcer.hash == result.enforcer_hash
    assert enforcer.language == "1.1" and enforcer.ontology_hash == h
    tx = {"id": "tx-1", "type": "purchase", "amount": "105000.00", "actor_level": "L2"}
    tx |= {"approver_id": "u-1", "executor_id": "u-2", "attributes": {"country": "US", "vendor_risk": "low"}}
    decision = enforcer.decide(tx)
    assert isinstance(decision, Decision)
    assert decision.decision == "REJECT"
    assert [rule for rule, _ in decision.fired] == ["https://example.com/acme/policy#approval-purchase"]
    d = decision.to_dict()
    assert set(d) == {"transaction_id", "decision", "fired", "notifications", "audit", "enforcer_hash"}
    assert d["enforcer_hash"] == enforcer.hash and d["fired"][0]["reason"].endswith("actor is L2")
    assert enforcer.decide({**tx, "amount": Decimal("95000")}).decision == "APPROVE"

    # fail closed: a binary float is a rejection that says so; a non-mapping is bad input
    floated = enforcer.decide({**tx, "amount": 105000.0})
    assert floated.decision == "REJECT"
    assert any("amount is a binary float; send a decimal string" in why for _, why in floated.fired)
    with pytest.raises(InputError) as err:
        enforcer.decide(json.dumps(tx))  # type: ignore[arg-type]
    assert err.value.code == "tx.not_object" and isinstance(err.value, FabricError)

    pub = home / "keys" / "operator.pub"
    verify_receipt(tmp_path / "r.json", pub)
    receipt = json.loads((tmp_path / "r.json").read_text())
    verify_receipt(receipt, pub)
    receipt["outputs"]["enforcer_hash"] = "sha256:" + "0" * 64
    with pytest.raises(CheckFailed) as failed:
        verify_receipt(receipt, pub)
    assert failed.value.code == "receipt.hash"

    (tmp_path / "A" / "golden.json").write_text("[]")
    with pytest.raises(CheckFailed):
        enforcer_hash(tmp_path / "A")
    with pytest.raises(CheckFailed):
        load_enforcer(tmp_path / "A")


@pytest.mark.parametrize("version", ["1", "2"])
def test_older_generators_refuse_a_non_mapping_the_same_way(tmp_path: Path, version: str) -> None:
    from finops_fabric import Decision, InputError, generate, load_enforcer

    home = tmp_path / "store"
    Store(home).init()
    out = generate(copy_example(tmp_path), tmp_path / "A", home=home, generator_version=version)
    enforcer = load_enforcer(tmp_path / "A")
    assert enforcer.language == "1.0" and out.status == "generated"
    assert isinstance(enforcer.decide({"type": "purchase", "amount": "1"}), Decision)
    with pytest.raises(InputError) as err:
        enforcer.decide(["not", "a", "transaction"])  # type: ignore[arg-type]
    assert err.value.code == "tx.not_object"
