"""Every transition of O the ledger receipts: its snapshots, its validity under Σ, its ΔO, and
O rebuilt from ΔO alone.

:func:`transitions`, for every generation: its O snapshot is in the store and hash-checks
(``snapshot_missing``, ``snapshot_corrupt``), O ⊨ Σ when validated again
(``invalid_transition``), its ΔO is in the store (``delta_missing``, ``delta_corrupt``), and so
is every file of its A (``blob_missing``, ``blob_corrupt``). A rejection receipt is a valid
stop: the O in force is unchanged.

A *policy change* is a generation whose O differs from the O in force before it (the first
generation, from no policy at all, is one); its rule diff is ``diffing.diff_policies`` between
the two O snapshots, field by field. Regenerating the same O is not a change.

:func:`rebuild`: O rebuilt from ΔO alone reproduces the receipted hash(O) at every step
(``rebuild_mismatch``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from finops_fabric.audit.ledger import Gap, Row, short
from finops_fabric.canonical import is_sha256, sha256_hex
from finops_fabric.errors import CheckFailed, FabricError, InputError
from finops_fabric.store import Store

__all__ = ["Progress", "quiet", "rebuild", "transitions"]

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    return None


# --- snapshots and ΔO from the store ------------------------------------------------------------


@dataclass
class _Snap:
    data: bytes | None = None
    policy: Any = None  # finops_fabric.model.Policy
    gaps: list[Gap] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)


# What O (identified by its hash, its bytes re-hashed on every read) reads and validates as
# under this version's Σ₀: deterministic, so kept for the life of the process.
_READ: dict[str, Any] = {}
_VALIDATED: dict[str, dict[str, Any]] = {}
_SIGMA0: list[str] = []
_CACHE_LIMIT = 512


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


class _Objects:
    """Reads O snapshots (each validated once per hash) and ΔO objects from the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._snaps: dict[str, _Snap] = {}
        self._deltas: dict[str, dict[str, list[str]] | Gap] = {}
        self._blobs: dict[str, tuple[str, str] | None] = {}

    def sigma0(self) -> str:
        if not _SIGMA0:
            from finops_fabric.pipeline import schema_hash

            _SIGMA0.append(schema_hash(()))
        return _SIGMA0[0]

    def raw(self, kind: str, digest: str) -> bytes | tuple[str, str]:
        try:
            return self.store.get_object(kind, digest)
        except CheckFailed as exc:
            return ("corrupt", exc.message)
        except InputError as exc:
            return ("missing", exc.message)

    def snapshot(self, digest: str, validate: bool) -> _Snap:
        snap = self._snaps.get(digest)
        if snap is None:
            snap = self._snaps[digest] = self._load(digest)
        if validate and snap.data is not None and not snap.validation:
            self._validate(snap)
        return snap

    def _load(self, digest: str) -> _Snap:
        from finops_fabric.pipeline import load_snapshot
        from finops_fabric.rdf.reader import read_policy

        got = self.raw("ontology", digest)
        if isinstance(got, tuple):
            code = "snapshot_missing" if got[0] == "missing" else "snapshot_corrupt"
            return _Snap(gaps=[Gap(None, None, code, f"the O snapshot {digest}: {got[1]}")])
        snap = _Snap(data=got)
        if digest in _VALIDATED:
            snap.validation = _VALIDATED[digest]
        if digest not in _READ:
            try:
                policy = read_policy(load_snapshot(got, "snapshot.nq").raw.triples)
            except FabricError:
                policy = None
            _remember(_READ, digest, policy)
        snap.policy = _READ[digest]
        return snap

    def _validate(self, snap: _Snap) -> None:
        from finops_fabric.pipeline import load_snapshot, validate

        assert snap.data is not None
        digest = sha256_hex(snap.data)
        try:
            v = validate(load_snapshot(snap.data, "snapshot.nq"))
        except FabricError as exc:
            snap.validation = {
                "conforms": False,
                "violations": [{"gate": "ontology", "message": exc.message}],
            }
            _remember(_VALIDATED, digest, snap.validation)
            return
        snap.validation = {
            "conforms": v.conforms,
            "gates": {k: g["status"] for k, g in v.gates.items()},
            "violations": [
                {"gate": f.gate, "invariant": f.invariant, "focus": f.focus, "message": f.message}
                for f in v.violations
            ],
        }
        _remember(_VALIDATED, digest, snap.validation)

    def blob(self, digest: str) -> tuple[str, str] | None:
        """``None`` when the blob (a file of A) is in the store and hashes to its address, else
        (``blob_missing`` or ``blob_corrupt``, why)."""
        if digest not in self._blobs:
            got = self.raw("blob", digest)
            self._blobs[digest] = (f"blob_{got[0]}", got[1]) if isinstance(got, tuple) else None
        return self._blobs[digest]

    def delta(self, digest: str) -> dict[str, list[str]] | Gap:
        if digest not in self._deltas:
            self._deltas[digest] = self._load_delta(digest)
        return self._deltas[digest]

    def _load_delta(self, digest: str) -> dict[str, list[str]] | Gap:
        got = self.raw("delta", digest)
        if isinstance(got, tuple):
            code = "delta_missing" if got[0] == "missing" else "delta_corrupt"
            return Gap(None, None, code, f"ΔO {digest}: {got[1]}")
        try:
            doc = json.loads(got)
        except ValueError:
            doc = None
        ok = isinstance(doc, dict) and all(
            isinstance(doc.get(k), list) and all(isinstance(x, str) for x in doc[k])
            for k in ("added", "removed")
        )
        if not ok:
            return Gap(
                None, None, "delta_corrupt", f'ΔO {digest} is not {{"added": [...], "removed": [...]}}'
            )
        assert isinstance(doc, dict)
        return {"added": list(doc["added"]), "removed": list(doc["removed"])}


