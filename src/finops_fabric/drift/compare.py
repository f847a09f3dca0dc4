"""Comparing an A with the A regenerated from its reference receipt, file by file; each
difference carries its cause (see :data:`CAUSES` and the package text)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finops_fabric.canonical import sha256_hex
from finops_fabric.enforcer import MANIFEST, parse_manifest, read_tree
from finops_fabric.errors import CheckFailed, InputError, Location
from finops_fabric.replay import Regenerated
from finops_fabric.store import Store

__all__ = ["CAUSES", "Difference", "DriftReport", "explain", "prod_of"]

CAUSES = (
    "edited",
    "missing",
    "extra",
    "manifest_edited",
    "generator_mismatch",
    "other_generation",
    "enforcer_not_receipted",
    "not_serving",
    "ontology_changed_without_receipt",
)
#: Causes that explain a whole A_prod that is self-consistent but not the receipted A.
_WHOLE_A = ("generator_mismatch", "other_generation", "enforcer_not_receipted")


@dataclass(frozen=True)
class Difference:
    artifact: str
    cause: str
    detail: str
    rule: str | None = None
    expected: str | None = None  # hash of the regenerated artifact
    actual: str | None = None  # hash of the artifact at A_prod

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"artifact": self.artifact, "cause": self.cause, "detail": self.detail}
        if self.rule is not None:
            out["rule"] = self.rule
        if self.expected is not None:
            out["expected"] = self.expected
        if self.actual is not None:
            out["actual"] = self.actual
        return out

    def line(self) -> str:
        rule = f" (rule {self.rule})" if self.rule else ""
        return f"{self.cause:<22} {self.artifact}{rule}: {self.detail}"


@dataclass
class DriftReport:
    enforcer: str  # what was compared: a path, or ENV's copy in the store
    receipt_hash: str  # the reference generation receipt
    ontology_hash: str
    generator: dict[str, str]
    expected_enforcer_hash: str
    enforcer_hash: str | None
    artifacts_compared: int
    differences: list[Difference] = field(default_factory=list)
    ontology: dict[str, Any] | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    information: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.differences)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift": self.drift,
            "differences": [d.to_dict() for d in self.differences],
            "enforcer": self.enforcer,
            "enforcer_hash": self.enforcer_hash,
            "expected_enforcer_hash": self.expected_enforcer_hash,
            "receipt_hash": self.receipt_hash,
            "reference": dict(self.reference),
            "information": list(self.information),
            "ontology_hash": self.ontology_hash,
            "generator": dict(self.generator),
            "artifacts_compared": self.artifacts_compared,
            "ontology": self.ontology,
        }


# --- reading A_prod as it is (no verification: every difference is a finding) ----------------


@dataclass
class _Prod:
    files: dict[str, bytes]
    manifest: dict[str, Any] | None
    manifest_problem: str | None
    hash: str | None

    def listed(self) -> dict[str, str]:
        if self.manifest is None:
            return {}
        return {
            str(a.get("path")): str(a.get("sha256"))
            for a in self.manifest.get("artifacts", [])
            if isinstance(a, dict)
        }

    def rules(self) -> dict[str, str]:
        if self.manifest is None:
            return {}
        return {
            str(a["path"]): str(a["rule"])
            for a in self.manifest.get("artifacts", [])
            if isinstance(a, dict) and "rule" in a and "path" in a
        }


def _read_prod(root: Path, reference: Mapping[str, bytes]) -> _Prod:
    from finops_fabric.archive import is_archive_path, read_archive

    if not root.exists():
        raise InputError(
            f"no enforcer at {root}", code="drift.enforcer_missing", location=Location(file=str(root))
        )
    if not root.is_dir() and not is_archive_path(root):
        raise InputError(
            f"{root} is not a directory or an archive (.tar, .tar.gz, .tgz) holding an enforcer A",
            code="drift.not_an_enforcer",
            location=Location(file=str(root)),
        )
    files = read_archive(root) if is_archive_path(root) else read_tree(root)
    if MANIFEST not in files and not set(files) & set(reference):
        raise InputError(
            f"{root} is not an enforcer: no manifest.json and none of the receipted A's artifacts",
            code="drift.not_an_enforcer",
            location=Location(file=str(root)),
        )
    return prod_of(files, str(root))


def prod_of(files: dict[str, bytes], where: str) -> _Prod:
    data = files.get(MANIFEST)
    if data is None:
        return _Prod(files, None, "missing", None)
    try:
        manifest = parse_manifest(data, where)
    except CheckFailed as e:
        return _Prod(files, None, e.message, sha256_hex(data))
    return _Prod(files, manifest, None, sha256_hex(data))


def _generation_with_enforcer(store: Store, enforcer_hash: str) -> dict[str, Any] | None:
    for r in reversed(store.receipts("generation")):
        outputs = r.get("outputs")
        if isinstance(outputs, dict) and outputs.get("enforcer_hash") == enforcer_hash:
            found: dict[str, Any] = r
            return found
    return None


def _origin(prod: _Prod, ref: Regenerated, store: Store) -> tuple[str | None, str]:
    """Why A_prod's (well-formed) manifest is not the reference one: (cause, one-line detail)."""
    if prod.manifest is None or prod.hash == ref.expected_enforcer_hash:
        return None, ""
    other = _generation_with_enforcer(store, str(prod.hash))
    if other is not None:
        return "other_generation", (
            f"A_prod is the A of generation receipt {other['receipt_hash']} ({prod.hash}), not the A "
            f"{ref.expected_enforcer_hash} of the reference receipt {ref.receipt_hash}"
        )
    gen = prod.manifest.get("generator")
    gen = gen if isinstance(gen, dict) else {}
    pinned = ref.generator
    if any(gen.get(k) != pinned[k] for k in ("id", "version", "source_hash")):
        return "generator_mismatch", (
            f"A_prod was made by generator {gen.get('id')} v{gen.get('version')} "
            f"(source {gen.get('source_hash')}); the receipt pins {pinned['id']} v{pinned['version']} "
            f"(source {pinned['source_hash']})"
        )
    if prod.manifest.get("ontology_hash") != ref.ontology_hash:
        return "enforcer_not_receipted", (
            f"A_prod ({prod.hash}) was made from O {prod.manifest.get('ontology_hash')}, not from the "
            f"receipted O {ref.ontology_hash}, and no receipt in the ledger has its hash"
        )
    return "manifest_edited", (
        f"manifest.json names the receipted O and generator but hashes to {prod.hash}, not "
        f"{ref.expected_enforcer_hash}: it was rewritten after generation"
    )


