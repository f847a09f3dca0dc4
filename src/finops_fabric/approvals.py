"""Compliance approvals of hash(O), invariant overrides, and the roster of approvers.

**The roster** is the compliance team's public keys, kept in the store's ledger as a chain of
signed ``roster`` receipts (like a TUF root): version 1 is signed by one of its own members
(``mu roster init``); version n+1 must be signed by a member of version n (``mu roster add``,
``mu roster remove``). :func:`roster_history` re-checks that whole chain every time it is read,
so a roster row written into the ledger by anyone else breaks it loudly instead of admitting a key.
One member's signature is enough for a change (threshold 1); a roster is never empty.

**An approval** is a receipt of kind ``approval`` signed by a roster member::

    {"format": "finops-fabric/receipt/v1", "kind": "approval", "time": "...",
     "ontology_hash": "sha256:...",          # the exact O approved (RDFC-1.0, as `mu hash`)
     "override": null | "sod",               # null: O itself; else an override of ONE invariant
     "signer": {"keyid": "<64 hex>", "name": "alice"}, "roster_version": 1,
     "inputs": {"ontology_hash": "sha256:..."}, "previous_receipt_hash": ..., "receipt_hash": ...,
     "impact": {"hash": ..., ...},           # optional: the impact document signed knowing (`--impact`)
     "signatures": [{"keyid": <approver>, ...}, {"keyid": <operator>, ...}]}

It is written to a file (conventionally ``*.approval.json``) and appended to the ledger, where
the store's operator key co-signs it so ``mu audit-trail`` verifies it like every receipt. The
approver's signature is the one that counts: :func:`verify_approval` checks it against the
roster, never the operator's.

Membership is judged against the roster a caller passes (normally the current one from
:func:`load_roster`): removing a member from the roster withdraws every approval they signed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from finops_fabric.canonical import is_sha256
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.invariants import INVARIANTS
from finops_fabric.keys import Ed25519PrivateKey, Ed25519PublicKey, key_id, public_key_pem
from finops_fabric.receipts import RECEIPT_FORMAT, check_hash, check_schema, check_signature
from finops_fabric.store import Store

__all__ = [
    "APPROVAL_KIND",
    "APPROVAL_SUFFIX",
    "ROSTER_KIND",
    "Approval",
    "Member",
    "Roster",
    "approval_file_name",
    "approve",
    "change_roster",
    "find_approval",
    "init_roster",
    "load_roster",
    "member_of",
    "require_approved",
    "roster_chain",
    "roster_history",
    "stored_approvals",
    "verify_approval",
]

APPROVAL_KIND = "approval"
ROSTER_KIND = "roster"
#: Approval files are conventionally named ``<something>.approval.json``.
APPROVAL_SUFFIX = ".approval.json"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the roster ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One compliance approver: a name and an Ed25519 public key (PEM), named by its key id."""

    name: str
    keyid: str
    public_key_pem: str

    def public_key(self) -> Ed25519PublicKey:
        return _public_key_of(self.public_key_pem, f"roster member {self.name!r}")

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "keyid": self.keyid, "public_key": self.public_key_pem}


def member_of(name: str, public_key: Ed25519PublicKey) -> Member:
    """A :class:`Member` for ``public_key`` (its key id is computed, never taken on trust)."""
    if not name or not name.strip() or any(c in name for c in "\n\r\t"):
        raise InputError(
            f"a roster member needs a plain, non-empty name, not {name!r}", code="roster.bad_name"
        )
    return Member(name.strip(), key_id(public_key), public_key_pem(public_key).decode("ascii"))


@dataclass(frozen=True)
class Roster:
    """One version of the roster as recorded (and verified) in the ledger."""

    version: int
    members: tuple[Member, ...]
    receipt_hash: str | None = None

    def member(self, keyid: str) -> Member | None:
        return next((m for m in self.members if m.keyid == keyid), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "receipt_hash": self.receipt_hash,
            "members": [{"name": m.name, "keyid": m.keyid} for m in self.members],
        }


