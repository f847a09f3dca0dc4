"""A as one file: a deterministic tar archive with exactly the bytes of the directory A.

``mu generate --output=A.tar`` (also ``.tar.gz`` / ``.tgz``) writes the archive instead of the
directory; every command that reads an enforcer reads either. The archive holds the same files
as the directory, so hash(A) (the SHA-256 of ``manifest.json``) is the same for both, and the
archive's own bytes depend only on A's files, so ``sha256sum A1.tar`` of two generations from
the same O with the same generator is the same:

- entries sorted by path, each directory before the files under it;
- POSIX pax format (ustar headers; a pax record only where ustar cannot hold a value, e.g. a
  path longer than 100 characters), mtime 0, uid/gid 0, empty uname/gname, mode 0644 for files
  and 0755 for directories;
- ``.tar`` is not compressed; ``.tar.gz`` / ``.tgz`` is gzip (level 9) with mtime 0 and no file
  name in its header (its bytes also depend on the zlib version, so ``.tar`` is the form to
  compare across machines).

Reading never extracts anything to disk: members are read into memory. Only regular files and
directories are accepted; a member with an absolute path, a ``..`` component, a link, a device
or a FIFO, a path given twice, or more than :data:`MAX_BYTES` of content is refused.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
from collections.abc import Mapping
from pathlib import Path

from finops_fabric.canonical import write_bytes_atomic
from finops_fabric.errors import CheckFailed, InputError, Location

__all__ = [
    "MAX_BYTES",
    "SUFFIXES",
    "archive_bytes",
    "check_output",
    "is_archive_path",
    "read_archive",
    "read_enforcer_files",
    "write_archive",
]

#: File names that mean "an enforcer archive" (for writing, and for telling an archive from O).
SUFFIXES = (".tar", ".tar.gz", ".tgz")
#: The most content (uncompressed) an enforcer archive may hold.
MAX_BYTES = 1 << 30
_FILE_MODE = 0o644
_DIR_MODE = 0o755


def is_archive_path(path: Path) -> bool:
    """A file name that ends like an enforcer archive (and is not a directory)."""
    return path.name.lower().endswith(SUFFIXES) and not path.is_dir()


def _gzipped(path: Path) -> bool:
    return path.name.lower().endswith((".tar.gz", ".tgz"))


def _entry(name: str, *, directory: bool, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = _DIR_MODE if directory else _FILE_MODE
    info.size = 0 if directory else size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def archive_bytes(files: Mapping[str, bytes], *, compress: bool = False) -> bytes:
    """The deterministic archive of A's files (path → bytes, ``/`` separators)."""
    dirs: set[str] = set()
    for rel in files:
        parent = posixpath.dirname(rel)
        while parent:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for name in sorted(dirs | set(files)):
            if name in dirs:
                tar.addfile(_entry(name, directory=True))
            else:
                data = files[name]
                tar.addfile(_entry(name, directory=False, size=len(data)), io.BytesIO(data))
    raw = buf.getvalue()
    if not compress:
        return raw
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return out.getvalue()


def check_output(output: Path) -> None:
    """:class:`InputError` unless ``output`` can take an archive: absent, or an enforcer archive
    (which is replaced whole)."""
    if output.is_dir():
        raise InputError(
            f"--output={output} is a directory; an archive output is a file name ending in "
            + ", ".join(SUFFIXES),
            code="generate.output_exists",
            location=Location(file=str(output)),
        )
    if output.exists():
        try:
            old = read_archive(output)
        except (InputError, CheckFailed):
            old = {}
        if "manifest.json" not in old:
            raise InputError(
                f"--output={output} exists and is not an enforcer archive; refusing to overwrite it",
                code="generate.output_exists",
                location=Location(file=str(output)),
            )


