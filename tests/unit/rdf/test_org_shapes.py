"""The organisation's shapes are data, not programs: rules, custom targets, SPARQL, functions,
SHACL-JS, imports and SERVICE are refused (exit 2, file, line, feature) before anything runs,
and a loopback HTTP server named in them receives no request."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from finops_fabric import cli
from finops_fabric.errors import InputError
from finops_fabric.rdf.load import load_graph
from finops_fabric.rdf.org_shapes import load_org_shapes
from finops_fabric.rdf.shacl import validate_shapes
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
HEAD = """\
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix org: <https://example.com/acme/shapes#> .
"""


class Listener:
    """A loopback HTTP server that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                seen.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "application/sparql-results+json")
                self.end_headers()
                self.wfile.write(b'{"head": {"vars": []}, "results": {"bindings": []}}')

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def programs(url: str) -> dict[str, tuple[str, str, int]]:
    """name -> (shapes text, the term named in the refusal, its line)."""
    service = f"SERVICE <{url}/sparql> {{ ?s ?p ?o }}"
    return {
        "rule": (
            HEAD
            + "org:R a sh:NodeShape ; sh:targetClass fab:TransactionType ;\n"
            + "    sh:rule [ a sh:SPARQLRule ;"
            + f' sh:construct "CONSTRUCT {{ $this fab:code \\"x\\" }} WHERE {{ {service} }}" ] .\n',
            "sh:rule",
            6,
        ),
        "triple_rule": (
            HEAD
            + 'org:T a sh:TripleRule ;\n    sh:subject sh:this ; sh:predicate fab:code ; sh:object "x" .\n',
            "sh:TripleRule",
            5,
        ),
        "sparql_target": (
            HEAD
            + "org:S a sh:NodeShape ;\n"
            + f'    sh:target [ a sh:SPARQLTarget ; sh:select "SELECT ?this WHERE {{ {service} }}" ] ;\n'
            + "    sh:property [ sh:path fab:code ; sh:minCount 1 ] .\n",
            "sh:target",
            6,
        ),
        "sparql_target_type": (
            HEAD + 'org:TT a sh:SPARQLTargetType ;\n    sh:labelTemplate "all" .\n',
            "sh:SPARQLTargetType",
            5,
        ),
        "sparql_constraint": (
            HEAD
            + "org:C a sh:NodeShape ; sh:targetClass fab:TransactionType ;\n"
            + f'    sh:sparql [ sh:select "SELECT $this WHERE {{ {service} }}" ] .\n',
            "sh:sparql",
            6,
        ),
        "constraint_component": (
            HEAD
            + "org:CC a sh:ConstraintComponent ;\n"
            + "    sh:parameter [ sh:path org:p ] ;\n"
            + f'    sh:validator [ a sh:SPARQLAskValidator ; sh:ask "ASK {{ {service} }}" ] .\n',
            "sh:ConstraintComponent",
            5,
        ),
        "function": (
            HEAD + "org:F a sh:SPARQLFunction ;\n    sh:returnType fab:Thing ; sh:prefixes org: .\n",
            "sh:SPARQLFunction",
            5,
        ),
        "js": (HEAD + 'org:J a sh:NodeShape ;\n    sh:js [ sh:jsFunctionName "f" ] .\n', "sh:js", 6),
        "owl_imports": (HEAD + f"org: owl:imports <{url}/more-shapes.ttl> .\n", "owl:imports", 5),
        "shapes_graph": (HEAD + f"org: sh:shapesGraph <{url}/g> .\n", "sh:shapesGraph", 5),
        "service_in_a_message": (
            HEAD
            + "org:M a sh:NodeShape ; sh:targetClass fab:TransactionType ;\n"
            + f'    sh:property [ sh:path fab:code ; sh:minCount 1 ;\n        sh:message "{service}" ] .\n',
            "SERVICE",
            7,
        ),
    }


NAMES = sorted(programs("http://x"))


@pytest.mark.parametrize("name", NAMES)
def test_programs_are_refused_and_nothing_is_fetched(tmp_path: Path, listener: Listener, name: str) -> None:
    text, term, line = programs(listener.url)[name]
    shapes = tmp_path / "org.ttl"
    shapes.write_text(text)
    with pytest.raises(InputError) as ei:
        validate_shapes(load_graph(ACME), [shapes])
    err = ei.value
    assert (err.code, err.exit_code) == ("fabric.shapes_program", 2)
    assert term in err.message and "SHACL Core" in err.message
    assert err.location is not None and (err.location.file, err.location.line) == (str(shapes), line), err
    assert listener.requests == []


@pytest.mark.parametrize("name", ["rule", "sparql_target", "owl_imports"])
@pytest.mark.parametrize("verb", ["validate", "generate"])
def test_cli_exits_2_naming_the_file_and_feature(
    tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str], name: str, verb: str
) -> None:
    text, term, line = programs(listener.url)[name]
    shapes = tmp_path / "org.ttl"
    shapes.write_text(text)
    home = tmp_path / "store"
    Store(home).init()
    args = (
        ["validate", f"--ontology={ACME}"]
        if verb == "validate"
        else ["generate", f"--input={ACME}", f"--output={tmp_path / 'A'}"]
    )
    rc = cli.main([*args, f"--schema={shapes}", f"--home={home}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"mu: error: {shapes}:{line}"), err
    assert term in err and "internal error" not in err
    assert listener.requests == []
    assert Store(home).receipts() == [] and not (tmp_path / "A").exists()


def test_imports_in_o_are_not_fetched(tmp_path: Path, listener: Listener) -> None:
    o = tmp_path / "O"
    shutil.copytree(ACME, o)
    (o / "imports.ttl").write_text(
        "@prefix owl: <http://www.w3.org/2002/07/owl#> .\n"
        f"<https://example.com/acme/policy> owl:imports <{listener.url}/elsewhere.ttl> .\n"
    )
    assert cli.main(["validate", f"--ontology={o}", f"--home={tmp_path}"]) == 0
    assert listener.requests == []


def test_core_shapes_are_data(tmp_path: Path) -> None:
    shapes = tmp_path / "core.ttl"
    shapes.write_text(
        HEAD
        + "org:Codes a sh:NodeShape ; sh:targetClass fab:TransactionType ;\n"
        + '    sh:property [ sh:path fab:code ; sh:minCount 1 ; sh:maxCount 1 ; sh:pattern "^[a-z]+$" ;\n'
        + "                  sh:datatype <http://www.w3.org/2001/XMLSchema#string> ] ;\n"
        + '    sh:or ( [ sh:class fab:TransactionType ] [ sh:nodeKind sh:IRI ] ) ; sh:name "codes" ;\n'
        + '    sh:description "a code per type" ; sh:severity sh:Warning ; sh:order 1 .\n'
    )
    assert len(load_org_shapes([shapes]).triples) > 10
    assert validate_shapes(load_graph(ACME), [shapes]) == []
