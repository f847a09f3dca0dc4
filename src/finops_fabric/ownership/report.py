"""The ownership report: each :class:`Violation` with its commit and author, and what was checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = (
    "unapproved_ontology_change",
    "hand_edited_generated_code",
    "unreceipted_generated_code",
    "receipt_not_approved",
    "ontology_deleted",
    "production_ontology_not_in_repository",
)


@dataclass(frozen=True)
class Violation:
    kind: str
    commit: str | None
    author: str | None
    files: tuple[str, ...]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "commit": self.commit,
            "author": self.author,
            "files": list(self.files),
            "detail": self.detail,
        }

    def line(self) -> str:
        where = f"{self.commit[:12]} {self.author}" if self.commit else "(no commit)"
        files = f" [{', '.join(self.files)}]" if self.files else ""
        return f"{self.kind}  {where}{files}: {self.detail}"


@dataclass
class OwnershipReport:
    repo: Path
    head: str
    commits_checked: int
    ontology_paths: list[str] | None
    violations: list[Violation] = field(default_factory=list)
    ontology_changes: list[dict[str, Any]] = field(default_factory=list)
    generated_changes: list[dict[str, Any]] = field(default_factory=list)
    approvals: int = 0
    ignored_approvals: list[dict[str, str]] = field(default_factory=list)
    production_receipt: dict[str, Any] | None = None

    @property
    def owned(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "owned": self.owned,
            "commits_checked": self.commits_checked,
            "violations": [v.to_dict() for v in self.violations],
            "repo": str(self.repo),
            "head": self.head,
            "ontology_paths": self.ontology_paths,
            "ontology_changes": self.ontology_changes,
            "generated_changes": self.generated_changes,
            "approvals": {"valid": self.approvals, "ignored": self.ignored_approvals},
            "production_receipt": self.production_receipt,
        }


def explain(report: OwnershipReport) -> list[str]:
    """The human summary: what was checked, then one line per violation."""
    checked = (
        f"{report.commits_checked} commit(s) up to {report.head[:12]}: "
        f"{len(report.ontology_changes)} change(s) to O, "
        f"{len(report.generated_changes)} to generated code, {report.approvals} valid approval(s)"
    )
    prod = report.production_receipt
    bound = (
        f"; receipt {prod['receipt_hash']} ({prod['source']}) binds O {prod['ontology_hash']}"
        if prod is not None
        else "; no production or generation receipt in the store"
    )
    if report.owned:
        return [f"owned: compliance owns the rules in {report.repo} ({checked}{bound})"]
    lines = [f"NOT OWNED: {len(report.violations)} violation(s) in {report.repo} ({checked}{bound})"]
    return lines + ["  " + v.line() for v in report.violations]
