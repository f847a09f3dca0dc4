"""The line from O to A: load → ontology gate → invariant gate → generate → determinism →
golden → replay → operational → waste elimination → signed receipt.

Every gate records PASS / FAIL / SKIPPED with its evidence. A failed gate stops the line:
no A is written (it is built in a temporary directory and only renamed into place when every
gate passed), and a rejection receipt is kept instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.archive import check_output, is_archive_path, read_enforcer_files, write_archive
from finops_fabric.canonical import canonical_json
from finops_fabric.enforcer import MANIFEST, Enforcer, is_enforcer_dir, load_enforcer, parse_manifest
from finops_fabric.errors import CheckFailed, Finding, InputError
from finops_fabric.golden import GoldenReport, run_golden_gate
from finops_fabric.invariants import INVARIANTS, check_invariants
from finops_fabric.rdf.canon import canonical_nquads
from finops_fabric.rdf.load import RawGraph, load_graph, load_many
from finops_fabric.rdf.org_shapes import load_org_shapes
from finops_fabric.rdf.reader import read_policy
from finops_fabric.store import Store

GATES = ("ontology", "invariant", "determinism", "golden", "replay", "operational", "waste_elimination")
DOCTRINE = ("correct_by_construction", "idempotence", "typing", "provenance", "no_partials", "minimality")
Progress = Callable[[str], None]


def quiet(_: str) -> None:
    return None


@dataclass
class LoadedOntology:
    raw: RawGraph
    canonical: bytes
    hash: str

    @property
    def files(self) -> tuple[Path, ...]:
        return self.raw.files


def load_ontology(path: str | os.PathLike[str]) -> LoadedOntology:
    raw = load_graph(Path(path))
    canon = canonical_nquads(raw.triples)
    return LoadedOntology(raw, canon, "sha256:" + hashlib.sha256(canon).hexdigest())


def load_snapshot(canonical: bytes, name: str = "snapshot.nq") -> LoadedOntology:
    """O from its canonical N-Quads (a store snapshot); the hash is checked by the caller."""
    import pyoxigraph as ox  # the snapshot is N-Quads: parse it at the RDF boundary

    try:
        triples = tuple(q.triple for q in ox.parse(canonical, ox.RdfFormat.N_QUADS))
    except SyntaxError as e:
        raise CheckFailed(
            f"ontology snapshot {name} is not valid N-Quads: {e}", code="store.snapshot_corrupt"
        ) from e
    raw = RawGraph(triples, (Path(name),))
    return LoadedOntology(raw, canonical, "sha256:" + hashlib.sha256(canonical).hexdigest())


def schema_hash(schemas: Sequence[Path]) -> str:
    """Hash of Σ: the base shapes Σ₀ shipped with this version plus the organisation's shapes."""
    base = Path(str(resources.files("finops_fabric.rdf").joinpath("data", "shapes.ttl")))
    # the organisation's shapes are checked to be data here already, before anything is stored
    triples = list(dict.fromkeys([*load_many([base]).triples, *load_org_shapes(list(schemas)).triples]))
    return "sha256:" + hashlib.sha256(canonical_nquads(triples)).hexdigest()


# --- validation ---------------------------------------------------------------------------


@dataclass
class Validation:
    findings: list[Finding]
    policy: m.Policy | None
    gates: dict[str, dict[str, Any]]

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "violation"]

    @property
    def conforms(self) -> bool:
        return not self.violations and self.policy is not None

    @property
    def invariant_violations(self) -> list[Finding]:
        return [f for f in self.violations if f.gate == "invariant"]


def _gate(status: str, **evidence: Any) -> dict[str, Any]:
    return {"status": status, "evidence": evidence}


def warning_record(f: Finding) -> dict[str, Any]:
    """A warning as a receipt keeps it: what it says, about which node, and where it is written."""
    out: dict[str, Any] = {"message": f.message, "focus": f.focus}
    out["location"] = f.location.to_dict() if f.location is not None else None
    if f.invariant is not None:
        out["invariant"] = f.invariant
    return out