def _public_key_of(pem: object, what: str) -> Ed25519PublicKey:
    if not isinstance(pem, str):
        raise CheckFailed(f"{what} has no PEM public key", code="roster.invalid")
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise CheckFailed(f"{what} has an unreadable public key: {exc}", code="roster.invalid") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CheckFailed(f"{what} has a {type(key).__name__}, not an Ed25519 key", code="roster.invalid")
    return key


def _members_of(doc: Mapping[str, Any], where: str) -> tuple[Member, ...]:
    body = doc.get("roster")
    raw = body.get("members") if isinstance(body, Mapping) else None
    if not isinstance(raw, list) or not raw:
        raise CheckFailed(f"{where} lists no members", code="roster.invalid")
    out: list[Member] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise CheckFailed(f"{where}: member {i} has no name", code="roster.invalid")
        key = _public_key_of(entry.get("public_key"), f"{where}: member {entry['name']!r}")
        if entry.get("keyid") != key_id(key):
            raise CheckFailed(
                f"{where}: member {entry['name']!r} names key id {entry.get('keyid')!r}, "
                f"but its public key's id is {key_id(key)}",
                code="roster.invalid",
            )
        out.append(Member(entry["name"], key_id(key), str(entry["public_key"])))
    _check_unique(out, where)
    return tuple(out)


def _check_unique(members: Sequence[Member], where: str) -> None:
    for attr, what in (("keyid", "key"), ("name", "name")):
        seen: set[str] = set()
        for m in members:
            value = getattr(m, attr)
            if value in seen:
                raise CheckFailed(
                    f"{where}: the {what} {value!r} is on the roster twice", code="roster.duplicate"
                )
            seen.add(value)


def _signer_keyid(doc: Mapping[str, Any]) -> str | None:
    signer = doc.get("signer")
    kid = signer.get("keyid") if isinstance(signer, Mapping) else None
    return kid if isinstance(kid, str) else None


def roster_history(home: str | Path) -> list[Roster]:
    """Every roster version in the store's ledger, oldest first, the whole chain verified.

    Raises :class:`CheckFailed` (``roster.broken``) naming the first version that is not the
    previous version plus one, does not link to it, or is not signed by a member of it (version 1:
    by one of its own members).
    """
    return roster_chain(Store(home).require().receipts(ROSTER_KIND))


def roster_chain(docs: Sequence[Mapping[str, Any]]) -> list[Roster]:
    """The roster versions of ``docs`` (the ledger's ``roster`` receipts, oldest first), the
    whole chain verified as :func:`roster_history` describes."""
    history: list[Roster] = []
    for doc in docs:
        where = f"roster receipt {doc.get('receipt_hash')}"
        try:
            check_schema(dict(doc))
            check_hash(dict(doc))
        except CheckFailed as exc:
            raise CheckFailed(f"{where} is damaged: {exc.message}", code="roster.broken") from exc
        body = doc.get("roster")
        version = body.get("version") if isinstance(body, Mapping) else None
        previous = history[-1] if history else None
        expected = previous.version + 1 if previous else 1
        if version != expected:
            raise CheckFailed(
                f"{where} says version {version!r} where version {expected} was due; "
                "the roster chain is broken",
                code="roster.broken",
            )
        prev_hash = previous.receipt_hash if previous else None
        if doc.get("previous_roster_hash") != prev_hash:
            raise CheckFailed(
                f"roster version {version} does not link to version {expected - 1} ({prev_hash})",
                code="roster.broken",
            )
        members = _members_of(doc, f"roster version {version}")
        authority = previous.members if previous else members
        kid = _signer_keyid(doc)
        signer = next((m for m in authority if m.keyid == kid), None)
        if signer is None:
            whose = f"version {expected - 1}" if previous else "its own members"
            raise CheckFailed(
                f"roster version {version} is signed by key {kid}, which is not one of {whose}; "
                "only a roster member may change the roster",
                code="roster.broken",
            )
        try:
            check_signature(dict(doc), signer.public_key())
        except CheckFailed as exc:
            raise CheckFailed(
                f"roster version {version}: the signature of {signer.name} ({kid}) does not verify",
                code="roster.broken",
            ) from exc
        history.append(Roster(int(version), members, str(doc["receipt_hash"])))
    return history