def write_archive(files: Mapping[str, bytes], output: Path) -> Path:
    """Write the archive of A to ``output`` atomically (complete or absent). An existing file
    there is replaced only when it is an enforcer archive (:func:`check_output`)."""
    check_output(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(output, archive_bytes(files, compress=_gzipped(output)))


def _member_name(raw: str, where: Path) -> str | None:
    """The member's path inside A (``None`` for the archive's root ``.``); refuses a path that
    could reach outside A."""
    loc = Location(file=str(where))
    if raw.startswith("/") or "\\" in raw or "\x00" in raw:
        raise CheckFailed(
            f"{where}: member {raw!r} has an absolute or non-portable path; an enforcer archive "
            "holds relative paths only",
            code="enforcer.archive_member",
            location=loc,
        )
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CheckFailed(
            f"{where}: member {raw!r} has a '..' component; an enforcer archive never points outside itself",
            code="enforcer.archive_member",
            location=loc,
        )
    return "/".join(parts) or None


def read_archive(path: Path) -> dict[str, bytes]:
    """Every regular file of the archive at ``path`` by its path inside A, read into memory."""
    loc = Location(file=str(path))
    try:
        with tarfile.open(path, mode="r:*") as tar:
            return _members(tar, path)
    except FileNotFoundError as exc:
        raise InputError(f"no enforcer at {path}", code="enforcer.not_found", location=loc) from exc
    except (tarfile.TarError, OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise InputError(
            f"{path} is not a readable tar archive: {exc}", code="enforcer.archive_invalid", location=loc
        ) from exc


def _members(tar: tarfile.TarFile, path: Path) -> dict[str, bytes]:
    loc = Location(file=str(path))
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    total = 0
    for member in tar:
        name = _member_name(member.name, path)
        if member.isdir():
            if name is not None:
                dirs.add(name)
            continue
        kind = (
            "a symbolic link"
            if member.issym()
            else "a hard link"
            if member.islnk()
            else "a device or FIFO"
            if member.isdev()
            else None
            if member.isreg()
            else "not a regular file"
        )
        if kind is not None or name is None:
            raise CheckFailed(
                f"{path}: member {member.name!r} is {kind or 'not a file'}; an enforcer archive holds "
                "regular files and directories only",
                code="enforcer.archive_member",
                location=loc,
            )
        if name in files or name in dirs:
            raise CheckFailed(
                f"{path}: member {name!r} appears more than once",
                code="enforcer.archive_member",
                location=loc,
            )
        total += member.size
        if total > MAX_BYTES:
            raise CheckFailed(
                f"{path} holds more than {MAX_BYTES} bytes; that is not an enforcer",
                code="enforcer.archive_too_large",
                location=loc,
            )
        handle = tar.extractfile(member)
        if handle is None:  # pragma: no cover - a regular member always has a handle
            raise CheckFailed(f"{path}: cannot read member {name!r}", code="enforcer.archive_member")
        files[name] = handle.read()
    return files


def read_enforcer_files(path: Path) -> dict[str, bytes]:
    """A's files as they are (not verified), from a directory or an archive. :class:`InputError`
    when ``path`` is neither an enforcer directory nor an archive holding a ``manifest.json``."""
    from finops_fabric.enforcer import MANIFEST, is_enforcer_dir, read_tree

    if not path.exists():
        raise InputError(
            f"no enforcer at {path}", code="enforcer.not_found", location=Location(file=str(path))
        )
    if is_archive_path(path):
        files = read_archive(path)
        if MANIFEST not in files:
            raise InputError(
                f"{path} is not an enforcer archive (no manifest.json in it)",
                code="enforcer.not_an_enforcer",
                location=Location(file=str(path)),
            )
        return files
    if not is_enforcer_dir(path):
        raise InputError(
            f"{path} is not an enforcer (no manifest.json, and not an archive ending in "
            + ", ".join(SUFFIXES)
            + ")",
            code="enforcer.not_an_enforcer",
            location=Location(file=str(path)),
        )
    return read_tree(path)
