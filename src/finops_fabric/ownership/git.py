"""Reading git: one repository through git's own command line (``rev-parse``, ``fsck``, ``log``,
and one ``cat-file --batch`` process for objects); a shallow or damaged repository is refused."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from finops_fabric.errors import InputError

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
