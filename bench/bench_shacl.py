"""How long the ontology gate takes on a synthetic policy with N approval rules.

    .venv/bin/python bench/bench_shacl.py              # N = 15, 1000, 10000
    .venv/bin/python bench/bench_shacl.py 50 5000      # any sizes
    .venv/bin/python bench/bench_shacl.py --bad 1000   # every 10th rule broken (the findings path)
    .venv/bin/python bench/bench_shacl.py --mixed 1000 # every rule kind (bench/policies.py)

For each N it prints the seconds spent in pySHACL alone (Σ₀ only, on an rdflib graph built
beforehand) and in the whole gate (``validate_shapes``: conversion to rdflib, pySHACL, the
report turned into findings). One run each: the figures are seconds, not microseconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyshacl

from finops_fabric.rdf.bridge import to_rdflib
from finops_fabric.rdf.load import RawGraph, load_graph
from finops_fabric.rdf.shacl import BASE_SHAPES, validate_shapes

HEADER = """\
@prefix fab: <https://w3id.org/finops-fabric/ns#> .
@prefix ex: <https://example.com/bench#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix dcterms: <http://purl.org/dc/terms/> .
ex:policy a fab:Policy ; dcterms:title "Synthetic policy" .
"""
TYPES = ("purchase", "wire", "refund", "payroll", "vendor_onboarding")
LEVELS = ("L1", "L2", "L3", "CFO", "Board")


def approval_policy(n: int, *, bad: bool = False) -> str:
    """N approval rules over five types and five levels; with ``bad``, every 10th rule is broken."""
    lines = [HEADER]
    lines += [f'ex:{t} a fab:TransactionType ; fab:code "{t}" ; rdfs:label "{t.title()}" .' for t in TYPES]
    lines += [
        f'ex:{v} a fab:AuthorityLevel ; fab:code "{v}" ; fab:rank {i} .' for i, v in enumerate(LEVELS, 1)
    ]
    for i in range(n):
        t, level = TYPES[i % len(TYPES)], LEVELS[1 + i % (len(LEVELS) - 1)]
        threshold = '"not a number"' if bad and i % 10 == 0 else f'"{1000 + i}"^^xsd:decimal'
        authority = "" if bad and i % 10 == 5 else f" ; fab:requiredAuthority ex:{level}"
        lines.append(
            f'ex:approval-{i} a fab:ApprovalRule ; rdfs:label "{t} over {1000 + i} needs {level}" ;\n'
            f"    fab:appliesTo ex:{t} ; fab:amountThreshold {threshold}{authority} ."
        )
    return "\n".join(lines) + "\n"


def mixed_policy(n: int) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import policies  # bench/policies.py: every rule kind, with golden cases

    return str(policies.policy_text(n))


def load_text(text: str) -> RawGraph:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.ttl"
        path.write_text(text, encoding="utf-8")
        return load_graph(path)


def run(n: int, text: str) -> None:
    raw = load_text(text)
    data, shapes = to_rdflib(raw.triples), to_rdflib(load_graph(BASE_SHAPES).triples)
    start = time.perf_counter()
    pyshacl.validate(
        data, shacl_graph=shapes, inference="none", advanced=False, allow_warnings=True, inplace=True
    )
    engine = time.perf_counter() - start
    start = time.perf_counter()
    findings = validate_shapes(raw)
    gate = time.perf_counter() - start
    print(
        f"N={n:>6}  triples={len(raw.triples):>6}  pySHACL {engine:7.2f} s  "
        f"validate_shapes {gate:7.2f} s  findings={len(findings)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sizes", nargs="*", type=int, default=[15, 1000, 10000], help="numbers of rules")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--bad", action="store_true", help="break every 10th rule's threshold or authority")
    group.add_argument("--mixed", action="store_true", help="every rule kind, from bench/policies.py")
    args = parser.parse_args()
    validate_shapes(load_text(approval_policy(1)))  # warm up: imports, parsing the base shapes
    for n in args.sizes:
        run(n, mixed_policy(n) if args.mixed else approval_policy(n, bad=args.bad))


if __name__ == "__main__":
    main()
