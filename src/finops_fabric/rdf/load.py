"""Load O from files: Turtle, TriG, N-Triples, N-Quads and JSON-LD, one file or a directory.

All files of a directory together form one graph O: blank nodes are scoped to their file,
named graphs are merged into the default graph. Parse errors name the file and the line, and
so do literals that are too large or numbers that are not finite, well-formed and in range
(:mod:`finops_fabric.rdf.literals`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import pyoxigraph as ox

from finops_fabric.errors import InputError, Location
from finops_fabric.rdf.literals import MAX_LITERAL_BYTES, check_literals, locate_long_token

Statement: TypeAlias = ox.Triple | ox.Quad  # a triple, or a quad in the default graph

FORMATS: dict[str, ox.RdfFormat] = {
    ".ttl": ox.RdfFormat.TURTLE,
    ".turtle": ox.RdfFormat.TURTLE,
    ".trig": ox.RdfFormat.TRIG,
    ".nt": ox.RdfFormat.N_TRIPLES,
    ".ntriples": ox.RdfFormat.N_TRIPLES,
    ".nq": ox.RdfFormat.N_QUADS,
    ".nquads": ox.RdfFormat.N_QUADS,
    ".jsonld": ox.RdfFormat.JSON_LD,
    ".json-ld": ox.RdfFormat.JSON_LD,
}


@dataclass(frozen=True)
class RawGraph:
    """The statements of O (oxigraph quads, all in the default graph) and the files they came from."""

    triples: tuple[Statement, ...]  # quads in the default graph (or triples)
    files: tuple[Path, ...]


def policy_files(path: Path) -> list[Path]:
    """The files that make up O at ``path``: the file itself, or every RDF file of a directory."""
    if not path.exists():
        raise InputError(
            f"no such file or directory: {path}", code="fabric.unreadable", location=Location(file=str(path))
        )
    if path.is_file():
        if _format_of(path) is None:
            raise InputError(
                f"{path.name}: unknown RDF format (expected one of {', '.join(sorted(FORMATS))})",
                code="fabric.unknown_format",
                location=Location(file=str(path)),
            )
        return [path]
    if not path.is_dir():
        raise InputError(
            f"not a file or directory: {path}", code="fabric.unreadable", location=Location(file=str(path))
        )
    found: list[Path] = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(root) / n for n in sorted(names) if not n.startswith(".") and _format_of(Path(n)) is not None
        )
    if not found:
        raise InputError(
            f"no RDF files (.ttl, .trig, .nt, .nq, .jsonld) in directory {path}",
            code="fabric.empty_ontology",
            location=Location(file=str(path)),
        )
    return sorted(found)


def _format_of(path: Path) -> ox.RdfFormat | None:
    return FORMATS.get(path.suffix.lower())


RELATIVE_MARKER = "https://relative-iri.invalid/"


def _relative_iri(path: Path, line: int | None, data: bytes, iri: str | None = None) -> InputError:
    if iri is None and line is not None:
        lines = data.decode("utf-8", "replace").splitlines()
        found = re.search(r"<([^<>:]*)>", lines[line - 1]) if 0 < line <= len(lines) else None
        iri = found.group(1) if found else None
    what = f"the relative IRI <{iri}>" if iri is not None else "a relative IRI"
    where = f" at line {line}" if line else ""
    return InputError(
        f"{path.name}{where} uses {what}; the IRIs of O must be absolute, so that hash(O) and the "
        "enforcer do not depend on where the file lies",
        code="fabric.relative_iri",
        location=Location(file=str(path), line=line),
        hint="write the full IRI (or a prefixed name), or declare @base <https://…> at the top of the file",
    )


def _parse_error(path: Path, err: SyntaxError) -> InputError:
    text = str(err.msg) if getattr(err, "msg", None) else str(err)
    text = re.sub(
        r"^Parser error (?:between|at) line \d+ column \d+(?: and line \d+ column \d+)?: ", "", text
    )
    line = err.lineno if isinstance(err.lineno, int) else None
    col = err.offset if isinstance(err.offset, int) else None
    where = f" at line {line}" + (f", column {col}" if col else "") if line else ""
    return InputError(
        f"{path.name} is not valid {_format_name(path)}{where}: {text}",
        code="fabric.parse_error",
        location=Location(file=str(path), line=line),
        hint="fix the syntax at that line; nothing was written",
    )


def _format_name(path: Path) -> str:
    fmt = _format_of(path)
    return fmt.name if fmt is not None else "RDF"


def parse_file(path: Path) -> list[ox.Quad]:
    fmt = _format_of(path)
    if fmt is None:
        raise InputError(
            f"{path}: unknown RDF format", code="fabric.unknown_format", location=Location(file=str(path))
        )
    # No base IRI from the file's location: a relative IRI would make hash(O), and the rule IRIs
    # inside A, depend on where the file lies. Relative IRIs are refused (an explicit @base is
    # fine). JSON-LD drops a relative @id silently when there is no base, so it gets a marker base
    # and any IRI under the marker is refused after parsing.
    base = RELATIVE_MARKER if fmt == ox.RdfFormat.JSON_LD else None
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(
            f"cannot read {path}: {e.strerror or e}",
            code="fabric.unreadable",
            location=Location(file=str(path)),
        ) from e
    try:
        quads = list(ox.parse(data, fmt, base_iri=base, rename_blank_nodes=True))
    except MemoryError as e:  # a token longer than the parser's buffer (16 MiB)
        line = locate_long_token(data)
        raise InputError(
            f"a literal or IRI is longer than the parser's buffer ({e}); literals are limited to "
            f"{MAX_LITERAL_BYTES:,} bytes",
            code="fabric.bad_literal",
            location=Location(file=str(path), line=line),
            hint="fix the value at that line; nothing was written",
        ) from e
    except SyntaxError as e:
        if "No scheme found" in str(e):
            raise _relative_iri(path, e.lineno if isinstance(e.lineno, int) else None, data) from e
        raise _parse_error(path, e) from e
    except ValueError as e:  # e.g. an invalid IRI or encoding
        raise InputError(
            f"{path.name} could not be read as {fmt.name}: {e}",
            code="fabric.parse_error",
            location=Location(file=str(path)),
        ) from e
    if base is not None:
        for q in quads:
            for term in (q.subject, q.predicate, q.object, q.graph_name):
                if isinstance(term, ox.NamedNode) and term.value.startswith(RELATIVE_MARKER):
                    raise _relative_iri(path, None, data, term.value.removeprefix(RELATIVE_MARKER))
    check_literals(path, data, quads)  # sizes and numbers, before any gate reads them
    # Statements stay quads in the default graph (what canonicalization takes, so hashing does
    # not rebuild them); a named graph's quads are moved into the default graph: O is one graph.
    default = ox.DefaultGraph()
    return [
        q if q.graph_name == default else ox.Quad(q.subject, q.predicate, q.object, default) for q in quads
    ]


def load_graph(path: Path | str, extra: Iterable[Path] = ()) -> RawGraph:
    """Parse every file of O at ``path`` into one graph (duplicates removed)."""
    files = policy_files(Path(path)) + list(extra)
    seen: set[Statement] = set()
    triples: list[Statement] = []
    for f in files:
        for t in parse_file(f):
            if t not in seen:
                seen.add(t)
                triples.append(t)
    return RawGraph(tuple(triples), tuple(files))


def load_many(paths: Sequence[Path]) -> RawGraph:
    """Parse a list of files (for example shapes graphs) into one graph."""
    seen: set[Statement] = set()
    triples: list[Statement] = []
    files: list[Path] = []
    for p in paths:
        for f in policy_files(Path(p)):
            files.append(f)
            for t in parse_file(f):
                if t not in seen:
                    seen.add(t)
                    triples.append(t)
    return RawGraph(tuple(triples), tuple(files))
