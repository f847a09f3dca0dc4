"""`mu` (alias `μ`): the command line, a thin layer over the library.

Exit codes: 0 done and every check held; 1 a check said no; 2 bad invocation or input.
``--json`` (after the verb) prints one JSON document on stdout. No traceback for a user
error unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from finops_fabric import __version__
from finops_fabric.errors import CheckFailed, FabricError, InputError

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        from finops_fabric.commands._usage import invalid_choice

        message = invalid_choice(message) or message
        where = "" if self.prog == "mu" else f"{self.prog}: "  # "mu: error: " says it already
        raise InputError(f"{where}{message}", code="cli.usage", hint=f"see `{self.prog} --help`")


class Out:
    """Where a command's results go: one JSON document, or lines for a person."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json

    def emit(self, doc: dict[str, Any], human: Callable[[], Sequence[str]]) -> None:
        if self.json:
            sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
        else:
            for line in human():
                sys.stdout.write(line + "\n")


def action_options(parser: argparse.ArgumentParser) -> None:
    """``--json``, ``--verbose`` and ``--home`` after a command's action too (``mu roster show
    --json``). SUPPRESS keeps the value given before the action when they are not repeated."""
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document"
    )
    parser.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help="more detail")
    parser.add_argument("--home", default=argparse.SUPPRESS, help="the store directory")


def progress_printer(args: argparse.Namespace) -> Callable[[str], None]:
    if sys.stderr.isatty() and not args.json:
        return lambda msg: print(f"… {msg}", file=sys.stderr)
    return lambda msg: None


def _store(args: argparse.Namespace) -> Any:
    from finops_fabric.store import Store

    return Store.locate(args.home)


def read_transaction(path: Path, home: str | None = None) -> dict[str, Any]:
    """A transaction JSON file, read strictly (:mod:`finops_fabric.intake.transaction`): numbers
    as int or Decimal, never binary floats; refused (exit 2, file and line) when it is not one
    JSON object with a string id, or is larger than the store's ``daemon.max_body_bytes``."""
    from finops_fabric.intake.strict_json import Limits
    from finops_fabric.intake.transaction import body_limit
    from finops_fabric.intake.transaction import read_transaction as read
    from finops_fabric.store import Store

    return read(path, Limits(max_bytes=body_limit(Store.locate(home).home)))


def decision_lines(d: dict[str, Any]) -> list[str]:
    lines = [f"{d['decision']}  {d.get('transaction_id') or ''}".rstrip()]
    lines += [f"  fired  {f['rule']}: {f['reason']}" for f in d["fired"]]
    lines += [f"  notify {n['recipient']}  ({n['rule']})" for n in d["notifications"]]
    lines += [f"  audit  {a['ledger']} {','.join(a['flags'])}  ({a['rule']})" for a in d["audit"]]
    return lines


def finding_line(f: dict[str, Any]) -> str:
    loc = f.get("location") or {}
    where = (
        f"{loc['file']}:{loc['line']}: "
        if loc.get("file") and loc.get("line")
        else (f"{loc['file']}: " if loc.get("file") else "")
    )
    tag = f"[{f['gate']}{'/' + f['invariant'] if f.get('invariant') else ''}]"
    level = "warning" if f.get("severity") == "warning" else "error"
    return f"{where}{level} {tag} {f['message']}"


# --- commands -----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    store = _store(args)
    res = store.init()
    Out(args.json).emit(
        {
            "home": str(store.home),
            "created": res.created,
            "keys_created": res.keys_created,
            "operator_public_key": str(store.operator_public_key_path),
        },
        lambda: [
            res.message() if hasattr(res, "message") else f"store at {store.home}",
            f"operator public key: {store.operator_public_key_path}",
        ],
    )
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from finops_fabric.keys import generate_keypair, key_id, load_public_key

    key, pub = generate_keypair(Path(args.out))
    kid = key_id(load_public_key(pub))
    Out(args.json).emit(
        {"private_key": str(key), "public_key": str(pub), "keyid": kid},
        lambda: [f"wrote {key} (private, mode 0600) and {pub}", f"key id {kid}"],
    )
    return 0


def cmd_hash(args: argparse.Namespace) -> int:
    from finops_fabric.archive import is_archive_path
    from finops_fabric.enforcer import is_enforcer_dir, verify_files

    path = Path(args.path)
    if is_enforcer_dir(path) or is_archive_path(path):
        _, _, h = verify_files(path)
    else:
        from finops_fabric.pipeline import load_ontology

        h = load_ontology(path).hash
    print(h)
    return 0


