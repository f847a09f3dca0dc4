"""Generator v3: policy language 1.1 ("fail closed"). The same A layout as generators v1 and v2
(one module per rule, a runtime, reference data, the supervision spec, the compiled golden cases
and a manifest, hash(A) by the same formula); the manifest also records the language version.

It decides exactly as generator v2 does and adds language 1.1's input checks: a transaction
whose type is missing or not a declared code, whose amount is missing, not a plain decimal or
negative, or whose actor level is missing or undeclared is rejected, each check a fired entry
under its own IRI with a reason naming the field, its value and what O declares. The runtime
(``runtime.py``) fuses the rule fragments into one decide path per declared type, as v2's does,
and builds reasons and the decision JSON only when they are asked for. A one-rule change in O
still changes exactly one rule artifact (the input checks live in the runtime and read the
declared codes from ``reference.py``).

hash(A) = SHA-256 of the bytes of A's ``manifest.json``, which is RFC 8785 canonical JSON and
lists every other file of A with its SHA-256. An auditor recomputes it with standard tools::

    sha256sum A/manifest.json
    jq -r '.artifacts[] | "\\(.sha256[7:])  \\(.path)"' A/manifest.json | (cd A && sha256sum -c)
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
from collections.abc import Callable
from importlib import resources
from types import ModuleType
from typing import Any

from finops_fabric import model as m
from finops_fabric.canonical import canonical_json
from finops_fabric.errors import InputError
from finops_fabric.generators.v3.emit import artifact_path, emit_reference, emit_rule, process_kind

GENERATOR_ID = "finops-fabric/python-enforcer"
VERSION = "3"
LANGUAGE = "1.1"
MANIFEST_FORMAT = "finops-fabric-enforcer/1"
HASH_FORMULA = (
    "hash(A) = SHA-256 of manifest.json (RFC 8785 canonical JSON listing every other file's SHA-256)"
)

Cache = tuple[Callable[[str], bytes | None], Callable[[str, bytes], None]]


def runtime_source() -> bytes:
    return resources.files(__package__).joinpath("runtime.py").read_bytes()


def rule_cache_key(rule: m.Rule, levels: dict[str, int], source_hash: str) -> str:
    """The cache key of a rule's module: generator, its source, and the rule's own content."""
    content = repr(rule) + (repr(sorted(levels.items())) if rule.kind == "restriction" else "")
    h = hashlib.sha256(f"{GENERATOR_ID}\n{VERSION}\n{source_hash}\n{content}".encode())
    return h.hexdigest()


_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)").fullmatch


def golden_transaction(case: m.GoldenCase) -> dict[str, object]:
    """A golden case's transaction, its amount in plain decimal notation (language 1.1 refuses an
    exponent, which is how a very small decimal such as 0.0000001 prints by default)."""
    tx = case.transaction()
    if not _PLAIN(case.amount_text):
        tx["amount"] = format(case.amount, "f")
    return tx


def golden_document(policy: m.Policy) -> list[dict[str, Any]]:
    return [
        {
            "scenario": g.scenario,
            "case": g.iri,
            "transaction": golden_transaction(g),
            "expect": g.expect,
            "expect_fired": list(g.expect_fired) if g.expect_fired is not None else None,
            "expect_notified": list(g.expect_notified) if g.expect_notified is not None else None,
        }
        for g in policy.golden
    ]


def build(
    policy: m.Policy, ontology_hash: str, source_hash: str, cache: Cache | None = None
) -> dict[str, bytes]:
    """Every file of A (path relative to A, ``/`` separators) with its bytes, manifest included."""
    levels = {lv.code: lv.rank for lv in policy.levels}
    files: dict[str, bytes] = {"runtime.py": runtime_source(), "reference.py": emit_reference(policy)}
    rule_of: dict[str, str] = {}
    processes: list[dict[str, str]] = []
    for rule in policy.rules:
        path = artifact_path(rule)
        if path in files:  # a hash-prefix collision between two rule IRIs: refuse, never overwrite
            raise ValueError(f"two rules map to the same artifact {path}")
        data = None
        key = rule_cache_key(rule, levels, source_hash)
        if cache is not None:
            data = cache[0](key)
        if data is None:
            data = emit_rule(rule, levels)
            if cache is not None:
                cache[1](key, data)
        files[path] = data
        rule_of[path] = rule.iri
        processes.append(
            {
                "rule": rule.iri,
                "artifact": path,
                "kind": process_kind(rule),
                "restart": "in_request_path" if process_kind(rule) == "decision" else "permanent",
            }
        )
    processes.sort(key=lambda p: p["artifact"])
    supervision: dict[str, object] = {
        "format": "finops-fabric-supervision/1",
        "processes": processes,
        "intensity": {"max_restarts": 5, "period_seconds": 60},
        "backoff": {"initial_ms": 500, "max_ms": 30000, "jitter_percent": 20},
    }
    files["supervision.json"] = canonical_json(supervision)
    files["golden.json"] = canonical_json(golden_document(policy))
    artifacts = []
    for path in sorted(files):
        entry: dict[str, str] = {"path": path, "sha256": "sha256:" + hashlib.sha256(files[path]).hexdigest()}
        if path in rule_of:
            entry["rule"] = rule_of[path]
            entry["kind"] = process_kind(policy.rule(rule_of[path]))  # type: ignore[arg-type]
        else:
            entry["kind"] = "support"
        artifacts.append(entry)
    manifest = {
        "format": MANIFEST_FORMAT,
        "generator": {"id": GENERATOR_ID, "version": VERSION, "source_hash": source_hash},
        "language": LANGUAGE,
        "ontology_hash": ontology_hash,
        "policy": {"iri": policy.iri, "title": policy.title},
        "artifacts": artifacts,
        "hash_formula": HASH_FORMULA,
    }
    files["manifest.json"] = canonical_json(manifest)
    return files


def _exec_module(name: str, path: str, source: bytes) -> tuple[ModuleType, ast.Module]:
    """Run one verified file of A in a fresh namespace; return it with its syntax tree."""
    mod = ModuleType(name)
    mod.__file__ = path
    tree = ast.parse(source, f"<enforcer>/{path}")  # parsed once: compiled here, fused by the runtime
    code = compile(tree, f"<enforcer>/{path}", "exec", dont_inherit=True)
    exec(code, mod.__dict__)  # noqa: S102 - verified generated code, never text from O
    return mod, tree


def load(files: dict[str, bytes], manifest: dict[str, Any], enforcer_hash: str) -> Any:
    """Build the runtime enforcer from A's (already hash-verified) files: the rule modules with
    their syntax trees go to the runtime, which fuses their fragments."""
    runtime, _ = _exec_module("finops_enforcer.runtime", "runtime.py", files["runtime.py"])
    reference, _ = _exec_module("finops_enforcer.reference", "reference.py", files["reference.py"])
    modules = [
        _exec_module("finops_enforcer.rules." + a["path"][6:-3], a["path"], files[a["path"]])
        for a in manifest["artifacts"]
        if "rule" in a
    ]
    not_a_mapping = functools.partial(InputError, code="tx.not_object")
    return runtime.Enforcer(reference.RANKS, reference.TYPES, modules, enforcer_hash, not_a_mapping)
