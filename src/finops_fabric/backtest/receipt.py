"""The backtest receipt: a signed record in the store's ledger of what a back-test compared, on
which data, and what it counted.

It binds hash(O_new) and hash(A_new), the enforcers replayed (the old side's, or every enforcer
that made the logged history), the data set (the file's SHA-256, or the decision-log range with
the log's tree head) and the counts, plus the hash of the whole report document. An approver
can then sign hash(O_new) knowing it (`mu approve --evidence=RECEIPT`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finops_fabric.canonical import canonical_json, is_sha256, sha256_hex
from finops_fabric.errors import CheckFailed, InputError, Location
from finops_fabric.store import Store

KIND = "backtest"
COUNT_KEYS = (
    "rows",
    "unreadable_count",
    "flips",
    "changed_fired",
    "changed_effects",
    "changed_rows",
    "amount_flipped",
    "by_rule",
)


def report_hash(doc: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json({k: v for k, v in doc.items() if k != "receipt_hash"}))


def receipt_body(doc: Mapping[str, Any]) -> dict[str, Any]:
    new = doc["new"]
    if doc["mode"] == "file":
        replayed = sorted({doc["old"]["enforcer_hash"], new["enforcer_hash"]})
        old: dict[str, Any] = {
            k: doc["old"][k] for k in ("ontology_hash", "enforcer_hash", "language", "generator")
        }
    else:
        replayed = sorted(e["enforcer_hash"] for e in doc["old"]["enforcers"])
        old = {"enforcers": doc["old"]["enforcers"]}
    return {
        "kind": KIND,
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "inputs": {
            "new_ontology_hash": new["ontology_hash"],
            "new_enforcer_hash": new["enforcer_hash"],
            "new_language": new["language"],
            "new_generator": new["generator"],
            "old": old,
            "enforcers_replayed": replayed,
            "data": doc["data"],
        },
        "counts": {k: doc[k] for k in COUNT_KEYS},
        "reproducible": doc["reproducible"],
        "checked_by": doc["checked_by"],
        "report_hash": report_hash(doc),
    }


def append_receipt(store: Store, doc: Mapping[str, Any]) -> dict[str, Any]:
    return store.append(receipt_body(doc))


def evidence_record(store: Store, ref: str, ontology_hash: str) -> dict[str, Any]:
    """What an approval records of a backtest receipt (a file, or ``sha256:…`` in the ledger):
    the receipt must be a verified backtest receipt of this store's ledger, about this O."""
    from finops_fabric.receipts import check_hash, check_signature, load_receipt

    if is_sha256(ref):
        receipt = store.require().find(ref)
        if receipt is None:
            raise InputError(f"no receipt {ref} in the store's ledger", code="approve.evidence_missing")
        where = ref
    else:
        receipt = load_receipt(Path(ref))
        where = ref
    check_hash(receipt)
    if receipt.get("kind") != KIND:
        raise InputError(
            f"{where} is a {receipt.get('kind')} receipt, not a backtest receipt (`mu backtest`)",
            code="approve.not_backtest",
            location=Location(file=where),
        )
    stored = store.require().find(str(receipt["receipt_hash"]))
    if stored is None or stored.get("receipt_hash") != receipt["receipt_hash"]:
        raise CheckFailed(
            f"backtest receipt {receipt['receipt_hash']} is not in this store's ledger",
            code="approve.evidence_unknown",
            location=Location(file=where),
        )
    check_signature(receipt, store.operator_public_key())
    inputs = receipt.get("inputs") or {}
    if inputs.get("new_ontology_hash") != ontology_hash:
        raise CheckFailed(
            f"the backtest receipt {receipt['receipt_hash']} is about O {inputs.get('new_ontology_hash')}, "
            f"not this O {ontology_hash}: an approval must be signed knowing what this exact O does",
            code="approve.evidence_mismatch",
            location=Location(file=where),
        )
    counts = receipt.get("counts") or {}
    return {
        "kind": KIND,
        "receipt_hash": receipt["receipt_hash"],
        "new_ontology_hash": ontology_hash,
        "new_enforcer_hash": inputs.get("new_enforcer_hash"),
        "data": (inputs.get("data") or {}).get("kind"),
        "rows": counts.get("rows"),
        "flips": counts.get("flips"),
        "reproducible": receipt.get("reproducible"),
    }
