"""The ontology gate: decide O ⊨ Σ with pySHACL and report each problem as a plain finding.

Σ is the shipped base shapes Σ₀ (``data/shapes.ttl``) plus the organisation's shapes files,
which are data (SHACL Core; :mod:`finops_fabric.rdf.org_shapes` says what is refused).
pySHACL runs without inference and without its advanced features; its report graph is turned
into ``Finding``s a compliance officer can act on: the node is named by its label and compact
IRI, the problem is said in words, valid choices are listed, and the file and line are given
where the node is written.
One finding per problem: when one bad value breaks several constraints, the most specific
result is kept. The global constraints of Σ₀ (uniqueness, exactly one fab:Policy) report the
offending nodes as focus, one finding per shared code, rank or name. Beside Σ, every fab: term
the vocabulary does not define is a violation naming the term, where it is written and the
nearest defined term (a misspelt rule class silently removes the rule; a misspelt
fab:appliesTo silently widens a rule to every type).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyshacl
import rdflib
from pyparsing.exceptions import ParseBaseException
from pyshacl.errors import ReportableRuntimeError
from rdflib.namespace import RDF, RDFS, SH, XSD
from rdflib.term import BNode, Literal, Node, URIRef

from finops_fabric.errors import Finding, InputError, Location
from finops_fabric.rdf import vocabulary
from finops_fabric.rdf.bridge import to_rdflib, to_rdflib_term
from finops_fabric.rdf.load import RawGraph, Statement, parse_file
from finops_fabric.rdf.locate import SourceIndex
from finops_fabric.rdf.org_shapes import load_org_shapes
from finops_fabric.rdf.vocabulary import VOCABULARY as VOCABULARY

DATA_DIR = Path(__file__).resolve().parent / "data"
BASE_SHAPES = DATA_DIR / "shapes.ttl"

FAB = rdflib.Namespace("https://w3id.org/finops-fabric/ns#")
FABSH = rdflib.Namespace("https://w3id.org/finops-fabric/shapes#")
DCTERMS = rdflib.Namespace("http://purl.org/dc/terms/")
OWL = "http://www.w3.org/2002/07/owl#"
STANDARD_PREFIXES = {"fab": str(FAB), "rdf": str(RDF), "rdfs": str(RDFS), "xsd": str(XSD), "sh": str(SH)}
STANDARD_PREFIXES |= {"dcterms": str(DCTERMS), "owl": OWL}
RULES: tuple[URIRef, ...] = (FAB.ApprovalRule, FAB.SegregationOfDutyRule, FAB.RestrictionRule)
RULES += (FAB.FraudCheckRule, FAB.NotificationRule, FAB.AuditLogRule)
CONDITIONS = (FAB.Comparison, FAB.Membership, FAB.AllOf, FAB.AnyOf, FAB.Not)
NOUNS: tuple[tuple[tuple[URIRef, ...], str], ...] = (
    (RULES, "Rule"),
    ((FAB.TransactionType,), "Transaction type"),
)
NOUNS += (((FAB.AuthorityLevel,), "Authority level"), ((FAB.Role,), "Role"), ((FAB.Policy,), "Policy"))
NOUNS += (((FAB.GoldenCase,), "Golden case"), (CONDITIONS, "Condition"))
PARTS = ("Condition", "Transaction attribute", "Node")  # blank nodes named after the IRI that holds them
DATATYPES: dict[Node | None, str] = {XSD.string: "a plain string", XSD.integer: "an integer"}
DATATYPES |= {XSD.decimal: "a decimal number", XSD.boolean: "true or false", XSD.date: "a date"}
NUMERIC = {XSD.integer, XSD.decimal, XSD.int, XSD.long}  # shown bare; a double keeps its ^^xsd:double
NODE_KINDS: dict[Node | None, str] = {SH.IRI: "an IRI", SH.Literal: "a literal", SH.BlankNode: "a blank node"}
NODE_KINDS |= {SH.BlankNodeOrIRI: "an IRI or a blank node", SH.IRIOrLiteral: "an IRI or a literal"}
# Most specific first: when one value breaks several constraints, the first of these is reported.
SPECIFICITY = ["NodeKind", "Class", "In", "Datatype", "Or", "Node", "Pattern", "MinLength", "MaxLength"]
SPECIFICITY += ["MinExclusive", "MinInclusive", "MaxExclusive", "MaxInclusive"]
LIMITS = {"MinExclusive": ("is not greater than", ""), "MinInclusive": ("is less than", "")}
LIMITS |= {"MaxExclusive": ("is not less than", ""), "MaxInclusive": ("is greater than", "")}
LIMITS |= {"MinLength": ("is shorter than", " characters"), "MaxLength": ("is longer than", " characters")}
# Components whose finding is followed by the shape's sh:description (the others say it all).
EXPLAINED = {"MinCount", "MaxCount", "NodeKind", "Pattern", *LIMITS}
# Σ₀'s global uniqueness constraints → (property, who, what they share, why it matters).
UNIQUE: dict[Node | None, tuple[URIRef, str, str, str]] = {
    FABSH.TypeCodesUnique: (FAB.code, "Transaction types", "the code", "type codes must be unique"),
    FABSH.LevelCodesUnique: (FAB.code, "Authority levels", "the code", "level codes must be unique"),
    FABSH.LevelRanksUnique: (FAB.rank, "Authority levels", "the rank", "ranks must be unique"),
    FABSH.ScenariosUnique: (FAB.scenario, "Golden cases", "the scenario name", "scenarios must be unique"),
}
POLICY_COUNT = (FABSH.PolicyMissing, FABSH.PolicyDuplicated)


def validate_shapes(data: RawGraph, extra_shapes: Sequence[Path] = ()) -> list[Finding]:
    """Validate O against Σ₀ and the organisation's shapes: one finding per problem, sorted."""
    graph = to_rdflib(data.triples)
    extra = load_org_shapes(list(extra_shapes)).triples if extra_shapes else ()
    shapes = to_rdflib((*_base_shapes(), *extra))
    # inplace: the data graph is ours, built above; no inference: Σ₀ targets subclasses explicitly;
    # no SHACL-AF (rules, custom targets, functions), no owl:imports, no SHACL-JS: Σ is data
    try:
        _, report, _ = pyshacl.validate(
            graph,
            shacl_graph=shapes,
            inference="none",
            advanced=False,
            do_owl_imports=False,
            js=False,
            allow_warnings=True,
            allow_infos=True,
            inplace=True,
        )
    except (ReportableRuntimeError, ParseBaseException, re.error) as e:  # re.error: a bad sh:pattern
        raise _bad_schema(str(e), extra_shapes) from e
    if not isinstance(report, rdflib.Graph):  # pySHACL hands back its ValidationFailure text here
        raise _bad_schema(str(report), extra_shapes)
    explainer = _Explainer(graph, shapes, SourceIndex(data.files))
    return explainer.findings(report, vocabulary.unknown_terms(data.triples))


