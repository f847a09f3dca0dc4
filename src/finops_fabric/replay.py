"""Replay: regenerate A from a receipt, the hash-checked O snapshot and the pinned generator only,
in a clean temporary place, and compare it with what the receipt says, artifact by artifact.

:func:`regenerate` is an ordered sequence of named checks (in the manner of in-toto): each one
returns, or raises with its own stable code and a plain reason, so nothing is replayed by
default. The checks, in order::

    receipt.schema          the receipt is a receipt (format, kind, hash, signatures)
    receipt.hash            its content still matches its receipt_hash (it was not altered)
    receipt.signature       if this store's operator signed it, the signature verifies
    replay.kind             a generation receipt (a rejection receipt has no A to replay)
    replay.inputs           it names hash(O), the pinned generator (id, version, source hash)
                            and hash(A)
    replay.generator_version  --generator-version, if given, is the pinned version
    replay.generator        the pinned version exists here and its source hash is the receipt's
    replay.ontology         O: the --ontology given (hash(O) must be the receipt's) or the store's
                            snapshot (re-hashed when read)
    replay.build            the policy read from that O, built by the generator WITHOUT the
                            store's cache, written to a fresh temporary directory and loaded
                            from there (every artifact hash verified)

Then hash(A) and every artifact's hash are compared with ``outputs.artifacts`` of the receipt.
A replay changes nothing in the store. :func:`sign_replay` (``mu replay --sign-as``) writes the
auditor's own replay receipt, signed with the auditor's key, and appends it to the store's
ledger when the store trusts that key.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.archive import is_archive_path, write_archive
from finops_fabric.canonical import is_sha256, sha256_hex
from finops_fabric.enforcer import MANIFEST, load_enforcer
from finops_fabric.errors import CheckFailed, InputError, Location
from finops_fabric.keys import Ed25519PrivateKey, Ed25519PublicKey, key_id, load_public_key, public_key_pem
from finops_fabric.pipeline import install_tree, partial_dir, quiet, write_tree
from finops_fabric.receipts import (
    RECEIPT_FORMAT,
    check_hash,
    check_schema,
    check_signature,
    seal,
    write_json_atomic,
)
from finops_fabric.store import Store

__all__ = [
    "CHECKS",
    "Regenerated",
    "SignedReplay",
    "regenerate",
    "replay_receipt_body",
    "sign_replay",
    "trusted_by_store",
    "write_enforcer",
]

Progress = Callable[[str], None]

#: The named checks of :func:`regenerate`, in the order they run.
CHECKS = (
    "receipt.schema",
    "receipt.hash",
    "receipt.signature",
    "replay.kind",
    "replay.inputs",
    "replay.generator_version",
    "replay.generator",
    "replay.ontology",
    "replay.build",
)
_GENERATOR_KEYS = ("id", "version", "source_hash")


@dataclass
class Regenerated:
    """A regenerated A and how it compares with the receipt it was replayed from."""

    receipt_hash: str
    ontology_hash: str
    ontology_source: str
    generator: dict[str, str]
    expected_enforcer_hash: str
    enforcer_hash: str
    files: dict[str, bytes]
    policy: m.Policy
    matching: list[str] = field(default_factory=list)
    differing: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, str]] = field(default_factory=list)
    artifacts_listed: bool = True

    @property
    def match(self) -> bool:
        return (
            self.enforcer_hash == self.expected_enforcer_hash
            and not self.differing
            and not self.missing
            and not self.extra
        )

    @property
    def verdict(self) -> str:
        return "match" if self.match else "mismatch"

    def rule_artifacts(self) -> dict[str, str]:
        """Artifact path → rule IRI, from the regenerated manifest."""
        manifest = json.loads(self.files[MANIFEST])
        return {a["path"]: a["rule"] for a in manifest["artifacts"] if "rule" in a}

    def comparison(self) -> dict[str, Any]:
        return {
            "matching": len(self.matching),
            "matching_artifacts": list(self.matching),
            "differing": list(self.differing),
            "missing": list(self.missing),
            "extra": list(self.extra),
            "compared_with": "outputs.artifacts" if self.artifacts_listed else "outputs.enforcer_hash only",
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "verdict": self.verdict,
            "enforcer_hash": self.enforcer_hash,
            "expected_enforcer_hash": self.expected_enforcer_hash,
            "ontology_hash": self.ontology_hash,
            "ontology_source": self.ontology_source,
            "generator": dict(self.generator),
            "replay_of": self.receipt_hash,
            "artifacts": self.comparison(),
            "checks": list(self.checks),
        }


# --- the checks -------------------------------------------------------------------------------


def _receipt_name(receipt: Mapping[str, Any]) -> str:
    h = receipt.get("receipt_hash")
    return f"receipt {h}" if isinstance(h, str) else "the receipt"


def _check_signature(receipt: dict[str, Any], store: Store) -> tuple[str, str]:
    """Verify the operator's signature when this store's operator signed the receipt.

    (A receipt signed by someone else is still replayable: a replay proves O → A, whoever
    signed; ``mu verify-receipt`` establishes who did.)"""
    if not store.exists() or not store.operator_public_key_path.is_file():
        return "SKIPPED", "no store operator key to check the signature with"
    public = store.operator_public_key()
    kid = key_id(public)
    if not any(s.get("keyid") == kid for s in receipt["signatures"]):
        return "SKIPPED", f"not signed by this store's operator key {kid}"
    check_signature(receipt, public)
    return "PASS", f"signed by this store's operator key {kid}"


def _check_kind(receipt: dict[str, Any]) -> None:
    kind = receipt["kind"]
    name = _receipt_name(receipt)
    if kind == "generation":
        return
    if kind == "rejection":
        raise CheckFailed(
            f"{name} is a rejection receipt: the line stopped at a gate ({receipt.get('reason') or 'no A'}), "
            "so there is no A to replay",
            code="replay.rejection_receipt",
            hint="replay the generation receipt of an O that passed every gate",
        )
    deployed = (receipt.get("inputs") or {}).get("generation_receipt_hash")
    if kind in ("deployment", "rollback") and is_sha256(deployed):
        raise CheckFailed(
            f"{name} is a {kind} receipt; it deployed the A of generation receipt {deployed}: replay "
            "that generation receipt",
            code="replay.not_generation",
            hint=f"mu replay --receipt={deployed}",
        )
    if kind == "replay" and isinstance(receipt.get("replay_of"), str):
        raise CheckFailed(
            f"{name} is an auditor's replay receipt; replay the generation receipt it replays "
            f"({receipt['replay_of']})",
            code="replay.not_generation",
        )
    raise CheckFailed(
        f"{name} is a {kind} receipt, not a generation receipt; only a generation receipt binds "
        "hash(O) to hash(A)",
        code="replay.not_generation",
    )


def _check_inputs(receipt: dict[str, Any]) -> tuple[str, dict[str, str], str, dict[str, str] | None]:
    """(hash(O), pinned generator, hash(A), artifact → hash or None) named by the receipt."""
    name = _receipt_name(receipt)
    inputs = receipt.get("inputs")
    if not isinstance(inputs, dict):
        raise CheckFailed(
            f"{name} has no `inputs`: it does not say which O and generator made A, so it cannot be replayed",
            code="replay.missing_inputs",
        )
    onto = inputs.get("ontology_hash")
    if not is_sha256(onto):
        raise CheckFailed(
            f"{name} has no valid inputs.ontology_hash (found {onto!r}): without hash(O) there is no "
            "O to regenerate from, so it cannot be replayed",
            code="replay.missing_inputs",
        )
    gen = inputs.get("generator")
    if not isinstance(gen, dict):
        raise CheckFailed(
            f"{name} has no inputs.generator: the generator is not pinned, so A cannot be replayed "
            "with the generator that made it",
            code="replay.unpinned_generator",
        )
    absent = [k for k in _GENERATOR_KEYS if not isinstance(gen.get(k), str) or not gen.get(k)]
    if absent:
        raise CheckFailed(
            f"{name} does not pin its generator: inputs.generator lacks {', '.join(absent)}, "
            "so it cannot be replayed",
            code="replay.unpinned_generator",
        )
    if not is_sha256(gen["source_hash"]):
        raise CheckFailed(
            f"{name} pins its generator with a malformed source hash {gen['source_hash']!r}",
            code="replay.unpinned_generator",
        )
    outputs = receipt.get("outputs")
    expected = outputs.get("enforcer_hash") if isinstance(outputs, dict) else None
    if not is_sha256(expected):
        raise CheckFailed(
            f"{name} records no valid outputs.enforcer_hash (found {expected!r}): there is no hash(A) "
            "to compare a replay with",
            code="replay.missing_outputs",
        )
    assert isinstance(outputs, dict)
    listed = outputs.get("artifacts")
    artifacts: dict[str, str] | None = None
    if isinstance(listed, dict):
        bad = sorted(str(k) for k, v in listed.items() if not is_sha256(v))
        if bad:
            raise CheckFailed(
                f"{name} lists artifacts without a valid hash: {', '.join(bad[:5])}",
                code="replay.missing_outputs",
            )
        artifacts = {str(k): str(v) for k, v in listed.items()}
    return str(onto), {k: str(gen[k]) for k in _GENERATOR_KEYS}, str(expected), artifacts


def _check_generator_version(pinned: dict[str, str], requested: str | None) -> None:
    if requested is None:
        return
    if str(requested).removeprefix("v") != pinned["version"].removeprefix("v"):
        raise CheckFailed(
            f"--generator-version={requested} is not the version the receipt pins (v{pinned['version']}): "
            "a replay always runs the pinned generator",
            code="replay.generator_not_pinned",
            hint="to compare generator versions on the same O, use `mu kaizen`",
        )


def _check_generator(pinned: dict[str, str]) -> generators.Generator:
    try:
        gen = generators.get(pinned["version"])
    except InputError as e:
        raise CheckFailed(
            f"the receipt pins generator {pinned['id']} v{pinned['version']}, which this installation "
            f"does not have (it has {', '.join('v' + v for v in generators.versions())})",
            code="replay.unknown_generator",
            hint="install a release of finops-fabric that ships this generator version",
        ) from e
    except CheckFailed as e:  # the installed generator's files differ from its release
        raise CheckFailed(
            f"generator v{pinned['version']} of this installation cannot replay the receipt, which pins "
            f"source {pinned['source_hash']}: {e.message}",
            code="replay.generator_changed",
            hint=e.hint,
        ) from e
    if gen.id != pinned["id"]:
        raise CheckFailed(
            f"the receipt pins generator {pinned['id']} v{pinned['version']}, but v{gen.version} of this "
            f"installation is {gen.id}",
            code="replay.generator_changed",
        )
    if gen.source_hash != pinned["source_hash"]:
        raise CheckFailed(
            f"generator v{pinned['version']} of this installation is not the one the receipt pins: its "
            f"source hash is {gen.source_hash}, the receipt's is {pinned['source_hash']}",
            code="replay.generator_changed",
            hint="replay with the finops-fabric release whose generator has the receipt's source hash",
        )
    return gen


def _check_ontology(store: Store, ontology_hash: str, ontology: Path | None) -> tuple[Any, str]:
    """(the raw graph of the receipted O, where it came from)."""
    from finops_fabric.pipeline import load_ontology, load_snapshot

    if ontology is not None:
        onto = load_ontology(ontology)
        if onto.hash != ontology_hash:
            raise CheckFailed(
                f"the O you gave is not the receipted O: hash({ontology}) = {onto.hash}, the receipt "
                f"records {ontology_hash}",
                code="replay.ontology_mismatch",
                hint="give the O the receipt was made from, or leave out --ontology to use the snapshot",
            )
        return onto.raw, f"--ontology={ontology}"
    if not store.exists():
        raise InputError(
            f"the receipted O {ontology_hash} cannot be read: there is no store at {store.home}",
            code="replay.snapshot_missing",
            location=Location(file=str(store.home)),
            hint="give the receipted O with --ontology=O, or point --home / FABRIC_HOME at the store",
        )
    try:
        data = store.get_object("ontology", ontology_hash)
    except InputError as e:
        raise InputError(
            f"the store {store.home} has no snapshot of the receipted O {ontology_hash}",
            code="replay.snapshot_missing",
            location=e.location,
            hint="give the receipted O with --ontology=O (its hash is checked against the receipt)",
        ) from e
    except CheckFailed as e:
        raise CheckFailed(
            f"the store's snapshot of O {ontology_hash} is corrupt: {e.message}",
            code="replay.snapshot_corrupt",
            location=e.location,
            hint="restore the store from a backup, or give the receipted O with --ontology=O",
        ) from e
    try:
        snap = load_snapshot(data, f"snapshot {ontology_hash}")
    except CheckFailed as e:
        raise CheckFailed(e.message, code="replay.snapshot_corrupt", location=e.location) from e
    if snap.hash != ontology_hash:  # get_object re-hashes; this guards the invariant all the same
        raise CheckFailed(
            f"the snapshot of O hashes to {snap.hash}, not {ontology_hash}", code="replay.snapshot_corrupt"
        )
    rel = store.objects_dir / "ontology" / ontology_hash.removeprefix("sha256:")
    return snap.raw, f"store snapshot {rel}"


def _build(
    gen: generators.Generator, raw: Any, ontology_hash: str, progress: Progress
) -> tuple[m.Policy, dict[str, bytes]]:
    """Read the policy, build A without any cache, write it to a fresh temporary directory and
    load it from there; return the policy and the bytes read back from that directory."""
    from finops_fabric.rdf.reader import read_policy

    try:
        policy = read_policy(raw.triples)
    except CheckFailed as e:
        raise CheckFailed(
            f"the receipted O does not read as a policy: {e.message}",
            code="replay.policy_unreadable",
            location=e.location,
        ) from e
    progress(f"regenerating {len(policy.rules)} rules with generator v{gen.version}, no cache")
    try:
        built = gen.build(policy, ontology_hash, None)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckFailed(
            f"generator v{gen.version} failed on the receipted O: {e}", code="replay.build_failed"
        ) from e
    tmp = Path(tempfile.mkdtemp(prefix="mu-replay-"))
    try:
        write_tree(tmp, built, durable=False)
        progress("loading the replayed A (every artifact hash verified)")
        try:
            enforcer = load_enforcer(tmp)
        except CheckFailed as e:
            raise CheckFailed(f"the replayed A does not load: {e.message}", code="replay.build_failed") from e
        return policy, dict(enforcer.files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def regenerate(
    receipt: dict[str, Any],
    store: Store,
    *,
    ontology: Path | None = None,
    generator_version: str | None = None,
    progress: Progress = quiet,
) -> Regenerated:
    """Replay ``receipt``: run the checks of :data:`CHECKS` in order, regenerate A in a clean
    temporary directory and compare it with the receipt. Raises :class:`CheckFailed` (a check
    said no) or :class:`InputError` (an input cannot be read), each with its own code; returns
    the comparison otherwise (``.match`` tells whether A was reproduced exactly)."""
    checks: list[dict[str, str]] = []

    def passed(name: str, detail: str, status: str = "PASS") -> None:
        checks.append({"check": name, "status": status, "detail": detail})

    check_schema(receipt)
    passed("receipt.schema", "a receipt with format, kind, hash and signatures")
    check_hash(receipt)
    passed("receipt.hash", f"content matches {receipt['receipt_hash']}")
    status, detail = _check_signature(receipt, store)
    passed("receipt.signature", detail, status)
    _check_kind(receipt)
    passed("replay.kind", "a generation receipt")
    ontology_hash, pinned, expected, artifacts = _check_inputs(receipt)
    passed("replay.inputs", f"O {ontology_hash}, generator v{pinned['version']}, A {expected}")
    _check_generator_version(pinned, generator_version)
    passed("replay.generator_version", f"v{pinned['version']} (the pinned version)")
    gen = _check_generator(pinned)
    passed("replay.generator", f"{gen.id} v{gen.version} installed with source {gen.source_hash}")
    progress(f"reading O {ontology_hash}")
    raw, source = _check_ontology(store, ontology_hash, ontology)
    passed("replay.ontology", f"{source}, hash checked")
    policy, files = _build(gen, raw, ontology_hash, progress)
    enforcer_hash = sha256_hex(files[MANIFEST])
    passed("replay.build", f"{len(files)} artifacts regenerated in a clean temporary directory")

    result = Regenerated(
        receipt_hash=receipt["receipt_hash"],
        ontology_hash=ontology_hash,
        ontology_source=source,
        generator=pinned,
        expected_enforcer_hash=expected,
        enforcer_hash=enforcer_hash,
        files=files,
        policy=policy,
        checks=checks,
    )
    _compare(result, receipt, artifacts)
    return result


def _compare(result: Regenerated, receipt: dict[str, Any], expected: dict[str, str] | None) -> None:
    actual = {path: sha256_hex(data) for path, data in result.files.items()}
    rules = result.rule_artifacts()
    listed_rules = (receipt.get("outputs") or {}).get("rules")
    for iri, listed in (listed_rules if isinstance(listed_rules, dict) else {}).items():
        if isinstance(listed, dict) and isinstance(listed.get("artifact"), str):
            rules.setdefault(listed["artifact"], iri)
    if expected is None:
        # A receipt without the per-artifact list: compare hash(A) alone (the manifest lists
        # every other artifact's hash, and the replayed A was verified against it).
        result.artifacts_listed = False
        expected = {MANIFEST: result.expected_enforcer_hash}
        actual = {MANIFEST: actual[MANIFEST]}

    def entry(path: str) -> dict[str, Any]:
        out: dict[str, Any] = {"artifact": path}
        if path in rules:
            out["rule"] = rules[path]
        return out

    for path in sorted(set(expected) | set(actual)):
        if path not in actual:
            result.missing.append({**entry(path), "expected": expected[path]})
        elif path not in expected:
            result.extra.append({**entry(path), "actual": actual[path]})
        elif expected[path] == actual[path]:
            result.matching.append(path)
        else:
            result.differing.append({**entry(path), "expected": expected[path], "actual": actual[path]})


# --- keeping the replayed A, and the auditor's receipt ----------------------------------------


def write_enforcer(files: Mapping[str, bytes], output: Path) -> Path:
    """Write A to ``output`` so it appears complete or not at all (temporary sibling + rename);
    an enforcer already there is replaced whole, anything else is refused."""

    output = Path(output)
    if is_archive_path(output):
        return write_archive(files, output)
    if output.exists() and not output.is_dir():
        raise InputError(f"--output={output} exists and is not a directory", code="replay.output_exists")
    tmp = partial_dir(output)
    try:
        write_tree(tmp, files)
        install_tree(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return output


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def replay_receipt_body(result: Regenerated, auditor: Ed25519PrivateKey) -> dict[str, Any]:
    """The auditor's replay receipt (unsealed): it agrees with production's on
    ``inputs.ontology_hash``, ``inputs.generator`` and (when the replay matches)
    ``outputs.enforcer_hash``, and records ``replay_of``, the verdict and every artifact."""
    public = auditor.public_key()
    status = "PASS" if result.match else "FAIL"
    return {
        "format": RECEIPT_FORMAT,
        "kind": "replay",
        "time": _now(),
        "replay_of": result.receipt_hash,
        "verdict": result.verdict,
        "match": result.match,
        "signer": {
            "role": "auditor",
            "keyid": key_id(public),
            "public_key": public_key_pem(public).decode("ascii"),
        },
        "inputs": {
            "ontology_hash": result.ontology_hash,
            "ontology_source": result.ontology_source,
            "generator": dict(result.generator),
        },
        "outputs": {
            "enforcer_hash": result.enforcer_hash,
            "expected_enforcer_hash": result.expected_enforcer_hash,
            "artifacts": {p: sha256_hex(b) for p, b in sorted(result.files.items())},
        },
        "comparison": result.comparison(),
        "checks": list(result.checks),
        "gates": {
            "replay": {
                "status": status,
                "evidence": {
                    "replayed_enforcer_hash": result.enforcer_hash,
                    "receipted_enforcer_hash": result.expected_enforcer_hash,
                    "matching": len(result.matching),
                    "differing": len(result.differing),
                    "missing": len(result.missing),
                    "extra": len(result.extra),
                },
            }
        },
    }


def trusted_by_store(store: Store, public: Ed25519PublicKey) -> bool:
    """Whether the store trusts this key to sign into its ledger: it is the operator key or one of
    ``<store>/keys/trusted/*.pub`` (the keys ``mu audit-trail`` accepts by default)."""
    kid = key_id(public)
    candidates = [store.operator_public_key_path]
    trusted_dir = store.keys_dir / "trusted"
    if trusted_dir.is_dir():
        candidates += sorted(trusted_dir.glob("*.pub"))
    for pub in candidates:
        if not pub.is_file():
            continue
        try:
            if key_id(load_public_key(pub)) == kid:
                return True
        except InputError:
            continue
    return False


@dataclass(frozen=True)
class SignedReplay:
    receipt: dict[str, Any]
    path: Path
    in_ledger: bool
    ledger_note: str


def sign_replay(
    result: Regenerated, store: Store, auditor: Ed25519PrivateKey, receipt_file: Path
) -> SignedReplay:
    """Seal the auditor's replay receipt with the auditor's key and write it to ``receipt_file``.

    It is appended to the store's ledger (linked by ``previous_receipt_hash``, so the ledger stays
    one unbroken chain) only when the store trusts the auditor's key (the operator key or a
    ``keys/trusted/*.pub``): the ledger holds only receipts its audit trail can verify, and an
    outside auditor's receipt is never made to look as if the operator had signed it. Otherwise
    it stands alone (``previous_receipt_hash`` null), verifiable with the auditor's public key.
    """
    body = replay_receipt_body(result, auditor)
    kid = key_id(auditor.public_key())
    if not store.exists():
        sealed = seal({**body, "previous_receipt_hash": None}, auditor)
        note = f"not in a ledger: there is no store at {store.home}"
    elif trusted_by_store(store, auditor.public_key()):
        sealed = store.append(body, private_key=auditor)
        note = f"appended to the ledger of {store.home}"
    else:
        sealed = seal({**body, "previous_receipt_hash": None}, auditor)
        note = (
            f"not appended to the ledger of {store.home}: key {kid} is not trusted there "
            f"(to record auditor replays in the ledger, add its public key to {store.keys_dir / 'trusted'})"
        )
    write_json_atomic(receipt_file, sealed)
    in_ledger = note.startswith("appended")
    return SignedReplay(sealed, Path(receipt_file), in_ledger, note)
