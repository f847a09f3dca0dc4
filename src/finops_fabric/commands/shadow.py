"""Shadow mode: run a new enforcer beside the live one, on live traffic, with no effect.

    mu deploy --target=ENV --shadow --enforcer=A_new [--until=T] [--receipt=FILE]
    mu shadow report --env=ENV [--session=HASH] [--examples=N] [--database=URL] [--json]
    mu shadow stop --env=ENV [--receipt=FILE]

``mu deploy --shadow`` checks A_new as every deployment does (the store's ledger verified, A_new
byte for byte against its manifest and its generation receipt) and hands it to ENV's daemon,
which verifies it again, boots it, runs its golden cases and starts the shadow session; the
live A keeps deciding every request. A signed ``shadow`` receipt (PASS or FAIL, with why) is
printed and kept in the ledger. ``--until`` (an ISO 8601 time, or ``90s``, ``30m``, ``12h``,
``7d`` from now) ends the session by itself. Exit 0 shadowing; 1 refused or failed; 2 bad input.

``mu shadow report`` verifies the shadow log's hash chain and Merkle tree against its signed
heads first (exit 1, naming every row changed, removed, inserted or reordered, when it does not
verify), then reports the session (the newest unless ``--session``): decisions compared, agreed
and disagreed; flips by direction; rules gained and lost; notifications and audit entries gained
and lost; the amount flipped; examples with both enforcers' reasons. No daemon needed: it reads
ENV's database (``--database``, else ``environments.ENV.database`` of config.json, else the
store's SQLite file), whichever process of a fleet logged the rows.

``mu shadow stop`` ends the session (every comparison queued before is made) with a signed
``shadow`` receipt of the final counts. Promoting A_new is an ordinary ``mu deploy``, with every
check; it also ends the session.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import Out
from finops_fabric.errors import InputError

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _short(h: object) -> str:
    return str(h).removeprefix("sha256:")[:12]


def cmd_deploy_shadow(args: argparse.Namespace) -> int:
    """``mu deploy --shadow``: verify A_new here, then ask the daemon to shadow it."""
    from finops_fabric.audit import require_verified_ledger
    from finops_fabric.daemon.client import connect, verify_receipted
    from finops_fabric.daemon.environments import check_env
    from finops_fabric.daemon.shadow import parse_until
    from finops_fabric.store import Store

    if not args.shadow:
        raise InputError("--until goes with --shadow (mu deploy --shadow --until=T)", code="cli.usage")
    env = check_env(args.target)
    until = None
    if args.until is not None:
        try:
            until = parse_until(args.until).strftime("%Y-%m-%dT%H:%M:%SZ")
        except InputError as exc:
            raise InputError(f"--{exc.message}", code="cli.usage") from None
    store = Store.open(args.home)
    require_verified_ledger(store, f"mu deploy --shadow to {env} is refused")
    path = Path(args.enforcer)
    _digest, receipt = verify_receipted(store, path)
    body = {
        "enforcer": str(path.resolve()),
        "generation_receipt_hash": receipt["receipt_hash"],
        "env": env,
        "until": until,
    }
    with connect(store, env, wait=args.wait, timeout=300.0) as daemon:
        status, doc = daemon.request(
            "POST", "/v1/shadow", body=json.dumps(body).encode("utf-8"), ok=(200, 422)
        )
    if not isinstance(doc, dict) or "receipt" not in doc:
        from finops_fabric.errors import CheckFailed

        err = doc.get("error", {}) if isinstance(doc, dict) else {}
        raise CheckFailed(
            f"the {env} daemon refused the shadow: {err.get('message')}", code=str(err.get("code"))
        )
    if args.receipt:
        from finops_fabric.receipts import write_json_atomic

        write_json_atomic(Path(args.receipt), doc["receipt"])

    def human() -> list[str]:
        r = doc["receipt"]
        if doc["status"] != "shadowing":
            return [
                f"FAILED: {doc.get('reason')}",
                f"{env} keeps running {r['outputs'].get('serving')} with no shadow",
                f"shadow receipt {r['receipt_hash']} (gates.operational FAIL)",
            ]
        s = doc["session"]
        return [
            f"shadowing {s['enforcer_hash']} on {env} beside the live {s['live_enforcer_hash']}",
            "it decides the same transactions with no effect; disagreements are logged"
            + (f"; it ends at {s['until']}" if s.get("until") else ""),
            f"shadow receipt {r['receipt_hash']}",
            f"see `mu shadow report --env={env}`; stop with `mu shadow stop --env={env}`",
        ]

    Out(args.json).emit(doc, human)
    return 0 if status == 200 and doc.get("status") == "shadowing" else 1


def _stop(args: argparse.Namespace, env: str) -> int:
    from finops_fabric.daemon.client import connect
    from finops_fabric.store import Store

    store = Store.open(args.home)
    with connect(store, env, wait=args.wait, timeout=300.0) as daemon:
        _status, doc = daemon.request("POST", "/v1/shadow/stop", body=b"{}")
    if args.receipt:
        from finops_fabric.receipts import write_json_atomic

        write_json_atomic(Path(args.receipt), doc["receipt"])

    def human() -> list[str]:
        r = doc["receipt"]
        o = r["outputs"]
        return [
            f"stopped the shadow of {r['inputs']['enforcer_hash']} on {env}",
            f"compared {o['compared']}: agreed {o['agreed']}, disagreed {o['disagreed']}"
            + (f" ({o['errors']} could not be decided by the shadow)" if o["errors"] else "")
            + (f"; {o['dropped']} dropped (the queue was full)" if o["dropped"] else ""),
            f"shadow receipt {r['receipt_hash']}",
        ]

    Out(args.json).emit(doc, human)
    return 0


def report_lines(doc: dict[str, Any]) -> list[str]:
    chain = doc["chain"]
    if not doc["verified"]:
        return [
            *[f"  {f['message']}" for f in chain["findings"]],
            f"shadow log {doc['env']}: {chain['summary']}",
            "no report is made from a shadow log that does not verify",
        ]
    state = (
        "running"
        if doc["running"]
        else f"ended {doc['ended_at']} ({doc['end_reason']}; receipt {_short(doc['end_receipt_hash'])})"
    )
    lines = [
        f"shadow of {doc['enforcer_hash']} beside {doc['live_enforcer_hash']} on {doc['env']}",
        f"session {doc['session']} from {doc['started_at']}: {state}",
        f"shadow log: {chain['summary']}",
        f"compared {doc['compared']}: agreed {doc['agreed']}, disagreed {doc['disagreed']}"
        + (f" ({doc['errors']} could not be decided by the shadow)" if doc["errors"] else "")
        + (f"; {doc['dropped']} not compared (the queue was full)" if doc["dropped"] else ""),
    ]
    flips = ", ".join(f"{k} {v}" for k, v in doc["flips"].items()) or "none"
    lines.append(f"decisions flipped: {flips}; amount flipped {doc['amount_flipped']}")
    if doc["changed_fired"]:
        lines.append(f"same decision, other rules fired: {doc['changed_fired']}")
    if doc["changed_effects"]:
        lines.append(
            f"same decision and rules, other notifications or audit entries: {doc['changed_effects']}"
        )
    if doc["by_type_level"]:
        lines.append(
            "by type/level: "
            + "; ".join(
                f"{k} " + ", ".join(f"{g} {n}" for g, n in v.items()) for k, v in doc["by_type_level"].items()
            )
        )
    for title, key in (
        ("by rule", "by_rule"),
        ("notifications", "notifications"),
        ("audit entries", "audit"),
    ):
        if doc[key]:
            lines.append(f"{title} (gained / lost):")
            lines += [f"  {name}: +{c['gained']} / -{c['lost']}" for name, c in doc[key].items()]
    if doc["examples"]:
        lines.append("examples:")
    for e in doc["examples"]:
        lines.append(
            f"  decision {e['decision_id']} ({e['transaction_id']}): {e['live']['decision']} → "
            f"{e['shadow']['decision']} [{', '.join(e['differences'])}]"
        )
        for side in ("live", "shadow"):
            fired = e[side]["fired"]
            why = "; ".join(f"{f['rule']}: {f['reason']}" for f in fired) or "no rule fired"
            if e[side].get("error"):
                why = e[side]["error"]
            lines.append(f"    {side:<6} {e[side]['decision']}: {why}")
    return lines


def _report(args: argparse.Namespace, env: str) -> int:
    from finops_fabric.daemon.shadow import shadow_report
    from finops_fabric.store import Store

    if args.examples < 0:
        raise InputError("--examples is a number of examples (0 or more)", code="cli.usage")
    store = Store.open(args.home)
    doc = shadow_report(store, env, session=args.session, examples=args.examples, database_url=args.database)
    Out(args.json).emit(doc, lambda: report_lines(doc))
    return 0 if doc["verified"] else 1


def cmd_shadow(args: argparse.Namespace) -> int:
    from finops_fabric.daemon.environments import check_env

    env = check_env(args.env)
    if args.action == "stop":
        if args.session is not None or args.database is not None:
            raise InputError("--session and --database go with `mu shadow report`", code="cli.usage")
        return _stop(args, env)
    if args.receipt is not None:
        raise InputError("--receipt goes with `mu shadow stop`", code="cli.usage")
    return _report(args, env)


def register(cmd: Register) -> None:
    sp = cmd("shadow", cmd_shadow, "report on or stop a shadow enforcer (started by mu deploy --shadow)")
    sp.add_argument(
        "action",
        choices=["report", "stop"],
        help="report: what the shadow would have decided differently; stop: end the shadow session",
    )
    sp.add_argument("--env", required=True, metavar="ENV", help="the environment")
    sp.add_argument("--session", metavar="HASH", help="report: this session (its start receipt hash)")
    sp.add_argument(
        "--examples", type=int, default=3, metavar="N", help="report: examples per kind of difference"
    )
    sp.add_argument(
        "--database",
        metavar="URL",
        help="report: the shadow log's database when not the store's (default: environments.ENV.database "
        "of config.json)",
    )
    sp.add_argument("--receipt", metavar="FILE", help="stop: also write the stop receipt here")
    sp.add_argument(
        "--wait", type=float, default=10.0, metavar="SECONDS", help="stop: wait this long for the daemon"
    )
