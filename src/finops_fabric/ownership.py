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

Approvals come from the store and from every ``*.approval.json`` committed on any branch; each
is verified against the store's roster (:mod:`finops_fabric.approvals`). Git is read through its
own command line (``rev-parse``, ``fsck``, ``log``, one ``cat-file --batch`` process); a shallow
clone or a repository with missing or damaged objects is refused (:class:`InputError`), since a
history with holes proves nothing. Nothing in the repository or the store is changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from finops_fabric.approvals import Approval
from finops_fabric.canonical import is_sha256, sha256_hex
from finops_fabric.enforcer import MANIFEST, check_files, enforcer_hash_of_manifest, parse_manifest
from finops_fabric.errors import CheckFailed, FabricError, InputError
from finops_fabric.rdf.load import FORMATS
from finops_fabric.store import Store

__all__ = [
    "KINDS",
    "OwnershipReport",
    "Violation",
    "check_ownership",
    "explain",
]

Progress = Callable[[str], None]

KINDS = (
    "unapproved_ontology_change",
    "hand_edited_generated_code",
    "unreceipted_generated_code",
    "receipt_not_approved",
)
_TREE, _LINK, _GITLINK = "40000", "120000", "160000"
_CORRUPT = "ownership.corrupt_repo"
_TREE_CACHE = 50_000  # tree listings kept in memory
# Variables that would point git at another repository, index or object store than --repo.
_GIT_LOCATION_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
)


def _quiet(_: str) -> None:
    return None


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    kind: str
    commit: str | None
    author: str | None
    files: tuple[str, ...]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "commit": self.commit,
            "author": self.author,
            "files": list(self.files),
            "detail": self.detail,
        }

    def line(self) -> str:
        where = f"{self.commit[:12]} {self.author}" if self.commit else "(no commit)"
        files = f" [{', '.join(self.files)}]" if self.files else ""
        return f"{self.kind}  {where}{files}: {self.detail}"


@dataclass
class OwnershipReport:
    repo: Path
    head: str
    commits_checked: int
    ontology_paths: list[str] | None
    violations: list[Violation] = field(default_factory=list)
    ontology_changes: list[dict[str, Any]] = field(default_factory=list)
    generated_changes: list[dict[str, Any]] = field(default_factory=list)
    approvals: int = 0
    ignored_approvals: list[dict[str, str]] = field(default_factory=list)
    production_receipt: dict[str, Any] | None = None

    @property
    def owned(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "owned": self.owned,
            "commits_checked": self.commits_checked,
            "violations": [v.to_dict() for v in self.violations],
            "repo": str(self.repo),
            "head": self.head,
            "ontology_paths": self.ontology_paths,
            "ontology_changes": self.ontology_changes,
            "generated_changes": self.generated_changes,
            "approvals": {"valid": self.approvals, "ignored": self.ignored_approvals},
            "production_receipt": self.production_receipt,
        }


def explain(report: OwnershipReport) -> list[str]:
    """The human summary: what was checked, then one line per violation."""
    checked = (
        f"{report.commits_checked} commit(s) up to {report.head[:12]}: "
        f"{len(report.ontology_changes)} change(s) to O, "
        f"{len(report.generated_changes)} to generated code, {report.approvals} valid approval(s)"
    )
    prod = report.production_receipt
    bound = (
        f"; receipt {prod['receipt_hash']} ({prod['source']}) binds O {prod['ontology_hash']}"
        if prod is not None
        else "; no production or generation receipt in the store"
    )
    if report.owned:
        return [f"owned: compliance owns the rules in {report.repo} ({checked}{bound})"]
    lines = [f"NOT OWNED: {len(report.violations)} violation(s) in {report.repo} ({checked}{bound})"]
    return lines + ["  " + v.line() for v in report.violations]


# --- reading git --------------------------------------------------------------------------------


