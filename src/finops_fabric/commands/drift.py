"""`mu drift (--env=ENV | --enforcer=A_prod) [--ontology=O]`: regenerate from the receipted O behind
what runs and compare; explain each difference. Exit 0 when identical, 1 on drift, 2 for bad input.

``--env=ENV`` compares with what ENV runs: its latest deployment receipt's generation, regenerated
with the pinned generator, against ENV's copy in the store (and, when ENV's daemon answers, the
hash it serves). ``--enforcer=A`` compares A with the deployment that runs it, or, when A is
deployed nowhere, with the generation receipt that produced it. A newer A that is not deployed is
a note, not drift.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import Out, progress_printer

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _served(store: Any, env: str) -> tuple[str | None, str]:
    """(the hash(A) ENV's running daemon serves, or None; a note on how that was found)."""
    from finops_fabric.daemon.client import connect, read_discovery
    from finops_fabric.errors import FabricError

    if read_discovery(store, env) is None:
        return None, f"no {env} daemon is running; compared with the copy it boots from"
    try:
        with connect(store, env, wait=0.0, timeout=5.0) as daemon:
            status, doc = daemon.request("GET", "/v1/deployment", ok=(200, 404))
    except FabricError as e:
        return None, f"the {env} daemon did not say what it serves ({e.message}); compared with its copy"
    if status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("enforcer_hash"), str):
        return None, f"the running {env} daemon serves nothing yet"
    return str(doc["enforcer_hash"]), f"the running {env} daemon serves A {doc['enforcer_hash']}"


def cmd_drift(args: argparse.Namespace) -> int:
    from finops_fabric.drift import detect_drift, explain
    from finops_fabric.errors import InputError
    from finops_fabric.store import Store

    if args.env is None and args.enforcer is None:
        raise InputError("mu drift: give --env=ENV (what ENV runs) or --enforcer=A", code="cli.usage")
    store = Store.locate(args.home)
    served, note = None, None
    env = args.env
    if env is not None:
        from finops_fabric.commands.daemon import check_env

        env = check_env(env)
        if args.enforcer is None:
            served, note = _served(store.require(), env)
    report = detect_drift(
        Path(args.enforcer) if args.enforcer else None,
        store,
        env=env,
        ontology=Path(args.ontology) if args.ontology else None,
        served_hash=served,
        progress=progress_printer(args),
    )
    if note is not None:
        report.information.insert(0, note)
    Out(args.json).emit(report.to_dict(), lambda: explain(report))
    return 1 if report.drift else 0


def register(cmd: Register) -> None:
    sp = cmd(
        "drift",
        cmd_drift,
        "regenerate A from the receipted O behind what runs and compare it with what runs; explain each "
        "difference",
    )
    sp.add_argument(
        "--env", metavar="ENV", help="compare with what ENV runs (its latest deployment receipt's A)"
    )
    sp.add_argument(
        "--enforcer",
        metavar="A_PROD",
        help="an enforcer (directory or archive); compared with the deployment that runs it, or the "
        "generation that produced it",
    )
    sp.add_argument("--ontology", metavar="O", help="also check whether O now differs from the receipted O")
