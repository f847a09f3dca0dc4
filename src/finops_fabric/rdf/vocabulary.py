"""The policy language's vocabulary (``data/vocab.ttl``): the fab: terms that exist, of which
kind, and for a fab: term O uses that does not exist, the defined term nearest to it.

A misspelt term is never harmless: ``a fab:SegregationOfDutiesRule`` leaves a node that is no
rule at all (the control silently disappears), ``fab:minAuthorty`` leaves an audit rule without
its minimum level (it fires for everyone). The ontology gate turns every term found here into a
violation naming the term and, by :func:`nearest`, the term most likely meant.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox

from finops_fabric.rdf.load import Statement, parse_file

VOCABULARY = Path(__file__).resolve().parent / "data" / "vocab.ttl"
FAB = "https://w3id.org/finops-fabric/ns#"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
_CLASS_TYPES = {"http://www.w3.org/2000/01/rdf-schema#Class", "http://www.w3.org/2002/07/owl#Class"}
_PROPERTY_TYPES = {"http://www.w3.org/1999/02/22-rdf-syntax-ns#Property"}
# How close a defined term must be to be offered as "did you mean" (difflib's ratio, 0..1).
CUTOFF = 0.6


@dataclass(frozen=True)
class Vocabulary:
    """The IRIs vocab.ttl defines, by kind."""

    classes: frozenset[str]
    properties: frozenset[str]
    individuals: frozenset[str]

    @property
    def terms(self) -> frozenset[str]:
        return self.classes | self.properties | self.individuals

    def of_kind(self, position: str) -> frozenset[str]:
        """The terms that may stand where ``position`` (type, property, value, subject) is."""
        if position == "type":
            return self.classes
        if position == "property":
            return self.properties
        if position == "value":
            return self.individuals | self.classes
        return self.terms


@functools.cache
def vocabulary() -> Vocabulary:
    statements = parse_file(VOCABULARY)
    defined = {t.subject.value for t in statements if isinstance(t.subject, ox.NamedNode)}
    types: dict[str, set[str]] = {}
    for t in statements:
        if t.predicate.value == RDF_TYPE and isinstance(t.subject, ox.NamedNode):
            types.setdefault(t.subject.value, set()).add(str(getattr(t.object, "value", "")))
    fab = {iri for iri in defined if iri.startswith(FAB)}
    classes = frozenset(i for i in fab if types.get(i, set()) & _CLASS_TYPES)
    properties = frozenset(i for i in fab if types.get(i, set()) & _PROPERTY_TYPES)
    return Vocabulary(classes, properties, frozenset(fab - classes - properties))


@dataclass(frozen=True)
class UnknownTerm:
    """A fab: term O uses that the vocabulary does not define, and where.

    ``position``: ``type`` (``node a fab:X``), ``property`` (``node fab:x …``), ``value``
    (``node p fab:X``) or ``subject`` (``fab:X p …``)."""

    node: ox.NamedNode | ox.BlankNode
    predicate: str
    term: str
    position: str


def unknown_terms(triples: Iterable[Statement]) -> list[UnknownTerm]:
    """Every fab: term in ``triples`` that the vocabulary lacks, once per (node, predicate, term)."""
    known = vocabulary().terms
    found: set[UnknownTerm] = set()
    for t in triples:
        subject, predicate, obj = t.subject, t.predicate.value, t.object
        if not isinstance(subject, ox.NamedNode | ox.BlankNode):
            continue  # an RDF-star triple term: not a policy statement
        if predicate.startswith(FAB) and predicate not in known:
            found.add(UnknownTerm(subject, predicate, predicate, "property"))
        if isinstance(obj, ox.NamedNode) and obj.value.startswith(FAB) and obj.value not in known:
            position = "type" if predicate == RDF_TYPE else "value"
            found.add(UnknownTerm(subject, predicate, obj.value, position))
        if isinstance(subject, ox.NamedNode) and subject.value.startswith(FAB) and subject.value not in known:
            found.add(UnknownTerm(subject, predicate, subject.value, "subject"))
    return sorted(found, key=lambda u: (u.term, str(u.node), u.predicate, u.position))


def nearest(term: str, position: str) -> str | None:
    """The defined term closest to ``term`` (case-insensitive; same kind first), if any is close."""
    local = term.removeprefix(FAB)
    vocab = vocabulary()
    for pool in (vocab.of_kind(position), vocab.terms):
        names = {iri.removeprefix(FAB).lower(): iri for iri in pool}
        close = difflib.get_close_matches(local.lower(), sorted(names), n=1, cutoff=CUTOFF)
        if close:
            return names[close[0]]
    return None
