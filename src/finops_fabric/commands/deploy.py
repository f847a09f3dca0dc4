"""`mu deploy --target=ENV --enforcer=A [--wait=60] [--now] [--receipt=FILE]`: hand A to ENV's daemon.

The CLI refuses a store whose receipt ledger does not verify (rows, chain and the newest signed
tree head: see ``mu audit-trail``), checks A byte for byte against its manifest and its
generation receipt in the store (an A without a receipt, or with any byte changed, is refused:
exit 1, nothing changes; so is, for production, an A whose O no member of the compliance roster
approved), finds
the daemon through ``<store>/daemons/<ENV>.json`` (waiting up to ``--wait`` seconds for it),
and posts A. The daemon verifies A again, boots it, runs its golden cases and switches
atomically; a production daemon waits for its next epoch window unless ``--now``. The signed
deployment receipt (PASS or FAIL, with why) is printed and kept in the ledger.
Exit 0 deployed; 1 refused or failed (the old A keeps serving); 2 bad input or no daemon.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import Out, progress_printer

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _short(h: object) -> str:
    return str(h).removeprefix("sha256:")[:12]


def deployment_lines(doc: dict[str, Any], env: str, verb: str = "deployed") -> list[str]:
    r = doc["receipt"]
    if doc["status"] != "deployed":
        return [
            f"FAILED: {doc.get('reason')}",
            f"{env} keeps running {r['outputs'].get('serving') or 'nothing'}",
            f"{r['kind']} receipt {r['receipt_hash']} (gates.operational FAIL)",
        ]
    return [
        f"{verb} {doc['enforcer_hash']} to {env}",
        f"restarted {len(doc['restarted'])} rule(s), kept {len(doc['kept'])}"
        + (f", removed {len(doc['removed'])}" if doc.get("removed") else ""),
        *[f"  restarted {rule}" for rule in doc["restarted"]],
        f"{r['kind']} receipt {r['receipt_hash']}",
    ]


def fleet_lines(doc: dict[str, Any]) -> list[str]:
    fleet = doc.get("fleet")
    if not isinstance(fleet, dict):
        return []
    lagging = fleet.get("lagging") or []
    if not fleet.get("processes"):
        return ["no live daemon process is recorded in the environment's database"]
    if not lagging:
        return [f"every live daemon process serves it ({len(fleet.get('processes') or [])})"]
    return [
        f"NOT every live daemon process serves it: {len(lagging)} of "
        f"{len(fleet.get('processes') or [])} do not",
        *[f"  {line}" for line in lagging],
    ]


def _wait_for_fleet(args: argparse.Namespace, doc: dict[str, Any]) -> bool:
    """After a successful switch: wait until every live process of the environment serves the
    new A (``doc["fleet"]`` says which do and which do not); True when all do."""
    from finops_fabric.daemon import client, fleet
    from finops_fabric.store import Store

    # through the daemon (GET /v1/fleet): it reads the fleet's rows from ENV's database
    with client.connect(Store.open(args.home), args.target, wait=max(args.wait, 1.0)) as daemon:

        def processes() -> list[dict[str, Any]]:
            _status, body = daemon.request("GET", "/v1/fleet")
            rows = body.get("processes") if isinstance(body, dict) else None
            return [p for p in rows if isinstance(p, dict)] if isinstance(rows, list) else []

        live, lagging = fleet.wait_for(processes, str(doc.get("enforcer_hash")), timeout=max(args.wait, 1.0))
    doc["fleet"] = {
        "processes": [{k: p[k] for k in ("process", "url", "serving", "ready")} for p in live],
        "lagging": [lag.describe() for lag in lagging],
    }
    return not lagging


def finish(args: argparse.Namespace, status: int, doc: dict[str, Any], verb: str = "deployed") -> int:
    if args.receipt:
        from finops_fabric.receipts import write_json_atomic

        write_json_atomic(Path(args.receipt), doc["receipt"])
    ok = status == 200 and doc.get("status") == "deployed"
    if ok:
        ok = _wait_for_fleet(args, doc)
    Out(args.json).emit(doc, lambda: [*deployment_lines(doc, args.target, verb), *fleet_lines(doc)])
    return 0 if ok else 1


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.shadow or args.until is not None:  # shadow mode: A runs beside the live A, deciding nothing
        from finops_fabric.commands.shadow import cmd_deploy_shadow

        return cmd_deploy_shadow(args)
    from finops_fabric.audit import require_verified_ledger
    from finops_fabric.daemon.client import post_deployment, verify_receipted
    from finops_fabric.daemon.environments import check_env
    from finops_fabric.store import Store

    env = check_env(args.target)
    store = Store.open(args.home)
    require_verified_ledger(store, f"mu deploy to {env} is refused")
    path = Path(args.enforcer)
    _digest, receipt = verify_receipted(store, path)
    if env == "production":  # refused here already, before the daemon is asked (it checks again)
        from finops_fabric.approvals import require_approved

        require_approved(store, receipt)
    status, doc = post_deployment(
        store,
        env,
        path,
        receipt["receipt_hash"],
        now=args.now,
        wait=args.wait,
        progress=progress_printer(args),
    )
    return finish(args, status, doc)


def add_deploy_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--target", required=True, metavar="ENV", help="the environment (test, production, …)")
    sp.add_argument(
        "--wait", type=float, default=60.0, metavar="SECONDS", help="wait this long for the daemon"
    )
    sp.add_argument("--now", action="store_true", help="do not wait for the epoch window (deployer)")
    sp.add_argument("--receipt", metavar="FILE", help="also write the deployment receipt here")


def register(cmd: Register) -> None:
    sp = cmd("deploy", cmd_deploy, "hand A to ENV's daemon: verify, boot, health-check, switch atomically")
    sp.add_argument(
        "--enforcer", required=True, metavar="A", help="the enforcer to deploy (made by `mu generate`)"
    )
    add_deploy_options(sp)
    sp.add_argument(
        "--shadow",
        action="store_true",
        help="run A beside the live enforcer: it decides the same traffic, its disagreements are "
        "logged, it has no effect (see `mu shadow`)",
    )
    sp.add_argument(
        "--until", metavar="T", help="with --shadow: end the shadow at T (ISO 8601, or 30m, 12h, 7d)"
    )