# --- transitions --------------------------------------------------------------------------------


def _overridden(doc: dict[str, Any]) -> set[str]:
    """Invariants a receipted compliance override let through (best effort over the places a
    receipt may record one: ``override``, ``overrides``, ``inputs.override``, and the invariant
    gate's evidence ``override``/``overridden``)."""
    found: set[str] = set()

    def take(value: object) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            take(value.get("invariant"))
            take(value.get("invariants"))
        elif isinstance(value, list):
            for v in value:
                take(v)

    inputs = doc.get("inputs") if isinstance(doc.get("inputs"), dict) else {}
    gates = doc.get("gates") if isinstance(doc.get("gates"), dict) else {}
    inv = gates.get("invariant") if isinstance(gates, dict) else None
    evidence = inv.get("evidence") if isinstance(inv, dict) else None
    for value in (doc.get("override"), doc.get("overrides"), (inputs or {}).get("override")):
        take(value)
    if isinstance(evidence, dict):
        take(evidence.get("override"))
        take(evidence.get("overridden"))
    return found


def _rules(policy: Any) -> list[str]:
    return sorted(r.iri for r in policy.rules) if policy is not None else []


def _labels(policy: Any, iris: list[str]) -> dict[str, str]:
    if policy is None:
        return {}
    wanted = set(iris)
    return {r.iri: r.label for r in policy.rules if r.iri in wanted and isinstance(r.label, str)}


