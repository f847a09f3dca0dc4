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
                  each edited artifact and its rule; for a logged decision also the hash of the A
                  that made it
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

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from finops_fabric import model as m
from finops_fabric.canonical import is_sha256, sha256_hex
from finops_fabric.daemon import decision_log
from finops_fabric.enforcer import MANIFEST, Enforcer, check_files, load_enforcer, parse_manifest, read_tree
from finops_fabric.errors import CheckFailed, FabricError, InputError, Location
from finops_fabric.interpreter import Interpreter, Outcome, comparable
from finops_fabric.keys import Ed25519PublicKey, key_id, load_public_key
from finops_fabric.pipeline import LoadedOntology, load_ontology, load_snapshot, quiet
from finops_fabric.receipts import check_hash, check_schema, check_signature
from finops_fabric.replay import Regenerated, regenerate
from finops_fabric.store import Store

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
    "transaction_hash",
]

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


@dataclass
class Case:
    """What is diagnosed: the receipt, the transaction, what production did, and what runs now."""

    receipt: dict[str, Any]
    transaction: dict[str, Any]
    observed: str
    expected: str | None = None
    ontology: Path | None = None
    enforcer: Path | None = None
    logged: Logged | None = None


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


def transaction_hash(tx: Mapping[str, Any]) -> str:
    """SHA-256 of the transaction in the decision log's exact canonical JSON (sorted keys, no
    whitespace, decimals exactly as written), so a logged transaction and the same transaction
    read from a file hash alike."""
    try:
        return sha256_hex(decision_log.dumps_exact(dict(tx)).encode("utf-8"))
    except (TypeError, ValueError) as e:
        raise InputError(
            f"the transaction cannot be written as JSON: {e}", code="diagnose.transaction"
        ) from e


def check_outcome(value: str | None, flag: str) -> str | None:
    if value is None:
        return None
    if value not in OUTCOMES:
        raise InputError(
            f"{flag}={value!r} is not an outcome: give APPROVE or REJECT", code="diagnose.bad_outcome"
        )
    return value


# --- the decision log --------------------------------------------------------------------------


def _deployment(store: Store, env: str, decided_at: str) -> dict[str, Any] | None:
    """The newest successful deployment (or rollback) of ``env`` at or before ``decided_at``."""
    for r in reversed(store.receipts()):
        if r.get("kind") not in ("deployment", "rollback") or r.get("env") != env:
            continue
        if r.get("event", "deploy") != "deploy":
            continue
        if ((r.get("gates") or {}).get("operational") or {}).get("status") != "PASS":
            continue
        if str(r.get("time", ""))[:19] > decided_at[:19]:
            continue
        found: dict[str, Any] = r
        return found
    return None


def read_logged_decision(store: Store, decision_id: str, env: str) -> Logged:
    """Decision ``decision_id`` of ``env``'s log, and where the A that served it was deployed from
    (``gates.operational.evidence.enforcer`` of the deployment receipt that switched to it)."""
    store.require()
    try:
        rid = int(decision_id)
    except ValueError:
        rid = 0
    if rid < 1:
        raise InputError(
            f"--decision-id={decision_id!r} is not a decision id (the X-Decision-Id a daemon returns, "
            "or the id `mu decisions` lists)",
            code="diagnose.bad_decision_id",
        )
    path = decision_log.db_path(store.home, env)
    conn = decision_log.connect(path, readonly=True)
    try:
        row = conn.execute(
            "SELECT id, decided_at, transaction_json, outcome, fired, enforcer_hash,"
            " generation_receipt_hash FROM decisions WHERE id = ?",
            (rid,),
        ).fetchone()
    except sqlite3.Error as e:
        raise InputError(
            f"cannot read the decision log {path}: {e}",
            code="decisions.unreadable",
            location=Location(file=str(path)),
        ) from e
    finally:
        conn.close()
    if row is None:
        raise InputError(
            f"no decision {rid} in the {env} decision log {path}",
            code="diagnose.unknown_decision",
            location=Location(file=str(path)),
            hint=f"`mu decisions --env={env}` lists the logged decisions and their ids",
        )
    _, decided_at, tx_json, outcome, fired, enforcer_hash, receipt_hash = row
    try:
        tx = json.loads(tx_json, parse_float=Decimal)
        fired_rules = json.loads(fired)
    except ValueError as e:
        raise InputError(
            f"decision {rid} in {path} is not readable JSON: {e}", code="decisions.corrupt"
        ) from e
    if not isinstance(tx, dict) or outcome not in OUTCOMES or not isinstance(fired_rules, list):
        raise InputError(f"decision {rid} in {path} is malformed", code="decisions.corrupt")
    dep = _deployment(store, env, str(decided_at))
    where = ((dep or {}).get("gates") or {}).get("operational", {}).get("evidence", {}).get("enforcer")
    return Logged(
        id=rid,
        env=env,
        decided_at=str(decided_at),
        transaction=tx,
        outcome=str(outcome),
        fired=tuple(str(r) for r in fired_rules),
        enforcer_hash=str(enforcer_hash),
        generation_receipt_hash=str(receipt_hash),
        deployed_enforcer=Path(where) if isinstance(where, str) else None,
        deployment_receipt_hash=dep["receipt_hash"] if dep else None,
    )


