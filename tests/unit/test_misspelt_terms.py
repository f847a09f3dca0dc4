"""A misspelt fab: term never silently removes or changes a control: `mu validate` exits 1 naming
the file, line, term and nearest defined term; `mu generate` writes a rejection receipt and no A.
Warnings that remain are printed by `generate` and kept in full in the receipt."""

from __future__ import annotations

import json
from pathlib import Path

from harness import Run, copy_example

SOD_CASE_START = "ex:case-wire-same-person"
SOD_CASE_END = "ex:case-wire-sanctioned"


def misspelt_sod(tmp_path: Path) -> Path:
    """The example with `fab:SegregationOfDutiesRule`, and no golden case naming the rule (so
    nothing else refers to it: before, it generated an A that approves self-approved wires)."""
    o = copy_example(tmp_path, "O_sod")
    wires = (o / "wires.ttl").read_text()
    cut = wires[: wires.index(SOD_CASE_START)] + wires[wires.index(SOD_CASE_END) :]
    (o / "wires.ttl").write_text(cut.replace("a fab:SegregationOfDutyRule", "a fab:SegregationOfDutiesRule"))
    return o


def misspelt_min_authority(tmp_path: Path) -> Path:
    o = copy_example(tmp_path, "O_min")
    p = o / "purchases.ttl"
    text = p.read_text()
    at = text.index("ex:audit-senior")
    p.write_text(text[:at] + text[at:].replace("fab:minAuthority", "fab:minAuthorty", 1))
    return o


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_validate_rejects_a_rule_of_an_unknown_type_with_did_you_mean(mu: Run, tmp_path: Path) -> None:
    o = misspelt_sod(tmp_path)
    code, out, _ = mu("validate", f"--ontology={o}")
    line = line_of(o / "wires.ttl", "fab:SegregationOfDutiesRule")
    assert code == 1
    assert f"wires.ttl:{line}: error [ontology]" in out
    assert "fab:SegregationOfDutiesRule" in out and "did you mean fab:SegregationOfDutyRule?" in out
    doc = mu.json("validate", f"--ontology={o}", code=1)
    (v,) = doc["violations"]
    assert v["severity"] == "violation" and v["location"]["line"] == line
    assert v["location"]["file"].endswith("wires.ttl") and doc["warnings"] == []


def test_generate_refuses_a_misspelt_rule_class_with_a_rejection_receipt(mu: Run, tmp_path: Path) -> None:
    o = misspelt_sod(tmp_path)
    a, r = tmp_path / "A", tmp_path / "r.json"
    code, out, _ = mu("generate", f"--input={o}", f"--output={a}", f"--receipt={r}")
    assert code == 1 and not a.exists()
    assert "did you mean fab:SegregationOfDutyRule?" in out and "REJECTED" in out
    receipt = json.loads(r.read_text())
    assert receipt["kind"] == "rejection" and receipt["gates"]["ontology"]["status"] == "FAIL"
    assert any("SegregationOfDutiesRule" in f["message"] for f in receipt["findings"])


def test_a_misspelt_property_on_an_audit_rule_is_an_error(mu: Run, tmp_path: Path) -> None:
    o = misspelt_min_authority(tmp_path)
    line = line_of(o / "purchases.ttl", "fab:minAuthorty")
    code, out, _ = mu("validate", f"--ontology={o}")
    assert code == 1
    assert f"purchases.ttl:{line}: error [ontology]" in out and "did you mean fab:minAuthority?" in out
    code, out, _ = mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}")
    assert code == 1 and not (tmp_path / "A").exists()


def test_remaining_warnings_are_printed_by_generate_and_kept_in_full(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    (o / "never.ttl").write_text(
        "@prefix fab: <https://w3id.org/finops-fabric/ns#> .\n"
        "@prefix ex: <https://example.com/acme/policy#> .\n"
        "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
        "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
        'ex:never a fab:RestrictionRule ; rdfs:label "Never holds" ; fab:appliesTo ex:wire ;\n'
        "    fab:condition [ a fab:AllOf ;\n"
        '        fab:operand [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:gt ;'
        ' fab:value "10"^^xsd:decimal ] ,\n'
        '                    [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:lt ;'
        ' fab:value "5"^^xsd:decimal ] ] .\n'
    )
    r = tmp_path / "r.json"
    code, out, _ = mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}", f"--receipt={r}")
    assert code == 0, out
    assert "warning [invariant/satisfiable]" in out and "never.ttl:5:" in out
    receipt = json.loads(r.read_text())
    (w,) = receipt["gates"]["invariant"]["evidence"]["warnings"]
    assert w["invariant"] == "satisfiable" and w["focus"] == "https://example.com/acme/policy#never"
    assert w["location"]["file"].endswith("never.ttl") and w["location"]["line"] == 5
    assert w["message"] == (
        'Restriction "Never holds" (ex:never) has a condition that can never hold, '
        "so it never rejects anything"
    )
    assert receipt["gates"]["ontology"]["evidence"]["warnings"] == []
    doc = mu.json("generate", f"--input={o}", f"--output={tmp_path / 'A2'}")
    assert [x["invariant"] for x in doc["warnings"]] == ["satisfiable"]
