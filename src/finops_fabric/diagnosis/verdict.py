"""The verdict (the first of :data:`VERDICTS` that holds), its prose, and :func:`diagnose`, which
runs every check in order and names the culprit."""

from __future__ import annotations

from typing import Any

from finops_fabric.diagnosis.case import CHECKS, ESCALATE_TO, Case, Diagnosis, Evidence, Progress
from finops_fabric.diagnosis.checks import (
    _decision_of,
    _differential,
    _drift,
    _interpret,
    _production,
    _receipted_policy,
    _replay,
    _tampering,
    receipt_language,
)
from finops_fabric.diagnosis.inputs import _check_receipt, check_outcome, transaction_hash
from finops_fabric.enforcer import MANIFEST, Enforcer, parse_manifest
from finops_fabric.errors import InputError, Location
from finops_fabric.pipeline import load_ontology, quiet
from finops_fabric.store import Store

# --- the verdict --------------------------------------------------------------------------------


_NOT_EDITS = ("enforcer_hash", "other_generation")


def deployment_drift(tampering: Evidence) -> bool:
    """A_prod is, byte for byte, the A of ANOTHER generation receipt: nobody edited code; what
    runs is not what this receipt says runs (a deployment or rollback drifted)."""
    problems = tampering.data.get("problems") or []
    return bool(tampering.data.get("deployed_receipt")) and all(p["problem"] in _NOT_EDITS for p in problems)


def _verdict(evidence: dict[str, Evidence], d: str | None, case: Case) -> str | None:
    if evidence["tampering"].result == "fail":
        return "drift" if deployment_drift(evidence["tampering"]) else "tampering"
    if evidence["drift"].result == "fail":
        return "drift"
    if evidence["replay"].result == "fail" or evidence["differential"].result == "fail":
        return "generator"
    if d is None:
        return None
    if case.observed != d:
        return "runtime"
    if case.expected is not None and case.expected == case.observed:
        return "no_failure"
    return "configuration"


def _prose(verdict: str, ev: dict[str, Evidence], case: Case, d: str | None) -> list[str]:
    head = f"Verdict: {verdict}; escalate to {ESCALATE_TO[verdict]}."
    if verdict == "tampering":
        return [
            head,
            f"{ev['tampering'].detail}.",
            "Generated code is never edited by hand: treat it as a security incident and restore the "
            "receipted A (`mu rollback --to-receipt=R`).",
        ]
    if verdict == "drift" and deployment_drift(ev["tampering"]):
        return [
            head,
            f"{ev['tampering'].detail}.",
            f"Nobody edited generated code: production runs the A of receipt "
            f"{ev['tampering'].data['deployed_receipt']}, not the A of the receipt diagnosed. Deploy the "
            "receipted A (mu deploy / mu rollback), or diagnose against the receipt production runs.",
        ]
    if verdict == "drift":
        return [
            head,
            f"{ev['drift'].detail}.",
            "Operations is cleared: production runs the receipted A; the O compliance maintains is not "
            "the O that A was generated from. Generate and receipt the intended O, or restore the "
            "receipted one.",
        ]
    if verdict == "generator":
        why = ev["replay"].detail if ev["replay"].result == "fail" else ev["differential"].detail
        return [head, f"{why}.", "Operations is cleared: the defect is in μ, upstream of production."]
    if verdict == "runtime":
        return [
            head,
            f"The receipted A and the reference interpreter of O both decide {d}, but production observed "
            f"{case.observed}: A and O are right, so the fault is in the infrastructure that ran them.",
        ]
    if verdict == "no_failure":
        return [
            head,
            f"Production decided {case.observed}, as expected and as A and O decide. Operations is cleared: "
            "nothing failed.",
        ]
    return [
        head,
        f"O itself decides {d} for this transaction, exactly as production did "
        f"({ev['differential'].detail}). Operations is cleared: production did what O says; compliance "
        "must fix O.",
    ]