def _corrupt(repo: Path, what: str) -> InputError:
    return InputError(
        f"the git repository at {repo} is damaged: {what}",
        code=_CORRUPT,
        hint="a history with missing or damaged objects proves nothing; restore a complete clone "
        "(`git fsck --full` names every bad object)",
    )


@dataclass(frozen=True)
class _Commit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: str
    date: str
    subject: str


class _Git:
    """One repository, read through git's own command line."""

    def __init__(self, repo: Path) -> None:
        exe = shutil.which("git")
        if exe is None:
            raise InputError(
                "git is not installed (it is needed to read the repository)", code="ownership.no_git"
            )
        self.exe = exe
        self.repo = repo
        self.env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_ENV}
        self.env.update({"LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"})
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._trees: dict[str, dict[str, tuple[str, str]]] = {}
        self._flat: dict[Callable[[str], bool] | None, dict[str, dict[str, tuple[str, str]]]] = {}
        self.oid_bytes = 20

    def run(self, *args: str) -> tuple[int, bytes, str]:
        try:
            proc = subprocess.run(
                [self.exe, "-C", str(self.repo), *args], capture_output=True, env=self.env, check=False
            )
        except OSError as e:
            raise InputError(f"cannot run git: {e.strerror or e}", code="ownership.no_git") from e
        return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace").strip()

    def must(self, *args: str) -> bytes:
        code, out, err = self.run(*args)
        if code != 0:
            raise _corrupt(self.repo, f"`git {' '.join(args[:2])}` failed: {err or f'exit {code}'}")
        return out

    # -- objects, through one `git cat-file --batch` ----------------------------------------------

    def read(self, oid: str, expect: str) -> bytes:
        if self._proc is None:
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
            self._proc = subprocess.Popen(
                [self.exe, "-C", str(self.repo), "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=self.env,
            )
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(oid.encode("ascii") + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) == 3 and header[1].decode() == expect:
                size = int(header[2])
                data = proc.stdout.read(size)
                if len(data) == size and proc.stdout.read(1) == b"\n":
                    return data
        except (OSError, ValueError):
            pass
        said = self.close()
        raise _corrupt(self.repo, f"{expect} {oid} is missing or unreadable" + (f" ({said})" if said else ""))

    def close(self) -> str:
        """Stop the ``cat-file`` process; return what it said on stderr (its last lines)."""
        said = ""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.seek(0)
            lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
            said = "; ".join(lines[-2:])
            self._stderr.close()
            self._stderr = None
        return said

    def entries(self, tree: str | None) -> dict[str, tuple[str, str]]:
        """A tree's entries: name → (mode, oid)."""
        if tree is None:
            return {}
        got = self._trees.get(tree)
        if got is not None:
            return got
        if len(self._trees) > _TREE_CACHE:
            self._trees.clear()
        data, out, i, n = self.read(tree, "tree"), {}, 0, self.oid_bytes
        try:
            while i < len(data):
                sp = data.index(b" ", i)
                nul = data.index(b"\0", sp)
                name = data[sp + 1 : nul].decode("utf-8", "surrogateescape")
                out[name] = (data[i:sp].decode("ascii"), data[nul + 1 : nul + 1 + n].hex())
                i = nul + 1 + n
        except ValueError as e:
            raise _corrupt(self.repo, f"tree {tree} cannot be parsed") from e
        self._trees[tree] = out
        return out

    def flat(self, tree: str, keep: Callable[[str], bool] | None = None) -> dict[str, tuple[str, str]]:
        """Every non-tree entry under ``tree`` by its ``/`` path; with ``keep``, only entries whose
        name it keeps (memoized per tree id, so a commit costs what it changed)."""
        memo = self._flat.setdefault(keep, {})
        got = memo.get(tree)
        if got is not None:
            return got
        out: dict[str, tuple[str, str]] = {}
        for name, (mode, oid) in self.entries(tree).items():
            if mode == _TREE:
                out.update({f"{name}/{p}": v for p, v in self.flat(oid, keep).items()})
            elif keep is None or keep(name):
                out[name] = (mode, oid)
        memo[tree] = out
        return out

    def subtree(self, tree: str, directory: str) -> str | None:
        """The tree id at ``directory`` (``""`` is the root), or None."""
        for part in [p for p in directory.split("/") if p]:
            entry = self.entries(tree).get(part)
            if entry is None or entry[0] != _TREE:
                return None
            tree = entry[1]
        return tree

    def changed(self, old: str | None, new: str | None, prefix: str = "") -> set[str]:
        """Paths of files added, removed or changed between two trees (equal subtrees skipped)."""
        if old == new:
            return set()
        a, b, out = self.entries(old), self.entries(new), set()
        for name in a.keys() | b.keys():
            x, y = a.get(name), b.get(name)
            if x == y:
                continue
            xt = x is not None and x[0] == _TREE
            yt = y is not None and y[0] == _TREE
            if xt or yt:
                out |= self.changed(
                    x[1] if xt and x else None, y[1] if yt and y else None, f"{prefix}{name}/"
                )
            if (x is not None and not xt) or (y is not None and not yt):
                out.add(prefix + name)
        return out


def _open(repo: Path) -> tuple[_Git, str]:
    """The repository at ``repo`` checked usable; returns it and the prefix of ``repo`` in it."""
    if not repo.is_dir():
        raise InputError(f"{repo} is not a directory", code="ownership.not_a_repo")
    git = _Git(repo)
    code, out, err = git.run("rev-parse", "--is-shallow-repository", "--show-object-format", "--show-prefix")
    if code != 0:
        raise InputError(
            f"{repo} is not a git repository ({err.splitlines()[-1] if err else f'git exit {code}'})",
            code="ownership.not_a_repo",
            hint="give --repo the directory of the repository that holds O",
        )
    lines = out.decode("utf-8", "surrogateescape").split("\n")
    shallow, fmt, prefix = (lines + ["", "", ""])[:3]
    if shallow == "true":
        raise InputError(
            f"{repo} is a shallow clone: its history is cut off, so it cannot show who changed O",
            code="ownership.shallow_clone",
            hint="fetch the whole history (`git fetch --unshallow`) and run again",
        )
    git.oid_bytes = 32 if fmt == "sha256" else 20
    code, _, err = git.run("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if code != 0:
        raise InputError(
            f"the git repository at {repo} has no commits",
            code="ownership.no_commits",
        )
    code, fsck, err = git.run("fsck", "--connectivity-only", "--no-dangling", "--no-progress")
    if code != 0:
        problems = [ln for ln in (fsck.decode("utf-8", "replace") + "\n" + err).splitlines() if ln.strip()]
        raise _corrupt(repo, "; ".join(problems[:3]) or f"git fsck exit {code}")
    return git, prefix


def _commits(git: _Git) -> list[_Commit]:
    raw = git.must(
        "log", "--topo-order", "--reverse", "-z", "--format=%H %T %P%x1f%an <%ae>%x1f%aI%x1f%s", "HEAD"
    )
    out: list[_Commit] = []
    for record in raw.decode("utf-8", "replace").split("\0"):
        if not record.strip():
            continue
        ids, author, date, subject = (record.strip("\n").split("\x1f", 3) + ["", "", ""])[:4]
        sha, tree, *parents = ids.split()
        out.append(_Commit(sha, tree, tuple(parents), author, date, subject))
    return out


# --- approvals ------------------------------------------------------------------------------------


@dataclass
class _Approvals:
    by_hash: dict[str, list[Approval]] = field(default_factory=dict)
    overrides: dict[str, list[Approval]] = field(default_factory=dict)
    ignored: list[dict[str, str]] = field(default_factory=list)  # source, ontology_hash, reason

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_hash.values())

    def why_not(self, ontology_hash: str) -> str:
        """Why nothing counts as an approval of ``ontology_hash`` (for a violation's detail)."""
        reasons = [
            f"{i['source']}: {i['reason']}" for i in self.ignored if i["ontology_hash"] == ontology_hash
        ]
        reasons += [
            f"{a.signer} signed only an override of invariant {a.override!r} for it, not an approval of O"
            for a in self.overrides.get(ontology_hash, [])
        ]
        return f" (not counted: {'; '.join(reasons[:3])})" if reasons else ""


def _approval_docs(git: _Git, store: Store) -> list[tuple[str, object]]:
    """Every approval document on offer: the ledger's, those generation receipts carry, and every
    ``*.approval.json`` blob committed on any branch of the repository."""
    from finops_fabric.approvals import APPROVAL_SUFFIX, stored_approvals
    from finops_fabric.receipts import strict_json_loads

    docs: list[tuple[str, object]] = [(f"ledger of {store.home}", d) for d in stored_approvals(store.home)]
    for r in store.receipts("generation"):
        for carried in r.get("approvals") or []:
            if isinstance(carried, Mapping):
                docs.append((f"generation receipt {r.get('receipt_hash')}", carried.get("approval")))
    seen: set[str] = set()
    for line in git.must("rev-list", "--all", "--objects").decode("utf-8", "surrogateescape").splitlines():
        oid, _, path = line.partition(" ")
        if not path.endswith(APPROVAL_SUFFIX) or oid in seen:
            continue
        seen.add(oid)
        source = f"{path} (blob {oid[:12]})"
        try:
            docs.append((source, strict_json_loads(git.read(oid, "blob"))))
        except ValueError as e:
            docs.append((source, f"not valid JSON: {e}"))
    return docs


def _approvals(git: _Git, store: Store) -> _Approvals:
    from finops_fabric.approvals import load_roster, verify_approval

    roster = load_roster(store.home)
    result, unique = _Approvals(), set()
    for source, doc in _approval_docs(git, store):
        if not isinstance(doc, Mapping):
            reason = doc if isinstance(doc, str) else "not a JSON object"
            result.ignored.append({"source": source, "ontology_hash": "", "reason": reason})
            continue
        try:
            approval = verify_approval(doc, roster, any_override=True)
        except FabricError as e:
            claimed = doc.get("ontology_hash")
            result.ignored.append(
                {
                    "source": source,
                    "ontology_hash": claimed if isinstance(claimed, str) else "",
                    "reason": e.message,
                }
            )
            continue
        if approval.approval_hash in unique:
            continue
        unique.add(approval.approval_hash)
        into = result.overrides if approval.override is not None else result.by_hash
        into.setdefault(approval.ontology_hash, []).append(approval)
    return result


def _signers(approvals: Sequence[Approval]) -> list[dict[str, str]]:
    return [{"keyid": a.keyid, "signer": a.signer, "approval_hash": a.approval_hash} for a in approvals]


# --- O at a commit --------------------------------------------------------------------------------


def _is_rdf(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in FORMATS


def _hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.split("/"))


def _of_interest(name: str) -> bool:
    """The file names the walk looks at in every commit: O's candidates and A's manifests."""
    return name == MANIFEST or _is_rdf(name)


def _join(directory: str, rel: str) -> str:
    return f"{directory}/{rel}" if directory else rel


def _under(path: str, directory: str) -> bool:
    return directory == "" or path.startswith(directory + "/")


class _Ontology:
    """hash(O) of a set of files at a commit, computed once per distinct set of blobs."""

    def __init__(self, git: _Git, paths: Sequence[str] | None, scope: str) -> None:
        self.git = git
        self.paths = paths
        self.scope = scope  # without paths: the RDF files under this directory ("" for all)
        self.hashes: dict[tuple[tuple[str, str], ...], str | InputError] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="mu-ownership-")
        self._places: dict[str, int] = {}
        self._files: dict[tuple[str, str], list[Any]] = {}

    def files(self, flat: Mapping[str, tuple[str, str]], generated: set[str]) -> tuple[tuple[str, str], ...]:
        chosen = []
        for path, (mode, oid) in flat.items():
            if mode in (_LINK, _GITLINK) or not _is_rdf(path):
                continue
            if self.paths is None:
                if not _under(path, self.scope) or _hidden(path) or any(_under(path, d) for d in generated):
                    continue
            elif not any(path == p or _under(path, p) for p in self.paths):
                continue
            chosen.append((path, oid))
        return tuple(sorted(chosen))

    def hash(self, key: tuple[tuple[str, str], ...]) -> str | InputError:
        """hash(O) of these (path, blob) files, or the error that kept them from loading: the
        formula of ``mu hash``: the files' statements together, RDFC-1.0, SHA-256."""
        got = self.hashes.get(key)
        if got is not None:
            return got
        from finops_fabric.rdf.canon import canonical_nquads

        result: str | InputError
        seen: set[object] = set()
        statements = []
        try:
            for path, oid in key:
                for q in self._parsed(path, oid):
                    if q not in seen:
                        seen.add(q)
                        statements.append(q)
            result = sha256_hex(canonical_nquads(statements))
        except InputError as e:
            if e.code == _CORRUPT:
                raise
            result = e
        self.hashes[key] = result
        return result

    def _parsed(self, path: str, oid: str) -> list[Any]:
        """The statements of one file of O, parsed once per (path, blob) by the RDF loader. The file
        is written to a fixed place per path (so its base IRI is the same at every commit), named
        with only its last component (so no path from the repository can leave the directory)."""
        from finops_fabric.rdf.load import parse_file

        got = self._files.get((path, oid))
        if got is None:
            place = self._places.setdefault(path, len(self._places))
            target = Path(self._tmp.name) / str(place) / posixpath.basename(path)
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(self.git.read(oid, "blob"))
            got = self._files[(path, oid)] = parse_file(target)
        return got

    def close(self) -> None:
        self._tmp.cleanup()


