"""Read and verify an enforcer A, then load it.

``load_enforcer`` checks every byte before any generated code runs: the manifest must be
canonical JSON, every listed file must be present with its hash, and no other file may be
present. The verified bytes themselves are what gets compiled (A is never imported from disk,
so nothing is read twice and no ``__pycache__`` appears inside A).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from finops_fabric import generators
from finops_fabric.canonical import canonical_json
from finops_fabric.errors import CheckFailed, InputError, Location

MANIFEST = "manifest.json"


def enforcer_hash_of_manifest(manifest_bytes: bytes) -> str:
    return "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()


def is_enforcer_dir(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by its relative ``/`` path (symlinks are refused)."""
    files: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        # os.walk lists a symlink to a directory under dirnames (and does not descend into it).
        for name in sorted(filenames) + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                raise CheckFailed(
                    f"{rel} in {root} is a symbolic link; an enforcer holds regular files only",
                    code="enforcer.symlink",
                    location=Location(file=str(p)),
                )
            files[rel] = p.read_bytes()
    return files


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckFailed(
            f"{where}/manifest.json is not valid JSON: {e}",
            code="enforcer.manifest_invalid",
            location=Location(file=f"{where}/manifest.json"),
        ) from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), list):
        raise CheckFailed(
            f"{where}/manifest.json is not an enforcer manifest", code="enforcer.manifest_invalid"
        )
    if canonical_json(manifest) != data:
        raise CheckFailed(
            f"{where}/manifest.json was edited: it is not the canonical JSON the generator writes",
            code="enforcer.manifest_edited",
            location=Location(file=f"{where}/manifest.json"),
        )
    return manifest


@dataclass(frozen=True)
class ArtifactProblem:
    artifact: str
    problem: str  # "changed" | "missing" | "extra"
    rule: str | None

    def to_dict(self) -> dict[str, object]:
        return {"artifact": self.artifact, "problem": self.problem, "rule": self.rule}


