"""The diagnosis receipt: :func:`record` seals a :class:`Diagnosis` with the operator key and
appends it to the ledger."""

from __future__ import annotations

import datetime as dt
from typing import Any

from finops_fabric.diagnosis.case import Diagnosis
from finops_fabric.store import Store


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(diagnosis: Diagnosis, store: Store) -> dict[str, Any]:
    """Seal the diagnosis as a ``diagnosis`` receipt with the operator key, append it to the ledger
    (linked by ``previous_receipt_hash``) and return it."""
    inputs: dict[str, Any] = {
        "generation_receipt_hash": diagnosis.generation_receipt_hash,
        "ontology_hash": diagnosis.ontology_hash,
        "current_ontology_hash": diagnosis.current_ontology_hash,
        "transaction_hash": diagnosis.transaction_hash,
        "observed": diagnosis.observed,
        "expected": diagnosis.expected,
        "production_enforcer_hash": diagnosis.enforcer_hash,
        "generator": diagnosis.generator,
    }
    if diagnosis.logged is not None:
        inputs["decision"] = {"env": diagnosis.logged.env, "id": diagnosis.logged.id}
    body = {
        "kind": "diagnosis",
        "time": _now(),
        "diagnosis_of": diagnosis.generation_receipt_hash,
        "verdict": diagnosis.verdict,
        "inputs": inputs,
        "outputs": {
            "verdict": diagnosis.verdict,
            "escalate_to": diagnosis.escalate_to,
            "summary": " ".join(diagnosis.prose),
            "evidence": [e.to_dict() for e in diagnosis.evidence],
            "decision": diagnosis.decision,
        },
    }
    sealed = store.append(body)
    diagnosis.receipt = sealed
    return sealed
