"""`mu approve` and `mu roster`: compliance signs hash(O), or an override of one invariant, and
keeps the roster of who may.

    mu roster init --member=NAME=NAME.pub [--member=…] --key=NAME.key   # version 1, signed by a member
    mu roster show                                                      # the current (verified) roster
    mu roster add --name=NAME --public-key=NAME.pub --key=MEMBER.key    # version n+1, signed by a member of n
    mu roster remove --keyid=ID --key=MEMBER.key
    mu approve --ontology=O --key=MEMBER.key [--override=INVARIANT] [--output=FILE] [--impact=IMPACT.json]

An approval is written to ``--output`` (default ``<12 hex of hash(O)>[.<invariant>].approval.json``
in the current directory) and kept in the store's ledger. Exit 0 done; 1 the key is not on the
roster (or the roster chain is broken); 2 bad input (unknown invariant, unreadable key or O).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import Out, action_options
from finops_fabric.errors import InputError

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _home(args: argparse.Namespace) -> Path:
    from finops_fabric.store import Store

    return Store.open(args.home).home


def _check_writable(output: Path) -> None:
    import os

    from finops_fabric.errors import InputError, Location

    parent = output.parent if str(output.parent) else Path(".")
    if output.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(
            f"cannot write the approval to {output}: "
            + ("it is a directory" if output.is_dir() else f"{parent} is not a writable directory"),
            code="fabric.file_unwritable",
            location=Location(file=str(output)),
            hint="nothing was approved; choose another --output",
        )


def cmd_approve(args: argparse.Namespace) -> int:
    from finops_fabric.approvals import approval_file_name, approve, load_roster, verify_approval
    from finops_fabric.keys import load_private_key
    from finops_fabric.pipeline import load_ontology
    from finops_fabric.receipts import write_json_atomic

    home = _home(args)
    key = load_private_key(Path(args.key))
    onto = load_ontology(Path(args.ontology))
    output = Path(args.output) if args.output else Path.cwd() / approval_file_name(onto.hash, args.override)
    impact = None
    if args.impact:
        from finops_fabric.analysis.attest import impact_record

        impact = impact_record(Path(args.impact), onto.hash)
    evidence = None
    if args.evidence:
        from finops_fabric.backtest.receipt import evidence_record
        from finops_fabric.store import Store

        evidence = [evidence_record(Store.open(args.home), ref, onto.hash) for ref in args.evidence]
    _check_writable(output)  # before the ledger records anything: nothing half-written
    doc = approve(
        home,
        onto.hash,
        key,
        override=args.override,
        sources=[f.name for f in onto.files],
        impact=impact,
        evidence=evidence,
    )
    # read back exactly what was recorded, as any later check will
    approval = verify_approval(doc, load_roster(home), ontology_hash=onto.hash, override=args.override)
    write_json_atomic(output, doc)
    out = {**approval.to_dict(), "file": str(output), "roster_version": doc["roster_version"]}
    if impact is not None:
        out["impact"] = impact
    if evidence is not None:
        out["evidence"] = evidence
    what = f"an override of invariant {args.override!r} for" if args.override else "approval of"
    knowing = (
        [f"knowing its impact {impact['hash']}: {impact['regions']} region(s) of changed outcomes"]
        if impact is not None
        else []
    )
    knowing += [
        f"knowing backtest {e['receipt_hash']}: {e['rows']:,} row(s), flips {e['flips']}"
        for e in evidence or []
    ]
    Out(args.json).emit(
        out,
        lambda: [
            f"{approval.signer} signed {what} O {onto.hash}",
            *knowing,
            f"approval {approval.approval_hash} written to {output} and kept in the ledger",
        ],
    )
    return 0


def _member_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise InputError(f"--member={text!r}: write NAME=PUBLIC_KEY_FILE", code="cli.usage")
    return name, Path(path)


def _roster_lines(roster: Any) -> list[str]:
    lines = [f"compliance roster version {roster.version} ({roster.receipt_hash}):"]
    lines += [f"  {m.name:20} {m.keyid}" for m in roster.members]
    return lines


def cmd_roster(args: argparse.Namespace) -> int:
    from finops_fabric.approvals import change_roster, init_roster, load_roster, member_of, roster_history
    from finops_fabric.keys import load_private_key, load_public_key

    home = _home(args)
    action = args.action
    if action is None:
        raise InputError(
            "give an action: init, show, add or remove", code="cli.usage", hint="mu roster --help"
        )
    if action == "show":
        history = roster_history(home)
        roster = load_roster(home)
        doc = {**roster.to_dict(), "versions": [r.receipt_hash for r in history]}
        Out(args.json).emit(doc, lambda: _roster_lines(roster))
        return 0
    key = load_private_key(Path(args.key))
    if action == "init":
        if not args.member:
            raise InputError("name at least one --member=NAME=PUBLIC_KEY_FILE", code="cli.usage")
        members = [member_of(n, load_public_key(p)) for n, p in map(_member_arg, args.member)]
        receipt = init_roster(home, members, key)
    elif action == "add":
        receipt = change_roster(home, key, add=member_of(args.name, load_public_key(Path(args.public_key))))
    else:
        receipt = change_roster(home, key, remove=args.keyid)
    roster = load_roster(home)
    doc = {**roster.to_dict(), "receipt_hash": receipt["receipt_hash"], "change": receipt["change"]}
    Out(args.json).emit(
        doc,
        lambda: [
            *_roster_lines(roster),
            f"{receipt['change']['action']} signed by {receipt['signer']['name']}; "
            f"roster receipt {receipt['receipt_hash']}",
        ],
    )
    return 0


def register(cmd: Register) -> None:
    from finops_fabric.invariants import INVARIANTS

    sp = cmd("approve", cmd_approve, "a compliance approver signs hash(O), or an override of one invariant")
    sp.add_argument("--ontology", required=True, metavar="O", help="the policy whose hash(O) is approved")
    sp.add_argument("--key", required=True, metavar="KEY", help="the approver's private key (on the roster)")
    sp.add_argument(
        "--override",
        metavar="INVARIANT",
        help=f"sign an override of this one invariant for this O ({', '.join(INVARIANTS)})",
    )
    sp.add_argument(
        "--output", metavar="FILE", help="default: <hash prefix>[.<invariant>].approval.json here"
    )
    sp.add_argument(
        "--impact",
        metavar="IMPACT.json",
        help="the impact document of this change (`mu impact --json`); its hash is signed with the approval",
    )
    sp.add_argument(
        "--evidence",
        action="append",
        metavar="RECEIPT",
        help="a backtest receipt of this O (file or sha256:… in the ledger), recorded in the approval "
        "(repeatable)",
    )

    sp = cmd("roster", cmd_roster, "the compliance roster: the public keys whose approvals count")
    actions = sp.add_subparsers(dest="action", metavar="ACTION", parser_class=type(sp))
    init = actions.add_parser("init", help="establish roster version 1, signed by one of its members")
    init.add_argument(
        "--member",
        action="append",
        default=[],
        metavar="NAME=PUBLIC_KEY_FILE",
        help="a member and their public key (repeatable)",
    )
    init.add_argument("--key", required=True, metavar="KEY", help="the private key of one of the members")
    action_options(init)
    action_options(actions.add_parser("show", help="the current roster, its chain verified"))
    add = actions.add_parser("add", help="add a member (signed by a current member)")
    add.add_argument("--name", required=True, help="the new member's name")
    add.add_argument("--public-key", required=True, metavar="PUB", help="the new member's public key (PEM)")
    add.add_argument("--key", required=True, metavar="KEY", help="a current member's private key")
    action_options(add)
    rm = actions.add_parser("remove", help="remove a member by key id (signed by a current member)")
    rm.add_argument("--keyid", required=True, metavar="ID", help="the key id of the member to remove")
    rm.add_argument("--key", required=True, metavar="KEY", help="a current member's private key")
    action_options(rm)