def check_files(files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> list[ArtifactProblem]:
    """Each artifact whose bytes do not match the manifest, is missing, or is not listed."""
    problems: list[ArtifactProblem] = []
    listed = {a["path"]: a for a in manifest["artifacts"]}
    for path, art in sorted(listed.items()):
        data = files.get(path)
        if data is None:
            problems.append(ArtifactProblem(path, "missing", art.get("rule")))
        elif "sha256:" + hashlib.sha256(data).hexdigest() != art["sha256"]:
            problems.append(ArtifactProblem(path, "changed", art.get("rule")))
    for path in sorted(set(files) - set(listed) - {MANIFEST}):
        problems.append(ArtifactProblem(path, "extra", None))
    return problems


@runtime_checkable
class Decision(Protocol):
    """What ``Enforcer.decide`` returns, whichever generator made A.

    ``decision`` is "APPROVE" or "REJECT"; ``fired`` lists (rule IRI, reason) of every rule that
    fired (under language 1.1 also the input checks, ``fab:FailClosed/<field>``), sorted;
    ``notifications`` (rule, recipient) and ``audit`` (rule, ledger, flags) are the side effects
    the decision triggers; :meth:`to_dict` is the decision JSON of POLICY-LANGUAGE.md."""

    transaction_id: object
    decision: str
    enforcer_hash: str

    @property
    def fired(self) -> Sequence[tuple[str, str]]: ...

    @property
    def notifications(self) -> Sequence[tuple[str, str]]: ...

    @property
    def audit(self) -> Sequence[tuple[str, str, Sequence[str]]]: ...

    def to_dict(self) -> dict[str, Any]: ...


def _not_a_mapping(tx: object) -> InputError:
    return InputError(
        f"a transaction must be a mapping of field names to values (a JSON object); got {type(tx).__name__}",
        code="tx.not_object",
    )


#: One enforcer is parsed and compiled at a time in a process. CPython 3.11 before 3.11.8 keeps
#: the AST validator's recursion depth in shared state (python/cpython gh-106905): two threads
#: compiling at once (Dask workers in one process, the daemon's boot beside a shadow A) fail
#: with "AST constructor recursion depth mismatch".
_LOAD_LOCK = threading.Lock()


class Enforcer:
    """A verified, loaded enforcer A. ``decide`` is the generated code's own hot path: a
    transaction (a mapping) in, a :class:`Decision` out, no I/O. Anything but a mapping raises
    :class:`InputError` (``tx.not_object``). Under policy language 1.1 (generator 3) every other
    input is decided: a type, amount or level the policy did not foresee is a REJECT naming the
    field (a binary float amount: "amount is a binary float; send a decimal string")."""

    decide: Callable[[Mapping[str, Any]], Decision]

    def __init__(
        self, root: str, files: dict[str, bytes], manifest: dict[str, Any], enforcer_hash: str
    ) -> None:
        self.root = root
        self.files = files
        self.manifest = manifest
        self.hash = enforcer_hash
        gen = manifest.get("generator", {})
        self.generator = generators.get(str(gen.get("version")))
        if gen.get("source_hash") != self.generator.source_hash or gen.get("id") != self.generator.id:
            raise CheckFailed(
                f"{root} was made by generator {gen.get('id')} v{gen.get('version')} with source "
                f"{gen.get('source_hash')}, which this installation does not have "
                f"(it has {self.generator.source_hash})",
                code="enforcer.generator_mismatch",
                hint="install the generator version the receipt pins",
            )
        with _LOAD_LOCK:  # compiling generated source is not thread-safe on CPython < 3.11.8
            self._inner = self.generator.load(files, manifest, enforcer_hash)
        inner: Callable[[Mapping[str, Any]], Decision] = self._inner.decide
        if getattr(self._inner, "input_error", None) is not None:
            self.decide = inner  # the runtime raises InputError itself, at no cost per call
        else:  # generators 1 and 2 (frozen) would raise AttributeError

            def decide(tx: Mapping[str, Any]) -> Decision:
                if not isinstance(tx, Mapping):
                    raise _not_a_mapping(tx)
                return inner(tx)

            self.decide = decide

    @property
    def language(self) -> str:
        """The policy language version A implements (that of its generator)."""
        return self.generator.language

    @property
    def ontology_hash(self) -> str:
        return str(self.manifest["ontology_hash"])

    def golden_cases(self) -> list[dict[str, Any]]:
        cases: list[dict[str, Any]] = json.loads(self.files["golden.json"])
        return cases

    def rule_artifacts(self) -> dict[str, str]:
        """Rule IRI → artifact path."""
        return {a["rule"]: a["path"] for a in self.manifest["artifacts"] if "rule" in a}

    def rule_modules(self) -> dict[str, Any]:
        """Rule IRI → the loaded module (for per-rule differential checks)."""
        return {m.RULE: m for m in self._inner.modules}

    def transaction(self, raw: Mapping[str, Any]) -> Any:
        """The generated runtime's normalised transaction (for per-rule checks)."""
        return self._inner.transaction(raw)


def verify_files(root: Path) -> tuple[dict[str, bytes], dict[str, Any], str]:
    """Read A at ``root`` (a directory, or an archive: :mod:`finops_fabric.archive`) and check it
    against its manifest; return (files, manifest, hash(A))."""
    from finops_fabric.archive import read_enforcer_files

    files = read_enforcer_files(root)
    manifest = parse_manifest(files[MANIFEST], str(root))
    problems = check_files(files, manifest)
    if problems:
        detail = "; ".join(
            f"{p.artifact} {p.problem}" + (f" (rule {p.rule})" if p.rule else "") for p in problems
        )
        raise CheckFailed(
            f"{root} does not match its manifest: {detail}",
            code="enforcer.tampered",
            location=Location(file=str(root)),
            hint="generated code is never edited by hand; regenerate it with `mu generate`",
        )
    return files, manifest, enforcer_hash_of_manifest(files[MANIFEST])


def load_enforcer(path: str | os.PathLike[str]) -> Enforcer:
    """Verify every artifact hash of A, then load it."""
    root = Path(path)
    files, manifest, h = verify_files(root)
    return Enforcer(str(root), files, manifest, h)


def enforcer_hash(path: str | os.PathLike[str]) -> str:
    """hash(A) as recorded: the SHA-256 of A's manifest (without verifying the other files)."""
    root = Path(path)
    if not is_enforcer_dir(root):
        raise InputError(f"{root} is not an enforcer (no manifest.json)", code="enforcer.not_an_enforcer")
    return enforcer_hash_of_manifest((root / MANIFEST).read_bytes())
