"""`mu diagnose`: classify a control failure (generator, configuration, drift, tampering or
runtime) with evidence and the team to escalate to.

    mu diagnose --receipt=R --transaction=tx.json --observed=APPROVE|REJECT
                [--ontology=O_now] [--enforcer=A_prod] [--expected=APPROVE|REJECT]
    mu diagnose --decision-id=ID [--env=ENV] [--receipt=R] [--enforcer=A_prod] [--ontology=O_now]

With ``--decision-id`` the transaction, the observed outcome, the generation receipt and the
enforcer hash come from ENV's decision log, and A_prod is the A that served the decision: the
daemon's copy of the A with the logged hash (the store's snapshot it verified at deployment and
boots from). The directory it was deployed from is only compared with it, as a note: the daemon
never runs that directory again. An explicit ``--receipt``/``--enforcer`` wins.

Exit 0 when a verdict was reached, whichever it is (the verdict is the finding; a failing
control is what the command was asked about, not a check of its own that said no); 1 when the
receipt's hash or signature does not verify; 2 for bad input (nothing is written then).
Every verdict is sealed as a ``diagnosis`` receipt with the operator key and appended to the
store's ledger (``--out-receipt=FILE`` also writes it to FILE).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import Out, progress_printer, read_transaction
from finops_fabric.errors import InputError

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _env(store: Any, env: str | None) -> str:
    from finops_fabric.daemon.environments import check_env

    if env is None:
        found = sorted(p.name[len("daemon-") : -3] for p in store.home.glob("daemon-*.db"))
        if len(found) != 1:
            raise InputError(
                "give --env=ENV with --decision-id"
                + (f" (this store has decision logs for: {', '.join(found)})" if found else ""),
                code="cli.usage",
            )
        env = found[0]
    return check_env(env)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from finops_fabric.diagnosis import (
        Case,
        check_outcome,
        diagnose,
        read_logged_decision,
        record,
        served_enforcer,
    )
    from finops_fabric.receipts import load_receipt, write_json_atomic
    from finops_fabric.store import Store

    observed = check_outcome(args.observed, "--observed")
    expected = check_outcome(args.expected, "--expected")
    store = Store.open(args.home)
    if args.out_receipt and not Path(args.out_receipt).absolute().parent.is_dir():
        raise InputError(
            f"--out-receipt={args.out_receipt}: its directory does not exist", code="diagnose.out_receipt"
        )
    logged = None
    if args.decision_id is not None:
        if args.transaction or args.observed:
            raise InputError(
                "--decision-id reads the transaction and the observed outcome from the decision log; "
                "do not give --transaction or --observed with it",
                code="cli.usage",
            )
        logged = read_logged_decision(store, args.decision_id, _env(store, args.env))
        tx, observed = logged.transaction, logged.outcome
    else:
        if args.env is not None:
            raise InputError("--env goes with --decision-id", code="cli.usage")
        missing = [f for f in ("receipt", "transaction", "observed") if getattr(args, f) is None]
        if missing:
            raise InputError(
                "give " + ", ".join(f"--{f}" for f in missing) + " (or --decision-id=ID to read them from "
                "a daemon's decision log)",
                code="cli.usage",
            )
        tx = read_transaction(Path(args.transaction), args.home)
    assert observed is not None
    if args.receipt:
        receipt = load_receipt(Path(args.receipt))
    else:
        assert logged is not None
        found = store.find(logged.generation_receipt_hash)
        if found is None:
            raise InputError(
                f"decision {logged.id} names generation receipt {logged.generation_receipt_hash}, which is "
                f"not in the ledger of {store.home}",
                code="diagnose.receipt_missing",
                hint="give the receipt with --receipt=R",
            )
        receipt = found
    enforcer = Path(args.enforcer) if args.enforcer else None
    served = served_enforcer(store, logged) if logged is not None and enforcer is None else None
    case = Case(
        receipt=receipt,
        transaction=tx,
        observed=observed,
        expected=expected,
        ontology=Path(args.ontology) if args.ontology else None,
        enforcer=enforcer,
        logged=logged,
        served=served,
    )
    result = diagnose(case, store, progress=progress_printer(args))
    sealed = record(result, store)
    if args.out_receipt:
        write_json_atomic(Path(args.out_receipt), sealed)
    doc = result.to_dict()
    doc["receipt_file"] = args.out_receipt

    def human() -> list[str]:
        lines = list(result.prose)
        lines.append("evidence:")
        lines += [f"  [{e.result}] {e.check}: {e.detail}" for e in result.evidence]
        lines.append("decisions:")
        for name, key in (
            ("replayed A", "replayed_enforcer"),
            ("interpreter of O", "interpreter"),
            ("A_prod", "production_enforcer"),
            ("O now", "ontology_now"),
        ):
            d = result.decision.get(key)
            if not d:
                continue
            if "not_run" in d:
                lines.append(f"  {name:17} not run: {d['not_run']}")
            elif "error" in d:
                lines.append(f"  {name:17} error: {d['error']}")
            else:
                lines.append(f"  {name:17} {d['decision']}")
                lines += [f"    fired {f['rule']}: {f['reason']}" for f in d["fired"]]
        lines.append(f"  {'production':17} {result.observed} (observed)")
        where = f"; written to {args.out_receipt}" if args.out_receipt else ""
        lines.append(f"diagnosis receipt {sealed['receipt_hash']} appended to the ledger{where}")
        return lines

    Out(args.json).emit(doc, human)
    return 0


def register(cmd: Register) -> None:
    sp = cmd(
        "diagnose",
        cmd_diagnose,
        "classify a control failure (generator, configuration, drift, tampering or runtime) with evidence",
    )
    sp.add_argument("--receipt", metavar="R", help="the generation receipt of the A production ran")
    sp.add_argument("--transaction", metavar="TX.json", help="the transaction that was decided")
    sp.add_argument("--observed", metavar="APPROVE|REJECT", help="what production decided")
    sp.add_argument("--expected", metavar="APPROVE|REJECT", help="what the reporter expected")
    sp.add_argument("--ontology", metavar="O_NOW", help="O as compliance maintains it now")
    sp.add_argument("--enforcer", metavar="A_PROD", help="the enforcer production runs")
    sp.add_argument("--decision-id", metavar="ID", help="a decision of the daemon's log (X-Decision-Id)")
    sp.add_argument("--env", metavar="ENV", help="the environment of --decision-id")
    sp.add_argument("--out-receipt", metavar="FILE", help="also write the diagnosis receipt to FILE")