def diagnose(case: Case, store: Store, *, progress: Progress = quiet) -> Diagnosis:
    """Run every check of :data:`CHECKS` and name the culprit. Writes nothing. Raises
    :class:`InputError` for input nothing can be diagnosed from (and when no verdict can be
    reached), :class:`CheckFailed` for a receipt whose hash or signature does not verify."""
    store.require()
    check_outcome(case.observed, "--observed")
    check_outcome(case.expected, "--expected")
    tx_hash = transaction_hash(case.transaction)
    if case.enforcer is not None and not case.enforcer.exists():
        raise InputError(
            f"no enforcer at {case.enforcer}",
            code="diagnose.enforcer_missing",
            location=Location(file=str(case.enforcer)),
        )
    ev: dict[str, Evidence] = {"receipt": _check_receipt(case.receipt, store)}
    receipted = str(case.receipt["inputs"]["ontology_hash"])
    now = load_ontology(case.ontology) if case.ontology is not None else None

    progress("replaying μ from the receipted O with the pinned generator")
    use = case.ontology if now is not None and now.hash == receipted else None
    ev["replay"], ref = _replay(case.receipt, store, use, progress)
    policy = ref.policy if ref is not None else _receipted_policy(store, receipted, now)

    ev["drift"], policy_now = _drift(case.ontology, now, receipted, policy, store)
    progress("comparing A_prod with the receipt")
    ev["tampering"], prod, prod_hash, not_run = _tampering(case, store)

    progress("deciding the transaction on A and on the reference interpreter of O")
    tx = case.transaction
    replayed = None
    if ref is not None:
        files = dict(ref.files)
        replayed = _decision_of(
            Enforcer("replayed A", files, parse_manifest(files[MANIFEST], "replayed A"), ref.enforcer_hash),
            tx,
        )
    on_prod = _decision_of(prod, tx) if prod is not None else None
    language = receipt_language(case.receipt)
    interpreted = _interpret(policy, tx, language) if policy is not None else None
    a, a_name = replayed, "the replayed A"
    if a is None and on_prod is not None and prod_hash == case.receipt["outputs"]["enforcer_hash"]:
        a, a_name = on_prod, "A_prod (the receipted A)"
    ev["differential"], d = _differential(a, a_name, interpreted)
    ev["production"] = _production(case, d, a)

    evidence = [ev[c] for c in CHECKS]
    verdict = _verdict(ev, d, case)
    if verdict is None:
        missing = "; ".join(f"{e.check}: {e.detail}" for e in evidence if e.result == "unavailable")
        raise InputError(
            "no verdict: neither tampering nor drift was found, and A and O could not both be run "
            f"({missing})",
            code="diagnose.inconclusive",
            hint="give --ontology=O with the receipted O, or restore the store's O snapshot",
        )
    decision: dict[str, Any] = {
        "observed": case.observed,
        "expected": case.expected,
        "agreed": d,
        "replayed_enforcer": replayed,
        "interpreter": interpreted,
        "production_enforcer": on_prod
        if on_prod is not None
        else ({"not_run": not_run} if not_run else None),
        "ontology_now": _interpret(policy_now, tx, language) if policy_now is not None else None,
        "logged": case.logged.to_dict() if case.logged is not None else None,
    }
    gen = case.receipt["inputs"].get("generator")
    return Diagnosis(
        verdict=verdict,
        evidence=evidence,
        decision=decision,
        generation_receipt_hash=str(case.receipt["receipt_hash"]),
        ontology_hash=receipted,
        current_ontology_hash=now.hash if now is not None else None,
        enforcer_hash=prod_hash,
        transaction_hash=tx_hash,
        observed=case.observed,
        expected=case.expected,
        generator=dict(gen) if isinstance(gen, dict) else {},
        logged=case.logged,
        prose=_prose(verdict, ev, case, d),
    )
