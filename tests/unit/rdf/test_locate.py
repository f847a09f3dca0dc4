"""Finding where a node of O is written: the file and the line of its subject, cheaply."""

from __future__ import annotations

from pathlib import Path

from finops_fabric.errors import Location
from finops_fabric.rdf.locate import SourceIndex

EX = "https://example.com/p#"
COMMON = """\
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix ex: <https://example.com/p#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .

ex:L10 a fab:AuthorityLevel ; fab:code "L10" ; fab:rank 10 .
ex:L1 a fab:AuthorityLevel ; fab:code "L1" ; fab:rank 1 .
"""
RULES = """\
PREFIX fab: <https://w3id.org/finops-fabric/ns#>
PREFIX ex: <https://example.com/p#>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>

# ex:approval is mentioned in a comment before it is written
ex:case a fab:GoldenCase ;
    fab:expectFired
        ex:approval ;
    fab:txActorLevel ex:L7 .

ex:approval a fab:ApprovalRule ;
    rdfs:label "Purchases over $5M need the board" ;
    fab:requiredAuthority ex:L1 .
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_node_is_found_where_it_is_written_as_a_subject(tmp_path: Path) -> None:
    common, rules = write(tmp_path / "common.ttl", COMMON), write(tmp_path / "rules.ttl", RULES)
    index = SourceIndex([common, rules])
    assert index.find(EX + "approval") == Location(file=str(rules), line=11, node=EX + "approval")
    assert index.find(EX + "case") == Location(file=str(rules), line=6, node=EX + "case")


def test_a_prefix_of_another_name_does_not_match(tmp_path: Path) -> None:
    common = write(tmp_path / "common.ttl", COMMON)
    index = SourceIndex([common])
    assert index.find(EX + "L1") == Location(file=str(common), line=6, node=EX + "L1")
    assert index.find(EX + "L10") == Location(file=str(common), line=5, node=EX + "L10")


def test_a_node_only_mentioned_is_found_where_it_is_mentioned(tmp_path: Path) -> None:
    rules = write(tmp_path / "rules.ttl", RULES)
    assert SourceIndex([rules]).find(EX + "L7") == Location(file=str(rules), line=9, node=EX + "L7")


def test_the_first_file_that_writes_the_subject_wins(tmp_path: Path) -> None:
    first = write(tmp_path / "a.ttl", COMMON)
    second = write(tmp_path / "b.ttl", COMMON.replace("ex:L1 a", "\n\nex:L1 a"))
    found = SourceIndex([second, first]).find(EX + "L1")
    assert found is not None and (found.file, found.line) == (str(second), 8)


def test_full_iris_relative_iris_and_n_triples(tmp_path: Path) -> None:
    ttl = write(
        tmp_path / "o.ttl",
        "@base <https://example.com/base/> .\n<thing> a <https://w3id.org/finops-fabric/ns#Role> .\n"
        "<https://example.com/p#full>\n    a <https://w3id.org/finops-fabric/ns#Role> .\n",
    )
    nt = write(tmp_path / "o.nt", f'<{EX}nt> <http://www.w3.org/2000/01/rdf-schema#label> "x" .\n')
    index = SourceIndex([ttl, nt])
    assert index.find("https://example.com/base/thing") == Location(
        str(ttl), 2, "https://example.com/base/thing"
    )
    assert index.find(EX + "full") == Location(str(ttl), 3, EX + "full")
    assert index.find(EX + "nt") == Location(str(nt), 1, EX + "nt")


def test_a_relative_iri_resolves_against_the_file(tmp_path: Path) -> None:
    ttl = write(tmp_path / "o.ttl", "<#local> a <https://w3id.org/finops-fabric/ns#Role> .\n")
    iri = ttl.resolve().as_uri() + "#local"
    assert SourceIndex([ttl]).find(iri) == Location(str(ttl), 1, iri)


def test_a_redeclared_prefix_applies_from_its_declaration(tmp_path: Path) -> None:
    ttl = write(
        tmp_path / "o.ttl",
        "@prefix p: <https://one.example/#> .\np:x a p:C .\n"
        "@prefix p: <https://two.example/#> .\np:x a p:C .\n",
    )
    index = SourceIndex([ttl])
    assert index.find("https://one.example/#x") == Location(str(ttl), 2, "https://one.example/#x")
    assert index.find("https://two.example/#x") == Location(str(ttl), 4, "https://two.example/#x")
    assert index.prefixes() == {"p": "https://one.example/#"}


def test_trig_subjects_inside_a_graph(tmp_path: Path) -> None:
    trig = write(
        tmp_path / "o.trig",
        "@prefix ex: <https://example.com/p#> .\nex:g {\n    ex:in-graph a ex:C .\n    ex:next a ex:C .\n}\n",
    )
    index = SourceIndex([trig])
    assert index.find(EX + "in-graph") == Location(str(trig), 3, EX + "in-graph")
    assert index.find(EX + "next") == Location(str(trig), 4, EX + "next")


def test_json_ld_ids(tmp_path: Path) -> None:
    doc = write(
        tmp_path / "o.jsonld",
        '{\n  "@context": {"ex": "https://example.com/p#"},\n  "@graph": [\n'
        '    {"@id": "ex:compact", "@type": "ex:C"},\n    {"@id": "https://example.com/p#full"}\n  ]\n}\n',
    )
    index = SourceIndex([doc])
    assert index.find(EX + "compact") == Location(str(doc), 4, EX + "compact")
    assert index.find(EX + "full") == Location(str(doc), 5, EX + "full")


def test_text_is_found_for_blank_nodes(tmp_path: Path) -> None:
    rules = write(tmp_path / "rules.ttl", RULES)
    index = SourceIndex([rules])
    assert index.find_text("Purchases over $5M need the board") == Location(file=str(rules), line=12)
    assert index.find_text("nowhere") is None
    assert index.find_text("") is None


def test_unknown_nodes_and_unreadable_files_give_none(tmp_path: Path) -> None:
    index = SourceIndex([tmp_path / "missing.ttl"])  # nothing is read until asked
    assert index.find(EX + "anything") is None
    assert index.prefixes() == {}
