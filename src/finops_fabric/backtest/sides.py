"""The policies a back-test compares: each given as O (an ontology) or as A (an enforcer).

A side is O's typed model (what the kernel compiles), the language it is decided in, and the
generated enforcer that decides it (what the kernel is checked against): for O, A is generated
now by the default generator (or ``--generator``) and held in memory; for A, its hashes are
verified and its O is the store's snapshot of the ontology A was generated from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finops_fabric import model as m
from finops_fabric.errors import CheckFailed, InputError, Location
from finops_fabric.store import Store


@dataclass(frozen=True)
class Side:
    name: str  # "old" | "new"
    policy: m.Policy
    language: str
    ontology_hash: str
    enforcer: Any  # finops_fabric.enforcer.Enforcer
    source: str
    given_as: str  # "ontology" | "enforcer"

    @property
    def enforcer_hash(self) -> str:
        return str(self.enforcer.hash)

    @property
    def generator(self) -> dict[str, str]:
        return dict(self.enforcer.generator.describe())

    def describe(self) -> dict[str, Any]:
        return {
            "ontology_hash": self.ontology_hash,
            "enforcer_hash": self.enforcer_hash,
            "language": self.language,
            "generator": self.generator,
            "given_as": self.given_as,
            "source": self.source,
        }

    def portable(self) -> tuple[str, str, dict[str, bytes], str, m.Policy, str]:
        """What a worker process needs to rebuild this side: (name, source, A's files, hash(A),
        the model, the language)."""
        e = self.enforcer
        return (self.name, self.source, dict(e.files), str(e.hash), self.policy, self.language)


def enforcer_of_files(files: dict[str, bytes], where: str) -> Any:
    """Verify A's files against its manifest and load it."""
    from finops_fabric.enforcer import Enforcer, check_files, enforcer_hash_of_manifest, parse_manifest

    manifest = parse_manifest(files["manifest.json"], where)
    problems = check_files(files, manifest)
    if problems:
        raise CheckFailed(f"{where} does not match its manifest", code="enforcer.tampered")
    return Enforcer(where, files, manifest, enforcer_hash_of_manifest(files["manifest.json"]))


def policy_of_snapshot(store: Store, ontology_hash: str, what: str) -> m.Policy:
    from finops_fabric.analysis.sides import read_model
    from finops_fabric.pipeline import load_snapshot

    try:
        data = store.require().get_object("ontology", ontology_hash)
    except InputError as exc:
        raise InputError(
            f"{what} was generated from O {ontology_hash}, of which the store {store.home} has no "
            "snapshot: the kernel compiles O's rules",
            code="backtest.snapshot_missing",
            location=Location(file=str(store.home)),
            hint="give the ontology itself (--new=O / --old=O) instead",
        ) from exc
    onto = load_snapshot(data, f"snapshot {ontology_hash}")
    if onto.hash != ontology_hash:
        raise CheckFailed(
            f"the store's snapshot of O {ontology_hash} hashes to {onto.hash}", code="store.snapshot_corrupt"
        )
    return read_model(onto, f"the snapshot of {ontology_hash}")


def load_side(name: str, path: Path, store: Store | None, generator_version: str | None = None) -> Side:
    from finops_fabric.archive import is_archive_path
    from finops_fabric.enforcer import is_enforcer_dir, load_enforcer

    if not path.exists():
        raise InputError(
            f"--{name}={path}: there is no such ontology or enforcer",
            code="backtest.missing",
            location=Location(file=str(path)),
        )
    if is_enforcer_dir(path) or (path.is_file() and is_archive_path(path)):
        if generator_version is not None:
            raise InputError(
                f"--{name}-generator goes with an ontology, not with an enforcer", code="cli.usage"
            )
        enforcer = load_enforcer(path)
        if store is None or not store.exists():
            raise InputError(
                f"--{name}={path} is an enforcer; its O comes from the store's snapshot, "
                "and there is no store",
                code="backtest.no_store",
                hint="run `mu init`, or give the ontology itself",
            )
        policy = policy_of_snapshot(store, enforcer.ontology_hash, f"--{name}={path}")
        return Side(name, policy, enforcer.language, enforcer.ontology_hash, enforcer, str(path), "enforcer")
    from finops_fabric.analysis.sides import side_of_path

    loaded = side_of_path(path, generator_version)
    gen = loaded.generator
    try:
        files = gen.build(loaded.policy, loaded.info.ontology_hash, None)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckFailed(
            f"generator v{gen.version} cannot build an enforcer from {path}: {exc}",
            code="backtest.build_failed",
        ) from exc
    json.loads(files["manifest.json"])
    enforcer = enforcer_of_files(files, f"A of {path} (generator v{gen.version})")
    return Side(name, loaded.policy, gen.language, loaded.info.ontology_hash, enforcer, str(path), "ontology")
