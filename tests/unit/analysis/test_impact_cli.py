"""`mu impact`, `mu analyze`, `mu approve --impact` and the audit trail's impact, end to end
through the CLI: exit codes, the JSON document, O_old from a receipt, defects named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from finops_fabric.analysis import run as run_module
from finops_fabric.analysis.attest import impact_hash
from finops_fabric.analysis.engine import Signature
from finops_fabric.analysis.region import region_of

DATA = Path(__file__).parent / "data"


def copy(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    shutil.copytree(DATA / name, out)
    return out


@pytest.mark.parametrize(
    ("generator", "language", "regions"), [(None, "1.1", 9), ("1", "1.0", 7), ("2", "1.0", 7)]
)
def test_impact_json_t0_to_t1(
    mu: Any, tmp_path: Path, generator: str | None, language: str, regions: int
) -> None:
    t0, t1 = copy(tmp_path, "t0"), copy(tmp_path, "t1")
    pin = [f"--old-generator={generator}", f"--new-generator={generator}"] if generator else []
    doc = mu.json("impact", f"--old={t0}", f"--new={t1}", *pin, code=1)
    assert doc["equivalent"] is False
    assert doc["old"]["ontology_hash"].startswith("sha256:") and doc["old"]["language"] == language
    assert doc["new"]["generator"]["version"] == (generator or "3")
    assert doc["checked_by"]["witnesses"] == len(doc["regions"]) == regions
    assert set(doc["checked_by"]["enforcers"]) == {"old", "new"}
    for i, r in enumerate(doc["regions"]):
        assert set(r) >= {"when", "old", "new", "effects", "witness", "summary"}
        assert set(r["effects"]) == {"notified_added", "notified_removed", "audit_added", "audit_removed"}
        assert r["witness"]["id"] == f"w-{i + 1}"
        assert region_of(doc, r["witness"]) == i
    first = doc["regions"][0]
    assert first["summary"].startswith("purchases over $50,000 up to $100,000 by L1")
    assert "REJECT → APPROVE (approval-purchase no longer fires" in first["summary"]


def test_impact_human_output_and_exit_codes(mu: Any, tmp_path: Path) -> None:
    t0, t1 = copy(tmp_path, "t0"), copy(tmp_path, "t1")
    code, out, _ = mu("impact", f"--old={t0}", f"--new={t1}")
    assert code == 1 and "9 region(s)" in out and "REJECT → APPROVE" in out and "not equivalent" in out
    code, out, _ = mu("impact", f"--old={t0}", f"--new={t0}")
    assert code == 0 and "equivalent" in out


def test_reformatting_reordering_and_blank_nodes_are_equivalent(mu: Any, tmp_path: Path) -> None:
    t2 = copy(tmp_path, "t2")
    again = tmp_path / "again"
    again.mkdir()
    text = (t2 / "wire.ttl").read_text()
    # the sanctions condition written with a named blank node instead of [ ... ]
    text = text.replace(
        'fab:condition [ a fab:Membership ; fab:attribute "country" ;\n'
        '                    fab:value "IR", "KP", "SY", "CU" ] .',
        'fab:condition _:sanctioned .\n_:sanctioned a fab:Membership ; fab:value "CU", "SY", "KP", "IR" ; '
        'fab:attribute "country" .',
    )
    assert "_:sanctioned" in text
    (again / "b.ttl").write_text(text)
    (again / "a.ttl").write_text((t2 / "rules.ttl").read_text() + "\n" + (t2 / "common.ttl").read_text())
    doc = mu.json("impact", f"--old={t2}", f"--new={again}", code=0)
    assert doc["equivalent"] is True and doc["regions"] == []
    assert doc["old"]["ontology_hash"] == doc["new"]["ontology_hash"]


def test_malformed_o_is_exit_2(mu: Any, tmp_path: Path) -> None:
    t0 = copy(tmp_path, "t0")
    bad = tmp_path / "bad.ttl"
    bad.write_text("@prefix fab: <https://w3id.org/finops-fabric/ns#> .\nfab:x fab:y")
    code, _, err = mu("impact", f"--old={t0}", f"--new={bad}")
    assert code == 2 and "bad.ttl" in err
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "r.ttl").write_text((DATA / "t0" / "rules.ttl").read_text())  # no reference data
    code, _, err = mu("impact", f"--old={t0}", f"--new={incomplete}")
    assert (
        code == 2 and "is not a policy the analysis can read" in err and "not a known authority level" in err
    )
    assert "mu validate --ontology=" in err
    code, _, err = mu("impact", f"--new={t0}")
    assert code == 2 and "--old" in err


def test_old_from_a_receipt(mu: Any, tmp_path: Path) -> None:
    t0, t1 = copy(tmp_path, "t0"), copy(tmp_path, "t1")
    assert mu("init")[0] == 0
    code, out, err = mu(
        "generate", f"--input={t0}", f"--output={tmp_path / 'A0'}", f"--receipt={tmp_path / 'r0.json'}"
    )
    assert code == 0, (out, err)
    by_file = mu.json("impact", f"--old-receipt={tmp_path / 'r0.json'}", f"--new={t1}", code=1)
    by_path = mu.json("impact", f"--old={t0}", f"--new={t1}", code=1)
    assert by_file["regions"] == by_path["regions"]
    assert by_file["old"]["ontology_hash"] == by_path["old"]["ontology_hash"]
    receipt = json.loads((tmp_path / "r0.json").read_text())
    by_hash = mu.json("impact", f"--old-receipt={receipt['receipt_hash']}", f"--new={t1}", code=1)
    assert by_hash["regions"] == by_path["regions"]
    code, _, err = mu("impact", f"--old-receipt=sha256:{'0' * 64}", f"--new={t1}")
    assert code == 2 and "no receipt" in err


def test_a_witness_not_decided_as_stated_is_a_defect(
    mu: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checking step itself: a region that misstates its difference must never be printed."""
    t0, t1 = copy(tmp_path, "t0"), copy(tmp_path, "t1")
    real = run_module.impact

    def misstating(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        r = result.regions[0]
        r.signature = Signature(r.signature.old_rejects, not r.signature.new_rejects, (), (), (), ())
        return result

    monkeypatch.setattr(run_module, "impact", misstating)
    code, out, err = mu("impact", f"--old={t0}", f"--new={t1}", "--json")
    assert code == 1
    assert json.loads(out)["error"]["code"] == "impact.witness_defect"
    assert "w-1" in err and "decisions differ" in err


def test_analyze(mu: Any, tmp_path: Path) -> None:
    t2 = copy(tmp_path, "t2")
    doc = mu.json("analyze", f"--ontology={t2}", code=0)
    assert doc["findings"] == 0 and doc["language"] == "1.1"  # the default generator, 3
    never = tmp_path / "never"
    shutil.copytree(DATA / "t0", never)
    rules = never / "rules.ttl"
    rules.write_text(
        rules.read_text()
        + """
ex:approval-shadowed a fab:ApprovalRule ; rdfs:label "over 60k needs L2" ;
    fab:appliesTo ex:purchase ; fab:amountThreshold "60000"^^xsd:decimal ; fab:requiredAuthority ex:L2 .
ex:approval-l1 a fab:ApprovalRule ; rdfs:label "over 10k needs L1" ;
    fab:appliesTo ex:purchase ; fab:amountThreshold "10000"^^xsd:decimal ; fab:requiredAuthority ex:L1 .
"""
    )
    code, out, _ = mu("analyze", f"--ontology={never}")
    assert code == 1
    assert "shadowed" in out and "approval-shadowed" in out
    assert "fails closed only approval-l1" in out


def test_approve_records_the_impact_hash(mu: Any, tmp_path: Path) -> None:
    from finops_fabric.keys import generate_keypair

    t0, t1 = copy(tmp_path, "t0"), copy(tmp_path, "t1")
    assert mu("init")[0] == 0
    key, pub = generate_keypair(tmp_path / "alice")
    assert mu("roster", "init", f"--member=alice={pub}", f"--key={key}")[0] == 0
    doc = mu.json("impact", f"--old={t0}", f"--new={t1}", code=1)
    (tmp_path / "impact.json").write_text(json.dumps(doc, indent=4))
    approval = mu.json("approve", f"--ontology={t1}", f"--key={key}", f"--impact={tmp_path / 'impact.json'}")
    assert approval["impact"]["hash"] == impact_hash(doc)
    assert (
        approval["impact"]["regions"] == len(doc["regions"])
        and approval["impact"]["new_ontology_hash"] == doc["new"]["ontology_hash"]
    )
    stored = json.loads(Path(approval["file"]).read_text())
    assert stored["impact"]["hash"] == impact_hash(doc) and stored["inputs"]["impact_hash"] == impact_hash(
        doc
    )
    # an impact document of another change is refused
    code, out, err = mu(
        "approve", f"--ontology={t0}", f"--key={key}", f"--impact={tmp_path / 'impact.json'}", "--json"
    )
    assert (
        code == 1 and json.loads(out)["error"]["code"] == "approve.impact_mismatch" and "not to this O" in err
    )
    (tmp_path / "junk.json").write_text('{"regions": []}')
    code, _, err = mu("approve", f"--ontology={t1}", f"--key={key}", f"--impact={tmp_path / 'junk.json'}")
    assert code == 2 and "not an impact document" in err


def test_audit_trail_report_shows_each_change(mu: Any, tmp_path: Path) -> None:
    assert mu("init")[0] == 0
    for name in ("t0", "t1"):
        o = copy(tmp_path, name)
        assert mu("generate", f"--input={o}", f"--output={tmp_path / ('A' + name)}")[0] == 0
    doc = mu.json("audit-trail", f"--report={tmp_path / 'trail.json'}")
    changes = [t for t in doc["transitions"] if t.get("impact")]
    assert len(changes) == 1
    imp = changes[0]["impact"]
    assert imp["regions_total"] == 9 and not imp.get("defects") and imp["languages"] == ["1.1", "1.1"]
    assert imp["regions"][0]["summary"].startswith("purchases over $50,000 up to $100,000")
