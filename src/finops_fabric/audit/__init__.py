"""The audit trail: verify the receipt ledger, state every transition of O, rebuild O from ΔO.

The store's ``ledger`` table is the only source: a generation exists if and only if a ledger row
says so. Verification reads the database read-only and never changes the store.

Checks, in order, each naming the row (``seq``), the receipt hash and what is wrong:

1. every row (:mod:`.ledger`): readable, well formed, hash, index columns, canonical storage and
   a signature by a key of the trust file (:mod:`.trust`);
2. the hash chain (:mod:`.chain`): deleted, reordered, duplicated and truncated rows, seq gaps;
3. every transition (:mod:`.transitions`): the O snapshot, O ⊨ Σ, the ΔO; a rejection is a
   valid stop;
4. with ``rebuild`` (:mod:`.transitions`): O rebuilt from ΔO alone reproduces every hash(O);
5. the newest signed tree head the store kept outside its database (:mod:`.tree_head`): a
   ledger shorter than it, or whose first receipts no longer hash to its root, is named.

:mod:`.trail` composes them (:func:`audit_trail`, :class:`AuditResult`); :mod:`.tree_head` signs
the ledger's Merkle tree head and proves inclusion and consistency.
"""

from __future__ import annotations

# ``_name as _name``: internals the unit tests and bench/bench_audit.py reach for as ``audit._name``.
from finops_fabric.audit.chain import chain_gaps
from finops_fabric.audit.ledger import Gap, Ledger, Row, check_row, read_ledger, short
from finops_fabric.audit.ledger import _fast_json as _fast_json
from finops_fabric.audit.ledger import _is_canonical as _is_canonical
from finops_fabric.audit.ledger import _payload as _payload
from finops_fabric.audit.ledger import _same_in_jcs as _same_in_jcs
from finops_fabric.audit.trail import (
    AuditResult,
    audit_trail,
    ledger_gaps,
    require_verified_ledger,
    resolve_receipt,
)
from finops_fabric.audit.transitions import _Objects as _Objects
from finops_fabric.audit.transitions import rebuild
from finops_fabric.audit.tree_head import (
    TREE_HEAD_KEYS,
    consistency_from,
    ledger_tree,
    load_tree_head,
    prove_inclusion,
    sign_tree_head,
    stored_head_gaps,
    verify_tree_head,
)
from finops_fabric.audit.trust import Trust, TrustedKey, default_trust, load_trust

__all__ = [
    "TREE_HEAD_KEYS",
    "AuditResult",
    "Gap",
    "Ledger",
    "Row",
    "Trust",
    "TrustedKey",
    "audit_trail",
    "chain_gaps",
    "check_row",
    "consistency_from",
    "default_trust",
    "ledger_gaps",
    "ledger_tree",
    "load_tree_head",
    "load_trust",
    "prove_inclusion",
    "read_ledger",
    "rebuild",
    "require_verified_ledger",
    "resolve_receipt",
    "short",
    "sign_tree_head",
    "stored_head_gaps",
    "verify_tree_head",
]