def load_roster(home: str | Path) -> Roster:
    """The current (newest, verified) roster of the store at ``home``.

    :class:`InputError` ``approvals.no_roster`` when none has been established."""
    history = roster_history(home)
    if not history:
        raise InputError(
            f"the store {Store(home).home} has no compliance roster",
            code="approvals.no_roster",
            hint="an approver establishes one: mu roster init --member=NAME=NAME.pub --key=NAME.key",
        )
    return history[-1]


def _signed_by_member(roster: Roster, key: Ed25519PrivateKey, action: str) -> Member:
    kid = key_id(key.public_key())
    member = roster.member(kid)
    if member is None:
        raise CheckFailed(
            f"key {kid} is not on the compliance roster (version {roster.version}); it may not {action}",
            code="approvals.not_on_roster",
            hint="`mu roster show` lists the members",
        )
    return member


def _append_roster(
    store: Store,
    members: Sequence[Member],
    signer: Member,
    key: Ed25519PrivateKey,
    previous: Roster | None,
    change: dict[str, Any],
) -> dict[str, Any]:
    _check_unique(members, "the new roster")
    if not members:
        raise CheckFailed("a roster may not be empty: nobody could approve anything", code="roster.empty")
    body = {
        "kind": ROSTER_KIND,
        "time": _now(),
        "roster": {
            "version": previous.version + 1 if previous else 1,
            "members": [m.to_dict() for m in members],
        },
        "previous_roster_hash": previous.receipt_hash if previous else None,
        "change": change,
        "signer": {"keyid": signer.keyid, "name": signer.name},
    }
    return store.append(body, key, cosigners=[store.operator_private_key()])