def _compare(prod: _Prod, ref: Regenerated, store: Store) -> list[Difference]:
    out: list[Difference] = []
    origin, why = _origin(prod, ref, store)
    ref_manifest = ref.files[MANIFEST]
    if prod.manifest_problem == "missing":
        out.append(
            Difference(
                MANIFEST,
                "missing",
                "A_prod has no manifest.json, so nothing vouches for its files",
                expected=sha256_hex(ref_manifest),
            )
        )
    elif prod.manifest_problem is not None:
        out.append(
            Difference(
                MANIFEST,
                "manifest_edited",
                prod.manifest_problem,
                expected=sha256_hex(ref_manifest),
                actual=prod.hash,
            )
        )
    elif origin is not None:
        out.append(Difference(MANIFEST, origin, why, expected=sha256_hex(ref_manifest), actual=prod.hash))

    listed = prod.listed()
    rules = {**prod.rules(), **ref.rule_artifacts()}
    for path in sorted((set(ref.files) | set(prod.files)) - {MANIFEST}):
        want, have = ref.files.get(path), prod.files.get(path)
        if want == have:
            continue
        rule = rules.get(path)
        expected = sha256_hex(want) if want is not None else None
        actual = sha256_hex(have) if have is not None else None
        vouched = actual is not None and listed.get(path) == actual  # A_prod's manifest agrees
        if have is None:
            if origin in _WHOLE_A and path not in listed:
                out.append(
                    Difference(
                        path,
                        str(origin),
                        "the receipted A has this artifact; A_prod, an A from another generation, does not",
                        rule,
                        expected,
                    )
                )
            else:
                out.append(Difference(path, "missing", "deleted from A_prod", rule, expected, None))
        elif want is None:
            if origin in _WHOLE_A and vouched:
                out.append(
                    Difference(
                        path,
                        str(origin),
                        "an artifact of A_prod's own generation, not in the receipted A",
                        rule,
                        None,
                        actual,
                    )
                )
            else:
                listed_note = "listed in its manifest" if path in listed else "not listed in any manifest"
                out.append(
                    Difference(
                        path,
                        "extra",
                        f"a file the receipted A does not have ({listed_note})",
                        rule,
                        None,
                        actual,
                    )
                )
        elif origin in _WHOLE_A and vouched:
            out.append(
                Difference(
                    path,
                    str(origin),
                    "differs from the regenerated artifact but matches A_prod's own manifest",
                    rule,
                    expected,
                    actual,
                )
            )
        else:
            if path in listed and vouched:
                how = "its bytes differ from the regenerated artifact; manifest.json was edited to match"
            elif path in listed:
                how = "its bytes differ from the regenerated artifact and from manifest.json: a hand edit"
            else:
                how = "its bytes differ from the regenerated artifact: a hand edit"
            out.append(Difference(path, "edited", how, rule, expected, actual))
    return out


