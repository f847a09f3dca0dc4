"""Finding what an auditor names by hash: receipts in the store's ledger, the generation receipt
behind a deployment, and the O snapshot of a hash(O).

A reference to a receipt is either ``sha256:<hex>`` (looked up in the ledger) or the path of a
receipt file. :func:`verify_trusted` checks a receipt's hash and that a key this store trusts
(its operator key, or ``<store>/keys/trusted/*.pub``) signed it. :func:`export_snapshot` writes
the store's snapshot of O (canonical N-Quads) to a directory and checks that it hashes back
to the same hash(O) before the directory appears.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finops_fabric.canonical import is_sha256
from finops_fabric.errors import CheckFailed, InputError, Location
from finops_fabric.keys import Ed25519PublicKey, key_id, load_public_key
from finops_fabric.receipts import check_hash, check_schema, check_signature, load_receipt
from finops_fabric.store import Store

__all__ = [
    "SNAPSHOT_FILE",
    "Found",
    "export_snapshot",
    "find_receipt",
    "generation_behind",
    "trusted_keys",
    "verify_trusted",
]

#: The file name of an exported O snapshot inside its directory.
SNAPSHOT_FILE = "ontology.nq"
_BARE_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Found:
    """A receipt and where it came from (``ledger`` or the file's path)."""

    receipt: dict[str, Any]
    source: str

    @property
    def hash(self) -> str:
        return str(self.receipt.get("receipt_hash"))


def is_hash_ref(ref: str) -> bool:
    return is_sha256(ref) and not Path(ref).exists()


def find_receipt(store: Store, ref: str, *, flag: str = "receipt") -> Found:
    """The receipt ``ref`` names: ``sha256:<hex>`` from the ledger, else a receipt file."""
    if is_hash_ref(ref):
        store.require()
        found = store.find(ref)
        if found is None:
            raise InputError(
                f"no receipt {ref} in the ledger of the store {store.home}",
                code="receipt.not_in_ledger",
                hint=_what_hash(store, ref) or "`mu audit-trail` lists the receipts in the ledger",
            )
        return Found(found, "ledger")
    if _BARE_HEX.fullmatch(ref) and not Path(ref).exists():
        raise InputError(
            f"--{flag}={ref}: a hash is written sha256:<64 lowercase hex>",
            code="cli.usage",
            hint=f"--{flag}=sha256:{ref}",
        )
    return Found(load_receipt(Path(ref)), ref)


def _what_hash(store: Store, digest: str) -> str | None:
    """A hint when ``digest`` is not a receipt hash but hash(O) or hash(A) of one."""
    for r in reversed(store.receipts("generation")):
        inputs, outputs = r.get("inputs") or {}, r.get("outputs") or {}
        if inputs.get("ontology_hash") == digest:
            return (
                f"{digest} is hash(O) of generation receipt {r['receipt_hash']}: "
                f"`mu snapshot export {digest}` writes that O"
            )
        if outputs.get("enforcer_hash") == digest:
            return f"{digest} is hash(A) of generation receipt {r['receipt_hash']}"
    return None


def trusted_keys(store: Store) -> dict[str, tuple[Path, Ed25519PublicKey]]:
    """Key id → (file, key) for the keys this store trusts to sign receipts."""
    paths = [store.operator_public_key_path]
    trusted = store.keys_dir / "trusted"
    if trusted.is_dir():
        paths += sorted(trusted.glob("*.pub"))
    keys: dict[str, tuple[Path, Ed25519PublicKey]] = {}
    for p in paths:
        if p.is_file():
            try:
                key = load_public_key(p)
            except InputError:
                continue
            keys[key_id(key)] = (p, key)
    return keys


def verify_trusted(store: Store, receipt: dict[str, Any]) -> list[str]:
    """Check ``receipt``'s schema and hash, and every signature by a key this store trusts;
    at least one such signature is required. Returns the key ids that verified."""
    check_schema(receipt)
    check_hash(receipt)
    keys = trusted_keys(store)
    name = f"receipt {receipt['receipt_hash']}"
    signed = [str(s.get("keyid")) for s in receipt["signatures"] if s.get("keyid") in keys]
    if not signed:
        signers = ", ".join(sorted({str(s.get("keyid")) for s in receipt["signatures"]}))
        raise CheckFailed(
            f"{name} is not signed by a key this store trusts (its operator key or "
            f"{store.keys_dir / 'trusted'}/*.pub); it is signed by {signers}",
            code="receipt.signature",
        )
    for kid in signed:
        try:
            check_signature(receipt, keys[kid][1])
        except CheckFailed as e:
            raise CheckFailed(
                f"{name}: the signature by {kid} ({keys[kid][0]}) does not verify",
                code="receipt.signature",
                hint="the receipt was not signed by that key, or it was altered",
            ) from e
    return signed


def generation_behind(store: Store, receipt: dict[str, Any]) -> dict[str, Any] | None:
    """For a deployment or rollback receipt, the generation receipt of the A it deployed (from
    the ledger, hash-checked); ``None`` for any other kind. :class:`CheckFailed` when the
    receipt names one the ledger does not have."""
    if receipt.get("kind") not in ("deployment", "rollback"):
        return None
    gen_hash = (receipt.get("inputs") or {}).get("generation_receipt_hash")
    name = f"{receipt.get('kind')} receipt {receipt.get('receipt_hash')}"
    if not is_sha256(gen_hash):
        raise CheckFailed(f"{name} names no generation receipt", code="receipt.no_generation")
    gen = store.find(str(gen_hash)) if store.exists() else None
    if gen is None:
        raise CheckFailed(
            f"{name} deployed the A of generation receipt {gen_hash}, which is not in the ledger of "
            f"{store.home}",
            code="receipt.no_generation",
            hint=f"give that generation receipt ({gen_hash}) as a file",
        )
    check_hash(gen)
    return gen


def export_snapshot(store: Store, ontology_hash: str, output: Path) -> Path:
    """Write the store's snapshot of O ``ontology_hash`` to ``output/ontology.nq``; the directory
    appears only once hash(O) of what was written is ``ontology_hash`` again."""
    from finops_fabric.pipeline import load_ontology

    store.require()
    if not is_sha256(ontology_hash):
        raise InputError(
            f"{ontology_hash!r} is not a hash(O): give sha256:<64 lowercase hex>",
            code="snapshot.bad_hash",
            hint="`mu hash O` prints hash(O); receipts record it as inputs.ontology_hash",
        )
    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        raise InputError(
            f"--output={output} exists and is not an empty directory; refusing to overwrite it",
            code="snapshot.output_exists",
            location=Location(file=str(output)),
        )
    try:
        data = store.get_object("ontology", ontology_hash)
    except InputError as e:
        if e.code != "store.object_missing":
            raise
        raise InputError(
            f"the store {store.home} has no snapshot of O {ontology_hash}",
            code="snapshot.missing",
            hint=_what_receipt(store, ontology_hash)
            or "a snapshot is kept for every O that `mu generate` read in this store",
        ) from e
    output.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.absolute().parent))
    try:
        (tmp / SNAPSHOT_FILE).write_bytes(data)
        again = load_ontology(tmp).hash
        if again != ontology_hash:
            raise CheckFailed(
                f"the snapshot of O {ontology_hash} hashes to {again} when read back; it was not written",
                code="snapshot.mismatch",
                hint="the store's snapshot or the RDF canonicalization changed; keep the store for analysis",
            )
        with open(tmp / SNAPSHOT_FILE, "rb") as f:
            os.fsync(f.fileno())
        if output.exists():
            output.rmdir()  # empty (checked above)
        os.rename(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return output


def _what_receipt(store: Store, digest: str) -> str | None:
    found = store.find(digest)
    if found is not None:
        oh = (found.get("inputs") or {}).get("ontology_hash")
        if is_sha256(oh):
            return f"{digest} is the hash of a {found.get('kind')} receipt; its hash(O) is {oh}"
        return f"{digest} is the hash of a {found.get('kind')} receipt, not a hash(O)"
    return _what_hash(store, digest)
