"""What changed between two policies (rule by rule, field by field, in the policy's own terms)
and between two enforcers (artifact by artifact, with the rule each one realises)."""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from finops_fabric import model as m
from finops_fabric.generators.v1.emit import condition_text

_FIELD_NAMES = {
    "label": "rdfs:label",
    "rationale": "fab:rationale",
    "applies_to": "fab:appliesTo",
    "threshold_text": "fab:amountThreshold",
    "required": "fab:requiredAuthority",
    "condition": "fab:condition",
    "override": "fab:overrideAuthority",
    "fraud_check": "rdf:type",
    "event": "fab:onEvent",
    "recipients": "fab:recipient",
    "min_authority": "fab:minAuthority",
    "ledger": "fab:ledger",
    "flags": "fab:flag",
}
_CLASS = {
    "approval": "fab:ApprovalRule",
    "sod": "fab:SegregationOfDutyRule",
    "restriction": "fab:RestrictionRule",
    "notification": "fab:NotificationRule",
    "audit": "fab:AuditLogRule",
}


def _show(value: object) -> object:
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, m.AuthorityLevel):
        return value.code
    if isinstance(value, tuple):
        return [_show(v) for v in value]
    if isinstance(value, m.Comparison | m.Membership | m.AllOf | m.AnyOf | m.Not):
        return condition_text(value)
    return str(value)


def rule_fields(rule: m.Rule) -> dict[str, object]:
    """A rule as {policy property: value as a person reads it}."""
    out: dict[str, object] = {"rdf:type": _CLASS[rule.kind]}
    for attr, name in _FIELD_NAMES.items():
        if hasattr(rule, attr):
            value = getattr(rule, attr)
            if attr == "fraud_check":
                out["rdf:type"] = "fab:FraudCheckRule" if value else _CLASS[rule.kind]
                continue
            out[name] = _show(value)
    if isinstance(rule, m.NotificationRule):
        out["fab:amountThreshold"] = rule.threshold_text
    return out


def diff_policies(old: m.Policy, new: m.Policy) -> dict[str, Any]:
    old_rules = {r.iri: r for r in old.rules}
    new_rules = {r.iri: r for r in new.rules}
    changed = []
    for iri in sorted(set(old_rules) & set(new_rules)):
        a, b = rule_fields(old_rules[iri]), rule_fields(new_rules[iri])
        fields = {
            k: {"old": a.get(k), "new": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
        }
        if fields:
            changed.append({"rule": iri, "label": new_rules[iri].label, "fields": fields})
    old_levels = {lv.code: lv.rank for lv in old.levels}
    new_levels = {lv.code: lv.rank for lv in new.levels}
    return {
        "added": sorted(set(new_rules) - set(old_rules)),
        "removed": sorted(set(old_rules) - set(new_rules)),
        "changed": changed,
        "unchanged": sorted(
            i for i in set(old_rules) & set(new_rules) if i not in {c["rule"] for c in changed}
        ),
        "reference": {
            "types_added": sorted({t.code for t in new.types} - {t.code for t in old.types}),
            "types_removed": sorted({t.code for t in old.types} - {t.code for t in new.types}),
            "levels_changed": sorted(
                c for c in set(old_levels) | set(new_levels) if old_levels.get(c) != new_levels.get(c)
            ),
        },
        "golden": {
            "added": sorted({g.scenario for g in new.golden} - {g.scenario for g in old.golden}),
            "removed": sorted({g.scenario for g in old.golden} - {g.scenario for g in new.golden}),
        },
    }


@dataclass(frozen=True)
class Side:
    files: dict[str, bytes]
    manifest: dict[str, Any]

    def rule_of(self) -> dict[str, str]:
        return {a["path"]: a["rule"] for a in self.manifest["artifacts"] if "rule" in a}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def diff_enforcers(old: Side, new: Side) -> dict[str, Any]:
    """Artifacts changed / unchanged / added / removed, by the hash of the bytes on disk."""
    old_rules, new_rules = old.rule_of(), new.rule_of()
    out: dict[str, list[dict[str, Any]]] = {
        "changed": [],
        "unchanged": [],
        "added": [],
        "removed": [],
        "support": [],
    }
    for path in sorted(set(old.files) | set(new.files)):
        if path == "manifest.json":
            continue
        a, b = old.files.get(path), new.files.get(path)
        rule = new_rules.get(path) or old_rules.get(path)
        status = (
            "added"
            if a is None
            else "removed"
            if b is None
            else "unchanged"
            if _digest(a) == _digest(b)
            else "changed"
        )
        entry: dict[str, Any] = {
            "artifact": path,
            "old": _digest(a) if a is not None else None,
            "new": _digest(b) if b is not None else None,
        }
        if rule is None:
            out["support"].append({**entry, "status": status})
        else:
            out[status].append({"rule": rule, **entry})
    touched = len(out["changed"]) + len(out["added"]) + len(out["removed"])
    total = max(len(set(old_rules.values()) | set(new_rules.values())), 1)
    return {
        **out,
        "blast_radius": {"touched": touched, "total": total, "percent": round(100 * touched / total, 1)},
        "old_enforcer_hash": _digest(old.files.get("manifest.json", b"")),
        "new_enforcer_hash": _digest(new.files.get("manifest.json", b"")),
    }


def manifest_of(files: dict[str, bytes]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(files["manifest.json"])
    return data


def unified_diff(old: bytes, new: bytes, name: str) -> list[str]:
    """The changed lines of one generated file, for `mu diff --verbose`."""
    return list(
        difflib.unified_diff(
            old.decode("utf-8", "replace").splitlines(),
            new.decode("utf-8", "replace").splitlines(),
            f"old/{name}",
            f"new/{name}",
            lineterm="",
        )
    )