# --- generated code at a commit -------------------------------------------------------------------


def _is_generator_manifest(data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("artifacts"), list)
        and (
            isinstance(doc.get("generator"), dict)
            or str(doc.get("format", "")).startswith("finops-fabric-enforcer/")
        )
    )


@dataclass(frozen=True)
class _GeneratedState:
    problems: tuple[tuple[str, str], ...]  # (path inside the directory, what is wrong)
    enforcer_hash: str | None  # None when manifest.json is missing or not a manifest
    ontology_hash: str | None


def _generated_state(git: _Git, tree: str) -> _GeneratedState:
    listing = git.flat(tree)
    problems: list[tuple[str, str]] = []
    files: dict[str, bytes] = {}
    for path, (mode, oid) in sorted(listing.items()):
        if mode in (_LINK, _GITLINK):
            problems.append((path, "a symbolic link or submodule, not a generated file"))
        else:
            files[path] = git.read(oid, "blob")
    data = files.get(MANIFEST)
    if data is None:
        problems.append((MANIFEST, "missing: nothing vouches for the generated files"))
        return _GeneratedState(tuple(problems), None, None)
    try:
        manifest = parse_manifest(data, "")
    except CheckFailed as e:
        text = e.message.replace("/manifest.json ", "", 1) if e.message.startswith("/") else e.message
        problems.append((MANIFEST, text))
        return _GeneratedState(tuple(problems), None, None)
    for p in check_files(files, manifest):
        what = {
            "changed": "changed after generation",
            "missing": "deleted",
            "extra": "not listed in the manifest",
        }
        rule = f" (rule {p.rule})" if p.rule else ""
        problems.append((p.artifact, what.get(p.problem, p.problem) + rule))
    oh = manifest.get("ontology_hash")
    return _GeneratedState(
        tuple(sorted(set(problems))), enforcer_hash_of_manifest(data), oh if isinstance(oh, str) else None
    )


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
    for r in reversed(store.receipts()):
        if r.get("kind") not in ("deployment", "rollback") or r.get("env") != "production":
            continue
        if r.get("event", "deploy") != "deploy":
            continue
        if ((r.get("gates") or {}).get("operational") or {}).get("status") == "PASS":
            return r, "the latest production deployment in the store"
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
