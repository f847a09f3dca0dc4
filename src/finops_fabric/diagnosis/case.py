"""What is diagnosed (the :class:`Case`), what each check found (:class:`Evidence`) and the
result (:class:`Diagnosis`); the outcomes, verdicts and checks by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Progress = Callable[[str], None]

OUTCOMES = ("APPROVE", "REJECT")
#: In priority order: the first that holds is the verdict.
VERDICTS = ("tampering", "drift", "generator", "runtime", "no_failure", "configuration")
ESCALATE_TO = {
    "tampering": "security",
    "drift": "compliance/release (O or the deployed A is not the receipted one)",
    "generator": "generator maintainers (platform engineering)",
    "runtime": "operations/infrastructure",
    "no_failure": "nobody",
    "configuration": "compliance (owners of O)",
}
#: The checks, in the order they run and appear in the evidence.
CHECKS = ("receipt", "drift", "tampering", "replay", "differential", "production")


@dataclass
class Evidence:
    check: str
    result: str  # pass | fail | skipped | unavailable
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "result": self.result, "detail": self.detail, **self.data}


@dataclass(frozen=True)
class Logged:
    """One decision of the daemon's decision log, and the deployment that served it."""

    id: int
    env: str
    decided_at: str
    transaction: dict[str, Any]
    outcome: str
    fired: tuple[str, ...]
    enforcer_hash: str
    generation_receipt_hash: str
    deployed_enforcer: Path | None
    deployment_receipt_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.id,
            "env": self.env,
            "decided_at": self.decided_at,
            "outcome": self.outcome,
            "fired": list(self.fired),
            "enforcer_hash": self.enforcer_hash,
            "generation_receipt_hash": self.generation_receipt_hash,
            "deployed_enforcer": str(self.deployed_enforcer) if self.deployed_enforcer else None,
            "deployment_receipt_hash": self.deployment_receipt_hash,
        }


@dataclass(frozen=True)
class Served:
    """The A that served a logged decision, as the daemon holds it: the store's copy of the A
    with the logged hash (what the daemon verified at deployment and boots from), or ``files``
    None when there is none to read; ``notes`` say what else was found (e.g. that the directory
    the A was deployed from has changed since, which the daemon does not run)."""

    name: str
    files: dict[str, bytes] | None
    notes: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    """What is diagnosed: the receipt, the transaction, what production did, and what runs now.
    ``enforcer`` (a directory or archive) is A_prod as given; without it, ``served`` is the A
    that served a logged decision."""

    receipt: dict[str, Any]
    transaction: dict[str, Any]
    observed: str
    expected: str | None = None
    ontology: Path | None = None
    enforcer: Path | None = None
    logged: Logged | None = None
    served: Served | None = None


@dataclass
class Diagnosis:
    verdict: str
    evidence: list[Evidence]
    decision: dict[str, Any]
    generation_receipt_hash: str
    ontology_hash: str
    current_ontology_hash: str | None
    enforcer_hash: str | None
    transaction_hash: str
    observed: str
    expected: str | None
    generator: dict[str, Any]
    logged: Logged | None = None
    prose: list[str] = field(default_factory=list)
    receipt: dict[str, Any] | None = None

    @property
    def escalate_to(self) -> str:
        return ESCALATE_TO[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "escalate_to": self.escalate_to,
            "summary": " ".join(self.prose),
            "evidence": [e.to_dict() for e in self.evidence],
            "decision": self.decision,
            "receipt_hash": self.receipt["receipt_hash"] if self.receipt else None,
            "generation_receipt_hash": self.generation_receipt_hash,
            "ontology_hash": self.ontology_hash,
            "current_ontology_hash": self.current_ontology_hash,
            "enforcer_hash": self.enforcer_hash,
            "transaction_hash": self.transaction_hash,
            "observed": self.observed,
            "expected": self.expected,
            "logged": self.logged.to_dict() if self.logged else None,
        }


def _short(rule: str) -> str:
    return rule.rsplit("#", 1)[-1].rsplit("/", 1)[-1]
