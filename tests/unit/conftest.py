"""Shared inline policies for the unit tests (Turtle strings, never ../shared).

``tests`` is not an importable package, so the helpers reach the tests as the session fixture
``policies`` (a namespace of constants and pure functions).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyoxigraph as ox
import pytest

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.interpreter import Interpreter
from finops_fabric.rdf.reader import read_policy

EX = "https://example.com/test#"
FAB = m.FAB
ZERO_HASH = "sha256:" + "0" * 64

PREFIXES = """\
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix ex: <https://example.com/test#> .
@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix dcterms: <http://purl.org/dc/terms/> .
"""

# Reference data: one policy, three transaction types, five authority levels.
REFERENCE = (
    PREFIXES
    + """
ex:policy a fab:Policy ; dcterms:title "Test policy" ; fab:policyVersion "1.0" .

ex:purchase a fab:TransactionType ; fab:code "purchase" ; rdfs:label "Purchase" .
ex:wire a fab:TransactionType ; fab:code "wire" ; rdfs:label "Wire transfer" .
ex:refund a fab:TransactionType ; fab:code "refund" ; rdfs:label "Refund" .

ex:L1 a fab:AuthorityLevel ; fab:code "L1" ; fab:rank 1 .
ex:L2 a fab:AuthorityLevel ; fab:code "L2" ; fab:rank 2 .
ex:L3 a fab:AuthorityLevel ; fab:code "L3" ; fab:rank 3 .
ex:CFO a fab:AuthorityLevel ; fab:code "CFO" ; fab:rank 4 .
ex:Board a fab:AuthorityLevel ; fab:code "Board" ; fab:rank 5 .
"""
)

# A policy that uses every rule kind and every condition class.
FULL_RULES = """
ex:approval-purchase a fab:ApprovalRule ;
    rdfs:label "Purchases over 100k need L3" ;
    fab:rationale "Delegation of authority, section 4" ;
    fab:appliesTo ex:purchase ;
    fab:amountThreshold "100000"^^xsd:decimal ;
    fab:requiredAuthority ex:L3 .

ex:approval-wire a fab:ApprovalRule ;
    rdfs:label "Wires over 50k need the CFO" ;
    fab:appliesTo ex:wire ;
    fab:amountThreshold "50000.50"^^xsd:decimal ;
    fab:requiredAuthority ex:CFO .

ex:sod-wire a fab:SegregationOfDutyRule ;
    rdfs:label "Wire approver must not execute it" ;
    fab:appliesTo ex:wire .

ex:sanctions a fab:RestrictionRule ;
    rdfs:label "No wires to sanctioned countries" ;
    fab:appliesTo ex:wire ;
    fab:condition [ a fab:Membership ; fab:attribute "country" ; fab:value "IR", "KP" ] .

ex:fraud a fab:FraudCheckRule ;
    rdfs:label "Risky vendors over 25k need the CFO" ;
    fab:appliesTo ex:purchase, ex:wire ;
    fab:condition [ a fab:AllOf ;
        fab:operand [ a fab:Comparison ; fab:attribute "vendor_risk" ; fab:operator fab:eq ;
                      fab:value "high" ] ,
                    [ a fab:Comparison ; fab:attribute "amount" ; fab:operator fab:gt ;
                      fab:value "25000"^^xsd:decimal ] ] ;
    fab:overrideAuthority ex:CFO .

ex:refund-channel a fab:RestrictionRule ;
    rdfs:label "Refunds only through approved channels, by L2 or above" ;
    fab:appliesTo ex:refund ;
    fab:condition [ a fab:AnyOf ;
        fab:operand [ a fab:Not ; fab:operand [ a fab:Membership ; fab:attribute "channel" ;
                                                fab:value "portal", "branch" ] ] ,
                    [ a fab:Comparison ; fab:attribute "actor_level" ; fab:operator fab:lt ;
                      fab:value "L2" ] ] .

ex:score-limit a fab:RestrictionRule ;
    rdfs:label "Scores at or above 0.75 are blocked unless Board" ;
    fab:condition [ a fab:Comparison ; fab:attribute "score" ; fab:operator fab:ge ;
                    fab:value "0.75"^^xsd:decimal ] ;
    fab:overrideAuthority ex:Board .

ex:bucket a fab:RestrictionRule ;
    rdfs:label "Buckets 3 and 7 are frozen" ;
    fab:appliesTo ex:refund ;
    fab:condition [ a fab:Membership ; fab:attribute "bucket" ; fab:value 3, 7 ] .