def compact(text: str, prefixes: dict[str, str]) -> str:
    """Write the IRIs in a message the way the policy's own files write them (``ex:rule``)."""
    for name, ns in sorted(prefixes.items(), key=lambda kv: -len(kv[1])):
        if ns:
            text = re.sub(re.escape(ns) + r"([A-Za-z0-9_][\w.-]*[\w-]|[A-Za-z0-9_])", name + r":\1", text)
    return text


def validate(onto: LoadedOntology, schemas: Sequence[Path] = ()) -> Validation:
    from finops_fabric.rdf import shacl
    from finops_fabric.rdf.locate import SourceIndex

    findings = list(shacl.validate_shapes(onto.raw, list(schemas)))
    policy: m.Policy | None = None
    gates: dict[str, dict[str, Any]] = {}
    shape_violations = [f for f in findings if f.severity == "violation"]
    if not shape_violations:
        try:
            policy = read_policy(onto.raw.triples)
        except CheckFailed as e:
            node = e.location.node if e.location and e.location.node else ""
            loc = SourceIndex(list(onto.files)).find(node) if node else None
            findings.append(Finding(gate="ontology", focus=node, message=e.message, location=loc))
    onto_violations = [f for f in findings if f.gate == "ontology" and f.severity == "violation"]
    gates["ontology"] = _gate(
        "FAIL" if onto_violations else "PASS",
        violations=len(onto_violations),
        warnings=[
            warning_record(f) for f in sorted(findings, key=Finding.sort_key) if f.severity == "warning"
        ],
    )
    if policy is None:
        gates["invariant"] = _gate("SKIPPED", reason="the ontology gate failed")
    else:
        inv = check_invariants(policy)
        index = SourceIndex(list(onto.files))
        inv = [
            Finding(
                **{
                    **f.__dict__,
                    "location": index.find(f.focus),
                    "message": compact(f.message, index.prefixes()),
                }
            )
            for f in inv
        ]
        findings += inv
        bad = sorted({f.invariant or "" for f in inv if f.severity == "violation"})
        gates["invariant"] = _gate(
            "FAIL" if bad else "PASS",
            checked=list(INVARIANTS),
            violated=bad,
            warnings=[
                warning_record(f) for f in sorted(inv, key=Finding.sort_key) if f.severity == "warning"
            ],
        )
    return Validation(sorted(findings, key=Finding.sort_key), policy, gates)


# --- dry run: the golden gate on a throwaway A ----------------------------------------------


@dataclass
class DryRun:
    """What ``mu validate --golden`` found: the validation, and (when O conforms) the golden gate
    on a throwaway A made by ``generator``."""

    validation: Validation
    generator: dict[str, str]
    golden: GoldenReport | None = None
    enforcer_hash: str | None = None

    @property
    def ok(self) -> bool:
        return self.validation.conforms and self.golden is not None and self.golden.ok


def throwaway_enforcer(
    policy: m.Policy, ontology_hash: str, generator_version: str | None = None
) -> Enforcer:
    """A for ``policy``, built in a temporary directory, verified and loaded as the golden gate
    loads it, and the directory removed (A lives on in memory). Nothing reaches the store."""
    files = generators.get(generator_version).build(policy, ontology_hash, None)
    with tempfile.TemporaryDirectory(prefix="mu-dry-run-") as tmp:
        write_tree(Path(tmp), files, durable=False)
        return load_enforcer(tmp)


def dry_run(
    onto: LoadedOntology, schemas: Sequence[Path] = (), generator_version: str | None = None
) -> DryRun:
    """Validate O and, when it conforms, run the golden gate (compliance's cases and the derived
    boundary cases, on A and on the reference interpreter) on a throwaway A. A draft tried this
    way leaves no ledger entry and no object in the store."""
    v = validate(onto, schemas)
    gen = generators.get(generator_version)
    if not v.conforms or v.policy is None:
        return DryRun(v, gen.describe())
    enforcer = throwaway_enforcer(v.policy, onto.hash, gen.version)
    return DryRun(v, gen.describe(), run_golden_gate(v.policy, enforcer), enforcer.hash)