def cmd_generators(args: argparse.Namespace) -> int:
    from finops_fabric import generators

    gens = [
        {**gen.describe(), "language": gen.language}
        for gen in (generators.get(v) for v in generators.versions())
    ]
    Out(args.json).emit(
        {"versions": generators.versions(), "default": generators.DEFAULT_VERSION, "generators": gens},
        lambda: [
            f"v{g['version']}  language {g['language']}  {g['id']}  {g['source_hash']}"
            + ("  (default)" if g["version"] == generators.DEFAULT_VERSION else "")
            for g in gens
        ],
    )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from finops_fabric.pipeline import generate

    if args.previous and args.previous_receipt:
        raise InputError("give --previous or --previous-receipt, not both", code="cli.usage")
    res = generate(
        Path(args.input),
        Path(args.output),
        _store(args),
        schemas=[Path(s) for s in args.schema],
        previous=Path(args.previous) if args.previous else None,
        previous_receipt=Path(args.previous_receipt) if args.previous_receipt else None,
        generator_version=args.generator_version,
        receipt_file=Path(args.receipt) if args.receipt else None,
        approvals=[Path(a) for a in args.approval],
        progress=progress_printer(args),
    )
    r = res.receipt
    doc = {
        "status": res.status,
        "receipt_hash": r["receipt_hash"],
        "changed": res.changed,
        "unchanged": res.unchanged,
        "added": res.added,
        "removed": res.removed,
        "gates": {k: v["status"] for k, v in r["gates"].items()},
        "violations": [f.to_dict() for f in res.findings if f.severity == "violation"],
        "warnings": [f.to_dict() for f in res.findings if f.severity == "warning"],
    }
    golden_failures = ((r["gates"].get("golden") or {}).get("evidence") or {}).get("failures") or []
    if golden_failures:
        doc["golden_failures"] = golden_failures
    if res.enforcer_hash:
        doc["enforcer_hash"] = res.enforcer_hash
    overrides = [
        {k: o[k] for k in ("invariant", "approval_hash", "keyid", "signer")} for o in r.get("overrides", [])
    ]
    if overrides:
        doc["overrides"] = overrides
    if res.status == "rejected":
        doc["compliance_override_required"] = r.get("compliance_override_required", False)
        doc["reason"] = r.get("reason")

    def human() -> list[str]:
        from finops_fabric.golden import failure_lines

        gates = "  ".join(f"{k} {v['status']}" for k, v in r["gates"].items())
        warnings = [finding_line(f) for f in doc["warnings"]]
        if res.status == "rejected":
            lines = [finding_line(f.to_dict()) for f in res.findings if f.severity == "violation"]
            lines += warnings
            lines += [line for f in golden_failures for line in failure_lines(f)]
            lines += [
                f"REJECTED: {r.get('reason')}. No enforcer was written.",
                f"gates: {gates}",
                f"rejection receipt {r['receipt_hash']}",
            ]
            if r.get("compliance_override_required"):
                lines.append(
                    "compliance_override_required: only a signed compliance override for this O "
                    "lets it through"
                )
            return lines
        out = r["outputs"]
        return [
            *warnings,
            f"generated {args.output}  {res.enforcer_hash}",
            f"gates: {gates}",
            f"golden: {r['golden']['passed']} passed, {r['golden']['failed']} failed",
            f"rules: {len(res.changed)} changed, {len(res.added)} added, {len(res.removed)} removed, "
            f"{len(res.unchanged)} unchanged (blast radius {out['blast_radius']['percent']}%)",
            *[
                f"compliance override: {o['invariant']} let through, signed by {o['signer']} "
                f"(approval {o['approval_hash']})"
                for o in overrides
            ],
            f"receipt {r['receipt_hash']}",
        ]

    Out(args.json).emit(doc, human)
    return 0 if res.status == "generated" else 1


