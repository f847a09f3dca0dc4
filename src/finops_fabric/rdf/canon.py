"""hash(O): SHA-256 over the RDFC-1.0 canonical N-Quads of O (pyoxigraph's RDFC_1_0).

RDFC-1.0 is linear when every blank node is told apart by its first-degree hash; only groups
of blank nodes that look alike need the N-degree search, which is exponential in the worst
case ("poison" graphs) and has no work limit in pyoxigraph. So a graph with such groups is
canonicalized in a child process under a time budget and refused with a clear error when the
budget runs out, instead of hanging.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence

import pyoxigraph as ox

from finops_fabric.errors import InputError

DEFAULT_BUDGET_SECONDS = 20.0
BUDGET_ENV = "FABRIC_CANON_BUDGET"


def _canonicalize_in_process(triples: Sequence[ox.Triple]) -> bytes:
    ds = ox.Dataset(ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph()) for t in triples)
    ds.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
    out = ox.serialize(ds, format=ox.RdfFormat.N_QUADS)
    assert out is not None
    # oxigraph serializes in its own order; canonical N-Quads are sorted by code point.
    lines = out.decode("utf-8").splitlines(keepends=True)
    lines.sort()
    return "".join(lines).encode("utf-8")


def ambiguous_blank_nodes(triples: Sequence[ox.Triple]) -> int:
    """How many blank nodes share their first-degree signature with another (0: linear case).

    The signature is the sorted list of the node's triples with itself written ``_:a`` and
    any other blank node ``_:z``, exactly the input of RDFC-1.0's first-degree hash.
    """
    mentions: dict[str, list[str]] = {}

    def term(t: object, me: str) -> str:
        if isinstance(t, ox.BlankNode):
            return "_:a" if t.value == me else "_:z"
        return str(t)

    for t in triples:
        for node in (t.subject, t.object):
            if isinstance(node, ox.BlankNode):
                mentions.setdefault(node.value, [])
    if not mentions:
        return 0
    for t in triples:
        seen: set[str] = set()
        for node in (t.subject, t.object):
            if isinstance(node, ox.BlankNode) and node.value not in seen:
                seen.add(node.value)
                me = node.value
                mentions[me].append(f"{term(t.subject, me)} {t.predicate} {term(t.object, me)}")
    sigs = Counter("\n".join(sorted(v)) for v in mentions.values())
    return sum(n for n in sigs.values() if n > 1)


def _budget() -> float:
    raw = os.environ.get(BUDGET_ENV)
    if not raw:
        return DEFAULT_BUDGET_SECONDS
    try:
        value = float(raw)
    except ValueError as e:
        raise InputError(f"{BUDGET_ENV}={raw!r} is not a number of seconds") from e
    return value if value > 0 else DEFAULT_BUDGET_SECONDS


def _canonicalize_with_budget(triples: Sequence[ox.Triple], budget: float) -> bytes:
    nt = "".join(f"{t.subject} {t.predicate} {t.object} .\n" for t in triples).encode("utf-8")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "finops_fabric.rdf._canon_worker"],
            input=nt, capture_output=True, timeout=budget, check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise InputError(
            f"canonicalizing O (RDFC-1.0) did not finish within the budget of {budget:g} s: the graph "
            "has many blank nodes that cannot be told apart (a 'poison' graph)",
            code="fabric.canonicalization_budget",
            hint=f"give those blank nodes IRIs or distinguishing properties, or raise {BUDGET_ENV}",
        ) from e
    if proc.returncode != 0:
        raise InputError(f"canonicalizing O failed: {proc.stderr.decode('utf-8', 'replace').strip()}",
                         code="fabric.canonicalization_failed")
    return proc.stdout


def canonical_nquads(triples: Sequence[ox.Triple], budget: float | None = None) -> bytes:
    """The RDFC-1.0 canonical N-Quads of the graph (sorted lines, UTF-8)."""
    if ambiguous_blank_nodes(triples) == 0:
        return _canonicalize_in_process(triples)
    return _canonicalize_with_budget(triples, _budget() if budget is None else budget)


def graph_hash(triples: Sequence[ox.Triple], budget: float | None = None) -> str:
    return "sha256:" + hashlib.sha256(canonical_nquads(triples, budget)).hexdigest()