@functools.cache
def _base_shapes() -> tuple[Statement, ...]:
    return tuple(parse_file(BASE_SHAPES))


def _bad_schema(detail: str, files: Sequence[Path]) -> InputError:
    named = ", ".join(str(f) for f in files) or "the base shapes"
    message = f"the shapes could not be applied ({named}): {detail.strip()}"
    return InputError(
        message, code="fabric.bad_schema", hint="fix the SHACL shapes file passed with --schema"
    )


@dataclass(frozen=True)
class _Result:
    """One sh:ValidationResult of the report, as rdflib nodes."""

    focus: Node
    path: Node | None
    value: Node | None
    component: str  # the constraint component's local name without "ConstraintComponent": "MinCount"
    shape: Node
    constraint: Node | None
    severity: str
    messages: tuple[str, ...]


class _Explainer:
    """Turns pySHACL results into findings, reading O (to name nodes) and Σ (for what was asked)."""

    def __init__(self, graph: rdflib.Graph, shapes: rdflib.Graph, index: SourceIndex) -> None:
        self.g, self.sg, self.index = graph, shapes, index
        self.base = {to_rdflib_term(t.subject) for t in _base_shapes()}
        self._prefixes: list[tuple[str, str]] | None = None

    def findings(self, report: rdflib.Graph, unknown: Sequence[vocabulary.UnknownTerm]) -> list[Finding]:
        results = [self._result(report, r) for r in report.objects(None, SH.result)]
        out = self._global([r for r in results if r.constraint in UNIQUE or r.constraint in POLICY_COUNT])
        # A value that is an unknown fab: term is reported once: as the unknown term when a
        # defined term is close to it (did you mean …?), else as the constraint it breaks (which
        # lists the valid values) when Σ has one.
        said = {(r.focus, r.value) for r in results}
        values = {u: (to_rdflib_term(u.node), URIRef(u.term)) for u in unknown if u.position == "value"}
        misspelt = {pair for u, pair in values.items() if vocabulary.nearest(u.term, u.position)}
        unknown = [u for u in unknown if u not in values or values[u] in misspelt or values[u] not in said]
        kept: dict[tuple[object, ...], _Result] = {}
        for r in sorted(results, key=self._specificity):
            if r.constraint in UNIQUE or r.constraint in POLICY_COUNT or (r.focus, r.value) in misspelt:
                continue
            key = (
                (r.focus, r.path, r.value) if r.value is not None else (r.focus, r.path, r.component, r.shape)
            )
            kept.setdefault(key, r)
        out += [self._explain(r) for r in kept.values()]
        out += [self._unknown(u) for u in unknown]
        return sorted(set(out), key=lambda f: (*f.sort_key(), f.value or "", f.severity))

    def _unknown(self, u: vocabulary.UnknownTerm) -> Finding:
        """A fab: term the policy language does not define: a violation naming the term, the
        line it is written on, and the defined term nearest to it."""
        node, prop, term = to_rdflib_term(u.node), URIRef(u.predicate), URIRef(u.term)
        said = {
            "type": f"is typed {self.name(term)}",
            "property": f"uses {self.name(term)}",
            "value": f"has {self.name(prop)} {self.name(term)}",
            "subject": "is named in the fab: namespace",
        }[u.position]
        meant = vocabulary.nearest(u.term, u.position)
        advice = (
            f"did you mean {self.name(URIRef(meant))}?"
            if meant is not None
            else "no defined term is close; see the policy language's vocabulary (vocab.ttl)"
        )
        message = f"{self.subject(node)} {said}, which the policy language does not define; {advice}"
        focus, near = self._where(node)
        found = self.index.find_near(u.term, near)
        location = Location(found.file, found.line, focus) if found is not None else near
        value = None if u.position == "subject" else str(term)
        path = None if u.position == "subject" else self.name(prop)
        label = self.label(self.owner(node) or node)
        return Finding("ontology", message, focus, path, value, None, "violation", label, location)

    def _result(self, report: rdflib.Graph, node: Node) -> _Result:
        def one(p: URIRef) -> Node | None:
            return report.value(node, p)

        focus, value, shape, constraint = (
            one(SH.focusNode),
            one(SH.value),
            one(SH.sourceShape),
            one(SH.sourceConstraint),
        )
        assert focus is not None and shape is not None
        global_target = (shape, SH.targetNode, focus) in self.sg and (focus, None, None) not in self.g
        if constraint is not None and global_target and value is not None and not isinstance(value, Literal):
            focus, value = value, None  # a global SPARQL constraint: the offending node is the focus
        component = (
            str(one(SH.sourceConstraintComponent)).rsplit("#", 1)[-1].removesuffix("ConstraintComponent")
        )
        severity = "warning" if one(SH.resultSeverity) in (SH.Warning, SH.Info) else "violation"
        english = [
            m for m in report.objects(node, SH.resultMessage) if getattr(m, "language", None) in (None, "en")
        ]
        messages = tuple(sorted(str(m) for m in english))
        path = one(SH.resultPath)
        if constraint == FABSH.GlobalUniqueness:  # the one global query: ?path names the check
            constraint, path = path, None
        return _Result(focus, path, value, component, shape, constraint, severity, messages)

    def _specificity(self, r: _Result) -> tuple[int, int, str]:
        rank = SPECIFICITY.index(r.component) if r.component in SPECIFICITY else len(SPECIFICITY)
        return rank, 0 if r.shape in self.base else 1, str(r.shape)

    def _explain(self, r: _Result) -> Finding:
        path = self.path(r.path) if r.path is not None else None
        subject = self.subject(r.focus) if (r.focus, None, None) in self.g else ""
        own = self._own_message(r)
        if own is not None:
            return self._finding(r, f"{subject}: {own}" if subject else own, path)
        joiner, problem = self.problem(r, path)
        description = self.sg.value(r.shape, SH.description)
        if r.component in EXPLAINED and description is not None:
            problem += f": {description}"
        return self._finding(r, f"{subject or self.name(r.focus)}{joiner}{problem}", path)

    def _own_message(self, r: _Result) -> str | None:
        """The organisation's sh:message (as pySHACL filled it in), when its shape has one."""
        sources = [r.shape] if r.constraint is None else [r.shape, r.constraint]
        if (
            r.shape in self.base
            or not r.messages
            or not any((s, SH.message, None) in self.sg for s in sources)
        ):
            return None
        return "; ".join(r.messages)

    def _finding(self, r: _Result, message: str, path: str | None) -> Finding:
        focus, location = self._where(r.focus)
        value = None if r.value is None or r.value == r.focus else str(r.value)
        if isinstance(r.value, BNode):
            value = _blank_name(self.g, r.value)
        label = self.label(self.owner(r.focus) or r.focus)
        return Finding("ontology", message, focus, path, value, None, r.severity, label, location)

    def _global(self, results: Sequence[_Result]) -> list[Finding]:
        """Σ₀'s global constraints: one finding per shared code, rank or scenario, and per policy count."""
        out: list[Finding] = []
        groups: dict[tuple[str, str], set[Node]] = {}
        for r in results:
            if r.constraint == FABSH.PolicyMissing and not out:
                message = "O has no fab:Policy node: a policy needs exactly one, with a dcterms:title"
                out.append(
                    Finding(gate="ontology", focus=str(FAB.Policy), severity=r.severity, message=message)
                )
            elif r.constraint == FABSH.PolicyDuplicated:
                groups.setdefault((str(r.constraint), ""), set()).add(r.focus)
            elif r.constraint in UNIQUE:
                for v in self.g.objects(r.focus, UNIQUE[r.constraint][0]):
                    groups.setdefault((str(r.constraint), self.key(v)), set()).add(r.focus)
        for (constraint, key), members in sorted(groups.items()):
            nodes = sorted(members, key=str)
            names = _and([self.name(n) for n in nodes])
            path = value = None
            if constraint == str(FABSH.PolicyDuplicated):
                message = f"O has {len(nodes)} fab:Policy nodes ({names}): a policy needs exactly one"
            elif len(nodes) > 1:
                prop, plural, what, why = UNIQUE[URIRef(constraint)]
                path, value = self.name(prop), key
                shown = key if prop == FAB.rank else json.dumps(key, ensure_ascii=False)
                message = f"{plural} {names} share {what} {shown}: {why}"
            else:
                continue
            focus, location = self._where(nodes[0])
            related = tuple(self._where(n)[0] for n in nodes)
            label = self.label(nodes[0])
            out.append(
                Finding("ontology", message, focus, path, value, None, "violation", label, location, related)
            )
        return out

    # ------------------------------------------------------------------ the problem, in words

    def problem(self, r: _Result, path: str | None) -> tuple[str, str]:
        """How the problem joins the subject (" " or ": "), and the problem itself."""
        c, shape = r.component, r.shape
        values = sorted(map(self.term, self.g.objects(r.focus, r.path))) if isinstance(r.path, URIRef) else []
        if c == "MinCount":
            need = self.sg.value(shape, SH.minCount)
            return " ", f"has no {path}" if not values else f"has only {len(values)} {path}, {need} needed"
        if c == "MaxCount":
            limit = self.sg.value(shape, SH.maxCount)
            return " ", f"has {len(values)} {path} values ({', '.join(values[:5])}); at most {limit} allowed"
        kind = NODE_KINDS.get(self.sg.value(shape, SH.nodeKind), "of another kind")
        if c == "NodeKind" and r.path is None:
            return " ", "is not named by an IRI" if kind == "an IRI" else f"is not {kind}"
        where = " ".join(w for w in (path, self.term(r.value)) if w)
        if c == "Class":
            cls = self.sg.value(shape, SH["class"])
            return ": ", f"{where} is not {self.class_phrase((cls,))}{self.choices(cls, r.value)}"
        if c == "Or":
            return ": ", f"{where} is not {self.or_phrase(shape)}"
        if c == "Datatype":
            dt = self.sg.value(shape, SH.datatype)
            return ": ", f"{where} is not {DATATYPES.get(dt) or f'of type {self.name(dt)}'}"
        if c == "In":
            head = self.sg.value(shape, SH["in"])
            allowed = [self.term(i) for i in self.sg.items(head)] if head is not None else []
            return ": ", f"{where} is not one of {_and(allowed, 'or')}"
        if c == "Pattern":
            return ": ", f"{where} does not match the pattern {self.sg.value(shape, SH.pattern)}"
        if c in LIMITS:
            (says, unit), limit = LIMITS[c], self.sg.value(shape, SH[c[0].lower() + c[1:]])
            return ": ", f"{where} {says} {self.term(limit)}{unit}"
        if c == "NodeKind":
            return ": ", f"{where} is not {kind}"
        if c == "Node":
            node_shape = self.sg.value(shape, SH.node)
            named = self.sg.value(node_shape, SH.name) if node_shape in self.base else None
            return (
                ": ",
                f"{where} is not {named}"
                if named
                else f"{where} does not conform to {self.shape_name(node_shape)}",
            )
        if c in ("QualifiedMinCount", "QualifiedMaxCount"):
            qualified = self.sg.value(shape, SH.qualifiedValueShape)
            cls = self.sg.value(qualified, SH["class"]) if qualified is not None else None
            what = f"a {self.name(cls)}" if cls is not None else f"conforming to {self.shape_name(qualified)}"
            n = self.sg.value(shape, SH[c[0].lower() + c[1:]])
            return (
                " ",
                f"has {'fewer' if c == 'QualifiedMinCount' else 'more'} than {n} {path} that is {what}",
            )
        detail = "; ".join(r.messages) or f"sh:{c[0].lower()}{c[1:]}"
        return ": ", f"{where} violates {self.shape_name(shape)} ({detail})".lstrip()

    def class_phrase(self, classes: Sequence[Node | None]) -> str:
        if set(classes) == set(RULES):
            return "a rule of the policy"
        if tuple(classes) == (FAB.AuthorityLevel,):
            return "a known authority level"
        if tuple(classes) == (FAB.TransactionType,):
            return "a known transaction type"
        return "a " + _and([self.name(c) for c in classes], "or")

    def or_phrase(self, shape: Node) -> str:
        head = self.sg.value(shape, SH["or"])
        members = list(self.sg.items(head)) if head is not None else []
        types = [self.sg.value(m, SH.datatype) for m in members]
        classes = [self.sg.value(m, SH["class"]) for m in members]
        if types and all(types):
            if set(types) == {XSD.decimal, XSD.integer}:
                return DATATYPES[XSD.decimal]
            return _and([DATATYPES.get(t) or f"of type {self.name(t)}" for t in types], "or")
        if classes and all(classes):
            return self.class_phrase(classes)
        return f"any of the alternatives of {self.shape_name(shape)}"

    def choices(self, cls: Node | None, value: Node | None) -> str:
        """The valid levels (by rank) or types, and the node meant when its code was written instead."""
        if cls not in (FAB.AuthorityLevel, FAB.TransactionType):
            return ""
        known = [
            (self.key(self.g.value(n, FAB.rank) or Literal(0)), str(c), n)
            for n in self.g.subjects(RDF.type, cls)
            for c in self.g.objects(n, FAB.code)
        ]
        known.sort(key=lambda k: (_number(k[0]), k[1]))
        noun = "levels" if cls == FAB.AuthorityLevel else "types"
        codes = ", ".join(dict.fromkeys(c for _, c, _ in known))
        text = f"; valid {noun}: {codes}" if known else f"; no {noun} are defined"
        meant = [n for _, c, n in known if isinstance(value, Literal) and c == str(value)]
        return text + (f" (write the node {self.name(meant[0])}, not its code)" if meant else "")

    # ------------------------------------------------------------------ naming nodes

    def subject(self, node: Node) -> str:
        """Rule "Purchases over $5M need the board" (ex:approval-purchase-board), and so on."""
        noun, owner = self.noun(node), self.owner(node)
        if owner is not None:
            attribute = self.g.value(node, FAB.attribute)
            on = f" on {json.dumps(str(attribute), ensure_ascii=False)}" if attribute is not None else ""
            held_by = self.subject(owner)
            return f"{noun}{on} of {held_by[0].lower()}{held_by[1:]}"
        name = self.label(node)
        for prop in (FAB.scenario, DCTERMS.title, FAB.code):
            value = self.g.value(node, prop)
            name = name or (str(value) if isinstance(value, Literal) else None)
        quoted = f" {json.dumps(name, ensure_ascii=False)}" if name else ""
        if isinstance(node, BNode):
            return f"{noun}{quoted} (a blank node)"
        return f"{noun}{quoted} ({self.name(node)})" if quoted else f"{noun} {self.name(node)}"

    def noun(self, node: Node) -> str:
        types = set(self.g.objects(node, RDF.type))
        for classes, noun in NOUNS:
            if types.intersection(classes):
                return noun
        if (None, FAB.txAttribute, node) in self.g:
            return "Transaction attribute"
        if (None, FAB.condition, node) in self.g or (None, FAB.operand, node) in self.g:
            return "Condition"
        return "Node"

    def owner(self, node: Node) -> Node | None:
        """For a condition or transaction attribute written as a blank node: the IRI that holds it."""
        seen: set[Node] = set()
        while isinstance(node, BNode) and node not in seen and self.noun(node) in PARTS:
            seen.add(node)
            parents = sorted(self.g.subject_predicates(node), key=lambda sp: (str(sp[1]), str(sp[0])))
            if not parents:
                return None
            node = parents[0][0]
        return node if isinstance(node, URIRef) and seen else None

    def label(self, node: Node) -> str | None:
        labels = [x for x in self.g.objects(node, RDFS.label) if isinstance(x, Literal)]
        labels.sort(key=lambda x: (x.language not in (None, "en"), str(x)))
        return str(labels[0]) if labels else None

    def name(self, node: Node | None) -> str:
        """A compact name: ex:L7 with the prefixes O declares (fab:, rdf:, xsd: … always), else <iri>."""
        if not isinstance(node, URIRef):
            return "[]" if isinstance(node, BNode) else self.term(node)
        for prefix, namespace in self.prefixes():
            local = node[len(namespace) :]
            if node.startswith(namespace) and _is_local(local):
                return f"{prefix}:{local}"
        return f"<{node}>"

    def prefixes(self) -> list[tuple[str, str]]:
        if self._prefixes is None:
            found = dict(STANDARD_PREFIXES)
            for prefix, namespace in self.index.prefixes().items():
                if namespace not in found.values() and prefix not in found:
                    found[prefix] = namespace
            self._prefixes = sorted(found.items(), key=lambda pn: -len(pn[1]))
        return self._prefixes

    def path(self, path: Node) -> str:
        if isinstance(path, URIRef):
            return self.name(path)
        inverse = self.sg.value(path, SH.inversePath)
        if inverse is not None:
            return "^" + self.path(inverse)
        steps = list(self.sg.items(path))
        return "/".join(self.path(s) for s in steps) if steps else "(a property path)"

    def shape_name(self, shape: Node | None) -> str:
        named = self.sg.value(shape, SH.name) if shape is not None else None
        if named is not None:
            return json.dumps(str(named), ensure_ascii=False)
        return self.name(shape) if isinstance(shape, URIRef) else "an unnamed shape"

    def term(self, node: Node | None) -> str:
        """A value as a person reads it: ex:L7, 5000, "string_not_number", "1e3"^^xsd:double."""
        if not isinstance(node, Literal):
            return self.name(node) if node is not None else ""
        if node.datatype in NUMERIC and not node.ill_typed:
            return str(node)
        typed = f"^^{self.name(node.datatype)}" if node.datatype not in (None, XSD.string, *DATATYPES) else ""
        return json.dumps(str(node), ensure_ascii=False) + (f"@{node.language}" if node.language else typed)

    def key(self, node: Node) -> str:
        """What makes two codes, ranks or names the same: the text, or the number of an integer rank."""
        value = node.toPython() if isinstance(node, Literal) and not node.ill_typed else None
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else str(node)

    def _where(self, node: Node) -> tuple[str, Location | None]:
        """The focus for a node (its IRI, else its holder's, else a stable blank name) and its place."""
        owner = self.owner(node)
        if owner is not None or isinstance(node, URIRef):
            iri = str(owner if owner is not None else node)
            return iri, self.index.find(iri)
        label = self.label(node)
        return _blank_name(self.g, node), self.index.find_text(label) if label else None


def _blank_name(graph: rdflib.Graph, node: Node) -> str:
    """A stable name for a blank node, from what it says (its generated label changes on every load)."""
    said = sorted(
        f"{p.n3()} {'[]' if isinstance(o, BNode) else o.n3()}" for p, o in graph.predicate_objects(node)
    )
    return "_:b" + hashlib.sha256("\n".join(said).encode()).hexdigest()[:12]


def _and(items: Sequence[str], word: str = "and") -> str:
    """a, b and c."""
    return f"{', '.join(items[:-1])} {word} {items[-1]}" if len(items) > 1 else "".join(items)


def _is_local(local: str) -> bool:
    """Whether ``local`` can follow ``prefix:`` in Turtle without escapes."""
    starts = local[:1].isalnum() or local[:1] == "_"
    return starts and not local.endswith(".") and all(ch.isalnum() or ch in "_-." for ch in local)


def _number(key: str) -> tuple[int, float | str]:
    try:
        return 0, float(key)
    except ValueError:
        return 1, key
