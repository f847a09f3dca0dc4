"""Checks 2 to 6 of a diagnosis: drift (O now against the receipted O), tampering (A_prod
against the receipted A), the replay of μ, the differential (A against the reference interpreter
of O) and what production observed. Each returns its :class:`Evidence`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.canonical import sha256_hex
from finops_fabric.daemon.runtime import enforcer_from_files
from finops_fabric.diagnosis.case import Case, Evidence, Progress, _short
from finops_fabric.enforcer import MANIFEST, Enforcer, check_files, parse_manifest, read_tree
from finops_fabric.errors import CheckFailed, FabricError, InputError, Location
from finops_fabric.interpreter import Interpreter, Outcome, comparable
from finops_fabric.pipeline import LoadedOntology, load_snapshot
from finops_fabric.replay import Regenerated, regenerate
from finops_fabric.store import Store

# --- check 2: drift -----------------------------------------------------------------------------


def _fields_text(fields: Mapping[str, Mapping[str, object]]) -> str:
    return "; ".join(f"{name} {v.get('old')!r} → {v.get('new')!r}" for name, v in sorted(fields.items()))


def _drift(
    path: Path | None, now: LoadedOntology | None, receipted: str, policy: m.Policy | None, store: Store
) -> tuple[Evidence, m.Policy | None]:
    from finops_fabric.diffing import diff_policies
    from finops_fabric.rdf.reader import read_policy

    if path is None or now is None:
        return Evidence("drift", "skipped", "no --ontology given: O now was not compared"), None
    data: dict[str, Any] = {"ontology": str(path), "hash": now.hash, "receipted_hash": receipted}
    if now.hash == receipted:
        return Evidence("drift", "pass", f"O at {path} is the receipted O ({receipted})", data), None
    older = next(
        (
            r["receipt_hash"]
            for r in reversed(store.receipts("generation"))
            if (r.get("inputs") or {}).get("ontology_hash") == now.hash
        ),
        None,
    )
    data["older_receipt"] = older
    since = f" (it is the O of the older receipt {older}: reverted without a new receipt)" if older else ""
    detail = f"O at {path} ({now.hash}) is not the receipted O ({receipted}){since}"
    try:
        policy_now: m.Policy | None = read_policy(now.raw.triples)
    except CheckFailed as e:
        policy_now = None
        detail += f"; it does not read as a policy: {e.message}"
    if policy_now is not None and policy is not None:
        d = diff_policies(policy, policy_now)
        data["rules"] = {"added": d["added"], "removed": d["removed"], "changed": d["changed"]}
        parts = [f"{_short(c['rule'])} ({_fields_text(c['fields'])})" for c in d["changed"]]
        parts += [f"{_short(i)} added" for i in d["added"]] + [f"{_short(i)} removed" for i in d["removed"]]
        detail += ": " + (
            "; ".join(parts) if parts else "no rule changed (reference data or golden cases did)"
        )
    return Evidence("drift", "fail", detail, data), policy_now


# --- check 3: tampering -------------------------------------------------------------------------


def _receipted_with(store: Store, enforcer_hash: str) -> str | None:
    for r in reversed(store.receipts("generation")):
        if (r.get("outputs") or {}).get("enforcer_hash") == enforcer_hash:
            return str(r["receipt_hash"])
    return None


def _artifact_problems(
    files: dict[str, bytes], manifest: dict[str, Any] | None, receipt: dict[str, Any], other: str | None
) -> list[dict[str, Any]]:
    """Each artifact of A_prod that is not the receipted one. ``other``: the generation receipt
    whose A A_prod is (then a difference its own manifest vouches for is that A's, not an edit)."""
    outputs = receipt["outputs"]
    rules = {
        str(v["artifact"]): str(iri)
        for iri, v in (outputs.get("rules") or {}).items()
        if isinstance(v, dict) and isinstance(v.get("artifact"), str)
    }
    for a in (manifest or {}).get("artifacts", []):
        if isinstance(a, dict) and "rule" in a and "path" in a:
            rules.setdefault(str(a["path"]), str(a["rule"]))
    own = {p.artifact: p.problem for p in check_files(files, manifest)} if manifest is not None else {}
    listed = outputs.get("artifacts")
    expected: dict[str, str] = (
        {str(k): str(v) for k, v in listed.items()}
        if isinstance(listed, dict)
        else {a["path"]: a["sha256"] for a in (manifest or {}).get("artifacts", [])}
    )
    out: list[dict[str, Any]] = []
    for path in sorted((set(expected) | set(files)) - {MANIFEST}):
        want = expected.get(path)
        have = sha256_hex(files[path]) if path in files else None
        if want == have:
            continue
        if other is not None and path not in own:
            problem, how = "other_generation", f"as in the A of receipt {other}, not as in this receipt's A"
        elif have is None:
            problem, how = "missing", "deleted from A_prod"
        elif want is None:
            problem, how = "extra", "a file the receipted A does not have"
        elif own.get(path) == "changed":
            problem, how = (
                "edited",
                "its bytes differ from the receipted artifact and from A_prod's manifest: a hand edit",
            )
        else:
            problem, how = (
                "edited",
                "its bytes differ from the receipted artifact; A_prod's manifest was rewritten to match",
            )
        entry: dict[str, Any] = {
            "artifact": path,
            "problem": problem,
            "detail": how,
            "expected": want,
            "actual": have,
        }
        if path in rules:
            entry["rule"] = rules[path]
        out.append(entry)
    return out


def _a_prod(case: Case) -> tuple[str | None, dict[str, bytes] | None, str | None, tuple[str, ...]]:
    """(what A_prod is called, its files as they are, why they could not be read, notes):
    ``--enforcer`` as given (a directory or an archive), else the A that served the logged
    decision."""
    from finops_fabric.archive import is_archive_path, read_archive

    root = case.enforcer
    if root is None:
        if case.served is not None:
            return case.served.name, case.served.files, None, case.served.notes
        return None, None, None, ()
    name = f"A_prod at {root}"
    try:
        files = read_archive(root) if is_archive_path(root) else read_tree(root)
    except CheckFailed as e:  # a symbolic link, or an archive member reaching outside A
        return name, None, e.message, ()
    listed = case.receipt["outputs"].get("artifacts")
    if MANIFEST not in files and not (isinstance(listed, dict) and set(files) & set(listed)):
        raise InputError(
            f"{root} is not an enforcer: no manifest.json and none of the receipted A's artifacts",
            code="diagnose.not_an_enforcer",
            location=Location(file=str(root)),
        )
    return name, files, None, ()


def _tampering(case: Case, store: Store) -> tuple[Evidence, Enforcer | None, str | None, str]:
    """(the evidence, A_prod loaded when it is receipted, hash(A_prod), why it was not run)."""
    receipt, logged = case.receipt, case.logged
    expected = str(receipt["outputs"]["enforcer_hash"])
    problems: list[dict[str, Any]] = []
    notes: list[str] = []
    data: dict[str, Any] = {"expected_enforcer_hash": expected}
    if logged is not None:
        data["logged_enforcer_hash"] = logged.enforcer_hash
        if logged.enforcer_hash != expected:
            problems.append(
                {
                    "artifact": None,
                    "problem": "logged_enforcer",
                    "detail": f"decision {logged.id} was made by A {logged.enforcer_hash}, not the receipted "
                    f"A {expected}",
                }
            )
        else:
            notes.append(f"decision {logged.id} was made by the receipted A {expected}")
    if case.enforcer is None and case.served is not None:
        data.update(case.served.data)
    name, files, unreadable, more = _a_prod(case)
    notes += more
    if name is None or (files is None and unreadable is None):
        if logged is None:
            return (
                Evidence("tampering", "skipped", "no --enforcer given: A_prod was not compared"),
                None,
                None,
                "",
            )
        if name is None:
            notes.append(
                f"no successful deployment of {logged.env} in the ledger names where its A came from"
            )
        data["problems"] = problems
        result = "fail" if problems else "pass"
        why = "; ".join([p["detail"] for p in problems] + notes)
        return Evidence("tampering", result, why, data), None, None, "A_prod is not available"
    data["enforcer"] = str(case.enforcer) if case.enforcer is not None else name
    if files is None:
        problems.append({"artifact": None, "problem": "symlink", "detail": unreadable})
        data["problems"] = problems
        return Evidence("tampering", "fail", str(unreadable), data), None, None, "A_prod holds a link"
    raw = files.get(MANIFEST)
    manifest: dict[str, Any] | None = None
    actual = sha256_hex(raw) if raw is not None else None
    data["enforcer_hash"] = actual
    if raw is None:
        problems.append({"artifact": MANIFEST, "problem": "missing", "detail": "A_prod has no manifest.json"})
    else:
        try:
            manifest = parse_manifest(raw, str(case.enforcer or "A_prod"))
        except CheckFailed as e:
            problems.append({"artifact": MANIFEST, "problem": "manifest_edited", "detail": e.message})
    other = _receipted_with(store, actual) if actual is not None and actual != expected else None
    if actual is not None and actual != expected and manifest is not None:
        if other is not None:
            how = f"A_prod is the A of another generation receipt {other}, not of this one"
        elif manifest.get("ontology_hash") != receipt["inputs"]["ontology_hash"]:
            how = (
                f"A_prod was made from O {manifest.get('ontology_hash')} and no receipt in the ledger has it"
            )
        else:
            how = "manifest.json names the receipted O but was rewritten after generation"
        problems.append(
            {
                "artifact": MANIFEST,
                "problem": "enforcer_hash",
                "detail": f"hash(A_prod) is {actual}, the receipt records {expected}: {how}",
                "expected": expected,
                "actual": actual,
            }
        )
    problems += _artifact_problems(files, manifest, receipt, other)
    data["problems"] = problems
    if other is not None:
        data["deployed_receipt"] = other  # A_prod is exactly another receipted A
    data["artifacts_compared"] = len(files)
    runnable: Enforcer | None = None
    not_run = ""
    edited = [
        p for p in problems if p["problem"] in ("edited", "missing", "extra", "manifest_edited", "symlink")
    ]
    if (
        not edited
        and manifest is not None
        and actual is not None
        and (actual == expected or other is not None)
    ):
        try:
            runnable = enforcer_from_files(dict(files), name)
        except FabricError as e:
            not_run = f"A_prod does not load: {e.message}"
    else:
        not_run = (
            "A_prod is not the A of any generation receipt; mu never runs generated code that fails "
            "verification"
        )
    if not problems:
        return (
            Evidence(
                "tampering",
                "pass",
                f"{name} is exactly the receipted A: {len(files)} files match "
                f"outputs.artifacts and hash(A) = {expected}" + "".join(f"; {n}" for n in notes),
                data,
            ),
            runnable,
            actual,
            not_run,
        )
    named = [
        f"{p['artifact']} {p['problem']}" + (f" (rule {p['rule']})" if p.get("rule") else "")
        for p in problems
        if p["artifact"] not in (None, MANIFEST)
    ]
    heads = [p["detail"] for p in problems if p["artifact"] in (None, MANIFEST)]
    detail = f"{name} is not the receipted A: " + "; ".join(heads + named)
    return Evidence("tampering", "fail", detail, data), runnable, actual, not_run


# --- checks 4 and 5: replay, and A against the interpreter ---------------------------------------


_GENERATOR_FAULTS = ("replay.build_failed",)


def _replay(
    receipt: dict[str, Any], store: Store, ontology: Path | None, progress: Progress
) -> tuple[Evidence, Regenerated | None]:
    try:
        ref = regenerate(receipt, store, ontology=ontology, progress=progress)
    except FabricError as e:
        result = "fail" if e.code in _GENERATOR_FAULTS else "unavailable"
        return Evidence("replay", result, f"{e.message} [{e.code}]", {"code": e.code}), None
    data = {
        "enforcer_hash": ref.enforcer_hash,
        "expected_enforcer_hash": ref.expected_enforcer_hash,
        "ontology_source": ref.ontology_source,
        "generator": dict(ref.generator),
        "artifacts": ref.comparison(),
    }
    gen = f"generator {ref.generator['id']} v{ref.generator['version']}"
    if ref.match:
        return (
            Evidence(
                "replay",
                "pass",
                f"replaying with the pinned {gen} from the {ref.ontology_source} reproduces hash(A) "
                f"{ref.expected_enforcer_hash} and all {len(ref.files)} artifacts",
                data,
            ),
            ref,
        )
    bad = [
        e["artifact"] + (f" (rule {e['rule']})" if e.get("rule") else "")
        for e in ref.differing + ref.missing + ref.extra
    ] or [MANIFEST]
    return (
        Evidence(
            "replay",
            "fail",
            f"replaying with the pinned {gen} from the {ref.ontology_source} gives hash(A) "
            f"{ref.enforcer_hash}, not the receipted {ref.expected_enforcer_hash}; "
            f"differing: {', '.join(bad)}",
            data,
        ),
        ref,
    )


def _receipted_policy(store: Store, receipted: str, now: LoadedOntology | None) -> m.Policy | None:
    """The receipted O's policy when the replay could not read it (e.g. the generator is not
    installed): from O_now if it is the receipted O, else the store's snapshot."""
    from finops_fabric.rdf.reader import read_policy

    try:
        if now is not None and now.hash == receipted:
            return read_policy(now.raw.triples)
        return read_policy(load_snapshot(store.get_object("ontology", receipted)).raw.triples)
    except FabricError:
        return None


def receipt_language(receipt: Mapping[str, Any]) -> str | None:
    """The policy language of the generator a receipt pins, if this installation has it."""
    gen = receipt.get("inputs", {}).get("generator")
    version = gen.get("version") if isinstance(gen, dict) else None
    return generators.LANGUAGE.get(str(version)) if version is not None else None


def _decision_of(enforcer: Enforcer, tx: Mapping[str, Any]) -> dict[str, Any]:
    try:
        d = enforcer.decide(tx).to_dict()
    except Exception as e:  # generated code that throws is itself a finding
        return {"error": f"{type(e).__name__}: {e}", "enforcer_hash": enforcer.hash}
    return {
        "decision": d["decision"],
        "fired": [{"rule": f["rule"], "reason": str(f["reason"])} for f in d["fired"]],
        "notifications": [{"rule": n["rule"], "recipient": n["recipient"]} for n in d["notifications"]],
        "audit": [{"rule": a["rule"], "ledger": a["ledger"], "flags": list(a["flags"])} for a in d["audit"]],
        "enforcer_hash": enforcer.hash,
    }


def _outcome_dict(o: Outcome) -> dict[str, Any]:
    return {
        "decision": o.decision,
        "fired": [{"rule": r, "reason": why} for r, why in o.fired],
        "notifications": [{"rule": r, "recipient": to} for r, to in o.notifications],
        "audit": [{"rule": r, "ledger": led, "flags": list(flags)} for r, led, flags in o.audit],
    }


def _interpret(policy: m.Policy, tx: Mapping[str, Any], language: str | None) -> dict[str, Any]:
    """The reference interpreter's decision, in the policy language of the receipt's generator
    (``language``; None: that generator is not installed, so the language is not known)."""
    if language is None:
        return {"error": "the receipt's generator is not installed, so its policy language is not known"}
    try:
        return _outcome_dict(Interpreter(policy, language).decide(tx))
    except Exception as e:  # the oracle failing is reported, not hidden
        return {"error": f"{type(e).__name__}: {e}"}


def _fired(d: Mapping[str, Any]) -> str:
    rules = [_short(f["rule"]) for f in d.get("fired", [])]
    return f"fired {', '.join(rules)}" if rules else "no rule fired"


def _says(d: Mapping[str, Any]) -> str:
    return f"error ({d['error']})" if "error" in d else f"{d['decision']} ({_fired(d)})"


def _differential(
    a: dict[str, Any] | None, a_name: str, o: dict[str, Any] | None
) -> tuple[Evidence, str | None]:
    """(the evidence, d: the decision A and O agree on, or None)."""
    if a is None or o is None:
        missing = "no A could be run" if a is None else "the receipted O could not be read"
        return Evidence("differential", "unavailable", f"{missing}, so A and O were not compared"), None
    if "error" in a or "error" in o:
        result = "fail" if "error" in a and "error" not in o else "unavailable"
        return Evidence(
            "differential", result, f"{a_name}: {_says(a)}; the interpreter of O: {_says(o)}"
        ), None
    if comparable(a) == comparable(o):
        return (
            Evidence(
                "differential",
                "pass",
                f"{a_name} and the reference interpreter of the receipted O both decide {_says(a)}",
            ),
            str(a["decision"]),
        )
    ca, co = comparable(a), comparable(o)
    parts = []
    if ca[0] != co[0]:
        parts.append(f"{a_name} decides {a['decision']}, O decides {o['decision']}")
    only_a, only_o = sorted(set(ca[1]) - set(co[1])), sorted(set(co[1]) - set(ca[1]))
    if only_a:
        parts.append(f"fired only by A: {', '.join(only_a)}")
    if only_o:
        parts.append(f"fired only by O: {', '.join(only_o)}")
    if ca[2:] != co[2:]:
        parts.append("notifications or audit entries differ")
    data = {"a": a, "o": o, "fired_only_by_a": only_a, "fired_only_by_o": only_o}
    return Evidence(
        "differential", "fail", f"{a_name} disagrees with the reference interpreter: {'; '.join(parts)}", data
    ), None


def _production(case: Case, d: str | None, a: dict[str, Any] | None) -> Evidence:
    data: dict[str, Any] = {"observed": case.observed, "expected": case.expected, "decided": d}
    exp = f"; expected {case.expected}" if case.expected else ""
    if case.logged is not None and a is not None and "fired" in a:
        data["logged_fired"] = list(case.logged.fired)
        data["fired_as_logged"] = sorted(case.logged.fired) == sorted(f["rule"] for f in a["fired"])
    if d is None:
        return Evidence(
            "production",
            "unavailable",
            f"production observed {case.observed}{exp}; A and O do not agree on a decision to judge it by",
            data,
        )
    if case.observed != d:
        return Evidence(
            "production",
            "fail",
            f"production observed {case.observed}, but the receipted A and O both decide {d}{exp}",
            data,
        )
    return Evidence(
        "production", "pass", f"production observed {case.observed}, as A and O decide{exp}", data
    )
