"""`mu receipt`: receipts for auditors and for other tools.

    mu receipt show REF                                  a receipt, verified, in short
    mu receipt export RECEIPT [--format=json|dsse] [--key=KEY] [--output=FILE]
    mu receipt verify-dsse ENVELOPE --public-key=K
    mu receipt --deployment=ENV [--timestamp=T] [--wait=SECONDS]   what ENV runs, as a signed attestation

REF is ``sha256:<hex>`` (a receipt in the store's ledger) or a receipt file. ``show`` and
``export --format=json`` (the default) first check the receipt's hash and that a key this store
trusts signed it (exit 1 naming what does not hold, nothing written); ``show --json`` prints
the receipt itself, ``export`` writes it to ``--output`` (atomically) or stdout.
``export --format=dsse`` wraps the receipt in an in-toto Statement v1 inside a DSSE envelope
(see :mod:`finops_fabric.dsse`), signed with the store's operator key unless ``--key`` names
another private key. ``verify-dsse`` checks such an envelope with a public key: exit 0 when it
holds, 1 when a check says no, 2 for a usage error or an unreadable file. ``--deployment=ENV``
signs (and keeps in the ledger) an attestation of what ENV runs: now, asked of its daemon
(waiting up to ``--wait`` seconds for it), or as of ``--timestamp`` according to the ledger.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import action_options
from finops_fabric.errors import CheckFailed, InputError

ACTIONS = ("show", "export", "verify-dsse")
FORMATS = ("json", "dsse")

_USAGE_HINT = (
    "mu receipt show RECEIPT  |  "
    "mu receipt export RECEIPT [--format=json|dsse] [--key=KEY] [--output=FILE]  |  "
    "mu receipt verify-dsse ENVELOPE --public-key=K  (RECEIPT: sha256:<hex> from the ledger, or a file)"
)


def _usage(message: str) -> InputError:
    return InputError(f"mu receipt: {message}", code="cli.usage", hint=_USAGE_HINT)


def cmd_receipt(args: argparse.Namespace) -> int:
    if args.deployment is not None:
        if args.action is not None:
            raise _usage(f"give either an action ({', '.join(ACTIONS)}) or --deployment, not both")
        from finops_fabric.cli import Out
        from finops_fabric.daemon.client import deployment_state_lines, deployment_state_receipt
        from finops_fabric.store import Store

        receipt = deployment_state_receipt(
            Store.open(args.home), args.deployment, args.timestamp, wait=args.wait
        )
        Out(args.json).emit(receipt, lambda: deployment_state_lines(receipt))
        return 0
    if args.timestamp is not None or args.wait is not None:
        raise _usage("--timestamp and --wait go with --deployment=ENV")
    if args.action == "show":
        return _show(args)
    if args.action == "export":
        return _export(args)
    if args.action == "verify-dsse":
        return _verify(args)
    raise _usage(f"give an action ({', '.join(ACTIONS)}) or --deployment=ENV")


def _verified(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The receipt REF names and the trusted key ids whose signatures verified."""
    from finops_fabric.lookup import find_receipt, verify_trusted
    from finops_fabric.store import Store

    store = Store.locate(args.home).require()
    found = find_receipt(store, args.path)
    return found, verify_trusted(store, found.receipt)