def transitions(
    rows: list[Row], start: int, end: int, objects: _Objects, progress: Progress = quiet
) -> tuple[list[dict[str, Any]], list[Gap]]:
    """Each generation and rejection in rows[start:end]: O before → O after, valid, rule diff."""
    from finops_fabric.diffing import diff_policies

    in_force: str | None = None
    for row in rows[:start]:
        oh = row.get("inputs", "ontology_hash")
        if row.receipt_kind == "generation" and row.doc is not None and is_sha256(oh):
            in_force = oh
    in_force_policy = objects.snapshot(in_force, validate=False).policy if in_force else None
    out: list[dict[str, Any]] = []
    gaps: list[Gap] = []
    for row in rows[start:end]:
        if row.doc is None or row.receipt_kind not in ("generation", "rejection"):
            continue
        oh = row.get("inputs", "ontology_hash")
        t: dict[str, Any] = {
            "seq": row.seq,
            "receipt_hash": row.hash,
            "kind": row.receipt_kind,
            "time": row.doc.get("time"),
            "from": in_force,
            "to": in_force,
            "ontology_hash": oh,
            "valid": True,
            "changed_o": False,
            "added": [],
            "removed": [],
            "changed": [],
            "notes": [],
        }
        out.append(t)
        if row.receipt_kind == "rejection":
            t["status"] = "rejected"
            t["reason"] = row.doc.get("reason")
            t["compliance_override_required"] = bool(row.doc.get("compliance_override_required"))
            t["notes"].append("a rejection is a valid stop: no A was made and the O in force is unchanged")
            continue
        t["status"] = "generated"
        own: list[Gap] = []
        if not is_sha256(oh):
            own.append(
                Gap.at(row, "invalid_transition", "the generation receipt names no inputs.ontology_hash")
            )
        else:
            progress(f"seq {row.seq}: validating O {short(oh)} against Σ")
            snap = objects.snapshot(oh, validate=True)
            own += [Gap.at(row, g.problem, g.message) for g in snap.gaps]
            own += _validity(row, snap, objects, t)
            t["to"] = oh
            t["changed_o"] = oh != in_force
            t["rules"] = len(_rules(snap.policy)) if snap.policy is not None else None
            if snap.policy is not None and in_force is None:
                t["added"] = _rules(snap.policy)
            elif snap.policy is not None and in_force_policy is not None:
                d = diff_policies(in_force_policy, snap.policy)
                t["added"], t["removed"], t["changed"] = d["added"], d["removed"], d["changed"]
            elif t["changed_o"]:
                t["notes"].append("no rule diff: an O snapshot it would compare is missing or unreadable")
            t["labels"] = {**_labels(in_force_policy, t["removed"]), **_labels(snap.policy, t["added"])}
            in_force, in_force_policy = oh, snap.policy
        dh = row.get("inputs", "delta_hash")
        if not is_sha256(dh):
            own.append(Gap.at(row, "delta_missing", "the receipt names no ΔO (inputs.delta_hash)"))
        else:
            got = objects.delta(dh)
            if isinstance(got, Gap):
                own.append(Gap.at(row, got.problem, got.message))
        artifacts = row.get("outputs", "artifacts")
        if isinstance(artifacts, dict):
            for path, digest in sorted(artifacts.items()):
                bad = objects.blob(str(digest))
                if bad is not None:
                    own.append(Gap.at(row, bad[0], f"A's file {path}, blob {digest}: {bad[1]}"))
        t["valid"] = not own
        gaps += own
    return out, gaps


def _validity(row: Row, snap: _Snap, objects: _Objects, t: dict[str, Any]) -> list[Gap]:
    if snap.data is None:
        return []
    assert row.doc is not None
    v = snap.validation
    t["validation"] = v
    receipted_sigma = row.get("inputs", "schema_hash")
    if receipted_sigma != objects.sigma0():
        names = row.get("inputs", "schemas") or []
        extra = f" plus {', '.join(map(str, names))}" if names else ""
        t["notes"].append(
            "re-validated under the base shapes Σ₀ of this version; "
            f"the receipt's Σ ({short(receipted_sigma)}) was Σ₀{extra}"
        )
    if v.get("conforms"):
        return []
    bad = v.get("violations", [])
    overridden = _overridden(row.doc)
    if overridden and all(x.get("gate") == "invariant" and x.get("invariant") in overridden for x in bad):
        t["notes"].append(
            f"passes under a receipted compliance override for: {', '.join(sorted(overridden))}"
        )
        return []
    first = "; ".join(str(x.get("message")) for x in bad[:3]) or "the policy cannot be read"
    more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
    return [
        Gap.at(
            row,
            "invalid_transition",
            f"O {short(row.get('inputs', 'ontology_hash'))} does not satisfy Σ: {first}{more}",
        )
    ]


