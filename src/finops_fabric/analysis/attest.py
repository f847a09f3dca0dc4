"""An impact document bound into an approval: the approver signs hash(O) knowing what the change
does. The document's hash is the SHA-256 of its RFC 8785 canonical JSON, so it does not depend
on how the file was formatted."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finops_fabric.canonical import canonical_json, is_sha256, sha256_hex
from finops_fabric.errors import CheckFailed, InputError, Location
from finops_fabric.files import parse_strict_json, read_file

MAX_BYTES = 256 * 1024 * 1024


def impact_hash(doc: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json(dict(doc)))


def impact_record(path: Path, ontology_hash: str) -> dict[str, Any]:
    """What an approval records of the impact document at ``path``: its hash, both hashes of O,
    whether it found the change equivalent and how many regions it reported. The document must
    be about exactly the O being approved (its ``new.ontology_hash``), else :class:`CheckFailed`
    ``approve.impact_mismatch``."""
    raw = read_file(path, "impact document", "impact", max_bytes=MAX_BYTES)
    doc = parse_strict_json(raw, path, "impact document", "impact.invalid_json")
    where = Location(file=str(path))

    def hash_of(key: str) -> str:
        side = doc.get(key) if isinstance(doc, Mapping) else None
        value = side.get("ontology_hash") if isinstance(side, Mapping) else None
        if not is_sha256(value):
            raise InputError(
                f"{path} is not an impact document (`mu impact --json`): it has no {key}.ontology_hash",
                code="impact.not_impact",
                location=where,
            )
        return str(value)

    old, new = hash_of("old"), hash_of("new")
    assert isinstance(doc, Mapping)
    regions, equivalent = doc.get("regions"), doc.get("equivalent")
    if not isinstance(regions, list) or not isinstance(equivalent, bool) or equivalent != (not regions):
        raise InputError(
            f"{path} is not an impact document: `equivalent` and `regions` do not agree",
            code="impact.not_impact",
            location=where,
        )
    if new != ontology_hash:
        raise CheckFailed(
            f"the impact document {path} describes a change to O {new}, not to this O {ontology_hash}: "
            "an approval must be signed knowing what this exact O does",
            code="approve.impact_mismatch",
            location=where,
            hint="run `mu impact --old=O_in_force --new=O --json > impact.json` for this O",
        )
    return {
        "hash": impact_hash(doc),
        "old_ontology_hash": old,
        "new_ontology_hash": new,
        "equivalent": equivalent,
        "regions": len(regions),
    }