def cmd_test(args: argparse.Namespace) -> int:
    from finops_fabric.enforcer import load_enforcer
    from finops_fabric.golden import explain_failure, run_case

    chosen = [bool(args.golden_suite), bool(args.scenario), bool(args.transaction)]
    if sum(chosen) != 1:
        raise InputError(
            "give exactly one of --golden-suite, --scenario=NAME, --transaction=tx.json", code="cli.usage"
        )
    if bool(args.enforcer) == bool(args.ontology):
        raise InputError("give --enforcer=A or --ontology=O (a dry run on a throwaway A)", code="cli.usage")
    enforcer = load_enforcer(Path(args.enforcer)) if args.enforcer else _throwaway(Path(args.ontology))
    cases = enforcer.golden_cases()
    if args.transaction:
        tx = read_transaction(Path(args.transaction), args.home)
        results: list[dict[str, Any]] = [
            {
                "scenario": str(tx.get("id", args.transaction)),
                "ok": True,
                "problems": [],
                "decision": enforcer.decide(tx).to_dict(),
            }
        ]
    else:
        if args.scenario:
            cases = [c for c in cases if c["scenario"] == args.scenario]
            if not cases:
                names = ", ".join(c["scenario"] for c in enforcer.golden_cases()) or "none"
                raise InputError(
                    f"no golden case named {args.scenario!r} in {args.enforcer or args.ontology}; "
                    f"it has: {names}",
                    code="test.unknown_scenario",
                )
        results = [run_case(enforcer, c) for c in cases]
        for c, result in zip(cases, results, strict=True):
            if not result["ok"]:
                result["failure"] = explain_failure(c, result)
    passed = sum(1 for c in results if c["ok"])
    doc = {
        "passed": passed,
        "failed": len(results) - passed,
        "enforcer_hash": enforcer.hash,
        "cases": results,
    }
    if args.ontology:
        doc["dry_run"] = {"ontology": args.ontology, "store_written": False}

    def human() -> list[str]:
        lines = []
        for c in results:
            lines.append(f"{'PASS' if c['ok'] else 'FAIL'} {c['scenario']}: {c['decision']['decision']}")
            lines += [f"    {p}" for p in c["problems"]]
            lines += [f"    fired {f['rule']}: {f['reason']}" for f in c["decision"]["fired"]]
        lines.append(f"{passed} passed, {len(results) - passed} failed")
        return lines

    Out(args.json).emit(doc, human)
    return 0 if passed == len(results) else 1


def _throwaway(path: Path) -> Any:
    """A throwaway A of the O at ``path`` (validated first; a non-conforming O is refused)."""
    from finops_fabric.pipeline import load_ontology, throwaway_enforcer, validate

    onto = load_ontology(path)
    v = validate(onto)
    if not v.conforms or v.policy is None:
        for f in v.violations:
            print(finding_line(f.to_dict()), file=sys.stderr)
        raise CheckFailed(
            f"{path} does not conform to Σ ({len(v.violations)} problem(s)); no A to test",
            code="test.ontology_invalid",
            hint=f"see `mu validate --ontology={path}`",
        )
    return throwaway_enforcer(v.policy, onto.hash)


def cmd_decide(args: argparse.Namespace) -> int:
    from finops_fabric.enforcer import load_enforcer

    tx = read_transaction(Path(args.transaction), args.home)
    if args.target:
        from finops_fabric.daemon.client import decide_remote

        if args.enforcer:
            raise InputError("give --target=ENV or --enforcer=A, not both", code="cli.usage")
        decision = decide_remote(_store(args), args.target, tx, wait=args.wait)
        Out(args.json).emit(decision, lambda: decision_lines(decision))
        return 0
    if not args.enforcer:
        raise InputError("give --enforcer=A (or --target=ENV)", code="cli.usage")
    decision = load_enforcer(Path(args.enforcer)).decide(tx).to_dict()
    Out(args.json).emit(decision, lambda: decision_lines(decision))
    return 0


def cmd_verify_receipt(args: argparse.Namespace) -> int:
    from finops_fabric.keys import key_id, load_public_key
    from finops_fabric.receipts import load_receipt, verify_receipt

    receipt = load_receipt(Path(args.receipt))
    key = load_public_key(Path(args.public_key))
    try:
        verify_receipt(receipt, key)
    except CheckFailed as e:
        if args.json:
            Out(True).emit({"verified": False, "error": e.to_dict()}, lambda: [])
            return 1
        raise
    doc = {
        "verified": True,
        "receipt_hash": receipt["receipt_hash"],
        "kind": receipt.get("kind"),
        "keyid": key_id(key),
    }
    Out(args.json).emit(
        doc,
        lambda: [
            f"verified: {receipt.get('kind')} receipt {receipt['receipt_hash']} signed by key {key_id(key)}"
        ],
    )
    return 0


