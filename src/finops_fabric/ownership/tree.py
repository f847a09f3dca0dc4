"""What one commit's tree holds: hash(O) of O's files, and the verification of each directory of
generated code against its manifest."""

from __future__ import annotations

import json
import posixpath
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finops_fabric.canonical import sha256_hex
from finops_fabric.enforcer import MANIFEST, check_files, enforcer_hash_of_manifest, parse_manifest
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.ownership.git import _CORRUPT, _GITLINK, _LINK, _Git
from finops_fabric.rdf.load import FORMATS

# --- O at a commit --------------------------------------------------------------------------------


def _is_rdf(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in FORMATS


def _hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.split("/"))


def _of_interest(name: str) -> bool:
    """The file names the walk looks at in every commit: O's candidates and A's manifests."""
    return name == MANIFEST or _is_rdf(name)


def _join(directory: str, rel: str) -> str:
    return f"{directory}/{rel}" if directory else rel


def _under(path: str, directory: str) -> bool:
    return directory == "" or path.startswith(directory + "/")


class _Ontology:
    """hash(O) of a set of files at a commit, computed once per distinct set of blobs."""

    def __init__(self, git: _Git, paths: Sequence[str] | None, scope: str) -> None:
        self.git = git
        self.paths = paths
        self.scope = scope  # without paths: the RDF files under this directory ("" for all)
        self.hashes: dict[tuple[tuple[str, str], ...], str | InputError] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="mu-ownership-")
        self._places: dict[str, int] = {}
        self._files: dict[tuple[str, str], list[Any]] = {}

    def files(self, flat: Mapping[str, tuple[str, str]], generated: set[str]) -> tuple[tuple[str, str], ...]:
        chosen = []
        for path, (mode, oid) in flat.items():
            if mode in (_LINK, _GITLINK) or not _is_rdf(path):
                continue
            if self.paths is None:
                if not _under(path, self.scope) or _hidden(path) or any(_under(path, d) for d in generated):
                    continue
            elif not any(path == p or _under(path, p) for p in self.paths):
                continue
            chosen.append((path, oid))
        return tuple(sorted(chosen))

    def hash(self, key: tuple[tuple[str, str], ...]) -> str | InputError:
        """hash(O) of these (path, blob) files, or the error that kept them from loading: the
        formula of ``mu hash``: the files' statements together, RDFC-1.0, SHA-256."""
        got = self.hashes.get(key)
        if got is not None:
            return got
        from finops_fabric.rdf.canon import canonical_nquads

        result: str | InputError
        seen: set[object] = set()
        statements = []
        try:
            for path, oid in key:
                for q in self._parsed(path, oid):
                    if q not in seen:
                        seen.add(q)
                        statements.append(q)
            result = sha256_hex(canonical_nquads(statements))
        except InputError as e:
            if e.code == _CORRUPT:
                raise
            result = e
        self.hashes[key] = result
        return result

    def _parsed(self, path: str, oid: str) -> list[Any]:
        """The statements of one file of O, parsed once per (path, blob) by the RDF loader. The file
        is written to a fixed place per path (so its base IRI is the same at every commit), named
        with only its last component (so no path from the repository can leave the directory)."""
        from finops_fabric.rdf.load import parse_file

        got = self._files.get((path, oid))
        if got is None:
            place = self._places.setdefault(path, len(self._places))
            target = Path(self._tmp.name) / str(place) / posixpath.basename(path)
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(self.git.read(oid, "blob"))
            got = self._files[(path, oid)] = parse_file(target)
        return got

    def close(self) -> None:
        self._tmp.cleanup()


# --- generated code at a commit -------------------------------------------------------------------


def _is_generator_manifest(data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("artifacts"), list)
        and (
            isinstance(doc.get("generator"), dict)
            or str(doc.get("format", "")).startswith("finops-fabric-enforcer/")
        )
    )


@dataclass(frozen=True)
class _GeneratedState:
    problems: tuple[tuple[str, str], ...]  # (path inside the directory, what is wrong)
    enforcer_hash: str | None  # None when manifest.json is missing or not a manifest
    ontology_hash: str | None


def _generated_state(git: _Git, tree: str) -> _GeneratedState:
    listing = git.flat(tree)
    problems: list[tuple[str, str]] = []
    files: dict[str, bytes] = {}
    for path, (mode, oid) in sorted(listing.items()):
        if mode in (_LINK, _GITLINK):
            problems.append((path, "a symbolic link or submodule, not a generated file"))
        else:
            files[path] = git.read(oid, "blob")
    data = files.get(MANIFEST)
    if data is None:
        problems.append((MANIFEST, "missing: nothing vouches for the generated files"))
        return _GeneratedState(tuple(problems), None, None)
    try:
        manifest = parse_manifest(data, "")
    except CheckFailed as e:
        text = e.message.replace("/manifest.json ", "", 1) if e.message.startswith("/") else e.message
        problems.append((MANIFEST, text))
        return _GeneratedState(tuple(problems), None, None)
    for p in check_files(files, manifest):
        what = {
            "changed": "changed after generation",
            "missing": "deleted",
            "extra": "not listed in the manifest",
        }
        rule = f" (rule {p.rule})" if p.rule else ""
        problems.append((p.artifact, what.get(p.problem, p.problem) + rule))
    oh = manifest.get("ontology_hash")
    return _GeneratedState(
        tuple(sorted(set(problems))), enforcer_hash_of_manifest(data), oh if isinstance(oh, str) else None
    )