# --- check 1: the receipt -----------------------------------------------------------------------


def _trusted_keys(store: Store) -> dict[str, tuple[Path, Ed25519PublicKey]]:
    paths = [store.operator_public_key_path]
    trusted = store.keys_dir / "trusted"
    if trusted.is_dir():
        paths += sorted(trusted.glob("*.pub"))
    keys: dict[str, tuple[Path, Ed25519PublicKey]] = {}
    for p in paths:
        if p.is_file():
            try:
                key = load_public_key(p)
            except InputError:
                continue
            keys[key_id(key)] = (p, key)
    return keys


def _check_receipt(receipt: dict[str, Any], store: Store) -> Evidence:
    """Refuses (with a named error) a receipt nothing can be diagnosed against."""
    try:
        check_schema(receipt)
    except CheckFailed as e:
        raise InputError(
            f"the receipt is not well formed: {e.message}", code="diagnose.receipt_invalid"
        ) from e
    name = f"receipt {receipt['receipt_hash']}"
    kind = receipt["kind"]
    if kind != "generation":
        why = (
            "the line stopped at a gate, so no A was made that production could have run"
            if kind == "rejection"
            else "only a generation receipt binds hash(O) to hash(A)"
        )
        raise InputError(
            f"{name} is a {kind} receipt, not a generation receipt: {why}",
            code="diagnose.not_generation",
            hint="give the generation receipt of the A production ran "
            "(`mu receipt --deployment=ENV` names it)",
        )
    check_hash(receipt)  # CheckFailed receipt.hash: the receipt was altered
    keys = _trusted_keys(store)
    signed = [s["keyid"] for s in receipt["signatures"] if s["keyid"] in keys]
    if not signed:
        signers = ", ".join(sorted({str(s["keyid"]) for s in receipt["signatures"]}))
        raise CheckFailed(
            f"{name} is not signed by a key this store trusts (its operator key or "
            f"{store.keys_dir / 'trusted'}/*.pub); it is signed by {signers}",
            code="receipt.signature",
        )
    for kid in signed:
        try:
            check_signature(receipt, keys[kid][1])
        except CheckFailed as e:
            raise CheckFailed(
                f"{name}: the signature by {kid} ({keys[kid][0]}) does not verify",
                code="receipt.signature",
                hint="the receipt was not signed by that key, or it was altered",
            ) from e
    inputs, outputs = receipt.get("inputs"), receipt.get("outputs")
    onto = inputs.get("ontology_hash") if isinstance(inputs, dict) else None
    a = outputs.get("enforcer_hash") if isinstance(outputs, dict) else None
    if not is_sha256(onto) or not is_sha256(a):
        raise InputError(
            f"{name} does not record both hash(O) (inputs.ontology_hash) and hash(A) (outputs.enforcer_hash)",
            code="diagnose.receipt_incomplete",
        )
    in_ledger = store.find(receipt["receipt_hash"]) is not None
    latest = store.latest("generation")
    data = {"receipt": receipt["receipt_hash"], "signed_by": signed[0], "in_ledger": in_ledger}
    note = "" if in_ledger else "; it is not in this store's ledger"
    if latest is not None and latest["receipt_hash"] != receipt["receipt_hash"]:
        data["latest_generation"] = latest["receipt_hash"]
        note += f"; the store's latest generation is {latest['receipt_hash']}"
    return Evidence(
        "receipt",
        "pass",
        f"generation receipt {receipt['receipt_hash']} binds O {onto} to A {a}; signed by {signed[0]}{note}",
        data,
    )


