"""hash(O): a property of the RDF graph, never of the files that spell it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pyoxigraph as ox
import pytest

from finops_fabric.errors import InputError
from finops_fabric.rdf import canon
from finops_fabric.rdf.canon import (
    BUDGET_ENV,
    _canonicalize_in_process,
    ambiguous_blank_nodes,
    canonical_dataset_nquads,
    canonical_nquads,
    graph_hash,
)
from finops_fabric.rdf.load import load_graph

EXAMPLES = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"

# One small graph, spelled many ways. It has IRIs, typed and plain literals, a language tag,
# a nested blank-node condition and a literal with characters that need escaping.
TURTLE = """\
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix ex: <https://example.com/p#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .

ex:wire a fab:TransactionType ; fab:code "wire" ; rdfs:label "Wire"@en .
ex:sanctions a fab:RestrictionRule ;
    rdfs:label "No \\"wires\\"\\nto sanctioned countries" ;
    fab:appliesTo ex:wire ;
    fab:condition [ a fab:AllOf ;
        fab:operand [ a fab:Membership ; fab:attribute "country" ; fab:value "IR", "KP" ] ,
                    [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:gt ;
                      fab:value "0.10"^^xsd:decimal ] ] .
"""

# The same graph: other prefixes, other layout, other order, explicit blank-node labels.
TURTLE_REWRITTEN = """\
@prefix f: <https://w3id.org/finops-fabric/ns#> .
@prefix x: <https://example.com/p#> .
@prefix label: <http://www.w3.org/2000/01/rdf-schema#> .
_:inner2 <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> f:Comparison .
_:inner2 f:value "0.10"^^<http://www.w3.org/2001/XMLSchema#decimal> .
x:sanctions f:condition _:top .
_:top f:operand _:inner2 , _:inner1 .
x:sanctions label:label 'No "wires"\\nto sanctioned countries' .
_:inner1 f:value "KP" . _:inner1 f:value "IR" .
_:inner2 f:operator f:gt . _:inner2 f:attribute "amount" .
x:wire label:label "Wire"@en .   x:wire f:code "wire" .
x:wire a f:TransactionType .
_:top a f:AllOf . _:inner1 a f:Membership . _:inner1 f:attribute "country" .
x:sanctions f:appliesTo x:wire ; a f:RestrictionRule .
"""

# N-Triples, written with short placeholders for the namespaces (expanded below).
NTRIPLES = (
    """\
<EX:wire> <RDF:type> <FAB:TransactionType> .
<EX:wire> <FAB:code> "wire" .
<EX:wire> <RDFS:label> "Wire"@en .
<EX:sanctions> <RDF:type> <FAB:RestrictionRule> .
<EX:sanctions> <RDFS:label> "No \\"wires\\"\\nto sanctioned countries" .
<EX:sanctions> <FAB:appliesTo> <EX:wire> .
<EX:sanctions> <FAB:condition> _:c .
_:c <RDF:type> <FAB:AllOf> .
_:c <FAB:operand> _:m .
_:c <FAB:operand> _:k .
_:m <RDF:type> <FAB:Membership> .
_:m <FAB:attribute> "country" .
_:m <FAB:value> "IR" .
_:m <FAB:value> "KP" .
_:k <RDF:type> <FAB:Comparison> .
_:k <FAB:attribute> "amount" .
_:k <FAB:operator> <FAB:gt> .
_:k <FAB:value> "0.10"^^<XSD:decimal> .
""".replace("<RDF:type>", "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>")
    .replace("<RDFS:label>", "<http://www.w3.org/2000/01/rdf-schema#label>")
    .replace("<XSD:decimal>", "<http://www.w3.org/2001/XMLSchema#decimal>")
    .replace("<FAB:", "<https://w3id.org/finops-fabric/ns#")
    .replace("<EX:", "<https://example.com/p#")
)

JSONLD = """\
{
  "@context": {
    "fab": "https://w3id.org/finops-fabric/ns#",
    "ex": "https://example.com/p#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "xsd": "http://www.w3.org/2001/XMLSchema#"
  },
  "@graph": [
    {"@id": "ex:wire", "@type": "fab:TransactionType", "fab:code": "wire",
     "rdfs:label": {"@value": "Wire", "@language": "en"}},
    {"@id": "ex:sanctions", "@type": "fab:RestrictionRule",
     "rdfs:label": "No \\"wires\\"\\nto sanctioned countries",
     "fab:appliesTo": {"@id": "ex:wire"},
     "fab:condition": {
       "@type": "fab:AllOf",
       "fab:operand": [
         {"@type": "fab:Membership", "fab:attribute": "country", "fab:value": ["KP", "IR"]},
         {"@type": "fab:Comparison", "fab:attribute": "amount", "fab:operator": {"@id": "fab:gt"},
          "fab:value": {"@value": "0.10", "@type": "xsd:decimal"}}
       ]
     }}
  ]
}
"""

# TriG: the same triples, split over the default graph and a named graph (merged into O).
TRIG = """\
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix ex: <https://example.com/p#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .

