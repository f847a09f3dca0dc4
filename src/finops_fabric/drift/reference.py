"""Which generation receipt an A is compared with: the one behind what an environment runs.

Drift is about what runs, so the reference comes from the deployment receipts first:

    --env=ENV             the generation receipt of ENV's latest successful deployment (or
                          rollback) in the ledger
    --enforcer=A          if A's hash(A) is what some environment's latest deployment runs, that
                          deployment's generation receipt; otherwise (A is deployed nowhere) the
                          generation receipt that produced it: the one whose hash(A) it is, else
                          the newest one of its O (hash(O) from A's manifest, preferring the same
                          generator), else the newest generation receipt of all

A newer generation that no environment runs is information (``information``), not drift.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from finops_fabric.errors import InputError
from finops_fabric.store import Store

__all__ = ["Reference", "current_deployments", "for_enforcer", "for_env"]


@dataclass
class Reference:
    """The generation receipt to regenerate and compare with, and why it is the one."""

    receipt: dict[str, Any]
    why: str
    envs: tuple[str, ...] = ()
    deployment: dict[str, Any] | None = None
    information: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation_receipt_hash": self.receipt.get("receipt_hash"),
            "why": self.why,
            "envs": list(self.envs),
            "deployment_receipt_hash": self.deployment["receipt_hash"] if self.deployment else None,
        }


def current_deployments(store: Store) -> dict[str, dict[str, Any]]:
    """Environment → the receipt of its latest successful deployment or rollback (what it runs)."""
    from finops_fabric.daemon.runtime import successful_deployments

    envs = sorted(
        {
            str(r["env"])
            for r in store.receipts()
            if r.get("kind") in ("deployment", "rollback") and isinstance(r.get("env"), str)
        }
    )
    out: dict[str, dict[str, Any]] = {}
    for env in envs:
        latest = next(successful_deployments(store, env), None)
        if latest is not None:
            out[env] = latest
    return out


def _runs(deployment: Mapping[str, Any]) -> str | None:
    value = (deployment.get("inputs") or {}).get("enforcer_hash")
    return value if isinstance(value, str) else None


def _generation(store: Store, receipt_hash: object) -> dict[str, Any] | None:
    found = store.find(str(receipt_hash)) if isinstance(receipt_hash, str) else None
    return found if found is not None and found.get("kind") == "generation" else None


def _newer(store: Store, ref: Reference, deployed: Mapping[str, dict[str, Any]]) -> None:
    """Add, as information, the newest generation when it is not the reference."""
    latest = store.latest("generation")
    if latest is None or latest["receipt_hash"] == ref.receipt.get("receipt_hash"):
        return
    a = (latest.get("outputs") or {}).get("enforcer_hash")
    where = sorted(env for env, d in deployed.items() if _runs(d) == a)
    if where:
        ref.information.append(
            f"the newest generation receipt {latest['receipt_hash']} (A {a}) runs in {', '.join(where)}"
        )
    else:
        ref.information.append(
            f"a newer A exists that is not deployed: generation receipt {latest['receipt_hash']} (A {a}); "
            "that is information, not drift"
        )


def for_env(store: Store, env: str) -> Reference:
    deployed = current_deployments(store)
    dep = deployed.get(env)
    if dep is None:
        known = ", ".join(deployed) or "none"
        raise InputError(
            f"nothing has been deployed to {env}: the ledger of {store.home} has no successful deployment "
            f"of it (environments with one: {known})",
            code="drift.not_deployed",
            hint=f"mu deploy --target={env} --enforcer=A",
        )
    gen_hash = (dep.get("inputs") or {}).get("generation_receipt_hash")
    gen = _generation(store, gen_hash)
    if gen is None:
        raise InputError(
            f"{env}'s deployment receipt {dep['receipt_hash']} names generation receipt {gen_hash}, which "
            "is not in the ledger",
            code="drift.no_receipt",
        )
    envs = tuple(e for e, d in deployed.items() if _runs(d) == _runs(dep))
    ref = Reference(
        gen,
        f"what {env} runs: deployment receipt {dep['receipt_hash']} of {dep.get('time')}",
        envs,
        dep,
    )
    _newer(store, ref, deployed)
    return ref


def loose_manifest(data: bytes | None) -> dict[str, Any]:
    """A's manifest as JSON, also when it is no longer the generator's canonical form."""
    if data is None:
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def for_enforcer(store: Store, enforcer_hash: str | None, manifest: Mapping[str, Any]) -> Reference:
    """The reference for an A whose manifest hashes to ``enforcer_hash`` (see the module text)."""
    deployed = current_deployments(store)
    generations = store.receipts("generation")
    if not generations:
        raise InputError(
            f"the store {store.home} has no generation receipt: there is no receipted O to compare with",
            code="drift.no_receipt",
            hint="generate A with `mu generate` first",
        )
    ref: Reference | None = None
    envs = tuple(
        env for env, d in deployed.items() if enforcer_hash is not None and _runs(d) == enforcer_hash
    )
    if envs:
        dep = deployed[envs[0]]
        gen = _generation(store, (dep.get("inputs") or {}).get("generation_receipt_hash"))
        if gen is not None:
            ref = Reference(
                gen,
                f"the A that {', '.join(envs)} runs (deployment receipt {dep['receipt_hash']})",
                envs,
                dep,
            )
    if ref is None and enforcer_hash is not None:
        gen = next(
            (
                g
                for g in reversed(generations)
                if (g.get("outputs") or {}).get("enforcer_hash") == enforcer_hash
            ),
            None,
        )
        if gen is not None:
            ref = Reference(gen, "the generation receipt that produced this A; it is deployed nowhere")
    onto = manifest.get("ontology_hash")
    if ref is None and isinstance(onto, str):
        same_o = [g for g in reversed(generations) if (g.get("inputs") or {}).get("ontology_hash") == onto]
        raw = manifest.get("generator")
        pinned: dict[str, Any] = raw if isinstance(raw, dict) else {}

        def same_generator(g: dict[str, Any]) -> bool:
            used = (g.get("inputs") or {}).get("generator") or {}
            return all(used.get(k) == pinned.get(k) for k in ("id", "version", "source_hash"))

        same_gen = [g for g in same_o if same_generator(g)]
        gen = (same_gen or same_o or [None])[0]
        if gen is not None:
            ref = Reference(
                gen, f"the newest generation receipt of this A's O {onto}; no receipt has its hash(A)"
            )
    if ref is None:
        ref = Reference(
            generations[-1], "the newest generation receipt: neither this A's hash(A) nor its O is receipted"
        )
    _newer(store, ref, deployed)
    return ref
