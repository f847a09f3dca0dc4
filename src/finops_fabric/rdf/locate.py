"""Find where a node of O is written in its source files (file and line), for findings.

A cheap text scan, not a parser: each Turtle/TriG/N-Triples/N-Quads file is read once, its
``@prefix``/``PREFIX`` and ``@base``/``BASE`` declarations are followed line by line, and the
first term of every line is expanded to an IRI. A node is located at the first line that
starts with it (where it is written as a subject); failing that, at the first line that
mentions it anywhere. JSON-LD files are searched for ``"@id"`` values. Nothing is read until
the first question, and only findings ask, so a valid policy costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urljoin

from finops_fabric.errors import Location

_PREFIX_DECL = re.compile(r"^\s*(?:@prefix|PREFIX)\s+([A-Za-z][\w.-]*)?:\s*<([^>]*)>", re.IGNORECASE)
_BASE_DECL = re.compile(r"^\s*(?:@base|BASE)\s+<([^>]*)>", re.IGNORECASE)
# An IRI reference or a prefixed name (PN_LOCAL may hold ':' and '.', never a trailing '.').
_TERM = re.compile(
    r"<([^<>\"{}|^`\\\s]*)>|(?<![\w:<\"'\\])([A-Za-z][\w.-]*)?:((?:[\w:%-]|\\.|\.(?=[\w:%-]))*)"
)
_JSONLD_ID = re.compile(r"\"@id\"\s*:\s*\"([^\"]+)\"")
_JSONLD_PREFIX = re.compile(r"\"([A-Za-z][\w.-]*)\"\s*:\s*\"(https?://[^\"]*[#/])\"")
_ESCAPE = re.compile(r"\\(.)")
_COMMENT = re.compile(r"\s#[^<>\"]*$")
_JSONLD_SUFFIXES = {".jsonld", ".json-ld"}


class SourceIndex:
    """Where each node of O is first written, over the files O was loaded from."""

    def __init__(self, files: Sequence[Path]) -> None:
        self._files = tuple(Path(f) for f in files)
        self._lines: list[tuple[Path, list[str]]] | None = None
        self._subjects: dict[str, Location] | None = None
        self._mentions: dict[str, Location] | None = None
        self._prefixes: dict[str, str] = {}

    def find(self, iri: str) -> Location | None:
        """The file and line where ``iri`` is first written as a subject, else first mentioned."""
        subjects = self._subject_index()
        if iri in subjects:
            return subjects[iri]
        if self._mentions is None:
            self._mentions = self._scan(subjects_only=False)
        return self._mentions.get(iri)

    def find_near(self, iri: str, near: Location | None) -> Location | None:
        """Where ``iri`` is written at or after ``near`` (the line of the node that uses it) in
        that file; else where it is first written anywhere."""
        if near is not None and near.file and near.line:
            for path, lines in self._read():
                if str(path) != near.file:
                    continue
                for number, found in self._terms(path, lines, subjects_only=False):
                    if number >= near.line and found == iri:
                        return Location(file=str(path), line=number, node=iri)
        return self.find(iri)

    def find_text(self, text: str) -> Location | None:
        """The first line that contains ``text`` verbatim (used for blank nodes, by their label)."""
        if not text or "\n" in text:
            return None
        for path, lines in self._read():
            for number, line in enumerate(lines, start=1):
                if text in line:
                    return Location(file=str(path), line=number)
        return None

    def prefixes(self) -> dict[str, str]:
        """Prefix → namespace as the files declare them (the first declaration of a prefix wins)."""
        self._subject_index()
        return dict(self._prefixes)

    # ------------------------------------------------------------------ internals

    def _read(self) -> list[tuple[Path, list[str]]]:
        if self._lines is None:
            self._lines = []
            for path in self._files:
                try:
                    text = path.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                self._lines.append((path, text.splitlines()))
        return self._lines

    def _subject_index(self) -> dict[str, Location]:
        if self._subjects is None:
            self._subjects = self._scan(subjects_only=True)
        return self._subjects

    def _scan(self, *, subjects_only: bool) -> dict[str, Location]:
        found: dict[str, Location] = {}
        for path, lines in self._read():
            for number, iri in self._terms(path, lines, subjects_only=subjects_only):
                if iri not in found:
                    found[iri] = Location(file=str(path), line=number, node=iri)
        return found

    def _terms(self, path: Path, lines: list[str], *, subjects_only: bool) -> Iterator[tuple[int, str]]:
        if path.suffix.lower() in _JSONLD_SUFFIXES:
            yield from self._jsonld_terms(lines, subjects_only=subjects_only)
            return
        base = path.resolve().as_uri()
        prefixes: dict[str, str] = {}
        statement_start = True  # the previous line ended a statement (or opened a TriG graph)
        for number, line in enumerate(lines, start=1):
            declared = _PREFIX_DECL.match(line)
            if declared:  # one line may hold several declarations: `@prefix a: <…> . @prefix b: <…> .`
                rest = line
                while declared:
                    name, namespace = declared.group(1) or "", urljoin(base, declared.group(2))
                    prefixes[name] = namespace
                    self._prefixes.setdefault(name, namespace)
                    rest = rest[declared.end() :].lstrip().removeprefix(".")
                    declared = _PREFIX_DECL.match(rest)
                continue
            based = _BASE_DECL.match(line)
            if based:
                base = urljoin(base, based.group(1))
                continue
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            # A subject is the first term of a line that starts a statement, or of an unindented line.
            is_subject_line = statement_start or stripped == line
            statement_start = _COMMENT.sub("", line).rstrip().endswith((".", "{", "}"))
            if subjects_only and not is_subject_line:
                continue
            for match in _TERM.finditer(stripped):
                if subjects_only and match.start() != 0:
                    break
                iri = _expand(match, prefixes, base)
                if iri is not None:
                    yield number, iri
                if subjects_only:
                    break

    def _jsonld_terms(self, lines: list[str], *, subjects_only: bool) -> Iterator[tuple[int, str]]:
        prefixes: dict[str, str] = {}
        for line in lines:
            for name, namespace in _JSONLD_PREFIX.findall(line):
                prefixes.setdefault(name, namespace)
                self._prefixes.setdefault(name, namespace)
        for number, line in enumerate(lines, start=1):
            values = _JSONLD_ID.findall(line)
            if not subjects_only:
                values += re.findall(r"\"([^\"]+)\"", line)
            for value in values:
                head, sep, tail = value.partition(":")
                if sep and head in prefixes and not tail.startswith("//"):
                    yield number, prefixes[head] + tail
                else:
                    yield number, value


def _expand(match: re.Match[str], prefixes: dict[str, str], base: str) -> str | None:
    """The IRI a matched term stands for, or None for an undeclared prefix."""
    reference = match.group(1)
    if reference is not None:
        return urljoin(base, reference) if reference else base
    namespace = prefixes.get(match.group(2) or "")
    if namespace is None:
        return None
    return namespace + _ESCAPE.sub(r"\1", match.group(3))
