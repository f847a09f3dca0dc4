"""`mu receipt`: receipts for other tools.

    mu receipt export --format=dsse RECEIPT [--key=KEY] [--output=FILE]
    mu receipt verify-dsse ENVELOPE --public-key=K
    mu receipt --deployment=ENV [--timestamp=T] [--wait=SECONDS]

``export`` wraps a receipt in an in-toto Statement v1 inside a DSSE envelope (see
:mod:`finops_fabric.dsse`), signed with the store's operator key unless ``--key`` names
another private key; the envelope goes to ``--output`` (written atomically) or to stdout.
``verify-dsse`` checks such an envelope with a public key: exit 0 when it holds, 1 when a
check says no, 2 for a usage error or an unreadable file. ``--deployment=ENV`` signs (and keeps
in the ledger) an attestation of what ENV runs: now, asked of its daemon (waiting up to
``--wait`` seconds for it), or as of ``--timestamp`` according to the ledger.
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

ACTIONS = ("export", "verify-dsse")
FORMATS = ("dsse",)

_USAGE_HINT = (
    "mu receipt export --format=dsse RECEIPT [--key=KEY] [--output=FILE]  |  "
    "mu receipt verify-dsse ENVELOPE --public-key=K"
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
    if args.action == "export":
        return _export(args)
    if args.action == "verify-dsse":
        return _verify(args)
    raise _usage(f"give an action ({', '.join(ACTIONS)}) or --deployment=ENV")


def _export(args: argparse.Namespace) -> int:
    from finops_fabric.cli import Out
    from finops_fabric.dsse import PAYLOAD_TYPE, envelope, subjects
    from finops_fabric.keys import key_id, load_private_key
    from finops_fabric.receipts import load_receipt, write_json_atomic
    from finops_fabric.store import Store

    fmt = args.format
    if fmt not in FORMATS:
        raise _usage(f"unknown --format={fmt}; the one export format is: {', '.join(FORMATS)}")
    receipt = load_receipt(Path(args.path))
    if args.key is not None:
        private_key = load_private_key(Path(args.key))
    else:
        private_key = Store.locate(args.home).require().operator_private_key()
    env = envelope(receipt, private_key)
    kid = key_id(private_key.public_key())
    n_subjects = len(subjects(receipt))
    if args.output is None:
        sys.stdout.write(json.dumps(env, indent=2, sort_keys=True) + "\n")
        return 0
    written = write_json_atomic(Path(args.output), env)
    doc: dict[str, Any] = {
        "output": str(written),
        "format": fmt,
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
        "export a receipt as a signed in-toto/DSSE attestation, or verify one; "
        "--deployment=ENV: a signed attestation of what ENV runs",
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
    ex = actions.add_parser(
        "export",
        help="wrap RECEIPT in an in-toto Statement v1 inside a signed DSSE envelope",
        description="wrap RECEIPT in an in-toto Statement v1 inside a signed DSSE envelope",
    )
    ex.add_argument("path", metavar="RECEIPT", help="the receipt to export (JSON file)")
    ex.add_argument("--format", default="dsse", metavar="FORMAT", help="export format: dsse (the only one)")
    ex.add_argument(
        "--key", metavar="KEY", help="private key to sign with (default: the store's operator key)"
    )
    ex.add_argument("--output", metavar="FILE", help="write the envelope here (default: stdout)")
    action_options(ex)
    ve = actions.add_parser(
        "verify-dsse",
        help="verify a DSSE envelope made by `mu receipt export` with the signer's public key",
        description="verify a DSSE envelope made by `mu receipt export` with the signer's public key",
    )
    ve.add_argument("path", metavar="ENVELOPE", help="the DSSE envelope (JSON file)")
    ve.add_argument("--public-key", required=True, metavar="K", help="the signer's public key (PEM)")
    action_options(ve)
