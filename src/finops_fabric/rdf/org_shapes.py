"""The organisation's shapes (``--schema``) are data, not programs.

Σ is Σ₀ plus the organisation's shapes files. Those files may use SHACL Core (targets by
class, node, subjects-of and objects-of; property shapes and paths; value type, cardinality,
value range, string, property pair, logical, shape-based and other constraints; severities and
messages). Everything that runs code or reaches out is refused as the file is read, with
exit 2 naming the file, the line and the feature (code ``fabric.shapes_program``):

- SHACL-AF rules (``sh:rule``, ``sh:SPARQLRule``, ``sh:TripleRule``): they add triples to the
  data graph before it is checked;
- custom targets (``sh:target``, ``sh:SPARQLTarget``, ``sh:SPARQLTargetType``, SHACL-JS targets);
- SPARQL-based constraints (``sh:sparql``, ``sh:SPARQLConstraint``) and SPARQL-based constraint
  components (``sh:ConstraintComponent``, ``sh:validator``, ``sh:nodeValidator``,
  ``sh:propertyValidator``, ``sh:parameter``), any SPARQL text (``sh:select``, ``sh:ask``,
  ``sh:construct``, ``sh:update``, ``sh:prefixes``, ``sh:declare``);
- SHACL functions and node expressions (``sh:SPARQLFunction``, ``sh:values``, …) and
  SHACL-JS (``sh:js``, …);
- ``owl:imports`` and ``sh:shapesGraph`` (nothing is fetched);
- a SPARQL ``SERVICE`` clause in any literal.

Σ₀, shipped with the product, uses one SPARQL-based constraint of its own; it is not subject
to this check. pySHACL runs without its advanced features either way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pyoxigraph as ox

from finops_fabric.errors import InputError, Location
from finops_fabric.rdf.load import RawGraph, Statement, parse_file, policy_files

__all__ = ["FEATURES", "load_org_shapes"]

SH = "http://www.w3.org/ns/shacl#"
OWL_IMPORTS = "http://www.w3.org/2002/07/owl#imports"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"

_RULES = "SHACL-AF rules"
_TARGETS = "custom targets"
_SPARQL = "SPARQL-based constraints"
_COMPONENTS = "SPARQL-based constraint components"
_QUERIES = "SPARQL queries"
_FUNCTIONS = "SHACL functions and node expressions"
_JS = "SHACL-JS"

#: predicate (local name in sh:) -> the feature it belongs to
_PREDICATES = {
    "rule": _RULES,
    "target": _TARGETS,
    "sparql": _SPARQL,
    "validator": _COMPONENTS,
    "nodeValidator": _COMPONENTS,
    "propertyValidator": _COMPONENTS,
    "parameter": _COMPONENTS,
    "select": _QUERIES,
    "ask": _QUERIES,
    "construct": _QUERIES,
    "update": _QUERIES,
    "prefixes": _QUERIES,
    "declare": _QUERIES,
    "values": _FUNCTIONS,
    "expression": _FUNCTIONS,
    "js": _JS,
    "jsFunctionName": _JS,
    "jsLibrary": _JS,
    "jsLibraryURL": _JS,
    "shapesGraph": "links to other shapes graphs",
    "entailment": "entailment regimes",
}
#: class (local name in sh:) -> the feature it belongs to
_CLASSES = {
    "SPARQLRule": _RULES,
    "TripleRule": _RULES,
    "SPARQLTarget": _TARGETS,
    "SPARQLTargetType": _TARGETS,
    "JSTarget": _JS,
    "JSTargetType": _JS,
    "SPARQLConstraint": _SPARQL,
    "ConstraintComponent": _COMPONENTS,
    "SPARQLAskValidator": _COMPONENTS,
    "SPARQLSelectValidator": _COMPONENTS,
    "JSValidator": _JS,
    "JSConstraint": _JS,
    "Function": _FUNCTIONS,
    "SPARQLFunction": _FUNCTIONS,
    "JSFunction": _JS,
    "JSLibrary": _JS,
}
FEATURES = sorted({*_PREDICATES.values(), *_CLASSES.values(), "imports", "SPARQL SERVICE"})
_SERVICE = re.compile(r"\bSERVICE\s+(?:SILENT\s+)?[<?$]", re.IGNORECASE)


def load_org_shapes(paths: Sequence[Path]) -> RawGraph:
    """The organisation's shapes files as one graph, each file checked to hold only data."""
    seen: set[Statement] = set()
    triples: list[Statement] = []
    files: list[Path] = []
    for p in paths:
        for f in policy_files(Path(p)):
            quads = parse_file(f)
            _refuse_programs(f, quads)
            files.append(f)
            for t in quads:
                if t not in seen:
                    seen.add(t)
                    triples.append(t)
    return RawGraph(tuple(triples), tuple(files))


def _refuse_programs(path: Path, quads: Sequence[ox.Quad]) -> None:
    """Refuse the program feature written first in ``path`` (if any)."""
    found: list[tuple[str, str, str, ox.Quad]] = []  # (feature, term, local name, triple)
    for q in quads:
        predicate = q.predicate.value
        if predicate.startswith(SH) and predicate[len(SH) :] in _PREDICATES:
            local = predicate[len(SH) :]
            found.append((_PREDICATES[local], f"sh:{local}", local, q))
        elif predicate == OWL_IMPORTS:
            found.append(("imports", "owl:imports", "imports", q))
        o = q.object
        if predicate == RDF_TYPE and isinstance(o, ox.NamedNode) and o.value.startswith(SH):
            local = o.value[len(SH) :]
            if local in _CLASSES:
                found.append((_CLASSES[local], f"sh:{local}", local, q))
        if isinstance(o, ox.Literal) and _SERVICE.search(o.value):
            found.append(("SPARQL SERVICE", "SERVICE", "SERVICE", q))
    if not found:
        return
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    placed = [(_offset(text, local), i) for i, (_, _, local, _) in enumerate(found)]
    offset, first = min(placed)
    feature, term, _, q = found[first]
    line = text.count("\n", 0, offset) + 1 if offset < len(text) else None
    subject = q.subject.value if isinstance(q.subject, ox.NamedNode) else None
    if line is None and subject is not None:
        from finops_fabric.rdf.locate import SourceIndex

        located = SourceIndex([path]).find(subject)
        line = located.line if located is not None else None
    raise InputError(
        f"organisation shapes are data, not programs: {feature} ({term}) are not supported "
        f"in --schema files; use SHACL Core (see README, 'SHACL features')",
        code="fabric.shapes_program",
        location=Location(file=str(path), line=line, node=subject),
        hint="remove it; nothing was run and nothing was written",
    )


def _offset(text: str, local: str) -> int:
    """Where ``local`` is first written as a term (``sh:rule``, ``<…shacl#rule>``), outside
    comments and prefix declarations; past the end when it is not found."""
    term = re.compile(rf"[:#]{re.escape(local)}\b(?![:-])")
    pattern = _SERVICE if local == "SERVICE" else term
    at = 0
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        if not stripped.startswith(("#", "@prefix", "PREFIX")):
            m = pattern.search(line)
            if m is not None:
                return at + m.start()
        at += len(line)
    return len(text) + 1
