"""One error family for the whole product.

Every error carries a stable ``code`` (``fabric.parse_error``), a human message, an optional
location (file, line, node IRI) and a hint. The CLI maps the family to exit codes: an
``InputError`` is exit 2 (bad invocation or unreadable input), a ``CheckFailed`` is exit 1
(a gate, hash, signature or test said no).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    """Where a problem is: a file (and line), and/or a node of O."""

    file: str | None = None
    line: int | None = None
    node: str | None = None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.node:
            parts.append(f"<{self.node}>")
        return " ".join(parts)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.file is not None:
            out["file"] = self.file
        if self.line is not None:
            out["line"] = self.line
        if self.node is not None:
            out["node"] = self.node
        return out


class FabricError(Exception):
    """Root of every error the product raises on purpose."""

    exit_code = 2
    default_code = "fabric.error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        location: Location | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.location = location
        self.hint = hint

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location and str(self.location) else ""
        return f"{where}{self.message}"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.location is not None:
            out["location"] = self.location.to_dict()
        if self.hint:
            out["hint"] = self.hint
        return out


class InputError(FabricError):
    """Bad invocation or unreadable / malformed input (exit 2)."""

    exit_code = 2
    default_code = "fabric.input_error"


class CheckFailed(FabricError):
    """A check said no: a gate, a hash, a signature, a golden case (exit 1)."""

    exit_code = 1
    default_code = "fabric.check_failed"


@dataclass(frozen=True)
class Finding:
    """One problem found in O by a gate, in terms a compliance officer understands.

    ``gate`` is ``ontology`` or ``invariant``; ``invariant`` names the invariant for the
    invariant gate (``sod``, ``levels``, ``golden``, ``satisfiable``). ``severity`` is
    ``violation`` (stops the line) or ``warning`` (reported, does not stop it).
    """

    gate: str
    message: str
    focus: str
    path: str | None = None
    value: str | None = None
    invariant: str | None = None
    severity: str = "violation"
    label: str | None = None
    location: Location | None = None
    nodes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "gate": self.gate,
            "focus": self.focus,
            "message": self.message,
            "severity": self.severity,
        }
        if self.invariant is not None:
            out["invariant"] = self.invariant
        if self.path is not None:
            out["path"] = self.path
        if self.value is not None:
            out["value"] = self.value
        if self.label is not None:
            out["label"] = self.label
        if self.location is not None:
            out["location"] = self.location.to_dict()
        if self.nodes:
            out["nodes"] = list(self.nodes)
        return out

    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.gate, self.focus, self.path or "", self.message)
