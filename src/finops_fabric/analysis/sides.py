"""The two sides of an impact analysis, read from ontology files or from a receipt's snapshot.

A side is O's typed model with the generator that decides it (and so its language version).
O is read as far as the typed model needs; an O that cannot be read is bad input (exit 2) and
is explained with the findings of the ontology gate, as ``mu validate`` writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finops_fabric import generators
from finops_fabric import model as m
from finops_fabric.analysis.impact import SideInfo
from finops_fabric.analysis.verify import language_of
from finops_fabric.canonical import is_sha256
from finops_fabric.errors import CheckFailed, FabricError, InputError, Location
from finops_fabric.store import Store


@dataclass(frozen=True)
class LoadedSide:
    info: SideInfo
    generator: generators.Generator

    @property
    def policy(self) -> m.Policy:
        return self.info.policy


def read_model(onto: Any, where: str) -> m.Policy:
    """The typed model of a loaded O; an O the model cannot hold is an :class:`InputError`
    listing the ontology gate's findings."""
    from finops_fabric.rdf.reader import read_policy

    try:
        return read_policy(onto.raw.triples)
    except CheckFailed as exc:
        from finops_fabric.pipeline import validate

        try:
            found = [f.message for f in validate(onto).violations]
        except FabricError:
            found = []
        detail = "; ".join(found[:5]) or exc.message
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise InputError(
            f"{where} is not a policy the analysis can read: {detail}{more}",
            code="impact.ontology_invalid",
            location=exc.location,
            hint=f"run `mu validate --ontology={where}` for every finding",
        ) from exc


def generator(version: str | None) -> generators.Generator:
    return generators.get(version)


def side_of_path(path: Path, version: str | None) -> LoadedSide:
    from finops_fabric.pipeline import load_ontology

    onto = load_ontology(path)
    gen = generator(version)
    info = SideInfo(read_model(onto, str(path)), onto.hash, language_of(gen), gen.describe(), str(path))
    return LoadedSide(info, gen)


def pinned_generator(receipt: Mapping[str, Any], name: str) -> generators.Generator:
    inputs = receipt.get("inputs")
    pinned = inputs.get("generator") if isinstance(inputs, Mapping) else None
    if not isinstance(pinned, Mapping) or not isinstance(pinned.get("version"), str):
        raise CheckFailed(
            f"{name} does not pin its generator (inputs.generator.version)", code="impact.unpinned"
        )
    try:
        gen = generators.get(str(pinned["version"]))
    except InputError as exc:
        raise CheckFailed(
            f"{name} pins generator v{pinned['version']}, which this installation does not have",
            code="impact.unknown_generator",
            hint=exc.hint,
        ) from exc
    if pinned.get("source_hash") not in (None, gen.source_hash):
        raise CheckFailed(
            f"{name} pins generator v{gen.version} with source {pinned.get('source_hash')}, but this "
            f"installation's v{gen.version} has {gen.source_hash}",
            code="impact.generator_changed",
        )
    return gen


def side_of_receipt(ref: str, store: Store, version: str | None) -> LoadedSide:
    """O_old from a generation receipt (a file, or ``sha256:…`` in the store's ledger): its
    hash-checked snapshot in the store, decided by the generator the receipt pins (unless
    ``version`` names another)."""
    from finops_fabric.pipeline import load_snapshot
    from finops_fabric.receipts import check_hash, load_receipt

    if is_sha256(ref):
        found = store.require().find(ref)
        if found is None:
            raise InputError(f"no receipt {ref} in the store {store.home}", code="impact.receipt_missing")
        receipt, name = found, f"receipt {ref}"
    else:
        receipt, name = load_receipt(Path(ref)), f"receipt {ref}"
    check_hash(receipt)
    if receipt.get("kind") != "generation":
        raise CheckFailed(
            f"{name} is a {receipt.get('kind')} receipt; O_old comes from a generation receipt",
            code="impact.not_generation",
        )
    inputs = receipt.get("inputs")
    oh = inputs.get("ontology_hash") if isinstance(inputs, Mapping) else None
    if not is_sha256(oh):
        raise CheckFailed(f"{name} names no inputs.ontology_hash", code="impact.missing_inputs")
    assert isinstance(oh, str)
    try:
        data = store.require().get_object("ontology", oh)
    except InputError as exc:
        raise InputError(
            f"the store {store.home} has no snapshot of the O of {name} ({oh})",
            code="impact.snapshot_missing",
            location=Location(file=str(store.home)),
            hint="give O_old with --old=O instead",
        ) from exc
    onto = load_snapshot(data, f"snapshot {oh}")
    gen = generator(version) if version is not None else pinned_generator(receipt, name)
    info = SideInfo(
        read_model(onto, f"the snapshot of {name}"), onto.hash, language_of(gen), gen.describe(), name
    )
    return LoadedSide(info, gen)
