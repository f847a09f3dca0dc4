"""`mu replay --receipt=R [--ontology=O] [--generator-version=V] [--sign-as=KEY] [--output=DIR]`:
regenerate A from the receipt's O snapshot and pinned generator in a clean place, and compare.

R is a receipt file or ``sha256:<hex>`` of a receipt in the store's ledger. A deployment (or
rollback) receipt is followed to the generation receipt whose A it deployed, and the output says
so; when that generation receipt is not in the ledger, the error names it.

Exit 0 when the replayed A is the receipted A exactly; 1 when it is not, or when a check
refused the replay (a rejection receipt, unpinned generator, another O, …); 2 when an input
cannot be read. ``--sign-as`` writes the auditor's own replay receipt, signed with that key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import Out, progress_printer
from finops_fabric.errors import CheckFailed

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _replay_receipt_path(ref: str, from_ledger: bool, out_receipt: str | None) -> Path:
    if out_receipt:
        return Path(out_receipt)
    if from_ledger:
        return Path(f"{ref.removeprefix('sha256:')[:16]}.replay.json")
    receipt = Path(ref)
    stem = receipt.name.removesuffix(".json")
    return receipt.with_name(f"{stem}.replay.json")


def _generation_to_replay(store: Any, receipt: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A deployment (or rollback) receipt binds no O to an A itself: it names the generation
    receipt whose A it deployed. That one is replayed (what ran is what the auditor asks about);
    the note says so. Any other receipt is replayed as it is (and refused if not a generation)."""
    from finops_fabric.lookup import generation_behind
    from finops_fabric.receipts import check_hash, check_schema

    if receipt.get("kind") not in ("deployment", "rollback"):
        return receipt, None
    check_schema(receipt)
    check_hash(receipt)  # follow only what the receipt really says
    gen = generation_behind(store, receipt)
    assert gen is not None
    note = (
        f"{receipt['kind']} receipt {receipt['receipt_hash']} deployed the A of generation receipt "
        f"{gen['receipt_hash']}; replaying that generation receipt (a deployment binds no O to an A "
        "itself: the generation receipt it names does)"
    )
    return gen, note


def _short(h: str) -> str:
    return h.removeprefix("sha256:")[:12]


def cmd_replay(args: argparse.Namespace) -> int:
    from finops_fabric.keys import load_private_key
    from finops_fabric.lookup import find_receipt
    from finops_fabric.replay import regenerate, sign_replay, write_enforcer
    from finops_fabric.store import Store

    store = Store.locate(args.home)
    found = find_receipt(store, args.receipt)
    auditor = load_private_key(Path(args.sign_as)) if args.sign_as else None
    out = Out(args.json)
    try:
        receipt, followed = _generation_to_replay(store, found.receipt)
        result = regenerate(
            receipt,
            store,
            ontology=Path(args.ontology) if args.ontology else None,
            generator_version=args.generator_version,
            progress=progress_printer(args),
        )
    except CheckFailed as e:
        doc: dict[str, Any] = {
            "match": False,
            "refused": e.to_dict(),
            "receipt": args.receipt,
            "replay_of": found.receipt.get("receipt_hash"),
        }
        if args.json:
            out.emit(doc, lambda: [])
        print(f"mu: replay of {args.receipt} refused [{e.code}]: {e}", file=sys.stderr)
        if e.hint:
            print(f"mu: hint: {e.hint}", file=sys.stderr)
        return 1

    doc = {
        **result.to_dict(),
        "receipt": args.receipt,
        "followed": followed,
        "output": None,
    }
    lines: list[str] = [followed] if followed else []
    if args.output:
        if result.match:
            doc["output"] = str(write_enforcer(result.files, Path(args.output)))
            lines.append(f"kept the replayed A at {args.output}")
        else:
            lines.append(f"the replayed A was NOT written to {args.output}: it is not the receipted A")
    if auditor is not None:
        path = _replay_receipt_path(args.receipt, found.source == "ledger", args.out_receipt)
        signed = sign_replay(result, store, auditor, path)
        sealed = signed.receipt
        doc.update(
            receipt_hash=sealed["receipt_hash"],
            replay_receipt=str(path),
            ledger=signed.in_ledger,
            ledger_note=signed.ledger_note,
        )
        lines.append(
            f"auditor replay receipt {sealed['receipt_hash']} written to {path} "
            f"(signed by key {sealed['signatures'][0]['keyid']}; {signed.ledger_note})"
        )

    def human() -> list[str]:
        gen = result.generator
        head = [
            f"{'MATCH' if result.match else 'MISMATCH'}: replayed A {result.enforcer_hash}",
            f"  receipt {result.receipt_hash} records A {result.expected_enforcer_hash}",
            f"  O {result.ontology_hash} from {result.ontology_source}",
            f"  generator {gen['id']} v{gen['version']} (source {gen['source_hash']})",
        ]
        if result.artifacts_listed:
            head.append(
                f"  artifacts: {len(result.matching)} identical, {len(result.differing)} differ, "
                f"{len(result.missing)} missing, {len(result.extra)} extra"
            )
        for kind, entries in (("differs", result.differing), ("missing", result.missing)):
            head += [
                f"  {kind:8} {e['artifact']}" + (f"  (rule {e['rule']})" if e.get("rule") else "")
                for e in entries
            ]
        head += [f"  extra    {e['artifact']}" for e in result.extra]
        return head + ["  " + line for line in lines]

    out.emit(doc, human)
    return 0 if result.match else 1


def register(cmd: Register) -> None:
    sp = cmd(
        "replay",
        cmd_replay,
        "regenerate A from a receipt's O snapshot with its pinned generator, in a clean place, and compare",
    )
    sp.add_argument(
        "--receipt",
        required=True,
        metavar="R",
        help="the generation receipt to replay: a file or sha256:<hex> from the ledger (a deployment "
        "receipt is followed to the generation receipt it deployed)",
    )
    sp.add_argument(
        "--ontology", metavar="O", help="replay from this O (its hash must be the receipt's) not the snapshot"
    )
    sp.add_argument(
        "--generator-version", metavar="V", help="must be the pinned version (kaizen compares versions)"
    )
    sp.add_argument("--sign-as", metavar="KEY", help="sign an auditor replay receipt with this private key")
    sp.add_argument(
        "--out-receipt", metavar="FILE", help="where to write the auditor receipt (default: <R>.replay.json)"
    )
    sp.add_argument("--output", metavar="DIR", help="keep the replayed A here (only when it matches)")