def init_roster(home: str | Path, members: Sequence[Member], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Establish roster version 1, signed by ``key``, which must be one of ``members``."""
    store = Store(home).require()
    if roster_history(home):
        raise CheckFailed(
            f"the store {store.home} already has a compliance roster; change it with "
            "`mu roster add` / `mu roster remove`, signed by a member",
            code="roster.exists",
        )
    _check_unique(members, "the new roster")
    signer = _signed_by_member(Roster(0, tuple(members)), key, "establish the roster")
    return _append_roster(store, members, signer, key, None, {"action": "init"})


def change_roster(
    home: str | Path,
    key: Ed25519PrivateKey,
    *,
    add: Member | None = None,
    remove: str | None = None,
) -> dict[str, Any]:
    """Roster version n+1 with ``add`` added or key id ``remove`` removed, signed by ``key``,
    which must be a member of version n (:class:`CheckFailed` ``approvals.not_on_roster``)."""
    if (add is None) == (remove is None):
        raise InputError("change the roster by adding one member or removing one", code="cli.usage")
    store = Store(home).require()
    current = load_roster(home)
    signer = _signed_by_member(current, key, "change the roster")
    members = list(current.members)
    if add is not None:
        clash = current.member(add.keyid) or next((m for m in members if m.name == add.name), None)
        if clash is not None:
            raise CheckFailed(
                f"{clash.name} ({clash.keyid}) is on the roster already", code="roster.duplicate"
            )
        members.append(add)
        change: dict[str, Any] = {"action": "add", "name": add.name, "keyid": add.keyid}
    else:
        gone = current.member(str(remove))
        if gone is None:
            raise CheckFailed(f"no member of the roster has key id {remove}", code="roster.unknown_member")
        members = [m for m in members if m.keyid != gone.keyid]
        change = {"action": "remove", "name": gone.name, "keyid": gone.keyid}
    return _append_roster(store, members, signer, key, current, change)


# --- approvals ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """A verified approval: roster member ``signer`` (``keyid``) approved ``ontology_hash``, or an
    override of invariant ``override`` for it. ``approval_hash`` is its receipt_hash."""

    ontology_hash: str
    override: str | None
    keyid: str
    signer: str
    approval_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ontology_hash": self.ontology_hash,
            "override": self.override,
            "keyid": self.keyid,
            "signer": self.signer,
            "approval_hash": self.approval_hash,
        }


def _fail(code: str, message: str, hint: str | None = None) -> CheckFailed:
    return CheckFailed(message, code=code, hint=hint)


def verify_approval(
    doc: Mapping[str, Any],
    roster: Roster,
    *,
    ontology_hash: str | None = None,
    override: str | None = None,
    any_override: bool = False,
) -> Approval:
    """Check an approval document; return what it approves, or raise :class:`CheckFailed`.

    Ordered checks, each with its own code: ``approval.schema`` (a receipt of kind approval),
    ``approval.hash`` (content matches its receipt_hash), ``approval.signer`` (the signer is on
    ``roster``), ``approval.signature`` (the signer's signature verifies), ``approval.ontology``
    (when ``ontology_hash`` is given, it is exactly that hash(O)), ``approval.override`` (it is
    exactly ``override``: ``None`` means an approval of O itself, so an override document is
    refused; a name means an override of that invariant; ``any_override=True`` skips this check).
    """
    if not isinstance(doc, Mapping):
        raise _fail("approval.schema", f"an approval is a JSON object, not {type(doc).__name__}")
    receipt = dict(doc)
    try:
        check_schema(receipt)
    except CheckFailed as exc:
        raise _fail("approval.schema", f"not a well-formed approval: {exc.message}") from exc
    if receipt["kind"] != APPROVAL_KIND or receipt["format"] != RECEIPT_FORMAT:
        raise _fail("approval.schema", f"this is a {receipt['kind']!r} receipt, not an approval")
    approved = receipt.get("ontology_hash")
    if not is_sha256(approved):
        raise _fail("approval.schema", "the approval names no ontology_hash (sha256:<64 hex>)")
    inputs = receipt.get("inputs")
    if isinstance(inputs, Mapping) and inputs.get("ontology_hash") not in (None, approved):
        raise _fail("approval.schema", "the approval's inputs.ontology_hash differs from its ontology_hash")
    ov = receipt.get("override")
    if ov is not None and not isinstance(ov, str):
        raise _fail("approval.schema", "override must be null or the name of an invariant")
    kid = _signer_keyid(receipt)
    if kid is None:
        raise _fail("approval.schema", "the approval names no signer keyid")
    try:
        check_hash(receipt)
    except CheckFailed as exc:
        raise _fail("approval.hash", f"the approval was changed after it was signed: {exc.message}") from exc
    member = roster.member(kid)
    if member is None:
        raise _fail(
            "approval.signer",
            f"the approval is signed by key {kid}, which is not on the compliance roster "
            f"(version {roster.version})",
            hint="only a roster member's approval counts; `mu roster show` lists them",
        )
    try:
        check_signature(receipt, member.public_key())
    except CheckFailed as exc:
        raise _fail(
            "approval.signature",
            f"the approval's signature by {member.name} ({kid}) does not verify: it is forged or damaged",
        ) from exc
    if ontology_hash is not None and approved != ontology_hash:
        raise _fail(
            "approval.ontology",
            f"the approval by {member.name} is for O {approved}, not for this O {ontology_hash}",
            hint="an approval covers exactly one hash(O); any change to O needs a new one",
        )
    if not any_override and ov != override:
        got = f"an override of invariant {ov!r}" if ov else "an approval of O (no override)"
        want = f"an override of invariant {override!r}" if override else "an approval of O"
        raise _fail("approval.override", f"the approval by {member.name} is {got}, not {want}")
    return Approval(str(approved), ov, kid, member.name, str(receipt["receipt_hash"]))


def approval_file_name(ontology_hash: str, override: str | None = None) -> str:
    """The default file of an approval: ``<12 hex of hash(O)>[.<invariant>].approval.json``."""
    prefix = ontology_hash.removeprefix("sha256:")[:12]
    return f"{prefix}.{override}{APPROVAL_SUFFIX}" if override else f"{prefix}{APPROVAL_SUFFIX}"


def approve(
    home: str | Path,
    ontology_hash: str,
    key: Ed25519PrivateKey,
    *,
    override: str | None = None,
    sources: Sequence[str] = (),
    impact: Mapping[str, Any] | None = None,
    evidence: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Sign an approval of ``ontology_hash`` (or an override of one invariant for it) with ``key``
    and append it to the ledger. ``key`` must be on the current roster (:class:`CheckFailed`
    ``approvals.not_on_roster``); ``override`` must name an invariant (:class:`InputError`)."""
    if not is_sha256(ontology_hash):
        raise InputError(f"{ontology_hash!r} is not a hash(O)", code="approvals.bad_hash")
    if override is not None and override not in INVARIANTS:
        raise InputError(
            f"there is no invariant named {override!r}; the invariants are {', '.join(INVARIANTS)}",
            code="approvals.unknown_invariant",
        )
    store = Store(home).require()
    roster = load_roster(home)
    member = _signed_by_member(roster, key, "approve")
    body: dict[str, Any] = {
        "kind": APPROVAL_KIND,
        "time": _now(),
        "ontology_hash": ontology_hash,
        "override": override,
        "signer": {"keyid": member.keyid, "name": member.name},
        "roster_version": roster.version,
        "roster_hash": roster.receipt_hash,
        "inputs": {"ontology_hash": ontology_hash, "ontology_sources": sorted(sources)},
    }
    if impact is not None:  # the impact document (``mu impact --json``) the approver signed knowing
        body["impact"] = dict(impact)
        body["inputs"]["impact_hash"] = impact["hash"]
    if evidence:  # backtest receipts (``mu backtest``) the approver signed knowing
        body["evidence"] = [dict(e) for e in evidence]
        body["inputs"]["evidence"] = [e["receipt_hash"] for e in evidence]
    return store.append(body, key, cosigners=[store.operator_private_key()])


def stored_approvals(home: str | Path) -> list[dict[str, Any]]:
    """Every approval document recorded in the store's ledger, oldest first (unverified)."""
    return Store(home).require().receipts(APPROVAL_KIND)


def find_approval(
    docs: Sequence[Mapping[str, Any]], roster: Roster, ontology_hash: str, override: str | None = None
) -> tuple[Approval | None, list[str]]:
    """The first of ``docs`` that verifies as an approval of ``ontology_hash`` (or of
    ``override``); and why each other document for that hash did not count."""
    problems: list[str] = []
    for doc in docs:
        try:
            return verify_approval(doc, roster, ontology_hash=ontology_hash, override=override), problems
        except CheckFailed as exc:
            if doc.get("ontology_hash") == ontology_hash:
                problems.append(exc.message)
    return None, problems


def require_approved(store: Store, generation_receipt: Mapping[str, Any]) -> Approval:
    """The approval by a current roster member of the O a generation receipt was made from,
    looked up in the ledger and among approvals the receipt carries itself; :class:`CheckFailed`
    ``deploy.unapproved`` when there is none (also when the store has no roster)."""
    inputs = generation_receipt.get("inputs")
    oh = inputs.get("ontology_hash") if isinstance(inputs, Mapping) else None
    what = f"the O of receipt {generation_receipt.get('receipt_hash')}"
    if not isinstance(oh, str):
        raise CheckFailed(f"{what} is not named by its receipt", code="deploy.unapproved")
    hint = f"a compliance approver runs `mu approve --ontology=O --key=KEY` for {oh}"
    try:
        roster = load_roster(store.home)
    except InputError as exc:
        raise CheckFailed(
            f"production needs O {oh} approved by the compliance roster, and this store has no roster",
            code="deploy.unapproved",
            hint=exc.hint,
        ) from exc
    carried = [a.get("approval") for a in generation_receipt.get("approvals") or [] if isinstance(a, Mapping)]
    docs = [d for d in carried if isinstance(d, Mapping)] + stored_approvals(store.home)
    found, problems = find_approval(docs, roster, oh)
    if found is None:
        why = f" ({'; '.join(problems[:3])})" if problems else ""
        raise CheckFailed(
            f"O {oh} has no approval by a member of the compliance roster{why}; "
            "production refuses an unapproved O",
            code="deploy.unapproved",
            hint=hint,
        )
    return found