def _side(path: Path, *, verify: bool = False) -> Any:
    """One enforcer (directory or archive) to compare. ``verify``: every file must match A's own
    manifest first (:class:`CheckFailed` naming each one that does not), as `mu hash` checks."""
    from finops_fabric.archive import read_enforcer_files
    from finops_fabric.diffing import Side, manifest_of
    from finops_fabric.enforcer import parse_manifest, verify_files

    if verify:
        files = verify_files(path)[0]
    else:
        files = read_enforcer_files(path)
        parse_manifest(files["manifest.json"], str(path))
    return Side(files, manifest_of(files))


def cmd_verify_hashes(args: argparse.Namespace) -> int:
    from finops_fabric.diffing import diff_enforcers

    d = diff_enforcers(_side(Path(args.old), verify=True), _side(Path(args.new), verify=True))

    def human() -> list[str]:
        lines = [f"{s:9} {e['artifact']}  {e['rule']}" for s in ("changed", "added", "removed") for e in d[s]]
        lines += [
            f"support   {e['artifact']} {e['status']}" for e in d["support"] if e["status"] != "unchanged"
        ]
        lines.append(
            f"{len(d['unchanged'])} identical, {len(d['changed'])} changed, {len(d['added'])} added, "
            f"{len(d['removed'])} removed (blast radius {d['blast_radius']['percent']}%)"
        )
        return lines

    Out(args.json).emit(d, human)
    differs = (
        d["changed"] or d["added"] or d["removed"] or any(s["status"] != "unchanged" for s in d["support"])
    )
    return 1 if args.expect_identical and differs else 0


def cmd_diff(args: argparse.Namespace) -> int:
    from finops_fabric.archive import is_archive_path
    from finops_fabric.enforcer import is_enforcer_dir

    old, new = Path(args.old), Path(args.new)
    if all(is_enforcer_dir(p) or is_archive_path(p) for p in (old, new)):
        from finops_fabric.diffing import diff_enforcers, unified_diff

        a, b = _side(old), _side(new)
        d = diff_enforcers(a, b)
        if args.verbose:
            d["code"] = {
                e["artifact"]: unified_diff(
                    a.files.get(e["artifact"], b""), b.files.get(e["artifact"], b""), e["artifact"]
                )
                for e in d["changed"]
            }
        Out(args.json).emit(
            d,
            lambda: (
                [f"{s} {e['artifact']} {e['rule']}" for s in ("changed", "added", "removed") for e in d[s]]
                + [line for v in d.get("code", {}).values() for line in v]
            ),
        )
        return 0
    from finops_fabric.diffing import diff_policies
    from finops_fabric.pipeline import load_ontology
    from finops_fabric.rdf.reader import read_policy

    p_old = read_policy(load_ontology(old).raw.triples)
    p_new = read_policy(load_ontology(new).raw.triples)
    d = diff_policies(p_old, p_new)

    def human() -> list[str]:
        lines = [f"+ {i}" for i in d["added"]] + [f"- {i}" for i in d["removed"]]
        for c in d["changed"]:
            lines.append(f"~ {c['rule']} ({c['label']})")
            lines += [f"    {k}: {v['old']!r} → {v['new']!r}" for k, v in c["fields"].items()]
        lines.append(
            f"{len(d['added'])} added, {len(d['removed'])} removed, {len(d['changed'])} changed, "
            f"{len(d['unchanged'])} unchanged"
        )
        return lines

    Out(args.json).emit(d, human)
    return 0


