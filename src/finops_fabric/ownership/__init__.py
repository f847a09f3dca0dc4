"""Ownership (job 4.1): prove from the git history of O's repository that compliance owns the rules.

:func:`check_ownership` walks every commit reachable from ``HEAD`` (oldest first; a merge is
compared with its first parent, and a state it merely takes over from another parent was already
checked where that parent made it) and reports each violation with its commit and author:

``unapproved_ontology_change``  a commit changed hash(O) to a value no member of the compliance
                                roster approved (O's files: the ``ontology_paths``, or every RDF
                                file outside generated-enforcer directories)
``hand_edited_generated_code``  a commit left a generated-enforcer directory (one holding a
                                generator's ``manifest.json``) that does not verify against its
                                manifest: a changed, missing or extra file, or an edited manifest
``unreceipted_generated_code``  a commit put in an A whose hash(A) is the ``outputs.enforcer_hash``
                                of no generation receipt in the store
``receipt_not_approved``        the production receipt binds a hash(O) nobody on the roster approved
``production_ontology_not_in_repository``  the O the production receipt binds (production's
                                deployment, else the receipt checked) is no commit's O: hash(O)
                                was computed for every O state of the history, none is it
``ontology_deleted``            a commit removed every file of O from the repository

Approvals come from the store and from every ``*.approval.json`` committed on any branch; each
is verified against the store's roster (:mod:`finops_fabric.approvals`). Git is read through its
own command line (``rev-parse``, ``fsck``, ``log``, one ``cat-file --batch`` process); a shallow
clone or a repository with missing or damaged objects is refused (:class:`InputError`), since a
history with holes proves nothing. Nothing in the repository or the store is changed.
"""

from __future__ import annotations

from finops_fabric.ownership.report import KINDS, OwnershipReport, Violation, explain
from finops_fabric.ownership.rules import Progress as Progress
from finops_fabric.ownership.rules import check_ownership

__all__ = [
    "KINDS",
    "OwnershipReport",
    "Violation",
    "check_ownership",
    "explain",
]