# --- check 2: drift -----------------------------------------------------------------------------


def _fields_text(fields: Mapping[str, Mapping[str, object]]) -> str:
    return "; ".join(f"{name} {v.get('old')!r} → {v.get('new')!r}" for name, v in sorted(fields.items()))


def _drift(
    path: Path | None, now: LoadedOntology | None, receipted: str, policy: m.Policy | None, store: Store
) -> tuple[Evidence, m.Policy | None]:
    from finops_fabric.diffing import diff_policies
    from finops_fabric.rdf.reader import read_policy

    if path is None or now is None:
        return Evidence("drift", "skipped", "no --ontology given: O now was not compared"), None
    data: dict[str, Any] = {"ontology": str(path), "hash": now.hash, "receipted_hash": receipted}
    if now.hash == receipted:
        return Evidence("drift", "pass", f"O at {path} is the receipted O ({receipted})", data), None
    older = next(
        (
            r["receipt_hash"]
            for r in reversed(store.receipts("generation"))
            if (r.get("inputs") or {}).get("ontology_hash") == now.hash
        ),
        None,
    )
    data["older_receipt"] = older
    since = f" (it is the O of the older receipt {older}: reverted without a new receipt)" if older else ""
    detail = f"O at {path} ({now.hash}) is not the receipted O ({receipted}){since}"
    try:
        policy_now: m.Policy | None = read_policy(now.raw.triples)
    except CheckFailed as e:
        policy_now = None
        detail += f"; it does not read as a policy: {e.message}"
    if policy_now is not None and policy is not None:
        d = diff_policies(policy, policy_now)
        data["rules"] = {"added": d["added"], "removed": d["removed"], "changed": d["changed"]}
        parts = [f"{_short(c['rule'])} ({_fields_text(c['fields'])})" for c in d["changed"]]
        parts += [f"{_short(i)} added" for i in d["added"]] + [f"{_short(i)} removed" for i in d["removed"]]
        detail += ": " + (
            "; ".join(parts) if parts else "no rule changed (reference data or golden cases did)"
        )
    return Evidence("drift", "fail", detail, data), policy_now


# --- check 3: tampering -------------------------------------------------------------------------


def _receipted_with(store: Store, enforcer_hash: str) -> str | None:
    for r in reversed(store.receipts("generation")):
        if (r.get("outputs") or {}).get("enforcer_hash") == enforcer_hash:
            return str(r["receipt_hash"])
    return None


def _artifact_problems(
    files: dict[str, bytes], manifest: dict[str, Any] | None, receipt: dict[str, Any], other: str | None
) -> list[dict[str, Any]]:
    """Each artifact of A_prod that is not the receipted one. ``other``: the generation receipt
    whose A A_prod is (then a difference its own manifest vouches for is that A's, not an edit)."""
    outputs = receipt["outputs"]
    rules = {
        str(v["artifact"]): str(iri)
        for iri, v in (outputs.get("rules") or {}).items()
        if isinstance(v, dict) and isinstance(v.get("artifact"), str)
    }
    for a in (manifest or {}).get("artifacts", []):
        if isinstance(a, dict) and "rule" in a and "path" in a:
            rules.setdefault(str(a["path"]), str(a["rule"]))
    own = {p.artifact: p.problem for p in check_files(files, manifest)} if manifest is not None else {}
    listed = outputs.get("artifacts")
    expected: dict[str, str] = (
        {str(k): str(v) for k, v in listed.items()}
        if isinstance(listed, dict)
        else {a["path"]: a["sha256"] for a in (manifest or {}).get("artifacts", [])}
    )
    out: list[dict[str, Any]] = []
    for path in sorted((set(expected) | set(files)) - {MANIFEST}):
        want = expected.get(path)
        have = sha256_hex(files[path]) if path in files else None
        if want == have:
            continue
        if other is not None and path not in own:
            problem, how = "other_generation", f"as in the A of receipt {other}, not as in this receipt's A"
        elif have is None:
            problem, how = "missing", "deleted from A_prod"
        elif want is None:
            problem, how = "extra", "a file the receipted A does not have"
        elif own.get(path) == "changed":
            problem, how = (
                "edited",
                "its bytes differ from the receipted artifact and from A_prod's manifest: a hand edit",
            )
        else:
            problem, how = (
                "edited",
                "its bytes differ from the receipted artifact; A_prod's manifest was rewritten to match",
            )
        entry: dict[str, Any] = {
            "artifact": path,
            "problem": problem,
            "detail": how,
            "expected": want,
            "actual": have,
        }
        if path in rules:
            entry["rule"] = rules[path]
        out.append(entry)
    return out


