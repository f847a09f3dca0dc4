"""The inputs of a diagnosis: the transaction and outcomes given, a decision of the daemon's
decision log, and check 1: the generation receipt R is one this store can diagnose against."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finops_fabric.canonical import is_sha256, sha256_hex
from finops_fabric.daemon import decision_log
from finops_fabric.diagnosis.case import OUTCOMES, Evidence, Logged, Served
from finops_fabric.enforcer import MANIFEST
from finops_fabric.errors import CheckFailed, FabricError, InputError, Location
from finops_fabric.lookup import verify_trusted
from finops_fabric.receipts import check_schema
from finops_fabric.store import Store


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
    from finops_fabric.daemon.runtime import successful_deployments

    return next(
        (r for r in successful_deployments(store, env) if str(r.get("time", ""))[:19] <= decided_at[:19]),
        None,
    )


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
    from finops_fabric.storage import external_storage

    sqlite_path = decision_log.db_path(store.home, env)
    path = str(sqlite_path)
    storage = external_storage(store.home, env)  # environments.ENV.database of config.json
    if storage is not None:
        path = storage.where
        with storage:
            try:
                rows = storage.decisions(decision_id=rid)
            except ValueError as e:
                raise InputError(
                    f"decision {rid} in {storage.where} is not readable JSON: {e}", code="decisions.corrupt"
                ) from e
    else:
        rows = _sqlite_decision(sqlite_path, rid)
    if not rows:
        raise InputError(
            f"no decision {rid} in the {env} decision log {path}",
            code="diagnose.unknown_decision",
            location=Location(file=str(path)),
            hint=f"`mu decisions --env={env}` lists the logged decisions and their ids",
        )
    row = rows[0]
    tx, outcome, fired_rules = row["transaction"], row["outcome"], row["fired"]
    decided_at, enforcer_hash, receipt_hash = (
        row["decided_at"],
        row["enforcer_hash"],
        row["generation_receipt_hash"],
    )
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


# --- the A that served a logged decision ----------------------------------------------------------


def _differing(files: dict[str, bytes], other: dict[str, bytes]) -> list[str]:
    return sorted(p for p in set(files) | set(other) if files.get(p) != other.get(p))


def _source_copy(logged: Logged, served: dict[str, bytes] | None) -> tuple[dict[str, Any], str | None]:
    """How the directory (or archive) A was deployed from compares with what served: data, and
    a note when it differs. The daemon verified that copy when it deployed it and runs it from
    memory (and from the store's copy after a restart), never from that directory again."""
    from finops_fabric.archive import read_enforcer_files

    where = logged.deployed_enforcer
    if where is None:
        return {}, None
    data: dict[str, Any] = {"path": str(where)}
    try:
        files = read_enforcer_files(where)
    except FabricError as e:
        data["readable"] = False
        return data, (
            f"the directory A was deployed from, {where}, is gone or unreadable now ({e.message}); "
            "the daemon does not run it"
        )
    data["enforcer_hash"] = sha256_hex(files[MANIFEST]) if MANIFEST in files else None
    if served is None:
        data["matches"] = data["enforcer_hash"] == logged.enforcer_hash
        if data["matches"]:
            return data, None
        return data, (
            f"note: the directory A was deployed from, {where}, now holds A {data['enforcer_hash']}, not "
            f"the logged A; the daemon does not run it"
        )
    changed = _differing(files, served)
    data["matches"], data["changed"] = not changed, changed
    if not changed:
        return data, None
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return data, (
        f"note: the directory A was deployed from, {where}, has changed since the deployment ({shown}); "
        "the daemon does not run it (it runs the copy it verified at deployment), so this is not what "
        "decided"
    )


def served_enforcer(store: Store, logged: Logged) -> Served:
    """The A that served decision ``logged``: the store's copy of the A with the logged hash, the
    one the daemon verified at deployment (every artifact against the generation receipt) and
    boots from after a restart. Falls back to the directory it was deployed from only when that
    directory is still exactly the logged A."""
    from finops_fabric.daemon.runtime import generation_receipt_for
    from finops_fabric.enforcer import check_files, parse_manifest

    name = f"the daemon's copy of A {logged.enforcer_hash} (the store's snapshot it boots from)"
    notes: list[str] = []
    files: dict[str, bytes] | None = None
    gen = generation_receipt_for(store, logged.enforcer_hash)
    listing = (gen.get("outputs") or {}).get("artifacts") if gen is not None else None
    data: dict[str, Any] = {"generation_receipt": gen["receipt_hash"] if gen is not None else None}
    if isinstance(listing, dict):
        try:
            files = store.get_tree(listing)
        except CheckFailed as e:
            notes.append(
                f"WARNING: the store's copy of A {logged.enforcer_hash} does not verify ({e.message}): the "
                "store was changed outside mu and needs its own investigation (`mu audit-trail`); the "
                "daemon verified the A it deployed, and the decision log says it was this A"
            )
        except InputError as e:
            notes.append(f"the store's copy of A {logged.enforcer_hash} is gone ({e.message})")
    else:
        notes.append(f"no generation receipt in the ledger lists the artifacts of A {logged.enforcer_hash}")
    source, note = _source_copy(logged, files)
    if (
        files is None
        and logged.deployed_enforcer is not None
        and source.get("enforcer_hash") == logged.enforcer_hash
    ):
        from finops_fabric.archive import read_enforcer_files

        candidate = read_enforcer_files(logged.deployed_enforcer)
        try:
            if not check_files(candidate, parse_manifest(candidate[MANIFEST], str(logged.deployed_enforcer))):
                files, name = candidate, f"the directory A was deployed from, {logged.deployed_enforcer}"
                notes.append(f"it is still exactly the logged A {logged.enforcer_hash}, so it was compared")
        except CheckFailed:
            pass
    elif note is not None:
        notes.append(note)
    if files is None:
        notes.append("only the logged hash was compared")
    if source:
        data["source_copy"] = source
    return Served(name=name, files=files, notes=tuple(notes), data=data)


# --- check 1: the receipt -----------------------------------------------------------------------


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
    signed = verify_trusted(store, receipt)  # CheckFailed: the receipt was altered, or not signed by us
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


def _sqlite_decision(path: Path, rid: int) -> list[dict[str, Any]]:
    conn = decision_log.connect(path, readonly=True)
    try:
        rows = decision_log.query(conn, decision_id=rid)
    except sqlite3.Error as e:
        raise InputError(
            f"cannot read the decision log {path}: {e}",
            code="decisions.unreadable",
            location=Location(file=str(path)),
        ) from e
    except ValueError as e:
        raise InputError(
            f"decision {rid} in {path} is not readable JSON: {e}", code="decisions.corrupt"
        ) from e
    finally:
        conn.close()
    return rows
