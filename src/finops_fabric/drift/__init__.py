"""Drift: regenerate A from the receipted O behind what runs, and compare it with what runs.

:func:`detect_drift` finds the reference generation receipt (:mod:`.reference`: an
environment's latest deployment, or for a given A the deployment that runs it, else the
generation that produced it), replays it (see :mod:`finops_fabric.replay`: the O snapshot, the
pinned generator, no cache, a clean temporary directory), and compares that A, file by file,
with the A given (``--enforcer``, a directory or archive) or with what the environment runs (its
copy in the store, the one its daemon verified at deployment and boots from; when the daemon
answers, also the hash it serves). Each difference carries its cause:

    edited             the bytes differ from the regenerated artifact (a hand edit); when A_prod's
                       manifest is the receipted one they differ from the manifest too
    missing            an artifact of the regenerated A is not in A_prod
    extra              a file in A_prod that the regenerated A does not have
    manifest_edited    A_prod's manifest.json is not what the generator writes (not canonical,
                       not JSON), or it was rewritten for the receipted O and generator
    generator_mismatch A_prod was made by another generator (version or source) than the
                       receipt pins
    other_generation   (with ``--env`` and ``--enforcer``) A_prod is the A of another generation
                       receipt than the one the environment runs
    enforcer_not_receipted  A_prod is self-consistent but was made from another O, and no
                       receipt in the ledger has its hash
    not_serving        the running daemon serves another A than its latest deployment receipt says
    ontology_changed_without_receipt  (with ``--ontology=O``) O now differs from the receipted O

A newer generation that is not deployed is reported as information, not drift. Nothing in the
store is changed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from finops_fabric.canonical import is_sha256
from finops_fabric.drift.compare import (
    CAUSES,
    Difference,
    DriftReport,
    _compare,
    _ontology_check,
    _Prod,
    _read_prod,
    explain,
    prod_of,
)
from finops_fabric.drift.reference import Reference, for_enforcer, for_env, loose_manifest
from finops_fabric.enforcer import MANIFEST
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.pipeline import quiet
from finops_fabric.replay import regenerate
from finops_fabric.store import Store

__all__ = ["CAUSES", "Difference", "DriftReport", "Reference", "detect_drift", "explain"]

Progress = Callable[[str], None]


def _store_copy(store: Store, ref: Reference, env: str) -> tuple[_Prod, list[Difference]]:
    """What ``env`` runs: the store's copy of its deployed A, blob by blob (a damaged or missing
    blob is a difference: the daemon cannot boot from it)."""
    listing = (ref.receipt.get("outputs") or {}).get("artifacts")
    if not isinstance(listing, dict):
        raise InputError(
            f"generation receipt {ref.receipt.get('receipt_hash')} lists no artifacts, so the store holds "
            f"no copy of what {env} runs",
            code="drift.no_copy",
            hint=f"compare a copy instead: mu drift --env={env} --enforcer=A",
        )
    files: dict[str, bytes] = {}
    damaged: list[Difference] = []
    for path, digest in sorted(listing.items()):
        try:
            files[path] = store.get_object("blob", str(digest))
        except CheckFailed as e:
            damaged.append(Difference(path, "edited", f"the store's copy that {env} boots from: {e.message}"))
        except InputError as e:
            damaged.append(
                Difference(path, "missing", f"the store's copy that {env} boots from: {e.message}")
            )
    return prod_of(files, f"{env}'s copy in the store"), damaged


def detect_drift(
    enforcer: Path | None,
    store: Store,
    *,
    env: str | None = None,
    ontology: Path | None = None,
    served_hash: str | None = None,
    progress: Progress = quiet,
) -> DriftReport:
    """Compare ``enforcer`` (or, without it, what ``env`` runs) with a fresh regeneration of its
    reference receipt; with ``ontology``, also O now with the receipted O. ``served_hash``: the
    hash(A) ``env``'s running daemon reports, when it was asked."""
    store.require()
    if enforcer is None and env is None:
        raise InputError("give --enforcer=A or --env=ENV (or both)", code="cli.usage")
    prod: _Prod | None = None
    if env is not None:
        ref = for_env(store, env)
    else:
        assert enforcer is not None
        latest = store.latest("generation")
        if latest is None:
            raise InputError(
                f"the store {store.home} has no generation receipt: there is no receipted O to compare with",
                code="drift.no_receipt",
                hint="generate A with `mu generate` first",
            )
        listed = (latest.get("outputs") or {}).get("artifacts")
        prod = _read_prod(Path(enforcer), dict.fromkeys(listed, b"") if isinstance(listed, dict) else {})
        raw = prod.files.get(MANIFEST)
        ref = for_enforcer(store, prod.hash if raw is not None else None, loose_manifest(raw))
    progress(f"replaying generation receipt {ref.receipt.get('receipt_hash')} ({ref.why})")
    regen = regenerate(ref.receipt, store, progress=progress)
    if not regen.match:
        bad = [e["artifact"] for e in regen.differing + regen.missing + regen.extra] or [MANIFEST]
        raise CheckFailed(
            f"regenerating receipt {regen.receipt_hash} does not reproduce its A "
            f"({regen.enforcer_hash}, the receipt says {regen.expected_enforcer_hash}; differing: "
            f"{', '.join(bad[:5])}), so there is no trustworthy A to compare with",
            code="drift.replay_mismatch",
            hint=f"run `mu replay --receipt={regen.receipt_hash}` for the details",
        )
    extra: list[Difference] = []
    if enforcer is not None:
        name = str(enforcer)
        prod = prod if prod is not None else _read_prod(Path(enforcer), regen.files)
    else:
        assert env is not None
        name = f"what {env} runs (its copy in the store)"
        prod, extra = _store_copy(store, ref, env)
        expected = str((ref.deployment or {}).get("inputs", {}).get("enforcer_hash"))
        if served_hash is not None and is_sha256(served_hash) and served_hash != expected:
            extra.append(
                Difference(
                    MANIFEST,
                    "not_serving",
                    f"the running {env} daemon serves A {served_hash}, but its latest deployment receipt "
                    f"{(ref.deployment or {}).get('receipt_hash')} deployed A {expected}",
                    expected=expected,
                    actual=served_hash,
                )
            )
    damaged = {d.artifact for d in extra if d.cause != "not_serving"}
    progress(f"comparing {name} with the regenerated A")
    report = DriftReport(
        enforcer=name,
        receipt_hash=regen.receipt_hash,
        ontology_hash=regen.ontology_hash,
        generator=dict(regen.generator),
        expected_enforcer_hash=regen.expected_enforcer_hash,
        enforcer_hash=prod.hash,
        artifacts_compared=len(set(regen.files) | set(prod.files)),
        differences=extra + [d for d in _compare(prod, regen, store) if d.artifact not in damaged],
        reference=ref.to_dict(),
        information=list(ref.information),
    )
    if ontology is not None:
        progress(f"comparing O at {ontology} with the receipted O")
        report.ontology, more = _ontology_check(ontology, regen, store)
        report.differences += more
    return report
