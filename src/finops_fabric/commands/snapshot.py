"""`mu snapshot export sha256:<hash(O)> --output=DIR`: the O the store kept for that hash(O).

Every O that `mu generate` read is kept in the store as its canonical N-Quads (the snapshot a
receipt's ``inputs.ontology_snapshot`` names and `mu replay` regenerates from). ``export``
writes it to ``DIR/ontology.nq`` and checks, before DIR appears, that DIR hashes back to the
same hash(O) (`mu hash DIR` prints it). Exit 0 written; 1 it did not hash back (nothing
written); 2 no such snapshot, or DIR exists and is not empty.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from finops_fabric.cli import Out, action_options

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def cmd_snapshot(args: argparse.Namespace) -> int:
    from finops_fabric.errors import InputError
    from finops_fabric.lookup import SNAPSHOT_FILE, export_snapshot
    from finops_fabric.store import Store

    if args.action != "export":
        raise InputError(
            "mu snapshot: give an action: export",
            code="cli.usage",
            hint="mu snapshot export HASH --output=DIR",
        )
    store = Store.locate(args.home)
    written = export_snapshot(store, args.hash, Path(args.output))
    doc = {"ontology_hash": args.hash, "output": str(written), "files": [SNAPSHOT_FILE], "verified": True}
    Out(args.json).emit(
        doc,
        lambda: [
            f"wrote {written / SNAPSHOT_FILE}: O {args.hash} (canonical N-Quads); "
            f"`mu hash {written}` gives the same hash(O)"
        ],
    )
    return 0


def register(cmd: Register) -> None:
    sp = cmd("snapshot", cmd_snapshot, "write the store's snapshot of an O, found by its hash(O)")
    actions = sp.add_subparsers(dest="action", metavar="ACTION", parser_class=type(sp))
    ex = actions.add_parser(
        "export",
        help="write the O of HASH (sha256:<hash(O)>) to DIR, checked to hash back to HASH",
        description="write the O of HASH (sha256:<hash(O)>) to DIR/ontology.nq, checked to hash back "
        "to HASH before DIR appears",
    )
    ex.add_argument("hash", metavar="HASH", help="sha256:<hex>, the hash(O) of a snapshot in the store")
    ex.add_argument("--output", required=True, metavar="DIR", help="a new (or empty) directory")
    action_options(ex)
