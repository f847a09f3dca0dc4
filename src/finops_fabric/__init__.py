"""FinOps Fabric: compile a compliance team's policy ontology O into a signed enforcer A.

The library API (the ``mu`` command is a thin layer over it)::

    from finops_fabric import load_enforcer

    enforcer = load_enforcer("path/to/A")  # every artifact hash is checked before any code runs
    decision = enforcer.decide({"id": "tx-1", "type": "purchase", "amount": "105000.00",
                                "actor_level": "L2", "approver_id": "u-1", "executor_id": "u-2"})
    decision.decision        # "APPROVE" | "REJECT"
    decision.fired           # [(rule IRI, reason), ...]
    decision.to_dict()       # the decision JSON of the policy language

- :func:`load_enforcer` → :class:`Enforcer`, whose ``decide`` returns a :class:`Decision`;
  anything but a mapping raises :class:`InputError`; under policy language 1.1 (generator 3,
  the default) a type, amount or level the policy did not foresee is a REJECT naming the field.
- :func:`ontology_hash` (hash(O)), :func:`enforcer_hash` (hash(A), verified),
  :func:`validate` (O ⊨ Σ and the invariants), :func:`generate` (the whole line, with a signed
  receipt in a store), :func:`verify_receipt` (schema, hash and signature of a receipt).
- Errors: :class:`FabricError`, with :class:`InputError` (bad input) and :class:`CheckFailed`
  (a check said no).

Names are imported on first use, so ``import finops_fabric`` stays light.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from finops_fabric.enforcer import Decision, Enforcer, load_enforcer
    from finops_fabric.errors import CheckFailed, FabricError, InputError
    from finops_fabric.pipeline import GenerateResult, Validation

__version__ = "0.1.0"

__all__ = [
    "CheckFailed",
    "Decision",
    "Enforcer",
    "FabricError",
    "InputError",
    "__version__",
    "enforcer_hash",
    "generate",
    "load_enforcer",
    "ontology_hash",
    "validate",
    "verify_receipt",
]

PathLike = str | os.PathLike[str]

# Name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "Decision": "finops_fabric.enforcer",
    "Enforcer": "finops_fabric.enforcer",
    "load_enforcer": "finops_fabric.enforcer",
    "FabricError": "finops_fabric.errors",
    "InputError": "finops_fabric.errors",
    "CheckFailed": "finops_fabric.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'finops_fabric' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def ontology_hash(path: PathLike) -> str:
    """hash(O) of the ontology at ``path`` (a file or a directory of files): SHA-256 of its
    RDFC-1.0 canonical N-Quads, ``sha256:<hex>``. Raises :class:`InputError` for unreadable input."""
    from finops_fabric.pipeline import load_ontology

    return load_ontology(path).hash


def enforcer_hash(path: PathLike) -> str:
    """hash(A) of the enforcer at ``path`` (SHA-256 of its manifest), after checking every
    artifact against the manifest: :class:`CheckFailed` names any file changed, missing or extra."""
    from finops_fabric.enforcer import verify_files

    return verify_files(Path(path))[2]


def validate(ontology: PathLike, schemas: Sequence[PathLike] = ()) -> Validation:
    """The ontology gate (O ⊨ Σ₀ plus ``schemas``) and the invariant gate. The result's
    ``conforms`` says whether O may be generated; ``violations`` and ``findings`` say why not."""
    from finops_fabric import pipeline

    return pipeline.validate(pipeline.load_ontology(ontology), [Path(s) for s in schemas])


def generate(
    ontology: PathLike,
    output: PathLike,
    *,
    home: PathLike | None = None,
    schemas: Sequence[PathLike] = (),
    generator_version: str | None = None,
    previous_receipt: PathLike | None = None,
    receipt_file: PathLike | None = None,
) -> GenerateResult:
    """``mu generate``: the gates, generation of A at ``output``, the golden suite, the
    determinism check and a signed receipt appended to the store at ``home`` (default as for
    ``mu``: ``$FABRIC_HOME`` or ``./.fabric``; it must exist, see ``mu init``). The result's
    ``status`` is "generated" or "rejected" (then no A was written); ``receipt`` is the receipt."""
    from finops_fabric import pipeline
    from finops_fabric.store import Store

    return pipeline.generate(
        Path(ontology),
        Path(output),
        Store.open(home),
        schemas=[Path(s) for s in schemas],
        previous_receipt=Path(previous_receipt) if previous_receipt is not None else None,
        generator_version=generator_version,
        receipt_file=Path(receipt_file) if receipt_file is not None else None,
    )


def verify_receipt(receipt: PathLike | Mapping[str, Any], public_key: PathLike | Ed25519PublicKey) -> None:
    """Check a receipt (a file or a parsed document) against an Ed25519 public key (a PEM file
    or a key): its schema, ``receipt_hash`` and signature. Returns None when all hold; raises
    :class:`CheckFailed` naming the first that does not, :class:`InputError` for unreadable input."""
    from finops_fabric import receipts
    from finops_fabric.keys import load_public_key

    doc = dict(receipt) if isinstance(receipt, Mapping) else receipts.load_receipt(receipt)
    key = load_public_key(public_key) if isinstance(public_key, str | os.PathLike) else public_key
    receipts.verify_receipt(doc, key)