{ ex:wire a fab:TransactionType ; fab:code "wire" ; rdfs:label "Wire"@en . }
ex:rules {
  ex:sanctions a fab:RestrictionRule ;
    rdfs:label "No \\"wires\\"\\nto sanctioned countries" ;
    fab:appliesTo ex:wire ;
    fab:condition [ a fab:AllOf ;
        fab:operand [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:gt ;
                      fab:value "0.10"^^xsd:decimal ] ,
                    [ a fab:Membership ; fab:attribute "country" ; fab:value "IR", "KP" ] ] .
}
"""

# The same graph split over two files (the blank nodes never cross a file).
SPLIT_A = """\
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix ex: <https://example.com/p#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:wire a fab:TransactionType ; fab:code "wire" ; rdfs:label "Wire"@en .
"""
SPLIT_B = TURTLE.split("\n\n", 1)[0] + "\n" + TURTLE.split('rdfs:label "Wire"@en .\n', 1)[1]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _hash_of(path: Path) -> str:
    return graph_hash(load_graph(path).triples)


@pytest.fixture
def reference_hash(tmp_path: Path) -> str:
    return _hash_of(_write(tmp_path / "ref" / "o.ttl", TURTLE))


def test_the_hash_has_the_documented_form(reference_hash: str) -> None:
    assert reference_hash.startswith("sha256:")
    assert len(reference_hash) == len("sha256:") + 64
    assert all(c in "0123456789abcdef" for c in reference_hash[7:])


def test_the_graph_has_the_expected_size(tmp_path: Path) -> None:
    raw = load_graph(_write(tmp_path / "o.ttl", TURTLE))
    assert len(raw.triples) == 18


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("rewritten.ttl", TURTLE_REWRITTEN),
        ("graph.nt", NTRIPLES),
        ("graph.nq", NTRIPLES),
        ("graph.jsonld", JSONLD),
        ("graph.trig", TRIG),
        ("reformatted.ttl", "\n\n".join(" ".join(line.split()) for line in TURTLE.splitlines())),
    ],
)
def test_the_same_graph_in_any_syntax_has_the_same_hash(
    tmp_path: Path, reference_hash: str, name: str, text: str
) -> None:
    assert _hash_of(_write(tmp_path / "other" / name, text)) == reference_hash


def test_triple_order_does_not_matter(tmp_path: Path, reference_hash: str) -> None:
    lines = NTRIPLES.splitlines(keepends=True)
    reordered = "".join(reversed(lines))
    assert _hash_of(_write(tmp_path / "r.nt", reordered)) == reference_hash
    triples = load_graph(_write(tmp_path / "o.ttl", TURTLE)).triples
    assert canonical_nquads(list(reversed(triples))) == canonical_nquads(triples)


def test_blank_node_labels_do_not_matter(tmp_path: Path, reference_hash: str) -> None:
    relabelled = NTRIPLES.replace("_:c ", "_:zz9 ").replace("_:m ", "_:b0 ").replace("_:k ", "_:genid1 ")
    assert relabelled != NTRIPLES
    assert _hash_of(_write(tmp_path / "l.nt", relabelled)) == reference_hash


def test_splitting_over_files_does_not_matter(tmp_path: Path, reference_hash: str) -> None:
    d = tmp_path / "split"
    _write(d / "a-types.ttl", SPLIT_A)
    _write(d / "sub" / "b-rules.ttl", SPLIT_B)
    assert len(load_graph(d).files) == 2
    assert _hash_of(d) == reference_hash


def test_duplicated_triples_do_not_matter(tmp_path: Path, reference_hash: str) -> None:
    d = tmp_path / "dup"
    _write(d / "one.ttl", TURTLE)
    _write(d / "two.ttl", SPLIT_A)  # the type again, in another file
    assert _hash_of(d) == reference_hash


def test_a_changed_value_changes_the_hash(tmp_path: Path, reference_hash: str) -> None:
    changes = (('"KP"', '"KR"'), ('"0.10"', '"0.1"'), ('"Wire"@en', '"Wire"@fr'), ("fab:gt", "fab:ge"))
    for i, (old, new) in enumerate(changes):
        assert old in TURTLE
        changed = TURTLE.replace(old, new, 1)
        assert _hash_of(_write(tmp_path / f"c{i}.ttl", changed)) != reference_hash, new


def test_canonical_nquads_are_sorted_lines_with_canonical_labels(tmp_path: Path) -> None:
    out = canonical_nquads(load_graph(_write(tmp_path / "o.ttl", TURTLE)).triples)
    assert out.endswith(b"\n")
    lines = out.split(b"\n")[:-1]
    assert len(lines) == 18
    assert lines == sorted(lines)
    assert b"_:c14n0" in out
    labels = {tok for line in lines for tok in line.split() if tok.startswith(b"_:")}
    assert labels == {b"_:c14n0", b"_:c14n1", b"_:c14n2"}
    assert b'"0.10"^^<http://www.w3.org/2001/XMLSchema#decimal>' in out


def test_literals_with_unicode_line_separators_stay_on_one_line() -> None:
    """N-Quads leaves U+0085, U+2028, U+2029 and U+001C-U+001E unescaped; they are not line ends."""
    text = "a\u0085b\u2028c\u2029d\x1ce\x1df\x1eg\x0bh\x0ci"
    triples = [
        ox.Triple(
            ox.NamedNode("https://example.com/s"), ox.NamedNode("https://example.com/p"), ox.Literal(text)
        ),
        ox.Triple(
            ox.NamedNode("https://example.com/s"), ox.NamedNode("https://example.com/q"), ox.Literal("x")
        ),
    ]
    out = canonical_nquads(triples)
    assert out.count(b"\n") == 2
    back = [q.triple for q in ox.parse(out, ox.RdfFormat.N_QUADS)]
    assert set(back) == set(triples)


def test_ambiguous_blank_nodes_is_zero_for_ordinary_policies(
    tmp_path: Path, policies: SimpleNamespace
) -> None:
    assert ambiguous_blank_nodes(load_graph(_write(tmp_path / "o.ttl", TURTLE)).triples) == 0
    assert ambiguous_blank_nodes(load_graph(EXAMPLES).triples) == 0
    inline = policies.parse_turtle(policies.REFERENCE + policies.FULL_RULES)
    assert ambiguous_blank_nodes(inline) == 0
    assert ambiguous_blank_nodes([]) == 0


def test_ambiguous_blank_nodes_counts_lookalikes() -> None:
    p = ox.NamedNode("https://example.com/p")
    a, b, c = ox.BlankNode("a"), ox.BlankNode("b"), ox.BlankNode("c")
    # a -> b -> c -> a: every node has the same first-degree signature.
    cycle = [ox.Triple(a, p, b), ox.Triple(b, p, c), ox.Triple(c, p, a)]
    assert ambiguous_blank_nodes(cycle) == 3
    # Two look-alike leaves under one IRI, plus a node told apart by a literal.
    s = ox.NamedNode("https://example.com/s")
    leaves = [ox.Triple(s, p, a), ox.Triple(s, p, b), ox.Triple(s, p, c), ox.Triple(c, p, ox.Literal("x"))]
    assert ambiguous_blank_nodes(leaves) == 2


def test_ambiguous_blank_nodes_considers_graph_names() -> None:
    s, p = ox.NamedNode("https://example.com/s"), ox.NamedNode("https://example.com/p")
    a, b = ox.BlankNode("a"), ox.BlankNode("b")
    g1, g2 = ox.NamedNode("https://example.com/g1"), ox.NamedNode("https://example.com/g2")
    # The same triple shape in two different named graphs: told apart by the graph name.
    assert ambiguous_blank_nodes([ox.Quad(s, p, a, g1), ox.Quad(s, p, b, g2)]) == 0
    assert ambiguous_blank_nodes([ox.Quad(s, p, a, g1), ox.Quad(s, p, b, g1)]) == 2
    # Blank nodes as graph names count as blank nodes.
    assert ambiguous_blank_nodes([ox.Quad(s, p, ox.Literal("x"), a), ox.Quad(s, p, ox.Literal("x"), b)]) == 2


def test_lookalike_blank_nodes_go_through_the_worker_and_agree() -> None:
    """An ambiguous dataset is canonicalized in the child process (N-Quads in, N-Quads out)."""
    p = ox.NamedNode("https://example.com/p")
    g = ox.NamedNode("https://example.com/g")
    a, b, c, d = (ox.BlankNode(x) for x in "abcd")
    quads = [
        ox.Quad(a, p, b, g),
        ox.Quad(b, p, a, g),
        ox.Quad(c, p, d, ox.DefaultGraph()),
        ox.Quad(d, p, c, ox.DefaultGraph()),
        ox.Quad(a, p, ox.Literal("line\u2028two"), g),
    ]
    assert ambiguous_blank_nodes(quads) > 0
    via_worker = canonical_dataset_nquads(quads, budget=60)
    assert via_worker == _canonicalize_in_process(quads)
    assert b"<https://example.com/g>" in via_worker  # the named graph is kept
    relabelled = [
        ox.Quad(
            *(
                ox.BlankNode("x" + t.value) if isinstance(t, ox.BlankNode) else t
                for t in (q.subject, q.predicate, q.object)
            ),
            q.graph_name,
        )
        for q in reversed(quads)
    ]
    assert canonical_dataset_nquads(relabelled, budget=60) == via_worker
    # the fresh-interpreter path (used when threads run, so no fork) gives the same bytes
    assert canon._canonicalize_in_subprocess(quads, 60) == via_worker
    assert canon._canonicalize_forked(quads, 60) == via_worker


def test_a_thread_running_means_no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = ox.BlankNode("a"), ox.BlankNode("b")
    p = ox.NamedNode("https://example.com/p")
    used: list[str] = []

    def path(name: str) -> Callable[[object, float], bytes]:
        def run(quads: object, budget: float) -> bytes:
            used.append(name)
            return b""

        return run

    monkeypatch.setattr(canon, "_canonicalize_forked", path("fork"))
    monkeypatch.setattr(canon, "_canonicalize_in_subprocess", path("spawn"))
    graph = [ox.Triple(a, p, b), ox.Triple(b, p, a)]
    canonical_nquads(graph, budget=5)
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        canonical_nquads(graph, budget=5)
    finally:
        stop.set()
        worker.join()
    assert used == ["fork", "spawn"]


def test_triples_are_the_default_graph_of_a_dataset(tmp_path: Path) -> None:
    triples = load_graph(_write(tmp_path / "o.ttl", TURTLE)).triples
    quads = [ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph()) for t in triples]
    assert canonical_nquads(triples) == canonical_dataset_nquads(quads)


def test_named_graphs_are_kept_by_the_dataset_form() -> None:
    s, p, o = ox.NamedNode("https://example.com/s"), ox.NamedNode("https://example.com/p"), ox.Literal("o")
    g = ox.NamedNode("https://example.com/g")
    default = canonical_dataset_nquads([ox.Quad(s, p, o, ox.DefaultGraph())])
    named = canonical_dataset_nquads([ox.Quad(s, p, o, g)])
    assert default == b'<https://example.com/s> <https://example.com/p> "o" .\n'
    assert named == b'<https://example.com/s> <https://example.com/p> "o" <https://example.com/g> .\n'


def test_a_bad_budget_setting_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = ox.BlankNode("a"), ox.BlankNode("b")
    p = ox.NamedNode("https://example.com/p")
    monkeypatch.setenv(BUDGET_ENV, "soon")
    with pytest.raises(InputError, match=BUDGET_ENV):
        canonical_nquads([ox.Triple(a, p, b), ox.Triple(b, p, a)])


def test_blank_nodes_are_scoped_per_file(tmp_path: Path) -> None:
    prefix = "@prefix fab: <https://w3id.org/finops-fabric/ns#> .\n@prefix ex: <https://example.com/p#> .\n"
    d = tmp_path / "o"
    _write(d / "one.ttl", prefix + 'ex:r1 fab:condition _:b0 .\n_:b0 fab:attribute "country" .\n')
    _write(d / "two.ttl", prefix + 'ex:r2 fab:condition _:b0 .\n_:b0 fab:attribute "amount" .\n')
    raw = load_graph(d)
    blanks = {t.object for t in raw.triples if t.predicate.value.endswith("#condition")}
    assert len(blanks) == 2
    attrs = {t.subject: t.object.value for t in raw.triples if t.predicate.value.endswith("#attribute")}
    by_rule = {
        t.subject.value.rsplit("#", 1)[1]: attrs[t.object]
        for t in raw.triples
        if t.predicate.value.endswith("#condition")
    }
    assert by_rule == {"r1": "country", "r2": "amount"}
    # ... and the hash equals that of one file with two distinct blank nodes.
    single = _write(
        tmp_path / "single.ttl",
        prefix + 'ex:r1 fab:condition _:x .\n_:x fab:attribute "country" .\n'
        'ex:r2 fab:condition _:y .\n_:y fab:attribute "amount" .\n',
    )
    assert _hash_of(d) == _hash_of(single)
    merged = _write(
        tmp_path / "merged.ttl",
        prefix + "ex:r1 fab:condition _:x .\nex:r2 fab:condition _:x .\n"
        '_:x fab:attribute "country", "amount" .\n',
    )
    assert _hash_of(d) != _hash_of(merged)