# --- generation ---------------------------------------------------------------------------


@dataclass
class Previous:
    ontology_hash: str | None
    rules: dict[str, str]  # rule IRI -> artifact sha256
    canonical: bytes | None = None
    source: str = "none"


@dataclass
class GenerateResult:
    status: str  # generated | rejected
    receipt: dict[str, Any]
    enforcer_hash: str | None = None
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    golden: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rules_of_manifest(manifest: dict[str, Any]) -> dict[str, str]:
    return {a["rule"]: a["sha256"] for a in manifest["artifacts"] if "rule" in a}


def previous_from(store: Store, previous: Path | None, previous_receipt: Path | None) -> Previous:
    from finops_fabric.receipts import load_receipt

    if previous is not None:
        if not is_enforcer_dir(previous) and not is_archive_path(previous):
            raise InputError(f"--previous={previous} is not an enforcer directory", code="generate.previous")
        man = parse_manifest(read_enforcer_files(previous)[MANIFEST], str(previous))
        return Previous(
            man.get("ontology_hash"),
            rules_of_manifest(man),
            _snapshot(store, man.get("ontology_hash")),
            f"enforcer {previous}",
        )
    if previous_receipt is not None:
        r = load_receipt(previous_receipt)
        return _previous_of_receipt(store, r, f"receipt {previous_receipt}")
    latest = store.latest("generation")
    if latest is None:
        return Previous(None, {}, None, "none")
    return _previous_of_receipt(store, latest, "the store's latest generation")


def _previous_of_receipt(store: Store, r: dict[str, Any], source: str) -> Previous:
    outputs = r.get("outputs") or {}
    rules = {iri: v["sha256"] for iri, v in (outputs.get("rules") or {}).items()}
    oh = (r.get("inputs") or {}).get("ontology_hash")
    return Previous(oh, rules, _snapshot(store, oh), source)


def _snapshot(store: Store, ontology_hash: object) -> bytes | None:
    if not isinstance(ontology_hash, str):
        return None
    try:
        return store.get_object("ontology", ontology_hash)
    except InputError:
        return None


def delta(old: bytes | None, new: bytes) -> dict[str, list[str]]:
    """ΔO as data: the canonical N-Quads lines added and removed."""
    # N-Quads lines end with "\n" only; str.splitlines would also split at U+2028 inside literals.
    old_lines = set(old.decode("utf-8").split("\n")) - {""} if old is not None else set()
    new_lines = set(new.decode("utf-8").split("\n")) - {""}
    return {"added": sorted(new_lines - old_lines), "removed": sorted(old_lines - new_lines)}


def _rejection(
    store: Store,
    base: dict[str, Any],
    gates: dict[str, dict[str, Any]],
    findings: list[Finding],
    reason: str,
    receipt_file: Path | None,
) -> GenerateResult:
    for g in GATES:
        gates.setdefault(g, _gate("SKIPPED", reason="the line stopped at an earlier gate"))
    invariant_stop = any(f.gate == "invariant" and f.severity == "violation" for f in findings)
    body = {
        **base,
        "kind": "rejection",
        "time": _now(),
        "gates": gates,
        "reason": reason,
        "findings": [f.to_dict() for f in findings],
        "compliance_override_required": invariant_stop,
        "outputs": {"enforcer_hash": None},
    }
    if invariant_stop:
        body["violated_invariants"] = sorted(
            {
                f.invariant
                for f in findings
                if f.gate == "invariant" and f.severity == "violation" and f.invariant
            }
        )
    sealed = store.append(body)
    if receipt_file is not None:
        from finops_fabric.receipts import write_json_atomic

        write_json_atomic(receipt_file, sealed)
    return GenerateResult("rejected", sealed, findings=findings)


