"""Loading O from files: formats, directories and the errors a person can act on."""

from __future__ import annotations

import json
from pathlib import Path

import pyoxigraph as ox
import pytest

from finops_fabric.errors import InputError
from finops_fabric.rdf.load import load_graph, load_many, parse_file, policy_files

GOOD = """\
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix ex: <https://example.com/p#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .

ex:wire a fab:TransactionType ; fab:code "wire" ; rdfs:label "Wire" .
"""

EX = "https://example.com/p#"
FAB = "https://w3id.org/finops-fabric/ns#"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _spo(triples: tuple[ox.Triple, ...]) -> set[tuple[str, str, str]]:
    return {(str(t.subject), str(t.predicate), str(t.object)) for t in triples}


def test_a_turtle_file_loads(tmp_path: Path) -> None:
    f = _write(tmp_path / "o.ttl", GOOD)
    raw = load_graph(f)
    assert raw.files == (f,)
    assert len(raw.triples) == 3
    assert (f"<{EX}wire>", f"<{FAB}code>", '"wire"') in _spo(raw.triples)


def test_malformed_turtle_names_the_file_and_the_line(tmp_path: Path) -> None:
    bad = GOOD + '\nex:refund a fab:TransactionType ;\n    fab:code "refund" ,, .\n'
    f = _write(tmp_path / "policy" / "broken.ttl", bad)
    expected_line = bad.splitlines().index('    fab:code "refund" ,, .') + 1
    with pytest.raises(InputError) as ei:
        load_graph(f)
    e = ei.value
    assert e.code == "fabric.parse_error"
    assert e.location is not None
    assert e.location.file == str(f)
    assert e.location.line == expected_line
    assert "broken.ttl" in e.message
    assert f"line {expected_line}" in e.message
    assert f"broken.ttl:{expected_line}" in str(e)
    assert e.exit_code == 2


def test_an_unterminated_string_names_the_line_where_it_starts(tmp_path: Path) -> None:
    f = _write(tmp_path / "o.ttl", GOOD + 'ex:x rdfs:label "never closed .\nex:y ex:z ex:w .\n')
    with pytest.raises(InputError) as ei:
        load_graph(f)
    assert ei.value.code == "fabric.parse_error"
    assert ei.value.location is not None and ei.value.location.line == 6


def test_a_malformed_file_in_a_directory_is_named(tmp_path: Path) -> None:
    d = tmp_path / "o"
    _write(d / "a.ttl", GOOD)
    bad = _write(d / "b.ttl", "@prefix ex: <https://example.com/p#> .\nex:a ex:b\n")
    with pytest.raises(InputError) as ei:
        load_graph(d)
    assert ei.value.code == "fabric.parse_error"
    assert ei.value.location is not None and ei.value.location.file == str(bad)
    assert "b.ttl" in ei.value.message


def test_malformed_json_ld_is_a_parse_error(tmp_path: Path) -> None:
    f = _write(tmp_path / "o.jsonld", '{"@id": "https://example.com/p#a",\n "https://example.com/p#b": [}\n')
    with pytest.raises(InputError) as ei:
        load_graph(f)
    assert ei.value.code == "fabric.parse_error"
    assert ei.value.location is not None and ei.value.location.file == str(f)


def test_an_unknown_extension_is_refused(tmp_path: Path) -> None:
    f = _write(tmp_path / "policy.txt", GOOD)
    with pytest.raises(InputError) as ei:
        load_graph(f)
    assert ei.value.code == "fabric.unknown_format"
    assert "policy.txt" in ei.value.message
    assert ".ttl" in ei.value.message
    with pytest.raises(InputError) as ei2:
        parse_file(f)
    assert ei2.value.code == "fabric.unknown_format"


def test_files_of_unknown_formats_in_a_directory_are_ignored(tmp_path: Path) -> None:
    d = tmp_path / "o"
    _write(d / "o.ttl", GOOD)
    _write(d / "README.md", "# not RDF {{{")
    _write(d / ".hidden.ttl", "this is not turtle")
    _write(d / ".git" / "x.ttl", "neither is this")
    assert policy_files(d) == [d / "o.ttl"]
    assert len(load_graph(d).triples) == 3


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    with pytest.raises(InputError) as ei:
        load_graph(d)
    assert ei.value.code == "fabric.empty_ontology"
    assert ei.value.location is not None and ei.value.location.file == str(d)


def test_a_directory_without_rdf_files_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "o"
    _write(d / "notes.txt", "nothing here")
    with pytest.raises(InputError) as ei:
        load_graph(d)
    assert ei.value.code == "fabric.empty_ontology"


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "o.ttl"
    with pytest.raises(InputError) as ei:
        load_graph(missing)
    assert ei.value.code == "fabric.unreadable"
    assert str(missing) in ei.value.message
    assert ei.value.location is not None and ei.value.location.file == str(missing)


