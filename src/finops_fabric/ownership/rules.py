"""The ownership rules: the walk over the history (rule 1, every change of O approved; rule 2,
generated code neither hand-edited nor unreceipted), the production receipt (rule 3, it binds an
approved O), and :func:`check_ownership`, which runs them."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from finops_fabric.canonical import is_sha256
from finops_fabric.enforcer import MANIFEST
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.ownership.approvals import _Approvals, _approvals, _signers
from finops_fabric.ownership.git import _GITLINK, _LINK, _Commit, _commits, _Git, _open
from finops_fabric.ownership.report import OwnershipReport, Violation
from finops_fabric.ownership.tree import (
    _generated_state,
    _GeneratedState,
    _is_generator_manifest,
    _join,
    _of_interest,
    _Ontology,
    _under,
)
from finops_fabric.store import Store

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


# --- the walk ------------------------------------------------------------------------------------


def _ontology_paths(paths: Sequence[str], prefix: str, repo: Path) -> list[str]:
    out = []
    for raw in paths:
        rel = posixpath.normpath(posixpath.join(prefix, raw.replace(os.sep, "/")))
        if raw.startswith("/") or os.path.isabs(raw) or rel == ".." or rel.startswith("../"):
            raise InputError(
                f"--ontology-path={raw} is not a path inside the repository {repo}",
                code="cli.usage",
                hint="give O's files or directories relative to --repo",
            )
        out.append("" if rel == "." else rel)
    return sorted(set(out))


class _Walk:
    """The checks of rules 1 and 2, commit by commit (parents before children)."""

    def __init__(
        self,
        git: _Git,
        commits: Sequence[_Commit],
        onto: _Ontology,
        approvals: _Approvals,
        receipted: Mapping[str, str],
    ) -> None:
        self.git, self.onto, self.approvals, self.receipted = git, onto, approvals, receipted
        self.tree_of = {c.sha: c.tree for c in commits}
        self.generated: dict[str, set[str]] = {}  # commit → its generated-enforcer directories
        self.keys: dict[str, tuple[tuple[str, str], ...]] = {}  # commit → O's (path, blob)s
        self.is_manifest: dict[str, bool] = {}  # blob → is a generator's manifest
        self.states: dict[str, _GeneratedState] = {}  # tree → its verification
        self.violations: list[Violation] = []
        self.ontology_changes: list[dict[str, Any]] = []
        self.generated_changes: list[dict[str, Any]] = []
        self.first_commit_of_hash: dict[str, _Commit] = {}
        self.o_files_of_hash: dict[str, tuple[str, ...]] = {}

    def visit(self, c: _Commit) -> None:
        flat = self.git.flat(c.tree, _of_interest)  # RDF files and manifests only
        generated = self._generated_dirs(c, flat)
        self.generated[c.sha] = generated
        base = self.tree_of.get(c.parents[0]) if c.parents else None
        changed = self.git.changed(base, c.tree)
        self._check_generated(c, generated, changed)
        self._check_ontology(c, flat, generated, changed)

    def _generated_dirs(self, c: _Commit, flat: Mapping[str, tuple[str, str]]) -> set[str]:
        dirs = set()
        for path, (mode, oid) in flat.items():
            if posixpath.basename(path) != MANIFEST or mode in (_LINK, _GITLINK):
                continue
            if oid not in self.is_manifest:
                self.is_manifest[oid] = _is_generator_manifest(self.git.read(oid, "blob"))
            if self.is_manifest[oid]:
                dirs.add(posixpath.dirname(path))
        # A directory of generated code stays one while it has files, also when a commit deletes
        # or breaks its manifest: that is a hand edit, not a way out of the check.
        for parent in c.parents:
            for d in self.generated.get(parent, set()):
                if self.git.subtree(c.tree, d) is not None:
                    dirs.add(d)
        return dirs

    def _check_generated(self, c: _Commit, generated: set[str], changed: set[str]) -> None:
        for d in sorted(generated):
            tree = self.git.subtree(c.tree, d)
            if tree is None:
                continue
            if tree in [self.git.subtree(self.tree_of[p], d) for p in c.parents if p in self.tree_of]:
                continue  # unchanged, or taken over from a parent where it was checked
            state = self.states.get(tree)
            if state is None:
                state = self.states[tree] = _generated_state(self.git, tree)
            touched = {p for p in changed if _under(p, d)}
            manifest_touched = _join(d, MANIFEST) in touched
            # Problems this commit made: in files it touched (all of them when it wrote the manifest).
            mine = [(p, why) for p, why in state.problems if manifest_touched or _join(d, p) in touched]
            receipt = self.receipted.get(state.enforcer_hash or "")
            self.generated_changes.append(
                {
                    "commit": c.sha,
                    "author": c.author,
                    "directory": d,
                    "enforcer_hash": state.enforcer_hash,
                    "verified": not state.problems,
                    "generation_receipt": receipt,
                }
            )
            label = f"{d}/" if d else "the repository root"
            if mine:
                self.violations.append(
                    Violation(
                        "hand_edited_generated_code",
                        c.sha,
                        c.author,
                        tuple(_join(d, p) for p, _ in mine),
                        f"changed generated code in {label} by hand: "
                        + "; ".join(f"{p} {why}" for p, why in mine)
                        + ". Generated code is only ever written by `mu generate`",
                    )
                )
            if manifest_touched and state.enforcer_hash is not None and receipt is None:
                self.violations.append(
                    Violation(
                        "unreceipted_generated_code",
                        c.sha,
                        c.author,
                        tuple(sorted(touched)),
                        f"put an enforcer A into {label} whose hash {state.enforcer_hash} (made from O "
                        f"{state.ontology_hash}) is the output of no generation receipt in the store: "
                        "it was not produced by `mu generate` from a receipted O",
                    )
                )

    def _check_ontology(
        self, c: _Commit, flat: Mapping[str, tuple[str, str]], generated: set[str], changed: set[str]
    ) -> None:
        key = self.onto.files(flat, generated)
        self.keys[c.sha] = key
        parent_keys = [self.keys[p] for p in c.parents if p in self.keys]
        if not key and parent_keys and parent_keys[0]:
            self._deleted(c, parent_keys[0])
            return
        if not key or key in parent_keys:
            return  # no O here (yet), or the same files as a parent's
        result = self.onto.hash(key)
        mine = dict(key) | dict(parent_keys[0] if parent_keys else ())
        files = tuple(sorted(p for p in changed if p in mine))
        if isinstance(result, InputError):
            self.ontology_changes.append(
                {
                    "commit": c.sha,
                    "author": c.author,
                    "ontology_hash": None,
                    "approved_by": [],
                    "files": list(files),
                }
            )
            self.violations.append(
                Violation(
                    "unapproved_ontology_change",
                    c.sha,
                    c.author,
                    files,
                    f"changed O so that it no longer loads ({result.message}); an O without a hash(O) "
                    "cannot have been approved",
                )
            )
            return
        self.first_commit_of_hash.setdefault(result, c)
        self.o_files_of_hash.setdefault(result, tuple(p for p, _ in key))
        if result in {self.onto.hash(k) for k in parent_keys if k}:
            return  # the files changed but O did not (formatting, comments, a file split)
        approvals = self.approvals.by_hash.get(result, [])
        self.ontology_changes.append(
            {
                "commit": c.sha,
                "author": c.author,
                "ontology_hash": result,
                "approved_by": _signers(approvals),
                "files": list(files),
            }
        )
        if not approvals:
            self.violations.append(
                Violation(
                    "unapproved_ontology_change",
                    c.sha,
                    c.author,
                    files,
                    f"changed O to {result}, and no member of the compliance roster approved that "
                    f"hash(O){self.approvals.why_not(result)}",
                )
            )

    def _deleted(self, c: _Commit, had: tuple[tuple[str, str], ...]) -> None:
        """A commit that removes every file of O: the repository no longer holds the policy
        compliance owns, and no approval can cover "no O"."""
        files = tuple(p for p, _ in had)
        self.ontology_changes.append(
            {
                "commit": c.sha,
                "author": c.author,
                "ontology_hash": None,
                "approved_by": [],
                "files": list(files),
            }
        )
        self.violations.append(
            Violation(
                "ontology_deleted",
                c.sha,
                c.author,
                files,
                f"deleted O from the repository ({len(files)} file(s)); the rules compliance owns must "
                "stay in O's history at HEAD, and no approval covers removing them",
            )
        )


# --- the production receipt -----------------------------------------------------------------------


def _production_receipt(store: Store, ref: str | None) -> tuple[dict[str, Any], str] | None:
    from finops_fabric.receipts import load_receipt

    if ref is not None:
        if is_sha256(ref):
            found = store.find(ref)
            if found is None:
                raise InputError(f"no receipt {ref} in the store {store.home}", code="ownership.no_receipt")
            return found, "given (--receipt)"
        return load_receipt(Path(ref)), f"given (--receipt={ref})"
    from finops_fabric.daemon.runtime import successful_deployments

    deployed = next(successful_deployments(store, "production"), None)
    if deployed is not None:
        return deployed, "the latest production deployment in the store"
    latest = store.latest("generation")
    return (latest, "the latest generation receipt in the store") if latest is not None else None


def _receipt_ontology(store: Store, receipt: Mapping[str, Any]) -> str | None:
    inputs = receipt.get("inputs")
    inputs = inputs if isinstance(inputs, Mapping) else {}
    oh = inputs.get("ontology_hash")
    if is_sha256(oh):
        return str(oh)
    gen_hash = inputs.get("generation_receipt_hash")
    gen = store.find(str(gen_hash)) if is_sha256(gen_hash) else None
    gen_inputs = gen.get("inputs") if gen is not None else None
    oh = gen_inputs.get("ontology_hash") if isinstance(gen_inputs, Mapping) else None
    return str(oh) if is_sha256(oh) else None


def _check_receipt(store: Store, ref: str | None, walk: _Walk) -> dict[str, Any] | None:
    from finops_fabric.receipts import verify_receipt

    found = _production_receipt(store, ref)
    if found is None:
        return None
    receipt, source = found
    rh = str(receipt.get("receipt_hash"))
    oh = _receipt_ontology(store, receipt)
    env = f" for {receipt['env']}" if isinstance(receipt.get("env"), str) else ""
    info: dict[str, Any] = {
        "receipt_hash": rh,
        "kind": receipt.get("kind"),
        "env": receipt.get("env"),
        "source": source,
        "in_ledger": store.find(rh) is not None if is_sha256(rh) else False,
        "ontology_hash": oh,
        "approved_by": [],
    }
    what = f"the production receipt {rh} ({receipt.get('kind')}{env}, {source})"

    def violation(detail: str) -> None:
        c = walk.first_commit_of_hash.get(oh or "")
        files = walk.o_files_of_hash.get(oh or "", ())
        where = (
            f"; that O entered the history in {c.sha[:12]} by {c.author}"
            if c is not None
            else "; no commit in the repository's history has that O"
        )
        walk.violations.append(
            Violation(
                "receipt_not_approved", c.sha if c else None, c.author if c else None, files, detail + where
            )
        )

    try:
        verify_receipt(receipt, store.operator_public_key())
    except CheckFailed as e:
        info["verified"] = False
        violation(f"{what} does not verify with the operator key ({e.message}), so it binds nothing")
        return info
    info["verified"] = True
    if oh is None:
        violation(f"{what} names no hash(O)")
        return info
    approvals = walk.approvals.by_hash.get(oh, [])
    info["approved_by"] = _signers(approvals)
    if not approvals:
        violation(
            f"{what} binds O {oh}, which no member of the compliance roster approved"
            + walk.approvals.why_not(oh)
        )
    first = walk.first_commit_of_hash.get(oh)
    info["in_repository"] = first is not None
    info["first_commit"] = first.sha if first is not None else None
    if first is None:
        walk.violations.append(
            Violation(
                "production_ontology_not_in_repository",
                None,
                None,
                (),
                f"{what} binds O {oh}, and no commit of the repository has that O (hash(O) was computed for "
                f"each of the {len(walk.first_commit_of_hash)} distinct O state(s) in its history): "
                "what runs was not made from this repository's O",
            )
        )
    return info


def check_ownership(
    repo: Path,
    store: Store,
    *,
    receipt: str | None = None,
    ontology_paths: Sequence[str] = (),
    progress: Progress = _quiet,
) -> OwnershipReport:
    """Walk the history of ``repo`` and check the ownership rules (see the module text)."""
    store.require()
    repo = Path(repo).absolute()
    git, prefix = _open(repo)
    onto: _Ontology | None = None
    try:
        paths = _ontology_paths(ontology_paths, prefix, repo) if ontology_paths else None
        progress("verifying the approvals against the compliance roster")
        approvals = _approvals(git, store)
        receipted = {
            str((r.get("outputs") or {}).get("enforcer_hash")): str(r.get("receipt_hash"))
            for r in store.receipts("generation")
        }
        commits = _commits(git)
        onto = _Ontology(git, paths, prefix.rstrip("/"))
        walk = _Walk(git, commits, onto, approvals, receipted)
        for i, c in enumerate(commits, 1):
            if i % 50 == 0:
                progress(f"commit {i} of {len(commits)}")
            walk.visit(c)
        if not any(walk.keys.values()):
            which = (
                ", ".join(paths) if paths else "RDF files (.ttl .trig .nt .nq .jsonld) outside generated code"
            )
            raise InputError(
                f"no commit of {repo} has O ({which}), so there is no history of O to check",
                code="ownership.no_ontology",
                hint="name O's files with --ontology-path=REL (relative to --repo)",
            )
        prod = _check_receipt(store, receipt, walk)
    finally:
        git.close()
        if onto is not None:
            onto.close()
    return OwnershipReport(
        repo=repo,
        head=commits[-1].sha,
        commits_checked=len(commits),
        ontology_paths=paths,
        violations=walk.violations,
        ontology_changes=walk.ontology_changes,
        generated_changes=walk.generated_changes,
        approvals=approvals.count,
        ignored_approvals=approvals.ignored,
        production_receipt=prod,
    )