def _tampering(
    root: Path | None, receipt: dict[str, Any], store: Store, logged: Logged | None
) -> tuple[Evidence, Enforcer | None, str | None, str]:
    """(the evidence, A_prod loaded when it is receipted, hash(A_prod), why it was not run)."""
    expected = str(receipt["outputs"]["enforcer_hash"])
    problems: list[dict[str, Any]] = []
    notes: list[str] = []
    data: dict[str, Any] = {"expected_enforcer_hash": expected}
    if logged is not None:
        data["logged_enforcer_hash"] = logged.enforcer_hash
        if logged.enforcer_hash != expected:
            problems.append(
                {
                    "artifact": None,
                    "problem": "logged_enforcer",
                    "detail": f"decision {logged.id} was made by A {logged.enforcer_hash}, not the receipted "
                    f"A {expected}",
                }
            )
        else:
            notes.append(f"decision {logged.id} was made by the receipted A {expected}")
    if root is None:
        if logged is None:
            return (
                Evidence("tampering", "skipped", "no --enforcer given: A_prod was not compared"),
                None,
                None,
                "",
            )
        where = logged.deployed_enforcer
        notes.append(
            f"the deployed A at {where} no longer exists, so only the logged hash was compared"
            if where is not None
            else f"no successful deployment of {logged.env} in the ledger names where its A came from"
        )
        data["problems"] = problems
        result = "fail" if problems else "pass"
        why = "; ".join([p["detail"] for p in problems] + notes)
        return Evidence("tampering", result, why, data), None, None, "A_prod is not available"
    data["enforcer"] = str(root)
    try:
        files = read_tree(root)
    except CheckFailed as e:
        problems.append({"artifact": None, "problem": "symlink", "detail": e.message})
        data["problems"] = problems
        return Evidence("tampering", "fail", e.message, data), None, None, "A_prod holds a symbolic link"
    listed = receipt["outputs"].get("artifacts")
    raw = files.get(MANIFEST)
    if raw is None and not (isinstance(listed, dict) and set(files) & set(listed)):
        raise InputError(
            f"{root} is not an enforcer: no manifest.json and none of the receipted A's artifacts",
            code="diagnose.not_an_enforcer",
            location=Location(file=str(root)),
        )
    manifest: dict[str, Any] | None = None
    actual = sha256_hex(raw) if raw is not None else None
    data["enforcer_hash"] = actual
    if raw is None:
        problems.append({"artifact": MANIFEST, "problem": "missing", "detail": "A_prod has no manifest.json"})
    else:
        try:
            manifest = parse_manifest(raw, str(root))
        except CheckFailed as e:
            problems.append({"artifact": MANIFEST, "problem": "manifest_edited", "detail": e.message})
    other = _receipted_with(store, actual) if actual is not None and actual != expected else None
    if actual is not None and actual != expected and manifest is not None:
        if other is not None:
            how = f"A_prod is the A of another generation receipt {other}, not of this one"
        elif manifest.get("ontology_hash") != receipt["inputs"]["ontology_hash"]:
            how = (
                f"A_prod was made from O {manifest.get('ontology_hash')} and no receipt in the ledger has it"
            )
        else:
            how = "manifest.json names the receipted O but was rewritten after generation"
        problems.append(
            {
                "artifact": MANIFEST,
                "problem": "enforcer_hash",
                "detail": f"hash(A_prod) is {actual}, the receipt records {expected}: {how}",
                "expected": expected,
                "actual": actual,
            }
        )
    problems += _artifact_problems(files, manifest, receipt, other)
    data["problems"] = problems
    if other is not None:
        data["deployed_receipt"] = other  # A_prod is exactly another receipted A
    data["artifacts_compared"] = len(files)
    runnable: Enforcer | None = None
    not_run = ""
    edited = [
        p for p in problems if p["problem"] in ("edited", "missing", "extra", "manifest_edited", "symlink")
    ]
    if not edited and actual is not None and (actual == expected or other is not None):
        try:
            runnable = load_enforcer(root)
        except FabricError as e:
            not_run = f"A_prod does not load: {e.message}"
    else:
        not_run = (
            "A_prod is not the A of any generation receipt; mu never runs generated code that fails "
            "verification"
        )
    if not problems:
        return (
            Evidence(
                "tampering",
                "pass",
                f"A_prod at {root} is exactly the receipted A: {len(files)} files match "
                f"outputs.artifacts and hash(A) = {expected}" + "".join(f"; {n}" for n in notes),
                data,
            ),
            runnable,
            actual,
            not_run,
        )
    named = [
        f"{p['artifact']} {p['problem']}" + (f" (rule {p['rule']})" if p.get("rule") else "")
        for p in problems
        if p["artifact"] not in (None, MANIFEST)
    ]
    heads = [p["detail"] for p in problems if p["artifact"] in (None, MANIFEST)]
    detail = f"A_prod at {root} is not the receipted A: " + "; ".join(heads + named)
    return Evidence("tampering", "fail", detail, data), runnable, actual, not_run