def test_a_json_ld_file_loads(tmp_path: Path) -> None:
    doc = {
        "@context": {"fab": FAB, "ex": EX, "rdfs": "http://www.w3.org/2000/01/rdf-schema#"},
        "@id": "ex:wire",
        "@type": "fab:TransactionType",
        "fab:code": "wire",
        "rdfs:label": "Wire",
    }
    f = _write(tmp_path / "o.jsonld", json.dumps(doc))
    raw = load_graph(f)
    ttl = load_graph(_write(tmp_path / "o.ttl", GOOD))
    assert _spo(raw.triples) == _spo(ttl.triples)
    alt = _write(tmp_path / "o.json-ld", json.dumps(doc))
    assert _spo(load_graph(alt).triples) == _spo(ttl.triples)


@pytest.mark.parametrize("suffix", [".nt", ".ntriples", ".nq", ".nquads", ".turtle", ".TTL"])
def test_other_extensions_load(tmp_path: Path, suffix: str) -> None:
    text = GOOD if suffix.lower() in (".turtle", ".ttl") else f'<{EX}wire> <{FAB}code> "wire" .\n'
    raw = load_graph(_write(tmp_path / f"o{suffix}", text))
    assert (f"<{EX}wire>", f"<{FAB}code>", '"wire"') in _spo(raw.triples)


def test_named_graphs_are_merged_into_the_default_graph(tmp_path: Path) -> None:
    trig = (
        "@prefix ex: <https://example.com/p#> .\n"
        "ex:g1 { ex:a ex:p ex:b . }\n"
        "ex:g2 { ex:a ex:p ex:b . ex:c ex:p ex:d . }\n"
        "{ ex:e ex:p ex:f . }\n"
    )
    raw = load_graph(_write(tmp_path / "o.trig", trig))
    assert _spo(raw.triples) == {
        (f"<{EX}a>", f"<{EX}p>", f"<{EX}b>"),
        (f"<{EX}c>", f"<{EX}p>", f"<{EX}d>"),
        (f"<{EX}e>", f"<{EX}p>", f"<{EX}f>"),
    }
    assert len(raw.triples) == 3
    assert all(isinstance(t, ox.Quad) and t.graph_name == ox.DefaultGraph() for t in raw.triples)


def test_a_directory_is_one_graph_without_duplicates(tmp_path: Path) -> None:
    d = tmp_path / "o"
    _write(d / "b.ttl", GOOD)
    _write(d / "a" / "again.ttl", GOOD)
    _write(d / "c.nt", f'<{EX}refund> <{FAB}code> "refund" .\n')
    raw = load_graph(d)
    assert list(raw.files) == sorted(raw.files)
    assert set(raw.files) == {d / "b.ttl", d / "a" / "again.ttl", d / "c.nt"}
    assert len(raw.triples) == 4


@pytest.mark.parametrize(
    ("name", "text", "line", "iri"),
    [
        ("o.ttl", "<https://e.x/a> <https://e.x/p> <https://e.x/b> .\n<#a> <https://e.x/p> <x> .\n", 2, "#a"),
        ("o.nt", '<rule1> <https://e.x/p> "x" .\n', 1, "rule1"),
        ("o.jsonld", '{"@id": "r1", "https://e.x/p": "x"}', None, "r1"),
    ],
)
def test_relative_iris_are_refused(tmp_path: Path, name: str, text: str, line: int | None, iri: str) -> None:
    """hash(O) and the rule IRIs in A must not depend on where O's files lie."""
    f = _write(tmp_path / name, text)
    with pytest.raises(InputError) as caught:
        load_graph(f)
    assert caught.value.code == "fabric.relative_iri"
    assert f"<{iri}>" in caught.value.message and "absolute" in caught.value.message
    assert caught.value.location is not None and caught.value.location.line == line


def test_an_explicit_base_makes_relative_iris_absolute(tmp_path: Path) -> None:
    f = _write(tmp_path / "o.ttl", "@base <https://e.x/policy/> .\n<#a> <p> <b> .\n")
    (t,) = load_graph(f).triples
    assert (t.subject.value, t.object.value) == ("https://e.x/policy/#a", "https://e.x/policy/b")
    moved = _write(tmp_path / "elsewhere" / "o.ttl", f.read_text())
    assert load_graph(moved).triples == load_graph(f).triples


def test_load_many_merges_several_paths(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.ttl", GOOD)
    b = _write(tmp_path / "shapes" / "b.nt", f'<{EX}refund> <{FAB}code> "refund" .\n')
    raw = load_many([a, b.parent])
    assert raw.files == (a, b)
    assert len(raw.triples) == 4


def test_extra_files_join_the_graph(tmp_path: Path) -> None:
    a = _write(tmp_path / "o" / "a.ttl", GOOD)
    extra = _write(tmp_path / "extra.nt", f'<{EX}refund> <{FAB}code> "refund" .\n')
    raw = load_graph(a.parent, extra=[extra])
    assert raw.files == (a, extra)
    assert len(raw.triples) == 4
