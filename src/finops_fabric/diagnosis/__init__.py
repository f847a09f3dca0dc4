"""Diagnosis (``mu diagnose``): a control failed in production; whose fault is it?

Given a generation receipt R, one transaction and the outcome production observed,
:func:`diagnose` runs every check below in order and keeps each one as evidence, also when an
earlier check has already decided the verdict:

    receipt       R is a well-formed generation receipt, its hash holds and a key this store
                  trusts signed it (otherwise there is nothing to diagnose against: a named error)
    drift         (``O_now``) hash(O_now) against R's ``inputs.ontology_hash``; when they differ,
                  the rules changed, added and removed, and what O_now decides
    tampering     (``A_prod``) every artifact of A_prod against its own manifest and against R's
                  ``outputs.artifacts``, hash(A_prod) against ``outputs.enforcer_hash``, naming
                  each edited artifact and its rule; for a logged decision the hash of the A that
                  made it, and A_prod is the A that served it (the daemon's verified copy in the
                  store, :func:`served_enforcer`), never the directory it was deployed from
    replay        μ replayed with R's pinned generator from the receipted O (the store's snapshot,
                  or O_now when it is the receipted O) in a clean temporary directory
                  (:func:`finops_fabric.replay.regenerate`); it must reproduce hash(A)
    differential  the transaction on the replayed A and on the reference interpreter of the
                  receipted O: the same decision, fired rules, notifications and audit entries
    production    the observed outcome against what A and O decide (and ``expected``)

The verdict is the first of these that holds:

    tampering      A_prod (or the A that made the logged decision) is not the receipted A
    drift          O now is not the receipted O
    generator      the replay does not reproduce R, or the replayed A and O disagree
    runtime        A and O agree on d, and production observed something else
    no_failure     A and O agree on d = observed = ``expected``
    configuration  A and O agree on d = observed: O itself decides so

Generated code that fails verification is never executed: A_prod runs only when it is exactly
the A of a generation receipt (R's, or another one in the ledger). :func:`record` seals the
result as a ``diagnosis`` receipt with the operator key and appends it to the ledger.
"""

from __future__ import annotations

from finops_fabric.diagnosis.case import (
    CHECKS,
    ESCALATE_TO,
    OUTCOMES,
    VERDICTS,
    Case,
    Diagnosis,
    Evidence,
    Logged,
)
from finops_fabric.diagnosis.case import Progress as Progress
from finops_fabric.diagnosis.inputs import check_outcome as check_outcome
from finops_fabric.diagnosis.inputs import read_logged_decision, served_enforcer, transaction_hash
from finops_fabric.diagnosis.receipt import record
from finops_fabric.diagnosis.verdict import deployment_drift as deployment_drift
from finops_fabric.diagnosis.verdict import diagnose

__all__ = [
    "CHECKS",
    "ESCALATE_TO",
    "OUTCOMES",
    "VERDICTS",
    "Case",
    "Diagnosis",
    "Evidence",
    "Logged",
    "diagnose",
    "read_logged_decision",
    "record",
    "served_enforcer",
    "transaction_hash",
]
