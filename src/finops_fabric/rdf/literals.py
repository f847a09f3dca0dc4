"""The literal guard: every literal of O (and of the shapes Σ) is checked as its file is read,
before any gate or library looks at it.

Refused (:class:`InputError`, exit 2, code ``fabric.bad_literal``) with the file, the line
and the node that holds the value (for a blank node, the IRI that holds it: a rule):

- a literal longer than :data:`MAX_LITERAL_BYTES` (64 KiB of UTF-8; a token longer than the
  parser's own 16 MiB buffer is refused by the loader with the same code);
- a number (``xsd:decimal``, ``xsd:integer`` and the types derived from it, ``xsd:double``,
  ``xsd:float``) whose lexical form is not that of its datatype as XSD writes it: no
  surrounding spaces, no ``_`` separators, no exponent on a decimal or an integer
  (``"1e999999999"^^xsd:decimal``), no hexadecimal; ``NaN`` and ``INF`` nowhere (a policy's
  numbers are finite);
- a number longer than :data:`MAX_NUMBER_CHARS` characters, or whose magnitude is outside
  ``10^±MAX_EXPONENT`` (a double's own range).

:func:`number_of` is the one reading of a numeric literal into a ``Decimal`` (the model's
reader uses it too).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pyoxigraph as ox

from finops_fabric.errors import InputError, Location

__all__ = [
    "MAX_EXPONENT",
    "MAX_LITERAL_BYTES",
    "MAX_NUMBER_CHARS",
    "NUMERIC",
    "check_literals",
    "locate_long_token",
    "number_of",
]

MAX_LITERAL_BYTES = 64 * 1024
MAX_NUMBER_CHARS = 64
MAX_EXPONENT = 308

XSD = "http://www.w3.org/2001/XMLSchema#"
_INTEGERS = (
    "integer",
    "int",
    "long",
    "short",
    "byte",
    "nonNegativeInteger",
    "positiveInteger",
    "nonPositiveInteger",
    "negativeInteger",
    "unsignedLong",
    "unsignedInt",
    "unsignedShort",
    "unsignedByte",
)
_DECIMAL_FORM = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_INTEGER_FORM = re.compile(r"[+-]?[0-9]+")
_DOUBLE_FORM = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DOUBLE_SPECIAL = re.compile(r"[+-]?INF|NaN")
#: datatype IRI -> (lexical form, what it is called)
NUMERIC: dict[str, tuple[re.Pattern[str], str]] = {
    XSD + "decimal": (_DECIMAL_FORM, "a decimal number (digits, an optional sign and decimal point)"),
    **{XSD + t: (_INTEGER_FORM, "an integer (digits and an optional sign)") for t in _INTEGERS},
    XSD + "double": (_DOUBLE_FORM, "a finite floating-point number"),
    XSD + "float": (_DOUBLE_FORM, "a finite floating-point number"),
}


def number_of(lexical: str, datatype: str) -> Decimal:
    """The exact value of a numeric literal; ``ValueError`` saying why when it is not a
    finite number written in its datatype's lexical form within the limits."""
    form = NUMERIC.get(datatype)
    if form is None:
        raise ValueError(f"{_compact(datatype)} is not a numeric datatype")
    pattern, called = form
    if len(lexical) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(lexical):,} characters is longer than {MAX_NUMBER_CHARS}")
    if pattern.fullmatch(lexical) is None:
        if _DOUBLE_SPECIAL.fullmatch(lexical.strip()):
            raise ValueError(f"{lexical!r} ({_compact(datatype)}) is not finite; a policy's numbers are")
        hint = ""
        if lexical != lexical.strip():
            hint = " (no surrounding spaces)"
        elif "e" in lexical.lower() and pattern is not _DOUBLE_FORM:
            hint = f" ({_compact(datatype)} has no exponent; write the digits out)"
        elif "_" in lexical:
            hint = " (no _ separators)"
        raise ValueError(f"{lexical!r} is not {called}{hint}")
    value = Decimal(lexical)
    if value and not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
        raise ValueError(f"{lexical!r} ({_compact(datatype)}) is beyond 10^±{MAX_EXPONENT}")
    return value


