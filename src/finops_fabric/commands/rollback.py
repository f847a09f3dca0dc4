"""`mu rollback --to-receipt=R --target=ENV [--now] [--wait=60] [--receipt=FILE]`: restore exactly
the A of an earlier receipt and deploy it.

R is a receipt file or a receipt hash in the store's ledger: a generation receipt, or a
deployment/rollback receipt (whose generation receipt is followed). A is rebuilt from the
store's verified blob snapshot (the receipt's ``outputs.artifacts``) or, when that is gone,
regenerated with the receipt's pinned generator (``replay.regenerate``); either way it must
hash to the receipt's ``outputs.enforcer_hash``. It is written atomically to
``<store>/enforcers/<hex>/`` and deployed the usual way (boot, health check, atomic switch,
only changed rules restarted) with a ``rollback`` receipt.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import progress_printer
from finops_fabric.commands.deploy import add_deploy_options, finish
from finops_fabric.errors import CheckFailed, FabricError

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _generation_receipt(store: Any, ref: str) -> dict[str, Any]:
    from finops_fabric.lookup import find_receipt, generation_behind
    from finops_fabric.receipts import verify_receipt

    receipt = find_receipt(store, ref, flag="to-receipt").receipt
    verify_receipt(receipt, store.operator_public_key())
    receipt = generation_behind(store, receipt) or receipt
    if receipt.get("kind") != "generation":
        raise CheckFailed(
            f"receipt {receipt.get('receipt_hash')} is a {receipt.get('kind')} receipt; roll back to a "
            "generation (or deployment) receipt",
            code="rollback.kind",
        )
    if store.find(receipt["receipt_hash"]) is None:
        raise CheckFailed(
            f"receipt {receipt['receipt_hash']} is not in this store's ledger", code="rollback.no_receipt"
        )
    return receipt


def restore_enforcer(
    store: Any, receipt: dict[str, Any], progress: Callable[[str], None]
) -> tuple[Path, str]:
    """Write the receipt's A to ``<store>/enforcers/<hex>/`` (verified); return (path, source)."""
    from finops_fabric.canonical import is_sha256, sha256_hex
    from finops_fabric.enforcer import verify_files
    from finops_fabric.replay import regenerate, write_enforcer

    expected = (receipt.get("outputs") or {}).get("enforcer_hash")
    if not is_sha256(expected):
        raise CheckFailed(
            f"receipt {receipt['receipt_hash']} names no enforcer hash", code="rollback.no_enforcer"
        )
    target = store.home / "enforcers" / str(expected).removeprefix("sha256:")
    if target.is_dir():
        try:
            if verify_files(target)[2] == expected:
                return target, "already restored"
        except FabricError:
            pass  # damaged: rebuild it below
    files: dict[str, bytes] | None = None
    source = "store snapshot"
    listing = (receipt.get("outputs") or {}).get("artifacts")
    if isinstance(listing, dict):
        try:
            files = store.get_tree(listing)
        except FabricError as exc:
            progress(f"snapshot unusable ({exc}); regenerating with the pinned generator")
    if files is None:
        source = "regenerated with the pinned generator"
        result = regenerate(receipt, store, progress=progress, check_store=False)
        if not result.match:
            raise CheckFailed(
                f"regenerating from receipt {receipt['receipt_hash']} gave {result.enforcer_hash}, "
                f"not {expected}; the exact A cannot be restored",
                code="rollback.mismatch",
            )
        files = result.files
    if sha256_hex(files["manifest.json"]) != expected:
        raise CheckFailed(f"restored A does not hash to {expected}", code="rollback.mismatch")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_enforcer(files, target)
    if verify_files(target)[2] != expected:
        raise CheckFailed(f"restored A at {target} does not hash to {expected}", code="rollback.mismatch")
    return target, source


def cmd_rollback(args: argparse.Namespace) -> int:
    from finops_fabric.audit import require_verified_ledger
    from finops_fabric.daemon.client import post_deployment
    from finops_fabric.daemon.environments import check_env
    from finops_fabric.store import Store

    env = check_env(args.target)
    store = Store.open(args.home)
    # the receipt rolled back to comes from the ledger: a ledger that does not verify is refused
    require_verified_ledger(store, f"mu rollback of {env} is refused")
    progress = progress_printer(args)
    receipt = _generation_receipt(store, args.to_receipt)
    path, source = restore_enforcer(store, receipt, progress)
    status, doc = post_deployment(
        store,
        env,
        path,
        receipt["receipt_hash"],
        kind="rollback",
        now=args.now,
        wait=args.wait,
        extra={"rollback_to": receipt["receipt_hash"]},
        progress=progress,
    )
    doc["restored_from"] = source
    doc["enforcer_path"] = str(path)
    return finish(args, status, doc, verb="rolled back")


def register(cmd: Register) -> None:
    sp = cmd(
        "rollback", cmd_rollback, "restore exactly the A of an earlier receipt (hash-verified) and deploy it"
    )
    sp.add_argument("--to-receipt", required=True, metavar="R", help="receipt file or receipt hash")
    add_deploy_options(sp)