# --- rebuild O from ΔO --------------------------------------------------------------------------


def _lines(data: bytes) -> frozenset[str]:
    return frozenset(line for line in data.decode("utf-8").split("\n") if line)


def _joined(lines: Iterable[str]) -> bytes:
    return "".join(line + "\n" for line in sorted(lines)).encode("utf-8", "surrogatepass")


def _recanonicalized(data: bytes) -> bytes | None:
    import pyoxigraph as ox

    from finops_fabric.rdf.canon import canonical_nquads

    try:
        triples = [q.triple for q in ox.parse(data, ox.RdfFormat.N_QUADS)]
        return canonical_nquads(triples)
    except (SyntaxError, ValueError, FabricError):
        return None


def rebuild(
    rows: list[Row], start: int, end: int, objects: _Objects, progress: Progress = quiet
) -> tuple[list[dict[str, Any]], list[Gap]]:
    """Apply each generation's ΔO to the O it was taken against; the result must hash to the
    receipted hash(O). The first ΔO is taken against nothing, so the chain rebuilds from empty."""
    states: dict[str, frozenset[str]] = {}
    steps: list[dict[str, Any]] = []
    gaps: list[Gap] = []
    for row in rows[start:end]:
        if row.doc is None or row.receipt_kind != "generation":
            continue
        oh, base_hash = row.get("inputs", "ontology_hash"), row.get("inputs", "previous_ontology_hash")
        dh = row.get("inputs", "delta_hash")
        step: dict[str, Any] = {
            "seq": row.seq,
            "receipt_hash": row.hash,
            "ontology_hash": oh,
            "base": base_hash,
        }
        steps.append(step)
        delta = objects.delta(dh) if is_sha256(dh) else None
        if not is_sha256(oh) or not isinstance(delta, dict):
            step.update(reproduced=False, method=None, message="no ΔO to apply (see the gaps)")
            continue
        step["added"], step["removed"] = len(delta["added"]), len(delta["removed"])
        progress(f"seq {row.seq}: applying ΔO (+{step['added']} −{step['removed']} lines)")
        bases: list[tuple[str, frozenset[str] | None]] = []
        if base_hash is None:
            bases.append(("from nothing", frozenset()))
        elif base_hash in states:
            bases.append(("on the rebuilt previous O", states[base_hash]))
        else:
            snap = objects.snapshot(base_hash, validate=False) if is_sha256(base_hash) else _Snap()
            seed = _lines(snap.data) if snap.data is not None else None
            bases.append(("on the stored snapshot of the previous O (not rebuilt from ΔO)", seed))
        if base_hash is not None:
            bases.append(("from nothing (ΔO was taken against an empty O)", frozenset()))
        done = False
        for how, base in bases:
            if base is None:
                continue
            lines = (base - frozenset(delta["removed"])) | frozenset(delta["added"])
            data = _joined(lines)
            method = "lines"
            if sha256_hex(data) != oh:
                again = _recanonicalized(data)
                if again is None or sha256_hex(again) != oh:
                    continue
                data, lines, method = again, _lines(again), "recanonicalized"
            states[oh] = lines
            step.update(reproduced=True, method=method, applied=how, message=f"reproduces {short(oh)}")
            done = True
            break
        if not done:
            step.update(reproduced=False, method=None)
            step["message"] = f"applying ΔO {short(dh)} does not reproduce the receipted hash(O) {short(oh)}"
            gaps.append(Gap.at(row, "rebuild_mismatch", step["message"]))
    return steps, gaps