def check_literals(path: Path, data: bytes, quads: Sequence[ox.Quad]) -> None:
    """Refuse the first literal of ``path`` that is too large or a malformed number."""
    limit_chars = MAX_LITERAL_BYTES // 4  # fewer characters than this cannot exceed the byte limit
    for q in quads:
        o = q.object
        if not isinstance(o, ox.Literal):
            continue
        value = o.value
        if len(value) > limit_chars and len(value.encode("utf-8")) > MAX_LITERAL_BYTES:
            size = len(value.encode("utf-8"))
            raise _refusal(
                path,
                data,
                quads,
                q,
                f"a literal of {size:,} bytes is larger than the limit of {MAX_LITERAL_BYTES:,} bytes",
                value[:60],
            )
        datatype = o.datatype.value
        if datatype in NUMERIC:
            try:
                number_of(value, datatype)
            except ValueError as exc:
                raise _refusal(path, data, quads, q, str(exc), value) from None


def _refusal(
    path: Path, data: bytes, quads: Sequence[ox.Quad], q: ox.Quad, problem: str, text: str
) -> InputError:
    holder = _holder(quads, q.subject)
    line = _line_of(data, text) or _subject_line(path, holder)
    return InputError(
        f"{_compact(q.predicate.value)}: {problem}",
        code="fabric.bad_literal",
        location=Location(file=str(path), line=line, node=_node(holder)),
        hint="fix the value at that line; nothing was written",
    )


def _holder(quads: Sequence[ox.Quad], subject: object) -> object:
    """The IRI a blank node hangs from (a rule holding a condition), else the node itself."""
    seen: set[object] = set()
    node = subject
    while isinstance(node, ox.BlankNode) and node not in seen:
        seen.add(node)
        parent = next((p.subject for p in quads if p.object == node), None)
        if parent is None:
            break
        node = parent
    return node


def _node(node: object) -> str | None:
    return node.value if isinstance(node, ox.NamedNode) else None


_PREFIXES = {
    "fab": "https://w3id.org/finops-fabric/ns#",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "xsd": XSD,
    "sh": "http://www.w3.org/ns/shacl#",
    "dcterms": "http://purl.org/dc/terms/",
}


def _compact(iri: str) -> str:
    for prefix, namespace in _PREFIXES.items():
        if iri.startswith(namespace) and iri[len(namespace) :].replace("_", "a").isalnum():
            return f"{prefix}:{iri[len(namespace) :]}"
    return f"<{iri}>"


def _line_of(data: bytes, text: str) -> int | None:
    """The first line where ``text`` is written (quoted, else bare)."""
    if not text or "\n" in text:
        return None
    needle = text.encode("utf-8")
    for candidate in (b'"' + needle + b'"', b"'" + needle + b"'", b'"' + needle, needle):
        at = data.find(candidate)
        if at >= 0:
            return data.count(b"\n", 0, at) + 1
    return None


def _subject_line(path: Path, node: object) -> int | None:
    if not isinstance(node, ox.NamedNode):
        return None
    from finops_fabric.rdf.locate import SourceIndex

    found = SourceIndex([path]).find(node.value)
    return found.line if found is not None else None


def locate_long_token(data: bytes, limit: int = MAX_LITERAL_BYTES) -> int | None:
    """The line where a token longer than ``limit`` bytes starts (a literal or an IRI that ran
    past the parser's buffer): the first stretch of more than ``limit`` bytes between two quote
    or angle-bracket characters. ``None`` when there is none."""
    last = 0
    for m in re.finditer(rb"[\"'<>]", data):
        if m.start() - last > limit:
            return data.count(b"\n", 0, last) + 1
        last = m.start()
    if len(data) - last > limit:
        return data.count(b"\n", 0, last) + 1
    return None