def _fields_text(fields: Mapping[str, Mapping[str, object]]) -> str:
    return "; ".join(f"{name} {v.get('old')!r} → {v.get('new')!r}" for name, v in sorted(fields.items()))


def _ontology_check(
    ontology: Path, ref: Regenerated, store: Store
) -> tuple[dict[str, Any], list[Difference]]:
    from finops_fabric.diffing import diff_policies
    from finops_fabric.pipeline import load_ontology
    from finops_fabric.rdf.reader import read_policy

    onto = load_ontology(ontology)
    info: dict[str, Any] = {
        "path": str(ontology),
        "hash": onto.hash,
        "receipted_hash": ref.ontology_hash,
        "changed": onto.hash != ref.ontology_hash,
    }
    if not info["changed"]:
        return info, []
    older = next(
        (
            r
            for r in reversed(store.receipts("generation"))
            if isinstance(r.get("inputs"), dict) and r["inputs"].get("ontology_hash") == onto.hash
        ),
        None,
    )
    info["older_receipt"] = older["receipt_hash"] if older is not None else None
    since = (
        f" (it is the O of the older receipt {older['receipt_hash']}: reverted without a new receipt)"
        if older is not None
        else ""
    )
    where = str(ontology)
    cause = "ontology_changed_without_receipt"
    base = f"O ({onto.hash}) is not the receipted O ({ref.ontology_hash}){since}"
    try:
        now = read_policy(onto.raw.triples)
    except CheckFailed as e:
        return info, [Difference(where, cause, f"{base}; it does not read as a policy: {e}")]
    d = diff_policies(ref.policy, now)
    info["rules"] = {
        "added": d["added"],
        "removed": d["removed"],
        "changed": [c["rule"] for c in d["changed"]],
    }
    out = [
        Difference(
            where, cause, f"changed in O without a receipt: {_fields_text(c['fields'])}{since}", c["rule"]
        )
        for c in d["changed"]
    ]
    out += [Difference(where, cause, f"added to O without a receipt{since}", iri) for iri in d["added"]]
    out += [Difference(where, cause, f"removed from O without a receipt{since}", iri) for iri in d["removed"]]
    if not out:
        out.append(Difference(where, cause, base + "; no rule changed (reference data or golden cases did)"))
    return info, out


def explain(report: DriftReport) -> list[str]:
    """The human summary: one line per difference, then what the reference was and any
    information (e.g. a newer A that is not deployed)."""
    why = report.reference.get("why", f"receipt {report.receipt_hash}")
    if not report.drift:
        lines = [
            f"no drift: {report.enforcer} is exactly the A regenerated from generation receipt "
            f"{report.receipt_hash} ({why}; {report.artifacts_compared} artifacts, "
            f"{report.expected_enforcer_hash})"
        ]
        if report.ontology is not None:
            lines.append(f"O at {report.ontology['path']} is the receipted O ({report.ontology_hash})")
    else:
        lines = [
            f"DRIFT: {len(report.differences)} difference(s) between {report.enforcer} and the A "
            f"regenerated from generation receipt {report.receipt_hash} ({why})"
        ]
        lines += ["  " + d.line() for d in report.differences]
    lines += [f"note: {i}" for i in report.information]
    return lines