ex:notify-finance a fab:NotificationRule ;
    rdfs:label "Finance hears about every decision" ;
    fab:onEvent fab:AnyDecision ;
    fab:recipient "finance@example.com", "ops@example.com" .

ex:notify-rejected-big a fab:NotificationRule ;
    rdfs:label "Risk hears about big rejections" ;
    fab:onEvent fab:Rejected ;
    fab:amountThreshold "10000"^^xsd:decimal ;
    fab:recipient "risk@example.com" .

ex:notify-senior a fab:NotificationRule ;
    rdfs:label "Audit hears about approvals by L3 or above" ;
    fab:onEvent fab:Approved ;
    fab:minAuthority ex:L3 ;
    fab:appliesTo ex:purchase ;
    fab:recipient "audit@example.com" .

ex:audit-senior a fab:AuditLogRule ;
    rdfs:label "Senior approvals go to the ledger" ;
    fab:onEvent fab:Approved ;
    fab:minAuthority ex:CFO ;
    fab:ledger "immutable" ;
    fab:flag "senior", "cfo_or_above" .

ex:audit-rejections a fab:AuditLogRule ;
    rdfs:label "Every rejection is logged" ;
    fab:onEvent fab:Rejected ;
    fab:ledger "rejections" .
"""


def parse_turtle(text: str) -> list[ox.Triple]:
    return [q.triple for q in ox.parse(text.encode("utf-8"), ox.RdfFormat.TURTLE, base_iri=EX)]


def policy_of(rules: str, *, reference: bool = True) -> m.Policy:
    """The typed model of the reference data (unless ``reference=False``) plus ``rules``."""
    text = (REFERENCE if reference else PREFIXES) + rules
    return read_policy(parse_turtle(text))


def turtle_string(s: str) -> str:
    """``s`` as a Turtle string literal (quoted, with the escapes Turtle needs)."""
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{out}"'


def build(policy: m.Policy, ontology_hash: str = ZERO_HASH) -> dict[str, bytes]:
    return generators.get("1").build(policy, ontology_hash)


def interpreter(policy: m.Policy) -> Interpreter:
    """The reference interpreter in the language of the generator these helpers build with (v1: 1.0)."""
    return Interpreter(policy, generators.get("1").language)


def load_built(files: dict[str, bytes]) -> Any:
    """The runtime enforcer of generator v1 for the files of A (no disk involved)."""
    manifest = json.loads(files["manifest.json"])
    enforcer_hash = "sha256:" + hashlib.sha256(files["manifest.json"]).hexdigest()
    return generators.get("1").load(files, manifest, enforcer_hash)


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def tx(**overrides: Any) -> dict[str, Any]:
    """A well-formed transaction; ``field=None`` removes the field."""
    base: dict[str, Any] = {
        "id": "tx-1",
        "type": "purchase",
        "amount": "100.00",
        "currency": "USD",
        "actor_id": "u-7",
        "actor_level": "L2",
        "approver_id": "u-1",
        "executor_id": "u-2",
        "attributes": {"country": "US", "vendor_risk": "low", "channel": "portal", "score": "0.1"},
    }
    for k, v in overrides.items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = v
    return base


@pytest.fixture(scope="session")
def policies() -> SimpleNamespace:
    return SimpleNamespace(
        EX=EX,
        FAB=FAB,
        ZERO_HASH=ZERO_HASH,
        PREFIXES=PREFIXES,
        REFERENCE=REFERENCE,
        FULL_RULES=FULL_RULES,
        parse_turtle=parse_turtle,
        policy_of=policy_of,
        turtle_string=turtle_string,
        build=build,
        load_built=load_built,
        interpreter=interpreter,
        write_tree=write_tree,
        tx=tx,
    )


@pytest.fixture
def mu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """The CLI in-process, with a fresh store in tmp_path (FABRIC_HOME) as the working directory."""
    from harness import Run

    monkeypatch.setenv("FABRIC_HOME", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    run = Run(capsys)
    assert run("init")[0] == 0
    return run


# --- storage backends (one suite, parametrised over SQLite and PostgreSQL) -----------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Any:
    """One throwaway PostgreSQL cluster for the session (skipped locally without the server
    binaries, a failure under CI); each test makes a database of its own in it."""
    from services import postgres_cluster

    with postgres_cluster() as cluster:
        yield cluster


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """A fresh, empty database in the session's cluster."""
    return str(pg_cluster.create_database(f"fabric_test_{next(_databases)}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend under test."""
    return str(request.param)


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest) -> str | None:
    """The ``--database`` URL of the backend under test (``None``: SQLite, the default)."""
    if backend == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))