def _verified_approvals(
    store: Store, files: Sequence[Path], ontology_hash: str
) -> list[tuple[Any, dict[str, Any]]]:
    """Each approval file verified against the store's current roster, for exactly this O."""
    if not files:
        return []
    from finops_fabric.approvals import load_roster, verify_approval
    from finops_fabric.receipts import load_receipt

    roster = load_roster(store.home)
    out = []
    for path in files:
        doc = load_receipt(path)
        try:
            approval = verify_approval(doc, roster, ontology_hash=ontology_hash, any_override=True)
        except CheckFailed as exc:
            raise CheckFailed(
                f"approval {path} lets nothing through: {exc.message}", code=exc.code, hint=exc.hint
            ) from exc
        out.append((approval, doc))
    return out


def _approval_record(approval: Any, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "invariant": approval.override,
        "approval_hash": approval.approval_hash,
        "keyid": approval.keyid,
        "signer": approval.signer,
        "approval": doc,
    }


def _used(base: dict[str, Any]) -> list[str]:
    return [str(o["invariant"]) for o in base.get("overrides", [])]


def _overridden(
    v: Validation,
    gates: dict[str, dict[str, Any]],
    offered: list[tuple[Any, dict[str, Any]]],
    base: dict[str, Any],
) -> bool:
    """Whether compliance overrides cover every violation (all of them of the invariant gate).
    If so, the invariant gate passes under them and ``base["overrides"]`` records each one used."""
    by_invariant = {a.override: (a, doc) for a, doc in offered if a.override}
    if v.policy is None or not by_invariant:
        return False
    violated = {f.invariant for f in v.violations}
    if any(f.gate != "invariant" for f in v.violations) or not violated <= set(by_invariant):
        gates["invariant"]["evidence"]["overrides_offered"] = sorted(by_invariant)
        return False
    used = sorted(str(i) for i in violated)
    base["overrides"] = [_approval_record(*by_invariant[i]) for i in used]
    gates["invariant"] = _gate(
        "PASS",
        **{
            **gates["invariant"]["evidence"],
            "overridden": used,
            "override_approvals": [by_invariant[i][0].approval_hash for i in used],
            "note": "violations of " + ", ".join(used) + " let through by a signed compliance override",
        },
    )
    return True