def summary_lines(receipt: dict[str, Any]) -> list[str]:
    """A receipt in a few lines: what it is, what it binds, what it links to."""
    raw_inputs, raw_outputs = receipt.get("inputs"), receipt.get("outputs")
    inputs: dict[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {}
    outputs: dict[str, Any] = raw_outputs if isinstance(raw_outputs, dict) else {}
    gen = inputs.get("generator")
    generator = (
        f"{gen.get('id')} v{gen.get('version')} (source {gen.get('source_hash')})"
        if isinstance(gen, dict)
        else None
    )
    lines = [f"{receipt.get('kind')} receipt {receipt.get('receipt_hash')}"]
    for label, value in (
        ("time", receipt.get("time")),
        ("env", receipt.get("env")),
        ("hash(O)", inputs.get("ontology_hash")),
        ("hash(A)", outputs.get("enforcer_hash")),
        ("generator", generator),
        ("generation receipt", inputs.get("generation_receipt_hash")),
        ("previous", receipt.get("previous_receipt_hash") or "none (the first receipt)"),
    ):
        if value:
            lines.append(f"  {label + ':':20}{value}")
    gates = receipt.get("gates")
    if isinstance(gates, dict) and gates:
        lines.append(
            "  gates:              "
            + "  ".join(f"{k} {v.get('status')}" for k, v in gates.items() if isinstance(v, dict))
        )
    return lines


def _show(args: argparse.Namespace) -> int:
    from finops_fabric.cli import Out

    if args.format is not None or args.key is not None or args.output is not None:
        raise _usage("show takes only REF; use export for --format, --key and --output")
    found, signed = _verified(args)
    receipt = found.receipt
    where = "the ledger" if found.source == "ledger" else found.source
    Out(args.json).emit(
        receipt,
        lambda: [
            *summary_lines(receipt),
            f"  verified:           hash holds; signed by {', '.join(signed)} (from {where})",
        ],
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    fmt = args.format or ("dsse" if args.key is not None else "json")  # --key signs an envelope
    if fmt not in FORMATS:
        raise _usage(f"unknown --format={fmt}; the export formats are: {', '.join(FORMATS)}")
    if fmt == "json":
        if args.key is not None:
            raise _usage("--key signs a DSSE envelope; a receipt exported as json keeps its own signatures")
        return _export_json(args)
    return _export_dsse(args)


def _export_json(args: argparse.Namespace) -> int:
    from finops_fabric.cli import Out
    from finops_fabric.receipts import write_json_atomic

    found, signed = _verified(args)
    receipt = found.receipt
    if args.output is None:
        sys.stdout.write(json.dumps(receipt, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return 0
    written = write_json_atomic(Path(args.output), receipt)
    doc: dict[str, Any] = {
        "output": str(written),
        "format": "json",
        "receipt_hash": receipt["receipt_hash"],
        "kind": receipt["kind"],
        "signed_by": signed,
        "source": found.source,
    }
    Out(args.json).emit(
        doc,
        lambda: [
            f"wrote {written}: {receipt['kind']} receipt {receipt['receipt_hash']} "
            f"(hash holds; signed by {', '.join(signed)})"
        ],
    )
    return 0


def _export_dsse(args: argparse.Namespace) -> int:
    from finops_fabric.cli import Out
    from finops_fabric.dsse import PAYLOAD_TYPE, envelope, subjects
    from finops_fabric.keys import key_id, load_private_key
    from finops_fabric.lookup import find_receipt, is_hash_ref
    from finops_fabric.receipts import write_json_atomic
    from finops_fabric.store import Store

    store = Store.locate(args.home)
    receipt = find_receipt(store, args.path).receipt
    if args.key is not None:
        private_key = load_private_key(Path(args.key))
    else:
        private_key = store.require().operator_private_key()
    if is_hash_ref(args.path):
        from finops_fabric.receipts import check_hash

        check_hash(receipt)
    env = envelope(receipt, private_key)
    kid = key_id(private_key.public_key())
    n_subjects = len(subjects(receipt))
    if args.output is None:
        sys.stdout.write(json.dumps(env, indent=2, sort_keys=True) + "\n")
        return 0
    written = write_json_atomic(Path(args.output), env)
    doc: dict[str, Any] = {
        "output": str(written),
        "format": "dsse",
        "payloadType": PAYLOAD_TYPE,
        "keyid": kid,
        "receipt_hash": receipt["receipt_hash"],
        "kind": receipt["kind"],
        "subjects": n_subjects,
    }
    Out(args.json).emit(
        doc,
        lambda: [
            f"wrote {written}: DSSE envelope with an in-toto Statement v1 of {receipt['kind']} receipt "
            f"{receipt['receipt_hash']} ({n_subjects} subject{'s' if n_subjects != 1 else ''}), "
            f"signed by key {kid}"
        ],
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from finops_fabric.cli import Out
    from finops_fabric.dsse import load_envelope, verify_envelope
    from finops_fabric.keys import key_id, load_public_key
    from finops_fabric.receipts import check_signature

    env = load_envelope(Path(args.path))
    public_key = load_public_key(Path(args.public_key))
    kid = key_id(public_key)
    try:
        stmt = verify_envelope(env, public_key)
    except CheckFailed as e:
        if args.json:
            Out(True).emit({"verified": False, "error": e.to_dict()}, lambda: [])
            return 1
        raise
    receipt: dict[str, Any] = stmt["predicate"]
    try:
        check_signature(receipt, public_key)
        receipt_signed = True
    except CheckFailed:
        receipt_signed = False
    doc: dict[str, Any] = {
        "verified": True,
        "keyid": kid,
        "payloadType": env["payloadType"],
        "predicateType": stmt["predicateType"],
        "receipt_hash": receipt["receipt_hash"],
        "kind": receipt["kind"],
        "subjects": stmt["subject"],
        "receipt_signed_by_key": receipt_signed,
    }

    def human() -> list[str]:
        inner = (
            "the receipt inside is also signed by this key"
            if receipt_signed
            else "the receipt inside is not signed by this key (check it with its signer's key)"
        )
        return [
            f"verified: DSSE envelope signed by key {kid}, an in-toto Statement v1 of {receipt['kind']} "
            f"receipt {receipt['receipt_hash']} with {len(stmt['subject'])} subject(s)",
            inner,
        ]

    Out(args.json).emit(doc, human)
    return 0


def register(cmd: Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]) -> None:
    sp = cmd(
        "receipt",
        cmd_receipt,
        "show or export a receipt by hash or file (verified), export it as a signed in-toto/DSSE "
        "attestation, verify one; --deployment=ENV: a signed attestation of what ENV runs",
    )
    sp.add_argument(
        "--deployment",
        metavar="ENV",
        help="sign an attestation receipt of what ENV runs (kept in the ledger)",
    )
    sp.add_argument(
        "--timestamp", metavar="T", help="with --deployment: what ran at this ISO 8601 time, from the ledger"
    )
    sp.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --deployment: wait this long for ENV's daemon to answer (default 10)",
    )
    actions = sp.add_subparsers(dest="action", metavar="ACTION", parser_class=type(sp))
    sh = actions.add_parser(
        "show",
        help="a receipt (sha256:<hex> from the ledger, or a file), its hash and signature verified",
        description="a receipt (sha256:<hex> from the ledger, or a file), its hash and signature "
        "verified; --json prints the receipt itself",
    )
    sh.add_argument("path", metavar="RECEIPT", help="sha256:<hex> of a receipt in the ledger, or a file")
    sh.set_defaults(format=None, key=None, output=None)
    action_options(sh)
    ex = actions.add_parser(
        "export",
        help="write a receipt (verified) as JSON, or wrap it in a signed in-toto/DSSE envelope",
        description="write a receipt (sha256:<hex> from the ledger, or a file; verified) as JSON, "
        "or wrap it in an in-toto Statement v1 inside a signed DSSE envelope (--format=dsse)",
    )
    ex.add_argument("path", metavar="RECEIPT", help="sha256:<hex> of a receipt in the ledger, or a file")
    ex.add_argument(
        "--format",
        default=None,
        metavar="FORMAT",
        help="json (the receipt itself; the default) or dsse (the default with --key)",
    )
    ex.add_argument(
        "--key", metavar="KEY", help="dsse: private key to sign with (default: the store's operator key)"
    )
    ex.add_argument("--output", metavar="FILE", help="write here (default: stdout)")
    action_options(ex)
    ve = actions.add_parser(
        "verify-dsse",
        help="verify a DSSE envelope made by `mu receipt export` with the signer's public key",
        description="verify a DSSE envelope made by `mu receipt export` with the signer's public key",
    )
    ve.add_argument("path", metavar="ENVELOPE", help="the DSSE envelope (JSON file)")
    ve.add_argument("--public-key", required=True, metavar="K", help="the signer's public key (PEM)")
    action_options(ve)