# --- checks 4 and 5: replay, and A against the interpreter ---------------------------------------


_GENERATOR_FAULTS = ("replay.build_failed",)


def _replay(
    receipt: dict[str, Any], store: Store, ontology: Path | None, progress: Progress
) -> tuple[Evidence, Regenerated | None]:
    try:
        ref = regenerate(receipt, store, ontology=ontology, progress=progress)
    except FabricError as e:
        result = "fail" if e.code in _GENERATOR_FAULTS else "unavailable"
        return Evidence("replay", result, f"{e.message} [{e.code}]", {"code": e.code}), None
    data = {
        "enforcer_hash": ref.enforcer_hash,
        "expected_enforcer_hash": ref.expected_enforcer_hash,
        "ontology_source": ref.ontology_source,
        "generator": dict(ref.generator),
        "artifacts": ref.comparison(),
    }
    gen = f"generator {ref.generator['id']} v{ref.generator['version']}"
    if ref.match:
        return (
            Evidence(
                "replay",
                "pass",
                f"replaying with the pinned {gen} from the {ref.ontology_source} reproduces hash(A) "
                f"{ref.expected_enforcer_hash} and all {len(ref.files)} artifacts",
                data,
            ),
            ref,
        )
    bad = [
        e["artifact"] + (f" (rule {e['rule']})" if e.get("rule") else "")
        for e in ref.differing + ref.missing + ref.extra
    ] or [MANIFEST]
    return (
        Evidence(
            "replay",
            "fail",
            f"replaying with the pinned {gen} from the {ref.ontology_source} gives hash(A) "
            f"{ref.enforcer_hash}, not the receipted {ref.expected_enforcer_hash}; "
            f"differing: {', '.join(bad)}",
            data,
        ),
        ref,
    )


def _receipted_policy(store: Store, receipted: str, now: LoadedOntology | None) -> m.Policy | None:
    """The receipted O's policy when the replay could not read it (e.g. the generator is not
    installed): from O_now if it is the receipted O, else the store's snapshot."""
    from finops_fabric.rdf.reader import read_policy

    try:
        if now is not None and now.hash == receipted:
            return read_policy(now.raw.triples)
        return read_policy(load_snapshot(store.get_object("ontology", receipted)).raw.triples)
    except FabricError:
        return None


def _decision_of(enforcer: Enforcer, tx: Mapping[str, Any]) -> dict[str, Any]:
    try:
        d = enforcer.decide(tx).to_dict()
    except Exception as e:  # generated code that throws is itself a finding
        return {"error": f"{type(e).__name__}: {e}", "enforcer_hash": enforcer.hash}
    return {
        "decision": d["decision"],
        "fired": [{"rule": f["rule"], "reason": str(f["reason"])} for f in d["fired"]],
        "notifications": [{"rule": n["rule"], "recipient": n["recipient"]} for n in d["notifications"]],
        "audit": [{"rule": a["rule"], "ledger": a["ledger"], "flags": list(a["flags"])} for a in d["audit"]],
        "enforcer_hash": enforcer.hash,
    }


