"""The literal guard: hostile literals in O or in Σ are refused as their file is read, exit 2
with the file, the line and the rule, by `mu validate` and `mu generate` alike (as malformed
Turtle is: no receipt, no A)."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from finops_fabric import cli
from finops_fabric.errors import InputError
from finops_fabric.rdf.literals import MAX_LITERAL_BYTES, number_of
from finops_fabric.rdf.load import load_graph
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
XSD = "http://www.w3.org/2001/XMLSchema#"
THRESHOLD = '"100000"^^xsd:decimal'


@pytest.mark.parametrize(
    ("lexical", "datatype", "value"),
    [
        ("100000", "decimal", "100000"),
        ("-1.50", "decimal", "-1.50"),
        (".5", "decimal", "0.5"),
        ("5.", "decimal", "5"),
        ("+3", "integer", "3"),
        ("007", "nonNegativeInteger", "7"),
        ("1e5", "double", "1E+5"),
        ("-1.5E-3", "float", "-0.0015"),
        ("0", "decimal", "0"),
        ("1e308", "double", "1E+308"),
    ],
)
def test_numbers_read(lexical: str, datatype: str, value: str) -> None:
    assert number_of(lexical, XSD + datatype) == Decimal(value)


@pytest.mark.parametrize(
    ("lexical", "datatype", "says"),
    [
        ("NaN", "decimal", "not finite"),
        ("NaN", "double", "not finite"),
        ("INF", "double", "not finite"),
        ("-INF", "float", "not finite"),
        ("1e999999999", "decimal", "has no exponent"),
        ("1e5", "integer", "has no exponent"),
        ("1e999999999", "double", "beyond"),
        ("1e-400", "double", "beyond"),
        ("1_000", "decimal", "no _ separators"),
        (" 5 ", "decimal", "no surrounding spaces"),
        ("0x10", "decimal", "not a decimal number"),
        ("1.5", "integer", "not an integer"),
        ("", "decimal", "not a decimal number"),
        ("9" * 80, "decimal", "longer than 64"),
        ("١٢٣", "decimal", "not a decimal number"),  # digits of another script: Decimal() would take them
    ],
)
def test_numbers_refused(lexical: str, datatype: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        number_of(lexical, XSD + datatype)


def policy(tmp_path: Path, old: str, new: str, file: str = "purchases.ttl") -> Path:
    o = tmp_path / "O"
    shutil.copytree(ACME, o)
    text = (o / file).read_text()
    assert old in text
    (o / file).write_text(text.replace(old, new, 1))
    return o


HOSTILE = {
    "nan": (THRESHOLD, '"NaN"^^xsd:decimal', "purchases.ttl", 10, "approval-purchase", "not finite"),
    "overflow": (
        THRESHOLD,
        '"1e999999999"^^xsd:decimal',
        "purchases.ttl",
        10,
        "approval-purchase",
        "exponent",
    ),
    "double_overflow": (THRESHOLD, "1e999999999", "purchases.ttl", 10, "approval-purchase", "beyond"),
    "underscores": (
        THRESHOLD,
        '"1_000"^^xsd:decimal',
        "purchases.ttl",
        10,
        "approval-purchase",
        "separators",
    ),
    "hex": (THRESHOLD, '"0x10"^^xsd:decimal', "purchases.ttl", 10, "approval-purchase", "not a decimal"),
    "rank": (
        "fab:rank 3",
        'fab:rank "3.0e0"^^<http://www.w3.org/2001/XMLSchema#integer>',
        "reference.ttl",
        None,
        "L3",
        "not an integer",
    ),
    "huge_label": (
        '"Purchases over $100k need L3 or above"',
        '"' + "x" * (MAX_LITERAL_BYTES + 1) + '"',
        "purchases.ttl",
        8,
        "approval-purchase",
        "larger than the limit of 65,536 bytes",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_load_refuses_with_file_line_and_rule(tmp_path: Path, name: str) -> None:
    old, new, file, line, node, says = HOSTILE[name]
    o = policy(tmp_path, old, new, file)
    with pytest.raises(InputError) as ei:
        load_graph(o)
    err = ei.value
    assert (err.code, err.exit_code) == ("fabric.bad_literal", 2)
    assert err.location is not None and Path(str(err.location.file)).name == file
    if line is not None:
        assert err.location.line == line, err
    else:
        assert err.location.line is not None
    assert err.location.node == "https://example.com/acme/policy#" + node
    assert says in err.message, err.message


def test_a_value_in_a_condition_names_its_rule(tmp_path: Path) -> None:
    o = policy(tmp_path, 'fab:value "IR"', 'fab:value "x", "' + "y" * 70_000 + '"', "wires.ttl")
    with pytest.raises(InputError) as ei:
        load_graph(o)
    assert ei.value.location is not None
    assert str(ei.value.location.node).startswith("https://example.com/acme/policy#")


def test_a_token_beyond_the_parsers_buffer(tmp_path: Path) -> None:
    o = policy(tmp_path, '"Purchases over $100k need L3 or above"', '"' + "x" * (17 * 1024 * 1024) + '"')
    with pytest.raises(InputError) as ei:
        load_graph(o)
    err = ei.value
    assert err.code == "fabric.bad_literal" and err.location is not None
    assert (Path(str(err.location.file)).name, err.location.line) == ("purchases.ttl", 8)


@pytest.mark.parametrize("name", ["nan", "overflow", "huge_label"])
@pytest.mark.parametrize("verb", ["validate", "generate"])
def test_validate_and_generate_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, verb: str
) -> None:
    old, new, file, line, node, _ = HOSTILE[name]
    o = policy(tmp_path, old, new, file)
    home = tmp_path / "store"
    Store(home).init()
    before = len(Store(home).receipts())
    args = (
        ["validate", f"--ontology={o}"]
        if verb == "validate"
        else ["generate", f"--input={o}", f"--output={tmp_path / 'A'}"]
    )
    rc = cli.main([*args, f"--home={home}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"mu: error: {o / file}:{line} <https://example.com/acme/policy#{node}>: "), err
    assert "internal error" not in err
    assert len(Store(home).receipts()) == before  # as with malformed Turtle: nothing recorded
    assert not (tmp_path / "A").exists()
    assert not list(tmp_path.glob(".A.partial-*"))


def test_hostile_literals_in_shapes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shapes = tmp_path / "org-shapes.ttl"
    shapes.write_text(
        "@prefix sh: <http://www.w3.org/ns/shacl#> .\n"
        "@prefix fab: <https://w3id.org/finops-fabric/ns#> .\n"
        "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
        "<https://example.com/shapes#Cap> a sh:NodeShape ; sh:targetClass fab:ApprovalRule ;\n"
        '  sh:property [ sh:path fab:amountThreshold ; sh:maxInclusive "NaN"^^xsd:decimal ] .\n'
    )
    rc = cli.main(["validate", f"--ontology={ACME}", f"--schema={shapes}", f"--home={tmp_path}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"mu: error: {shapes}:5 <https://example.com/shapes#Cap>: "), err