# --- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from finops_fabric.commands._usage import WORKFLOW, in_order

    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--verbose", "-v", action="store_true", help="more detail; tracebacks on errors")
    common.add_argument("--home", help="the store directory (default $FABRIC_HOME or ./.fabric)")

    p = _Parser(
        prog="mu",
        description="FinOps Fabric: policy ontology O → verified, signed enforcer A",
        epilog=WORKFLOW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"mu {__version__}", help="print the version")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def cmd(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        sp.set_defaults(handler=handler)
        return sp

    cmd("init", cmd_init, "create the store and an operator signing key")
    sp = cmd("keygen", cmd_keygen, "write NAME.key (Ed25519, mode 0600) and NAME.pub")
    sp.add_argument("--out", required=True, metavar="NAME", help="the key files' path without suffix")
    sp = cmd("hash", cmd_hash, "print hash(O) for an ontology or hash(A) for an enforcer")
    sp.add_argument("path", metavar="O|A", help="an ontology (file or directory) or an enforcer directory")
    cmd("generators", cmd_generators, "list the generator versions this installation runs")
    sp = cmd("generate", cmd_generate, "gates, generation, golden suite, determinism check, signed receipt")
    sp.add_argument("--input", required=True, metavar="O", help="the policy (file or directory)")
    sp.add_argument("--output", required=True, metavar="A", help="the enforcer directory to write")
    sp.add_argument(
        "--schema", action="append", default=[], metavar="Σ", help="extra SHACL shapes (repeatable)"
    )
    sp.add_argument("--previous", metavar="A_OLD", help="the enforcer to compare with (blast radius)")
    sp.add_argument(
        "--previous-receipt", metavar="R", help="the receipt to compare with (default: the latest generation)"
    )
    sp.add_argument("--generator-version", metavar="V", help="the generator version (see `mu generators`)")
    sp.add_argument("--receipt", metavar="FILE", help="also write the signed receipt here")
    sp.add_argument(
        "--approval",
        action="append",
        default=[],
        metavar="FILE",
        help="a compliance approval or invariant override from `mu approve` (repeatable)",
    )
    sp = cmd("test", cmd_test, "run golden cases or one transaction against A (or a throwaway A of O)")
    sp.add_argument("--enforcer", metavar="A", help="the enforcer to test")
    sp.add_argument(
        "--ontology",
        metavar="O",
        help="instead of --enforcer: a throwaway A built from O (a dry run; nothing is stored)",
    )
    sp.add_argument("--golden-suite", action="store_true", help="every golden case")
    sp.add_argument("--scenario", metavar="NAME", help="one golden case, by its scenario name")
    sp.add_argument("--transaction", metavar="TX.json", help="one transaction (JSON file)")
    sp = cmd("decide", cmd_decide, "one decision, from A directly (or the daemon)")
    sp.add_argument("--transaction", required=True, metavar="TX.json", help="the transaction (JSON file)")
    sp.add_argument("--enforcer", metavar="A", help="decide with this enforcer, in-process")
    sp.add_argument("--target", metavar="ENV", help="decide with ENV's daemon instead")
    sp.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --target: wait this long for the daemon to answer (default 10)",
    )
    sp = cmd("verify-receipt", cmd_verify_receipt, "check a receipt's schema, hash and signature")
    sp.add_argument("--receipt", required=True, metavar="R", help="the receipt (JSON file)")
    sp.add_argument("--public-key", required=True, metavar="K", help="the signer's public key (PEM)")
    sp = cmd("verify-hashes", cmd_verify_hashes, "artifacts with identical hashes, and those that differ")
    sp.add_argument("--old", required=True, metavar="A_OLD", help="the earlier enforcer")
    sp.add_argument("--new", required=True, metavar="A_NEW", help="the later enforcer")
    sp.add_argument("--expect-identical", action="store_true", help="exit 1 if any artifact differs")
    sp = cmd("diff", cmd_diff, "what changed between two ontologies or two enforcers")
    sp.add_argument("--old", required=True, metavar="OLD", help="the earlier ontology or enforcer")
    sp.add_argument("--new", required=True, metavar="NEW", help="the later ontology or enforcer")
    import importlib

    from finops_fabric import commands

    for module in commands.modules():
        importlib.import_module(f"finops_fabric.commands.{module}").register(cmd)
    in_order(sub)
    return p


def usage_error(parser: argparse.ArgumentParser, argv: Sequence[str], error: InputError) -> InputError:
    """A usage error with "did you mean" for each option the command does not have."""
    from finops_fabric.commands._usage import unknown_options

    unknown = unknown_options(parser, argv)
    if not unknown:
        return error
    return InputError("; ".join(unknown), code="cli.usage", hint=error.hint)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv or "-v" in argv
    as_json = "--json" in argv
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except InputError as e:
            raise usage_error(parser, argv, e) from e
        if not getattr(args, "handler", None):
            parser.print_help(sys.stderr)
            return 2
        return int(args.handler(args))
    except FabricError as e:
        if verbose:
            traceback.print_exc()
        if as_json and isinstance(e, CheckFailed):
            sys.stdout.write(json.dumps({"error": e.to_dict()}, indent=2, sort_keys=True) + "\n")
        print(f"mu: error: {e}", file=sys.stderr)
        if e.hint:
            print(f"mu: hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mu: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: say so plainly, trace only on request
        if verbose:
            traceback.print_exc()
        print(
            f"mu: internal error ({type(e).__name__}: {e}); this is a bug in mu. "
            "Run again with --verbose for the traceback.",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