def _outcome_dict(o: Outcome) -> dict[str, Any]:
    return {
        "decision": o.decision,
        "fired": [{"rule": r, "reason": why} for r, why in o.fired],
        "notifications": [{"rule": r, "recipient": to} for r, to in o.notifications],
        "audit": [{"rule": r, "ledger": led, "flags": list(flags)} for r, led, flags in o.audit],
    }


def _interpret(policy: m.Policy, tx: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return _outcome_dict(Interpreter(policy).decide(tx))
    except Exception as e:  # the oracle failing is reported, not hidden
        return {"error": f"{type(e).__name__}: {e}"}


def _fired(d: Mapping[str, Any]) -> str:
    rules = [_short(f["rule"]) for f in d.get("fired", [])]
    return f"fired {', '.join(rules)}" if rules else "no rule fired"


def _says(d: Mapping[str, Any]) -> str:
    return f"error ({d['error']})" if "error" in d else f"{d['decision']} ({_fired(d)})"


def _differential(
    a: dict[str, Any] | None, a_name: str, o: dict[str, Any] | None
) -> tuple[Evidence, str | None]:
    """(the evidence, d: the decision A and O agree on, or None)."""
    if a is None or o is None:
        missing = "no A could be run" if a is None else "the receipted O could not be read"
        return Evidence("differential", "unavailable", f"{missing}, so A and O were not compared"), None
    if "error" in a or "error" in o:
        result = "fail" if "error" in a and "error" not in o else "unavailable"
        return Evidence(
            "differential", result, f"{a_name}: {_says(a)}; the interpreter of O: {_says(o)}"
        ), None
    if comparable(a) == comparable(o):
        return (
            Evidence(
                "differential",
                "pass",
                f"{a_name} and the reference interpreter of the receipted O both decide {_says(a)}",
            ),
            str(a["decision"]),
        )
    ca, co = comparable(a), comparable(o)
    parts = []
    if ca[0] != co[0]:
        parts.append(f"{a_name} decides {a['decision']}, O decides {o['decision']}")
    only_a, only_o = sorted(set(ca[1]) - set(co[1])), sorted(set(co[1]) - set(ca[1]))
    if only_a:
        parts.append(f"fired only by A: {', '.join(only_a)}")
    if only_o:
        parts.append(f"fired only by O: {', '.join(only_o)}")
    if ca[2:] != co[2:]:
        parts.append("notifications or audit entries differ")
    data = {"a": a, "o": o, "fired_only_by_a": only_a, "fired_only_by_o": only_o}
    return Evidence(
        "differential", "fail", f"{a_name} disagrees with the reference interpreter: {'; '.join(parts)}", data
    ), None


def _production(case: Case, d: str | None, a: dict[str, Any] | None) -> Evidence:
    data: dict[str, Any] = {"observed": case.observed, "expected": case.expected, "decided": d}
    exp = f"; expected {case.expected}" if case.expected else ""
    if case.logged is not None and a is not None and "fired" in a:
        data["logged_fired"] = list(case.logged.fired)
        data["fired_as_logged"] = sorted(case.logged.fired) == sorted(f["rule"] for f in a["fired"])
    if d is None:
        return Evidence(
            "production",
            "unavailable",
            f"production observed {case.observed}{exp}; A and O do not agree on a decision to judge it by",
            data,
        )
    if case.observed != d:
        return Evidence(
            "production",
            "fail",
            f"production observed {case.observed}, but the receipted A and O both decide {d}{exp}",
            data,
        )
    return Evidence(
        "production", "pass", f"production observed {case.observed}, as A and O decide{exp}", data
    )


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
    if case.enforcer is not None and not case.enforcer.is_dir():
        raise InputError(
            f"no enforcer directory at {case.enforcer}",
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
    ev["tampering"], prod, prod_hash, not_run = _tampering(case.enforcer, case.receipt, store, case.logged)

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
    interpreted = _interpret(policy, tx) if policy is not None else None
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
        "ontology_now": _interpret(policy_now, tx) if policy_now is not None else None,
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