def write_tree(root: Path, files: Mapping[str, bytes], *, durable: bool = True) -> None:
    """Write every file of A under ``root``. ``durable``: on disk before A is renamed into place
    (one flush for the batch); a throwaway directory that is only loaded skips it."""
    for rel, data in sorted(files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if durable:
        os.sync()


#: A ``.NAME.partial-*`` sibling older than this is stale whatever its pid says (the pid may
#: have been reused by an unrelated process).
PARTIAL_MAX_AGE_S = 24 * 3600


def partial_dir(output: Path) -> Path:
    """A fresh private directory ``.NAME.partial-PID-XXXXXXXX`` beside ``output`` to build A in,
    after removing the stale ones an earlier run left there (:func:`sweep_partials`)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    sweep_partials(output)
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-{os.getpid()}-", dir=output.parent))


def sweep_partials(output: Path, *, now: float | None = None) -> list[Path]:
    """Remove the ``.NAME.partial-*`` siblings of ``output`` that no running build owns: those
    whose pid (``.NAME.partial-PID-…``) is not a live process of this machine, and any older
    than :data:`PARTIAL_MAX_AGE_S` (also those without a pid, written by earlier versions). A
    live process's directory (a concurrent build of the same output) is left alone, and so is
    anything that is not a directory of this user. Returns what was removed."""
    pattern = re.compile(re.escape(f".{output.name}.partial-") + r"(?:(\d+)-)?[^/]+")
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        siblings = list(output.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = pattern.fullmatch(p.name)
        if m is None:
            continue
        try:
            st = p.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        pid = int(m.group(1)) if m.group(1) else None
        if now - st.st_mtime < PARTIAL_MAX_AGE_S and (pid is None or _pid_alive(pid)):
            continue
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def install_tree(tmp: Path, output: Path) -> None:
    """Move the complete A from ``tmp`` to ``output``; an existing enforcer there is replaced whole."""
    if output.exists():
        if not is_enforcer_dir(output) and any(output.iterdir()):
            raise InputError(
                f"--output={output} exists and is not an enforcer; refusing to overwrite it",
                code="generate.output_exists",
            )
        old = output.with_name(output.name + ".old-" + tmp.name.rsplit("-", 1)[-1])
        os.rename(output, old)
        os.rename(tmp, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, output)


def generate(
    input_path: Path,
    output: Path,
    store: Store,
    *,
    schemas: Sequence[Path] = (),
    previous: Path | None = None,
    previous_receipt: Path | None = None,
    generator_version: str | None = None,
    receipt_file: Path | None = None,
    approvals: Sequence[Path] = (),
    progress: Progress = quiet,
) -> GenerateResult:
    """The whole line. ``approvals`` are compliance approval files (``mu approve``): each must
    verify against the store's roster for exactly this hash(O), else :class:`CheckFailed` before
    any gate runs; an override among them lets exactly its invariant through the invariant gate,
    and the receipt records it (``overrides``)."""
    store.require()
    gen = generators.get(generator_version)
    if is_archive_path(output):
        check_output(output)
    elif output.exists() and not output.is_dir():
        raise InputError(f"--output={output} exists and is not a directory", code="generate.output_exists")
    progress(f"loading {input_path}")
    onto = load_ontology(input_path)
    prev = previous_from(store, previous, previous_receipt)
    store.put_object(onto.canonical, "ontology")
    d = delta(prev.canonical, onto.canonical)
    delta_hash = store.put_object(canonical_json(d), "delta")
    base: dict[str, Any] = {
        "inputs": {
            "ontology_hash": onto.hash,
            "ontology_snapshot": {"kind": "ontology", "digest": onto.hash},
            "ontology_sources": sorted(f.name for f in onto.files),
            "previous_ontology_hash": prev.ontology_hash,
            "previous_source": prev.source,
            "delta_hash": delta_hash,
            "delta_size": {"added": len(d["added"]), "removed": len(d["removed"])},
            "schema_hash": schema_hash(schemas),
            "schemas": sorted(p.name for p in schemas),
            "generator": gen.describe(),
        },
        "doctrine": list(DOCTRINE),
    }
    offered = _verified_approvals(store, approvals, onto.hash)
    if offered:
        base["approvals"] = [_approval_record(a, doc) for a, doc in offered if a.override is None]
    progress("ontology gate and invariant gate")
    v = validate(onto, schemas)
    gates = dict(v.gates)
    if not v.conforms and not _overridden(v, gates, offered, base):
        reason = (
            "O does not satisfy Σ" if gates["ontology"]["status"] == "FAIL" else "an invariant is violated"
        )
        given = sorted({a.override for a, _ in offered if a.override})
        if gates["ontology"]["status"] != "FAIL" and given:
            reason += f" (the compliance override given covers only: {', '.join(given)})"
        return _rejection(store, base, gates, v.findings, reason, receipt_file)
    unused = sorted({str(a.override) for a, _ in offered if a.override} - set(_used(base)))
    if unused:
        gates["invariant"]["evidence"]["unused_overrides"] = unused
    assert v.policy is not None
    policy = v.policy
    progress(f"generating {len(policy.rules)} rules with generator v{gen.version}")
    reused = [0]

    def cache_get(key: str) -> bytes | None:
        data = store.cache_get(key)
        if data is not None:
            reused[0] += 1
        return data

    files = gen.build(policy, onto.hash, (cache_get, store.cache_put))
    progress("determinism gate: generating again from scratch")
    again = gen.build(policy, onto.hash, None)
    differing = sorted(p for p in set(files) | set(again) if files.get(p) != again.get(p))
    if differing:
        gates["determinism"] = _gate("FAIL", differing_artifacts=differing)
        return _rejection(store, base, gates, v.findings, "generation is not deterministic", receipt_file)
    enforcer_hash = "sha256:" + hashlib.sha256(files[MANIFEST]).hexdigest()
    gates["determinism"] = _gate("PASS", builds=2, artifacts=len(files), enforcer_hash=enforcer_hash)

    output = Path(output)
    tmp = partial_dir(output)
    try:
        write_tree(tmp, files)
        progress("golden gate: compliance cases and derived boundary cases")
        enforcer = load_enforcer(tmp)
        report = run_golden_gate(policy, enforcer)
        gates["golden"] = _gate("PASS" if report.ok else "FAIL", **report.evidence())
        golden_summary = {
            "passed": report.passed,
            "failed": len(report.failed_cases),
            "cases": [
                {"scenario": c["scenario"], "ok": c["ok"], "problems": c["problems"]} for c in report.cases
            ],
        }
        base["golden"] = golden_summary
        if not report.ok:
            if report.disagreements:
                reason = "generator defect: the enforcer disagrees with the reference interpreter"
            else:
                reason = "golden cases failed: O does not decide as compliance's cases expect"
            return _rejection(store, base, gates, v.findings, reason, receipt_file)
        progress("replay gate: regenerating from the stored snapshot")
        replayed = gen.build(
            read_policy(load_snapshot(store.get_object("ontology", onto.hash)).raw.triples), onto.hash, None
        )
        same = replayed.get(MANIFEST) == files[MANIFEST]
        gates["replay"] = _gate(
            "PASS" if same else "FAIL",
            source="store snapshot of O (canonical N-Quads)",
            enforcer_hash="sha256:" + hashlib.sha256(replayed.get(MANIFEST, b"")).hexdigest(),
        )
        if not same:
            return _rejection(
                store, base, gates, v.findings, "the O snapshot does not regenerate A", receipt_file
            )
        gates["operational"] = _gate(
            "PASS",
            boot="loaded in-process with every artifact hash verified",
            health=f"decided {len(report.cases) + report.derived_whole_checks} transactions",
        )
        new_rules = rules_of_manifest(json.loads(files[MANIFEST]))
        changed = sorted(i for i in new_rules if i in prev.rules and prev.rules[i] != new_rules[i])
        unchanged = sorted(i for i in new_rules if prev.rules.get(i) == new_rules[i])
        added = sorted(i for i in new_rules if i not in prev.rules)
        removed = sorted(i for i in prev.rules if i not in new_rules)
        touched = len(changed) + len(added) + len(removed)
        total = max(len(new_rules) + len(removed), 1)
        gates["waste_elimination"] = _gate(
            "PASS",
            modules_reused_from_cache=reused[0],
            modules_generated=len(new_rules) - reused[0],
            blast_radius=f"{touched}/{total}",
            compared_with=prev.source,
        )
        store.put_tree(files)
        if is_archive_path(output):
            write_archive(files, output)
        else:
            install_tree(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    outputs = {
        "enforcer_hash": enforcer_hash,
        "artifacts": {a: "sha256:" + hashlib.sha256(b).hexdigest() for a, b in sorted(files.items())},
        "rules": {
            a["rule"]: {"artifact": a["path"], "sha256": a["sha256"]}
            for a in json.loads(files[MANIFEST])["artifacts"]
            if "rule" in a
        },
        "changed": changed,
        "unchanged": unchanged,
        "added": added,
        "removed": removed,
        "blast_radius": {"touched": touched, "total": total, "percent": round(100 * touched / total, 1)},
    }
    body = {
        **base,
        "kind": "generation",
        "time": _now(),
        "gates": gates,
        "outputs": outputs,
        "findings": [f.to_dict() for f in v.findings],
    }
    sealed = store.append(body)
    if receipt_file is not None:
        from finops_fabric.receipts import write_json_atomic

        write_json_atomic(receipt_file, sealed)
    return GenerateResult(
        "generated", sealed, enforcer_hash, changed, unchanged, added, removed, v.findings, base["golden"]
    )
