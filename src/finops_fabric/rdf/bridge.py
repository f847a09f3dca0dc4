"""Convert oxigraph terms to rdflib terms (for pySHACL, which works on rdflib graphs)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pyoxigraph as ox
import rdflib

from finops_fabric.rdf.load import Statement

# rdflib logs a warning with a traceback for every ill-typed literal ("abc"^^xsd:decimal); the
# ontology gate reports those to the user in plain words, so the log would only add noise.
logging.getLogger("rdflib.term").setLevel(logging.ERROR)

_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
_RDF_LANG = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"


def to_rdflib_term(term: object) -> rdflib.term.Node:
    if isinstance(term, ox.NamedNode):
        return rdflib.URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return rdflib.BNode(term.value)
    if isinstance(term, ox.Literal):
        if term.language:
            return rdflib.Literal(term.value, lang=term.language)
        dt = term.datatype.value
        if dt == _XSD_STRING:
            return rdflib.Literal(term.value)
        return rdflib.Literal(term.value, datatype=rdflib.URIRef(dt), normalize=False)
    raise TypeError(f"unsupported RDF term {term!r}")


def to_rdflib(triples: Iterable[Statement]) -> rdflib.Graph:
    g = rdflib.Graph()
    add = g.add
    for t in triples:
        add((to_rdflib_term(t.subject), to_rdflib_term(t.predicate), to_rdflib_term(t.object)))
    return g
