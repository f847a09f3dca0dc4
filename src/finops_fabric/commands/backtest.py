"""`mu backtest --new=O_or_A (--env=ENV [--since=T] [--until=T] [--database=URL] | --transactions=FILE
--old=O_or_A)`: what a change would have done to real traffic, counted on every row. ENV's log is
read (read-only) from the SQLite file in the store or the PostgreSQL database of ``--database`` or
``environments.ENV.database`` in config.json.

Exit 0: the back-test ran and its report (and receipt) are complete; 1: a check said no (the
decision log does not verify, a logged decision is not reproduced by its own enforcer, an
enforcer hash in the log is not in the store, or the batch kernel disagrees with an enforcer);
2: bad invocation or input (nothing readable in the file, an unreadable policy).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finops_fabric.cli import Out, progress_printer
from finops_fabric.errors import InputError

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]
SHOWN_EXAMPLES = 6


def cmd_backtest(args: argparse.Namespace) -> int:
    from finops_fabric.backtest.run import Options, Progress, backtest_file
    from finops_fabric.backtest.sides import load_side
    from finops_fabric.store import Store

    if bool(args.env) == bool(args.transactions):
        raise InputError(
            "give the history as --env=ENV or a file as --transactions=FILE (one of them)", code="cli.usage"
        )
    if args.transactions and not args.old:
        raise InputError(
            "--transactions=FILE needs --old=O_or_A: what the new policy is compared with", code="cli.usage"
        )
    if args.env and args.old:
        raise InputError(
            "--env replays each decision with the enforcer that made it; --old goes with --transactions",
            code="cli.usage",
        )
    if (args.since or args.until) and not args.env:
        raise InputError("--since and --until select decisions of --env", code="cli.usage")
    if args.database and not args.env:
        raise InputError("--database names where the decision log of --env is kept", code="cli.usage")
    if args.engine == "dask" and not args.scheduler:
        raise InputError(
            "--engine=dask needs --scheduler=ADDRESS (e.g. tcp://10.0.0.5:8786)", code="cli.usage"
        )
    if args.scheduler and args.engine != "dask":
        raise InputError("--scheduler goes with --engine=dask", code="cli.usage")
    if args.engine == "dask" and args.env:
        raise InputError(
            "--engine=dask runs over a Parquet file of transactions, not a decision log", code="cli.usage"
        )
    if args.report and Path(args.report).suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--report={args.report}: the report is an .html file", code="cli.usage")
    if not 0 <= args.sample_rate <= 1:
        raise InputError("--sample-rate is a fraction between 0 and 1", code="cli.usage")
    note = progress_printer(args)
    store = Store.locate(args.home)
    if not args.no_receipt:
        store.require()
    options = Options(
        batch_size=args.batch_size,
        examples=args.examples,
        seed=args.seed,
        sample_rate=args.sample_rate,
        regions=not args.no_regions,
    )
    new = load_side("new", Path(args.new), store if store.exists() else None, args.new_generator)
    progress = Progress(not args.json)
    if args.env:
        from finops_fabric.backtest.history import backtest_history
        from finops_fabric.commands.decisions import _time
        from finops_fabric.daemon.environments import check_env

        env = check_env(args.env)
        store.require()
        doc = backtest_history(
            store,
            env,
            _time(args.since, "--since"),
            _time(args.until, "--until"),
            new,
            options,
            progress=progress,
            note=note,
            database=args.database,
        )
    else:
        old = load_side("old", Path(args.old), store if store.exists() else None, args.old_generator)
        path = Path(args.transactions)
        if not path.exists():
            raise InputError(f"there is no transaction file {path}", code="backtest.missing")
        if path.is_file() and path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            try:
                progress.total = pq.ParquetFile(path).metadata.num_rows
            except Exception:
                progress.total = None
        doc = backtest_file(
            old,
            new,
            path,
            options,
            engine=args.engine,
            scheduler=args.scheduler,
            progress=progress,
            note=note,
        )
    nothing = doc["rows"] == 0 and doc["unreadable_count"] > 0
    failed = doc["reproducible"] is False
    doc["receipt_hash"] = None
    if not args.no_receipt and not failed and not nothing:
        from finops_fabric.backtest.receipt import append_receipt

        receipt = append_receipt(store, doc)
        doc["receipt_hash"] = receipt["receipt_hash"]
        if args.receipt:
            from finops_fabric.receipts import write_json_atomic

            write_json_atomic(Path(args.receipt), receipt)
    if args.report:
        from finops_fabric.backtest.html import write_report

        write_report(Path(args.report), doc)
    Out(args.json).emit(doc, lambda: human(doc, args))
    if nothing:
        return 2
    return 1 if failed else 0


def _count(n: int) -> str:
    return f"{n:,}"


def human(doc: dict[str, Any], args: argparse.Namespace) -> list[str]:
    from finops_fabric.backtest.tally import AR, RA

    new = doc["new"]
    lines = [f"O_new {new['ontology_hash']} (A {new['enforcer_hash']}, language {new['language']})"]
    if doc["mode"] == "file":
        old = doc["old"]
        lines.append(f"O_old {old['ontology_hash']} (A {old['enforcer_hash']}, language {old['language']})")
        lines.append(f"data  {doc['data']['file']} ({doc['data']['format']}, {doc['data']['sha256']})")
    else:
        data = doc["data"]
        span = f"{data['since'] or 'the start'} to {data['until'] or 'now'}"
        lines.append(
            f"data  the {data['env']} decision log, {span}: decisions {data['first_id']}–{data['last_id']}"
        )
        lines.append(f"      {data['log']['summary']}")
        for e in doc["old"]["enforcers"]:
            state = "in the store" if e["in_store"] else f"NOT IN THE STORE ({e.get('missing')})"
            lines.append(f"      {_count(e['rows'])} decision(s) made by A {e['enforcer_hash']} ({state})")
        fid = doc["fidelity"]
        if doc["reproducible"]:
            lines.append(
                f"fidelity: all {_count(fid['replayed'])} decisions reproduced exactly by their own enforcer"
            )
        else:
            lines.append(
                f"NOT REPRODUCIBLE: {_count(fid['mismatches'])} decision(s) not reproduced by their own "
                "enforcer, "
                f"{len(fid['enforcers_missing'])} enforcer(s) missing from the store"
            )
            for mm in fid["mismatch_examples"][:5]:
                lines.append(f"  decision {mm['id']}: logged {mm['logged'][:120]}")
                lines.append(f"  {' ' * len(str(mm['id']))}          replayed {mm['replayed'][:120]}")
    lines.append(
        f"{_count(doc['rows'])} rows decided (every row); {_count(doc['unreadable_count'])} unreadable"
    )
    for u in doc["unreadable"][:10]:
        lines.append(f"  line {u['line']}: {u['error']}")
    if doc["unreadable_count"] > 10:
        lines.append(f"  … and {_count(doc['unreadable_count'] - 10)} more (--json lists them)")
    lines.append(
        f"flips: {_count(doc['flips'][AR])} APPROVE→REJECT, {_count(doc['flips'][RA])} REJECT→APPROVE "
        f"(amount {doc['amount_flipped']}); {_count(doc['changed_fired'])} same decision, other rules fired; "
        f"{_count(doc['changed_effects'])} with other notifications or audit entries"
    )
    for rule, c in doc["by_rule"].items():
        lines.append(f"  {rule}: fires {_count(c['gained'])} more, {_count(c['lost'])} fewer")
    for recipient, c in doc["notifications"].items():
        lines.append(f"  notify {recipient}: +{_count(c['gained'])} −{_count(c['lost'])}")
    for ledger, c in doc["audit"].items():
        lines.append(f"  audit ledger {ledger}: +{_count(c['gained'])} −{_count(c['lost'])}")
    regions = doc["regions"]
    if regions["available"]:
        hit = [r for r in regions["regions"] if r["rows"]]
        lines.append(f"impact regions: {len(hit)} of {len(regions['regions'])} hold changed rows")
        for r in hit:
            lines.append(f"  {_count(r['rows'])} row(s): {r['summary']}")
        if regions["changed_rows_outside_every_region"]:
            lines.append(
                f"  {regions['changed_rows_outside_every_region']} changed row(s) lie in no impact region"
            )
    if doc["examples"]:
        lines.append("examples (`--json` or `--report` for all, with the transactions):")
    for ex in doc["examples"][:SHOWN_EXAMPLES]:
        lines.append(f"  row {ex['row']} ({ex['group']}): {ex['old']['decision']} → {ex['new']['decision']}")
        for side in ("old", "new"):
            for f in ex[side]["fired"][:2]:
                lines.append(f"    {side}: {f.get('reason') or f['rule']}")
    checked = doc["checked_by"]
    lines.append(
        f"kernel checked against the enforcers on {_count(checked['rows_rechecked'])} rows "
        f"({_count(checked['near_threshold'])} within {checked['within']} of a threshold): no disagreement"
    )
    if doc.get("receipt_hash"):
        lines.append(f"backtest receipt {doc['receipt_hash']}")
    if args.report:
        lines.append(f"report written to {args.report}")
    return lines


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {n}")
    return n


def register(cmd: Register) -> None:
    sp = cmd("backtest", cmd_backtest, "replay history (or a file of transactions) through a new policy")
    sp.add_argument(
        "--new", required=True, metavar="O_OR_A", help="the proposed policy: an ontology or an enforcer"
    )
    sp.add_argument("--old", metavar="O_OR_A", help="with --transactions: the policy in force")
    sp.add_argument(
        "--transactions", metavar="FILE", help="JSON Lines, CSV or Parquet (a file or a directory)"
    )
    sp.add_argument("--env", metavar="ENV", help="replay the decision log of this environment")
    sp.add_argument("--since", metavar="T", help="with --env: decisions at or after T (ISO 8601)")
    sp.add_argument("--until", metavar="T", help="with --env: decisions before T (ISO 8601)")
    sp.add_argument(
        "--database",
        metavar="URL",
        help="with --env: the log's database when not the store's (default: environments.ENV.database "
        "of config.json)",
    )
    sp.add_argument("--old-generator", metavar="V", help="decide an ontology --old with this generator")
    sp.add_argument("--new-generator", metavar="V", help="decide an ontology --new with this generator")
    sp.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML report")
    sp.add_argument("--receipt", metavar="FILE", help="also write the backtest receipt to FILE")
    sp.add_argument(
        "--no-receipt", action="store_true", help="do not record a backtest receipt (no store needed)"
    )
    sp.add_argument(
        "--no-regions", action="store_true", help="do not count the rows under mu impact's regions"
    )
    sp.add_argument("--engine", choices=("local", "dask"), default="local", help="where the kernel runs")
    sp.add_argument("--scheduler", metavar="ADDRESS", help="with --engine=dask: the Dask scheduler")
    sp.add_argument(
        "--examples", type=_positive, default=3, metavar="N", help="examples per group (default 3)"
    )
    sp.add_argument(
        "--batch-size",
        type=_positive,
        default=65_536,
        metavar="ROWS",
        help="rows per batch (bounds the memory)",
    )
    sp.add_argument("--seed", type=int, default=0, help="seed of the rows re-decided by the enforcers")
    sp.add_argument(
        "--sample-rate",
        type=float,
        default=0.001,
        metavar="FRACTION",
        help="share of rows re-decided by the enforcers besides those near a threshold (default 0.001)",
    )
