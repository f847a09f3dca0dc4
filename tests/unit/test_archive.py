"""A as one deterministic archive file (`mu generate --output=A.tar`): the same bytes for the same
O and generator, the same hash(A) as the directory, accepted wherever a directory A is, and
hostile archives refused without anything being written."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from harness import EX, Run, changed_example, copy_example, write_tx

from finops_fabric.archive import archive_bytes, read_archive, read_enforcer_files, write_archive
from finops_fabric.daemon.runtime import Runtime
from finops_fabric.enforcer import load_enforcer, read_tree
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.store import Store


@pytest.fixture
def o(tmp_path: Path) -> Path:
    return copy_example(tmp_path)


def generate(mu: Run, o: Path, out: Path, *extra: object) -> dict[str, object]:
    doc: dict[str, object] = mu.json("generate", f"--input={o}", f"--output={out}", *extra)
    return doc


def test_same_o_gives_byte_identical_archives_with_the_directorys_hash(
    mu: Run, o: Path, tmp_path: Path
) -> None:
    g1 = generate(mu, o, tmp_path / "A1.tar", f"--receipt={tmp_path / 'R1.json'}")
    generate(mu, o, tmp_path / "A2.tar")
    generate(mu, o, tmp_path / "Adir")
    a1, a2 = (tmp_path / "A1.tar").read_bytes(), (tmp_path / "A2.tar").read_bytes()
    assert a1 == a2
    h = mu("hash", tmp_path / "A1.tar")[1].strip()
    assert h == mu("hash", tmp_path / "Adir")[1].strip() == g1["enforcer_hash"]
    assert json.loads((tmp_path / "R1.json").read_text())["outputs"]["enforcer_hash"] == h
    # the archive holds exactly the directory's files
    assert read_archive(tmp_path / "A1.tar") == read_tree(tmp_path / "Adir")
    # regenerating over an existing archive replaces it (same bytes)
    generate(mu, o, tmp_path / "A1.tar")
    assert (tmp_path / "A1.tar").read_bytes() == a1


def test_archive_headers_are_fixed(mu: Run, o: Path, tmp_path: Path) -> None:
    generate(mu, o, tmp_path / "A.tar")
    with tarfile.open(tmp_path / "A.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and "rules" in names and "manifest.json" in names
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.mode == (0o755 if m.isdir() else 0o644) and (m.isdir() or m.isreg())
        assert m.pax_headers == {}  # short paths: plain ustar headers, no pax records
    data = (tmp_path / "A.tar").read_bytes()
    assert len(data) % 512 == 0 and data[257:263] == b"ustar\x00"


def test_gzip_archive_is_deterministic_and_equal_in_content(mu: Run, o: Path, tmp_path: Path) -> None:
    generate(mu, o, tmp_path / "A.tar.gz")
    generate(mu, o, tmp_path / "B.tgz")
    generate(mu, o, tmp_path / "A.tar")
    gz = (tmp_path / "A.tar.gz").read_bytes()
    assert gz == (tmp_path / "B.tgz").read_bytes()
    assert gz[:2] == b"\x1f\x8b" and gz[4:8] == b"\x00\x00\x00\x00"  # gzip mtime 0
    assert gz[3] & 0x08 == 0  # no file name in the gzip header
    assert gzip.decompress(gz) == (tmp_path / "A.tar").read_bytes()
    assert mu("hash", tmp_path / "A.tar.gz")[1] == mu("hash", tmp_path / "A.tar")[1]


def test_long_paths_use_pax_records_deterministically(tmp_path: Path) -> None:
    files = {"manifest.json": b"{}", "rules/" + "x" * 150 + ".py": b"pass\n"}
    one, two = archive_bytes(files), archive_bytes(dict(reversed(list(files.items()))))
    assert one == two
    p = tmp_path / "long.tar"
    p.write_bytes(one)
    assert read_archive(p) == files


def test_the_runbooks_determinism_check_works_on_archives(mu: Run, o: Path, tmp_path: Path) -> None:
    bash, sha = shutil.which("bash"), shutil.which("sha256sum")
    if bash is None or sha is None:
        pytest.skip("needs bash and sha256sum (coreutils)")
    generate(mu, o, tmp_path / "A1.tar")
    generate(mu, o, tmp_path / "A2.tar")
    check = "diff <(sha256sum < A1.tar) <(sha256sum < A2.tar)"
    same = subprocess.run([bash, "-c", check], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert same.returncode == 0 and same.stdout == "", same
    # and it can fail: a different O gives different bytes
    generate(mu, changed_example(tmp_path), tmp_path / "A2.tar")
    differ = subprocess.run([bash, "-c", check], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert differ.returncode == 1 and differ.stdout


def test_every_reader_of_a_takes_the_archive(mu: Run, o: Path, tmp_path: Path) -> None:
    generate(mu, o, tmp_path / "A.tar", f"--receipt={tmp_path / 'R.json'}")
    generate(mu, o, tmp_path / "Adir")
    t = mu.json("test", f"--enforcer={tmp_path / 'A.tar'}", "--golden-suite")
    assert t["failed"] == 0 and t["passed"] > 0
    tx = write_tx(tmp_path / "tx.json")
    d = mu.json("decide", f"--enforcer={tmp_path / 'A.tar'}", f"--transaction={tx}")
    assert d == mu.json("decide", f"--enforcer={tmp_path / 'Adir'}", f"--transaction={tx}")
    v = mu.json("verify-hashes", f"--old={tmp_path / 'Adir'}", f"--new={tmp_path / 'A.tar'}")
    assert not v["changed"] and not v["added"] and not v["removed"] and v["unchanged"]
    r = mu.json("replay", f"--receipt={tmp_path / 'R.json'}", f"--output={tmp_path / 'replayed.tar'}")
    assert (
        r["match"] is True and (tmp_path / "replayed.tar").read_bytes() == (tmp_path / "A.tar").read_bytes()
    )
    g2 = generate(mu, changed_example(tmp_path), tmp_path / "A2.tar", f"--previous={tmp_path / 'A.tar'}")
    assert g2["changed"] == [EX + "approval-wire-large"]
    assert load_enforcer(tmp_path / "A.tar").hash == load_enforcer(tmp_path / "Adir").hash


def test_the_daemon_deploys_an_archive(mu: Run, o: Path, tmp_path: Path) -> None:
    generate(mu, o, tmp_path / "A.tar", f"--receipt={tmp_path / 'R.json'}")
    receipt = json.loads((tmp_path / "R.json").read_text())
    runtime = Runtime(Store(tmp_path / "store"), "test")
    result = runtime.deploy((tmp_path / "A.tar").absolute(), receipt["receipt_hash"])
    assert result.ok, result.reason
    assert runtime.active is not None and runtime.active.hash == receipt["outputs"]["enforcer_hash"]


def test_an_edited_archive_is_refused_naming_the_file(mu: Run, o: Path, tmp_path: Path) -> None:
    generate(mu, o, tmp_path / "A.tar")
    files = read_archive(tmp_path / "A.tar")
    path = next(p for p in files if p.startswith("rules/"))
    files[path] += b"# edited\n"
    (tmp_path / "E.tar").write_bytes(archive_bytes(files))
    code, _, err = mu("hash", tmp_path / "E.tar")
    assert code == 1 and path in err
    code, _, err = mu("test", f"--enforcer={tmp_path / 'E.tar'}", "--golden-suite")
    assert code == 1 and path in err


# --- hostile archives: refused, nothing extracted ----------------------------------------------


def _tar(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"x"


def _special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        ([_file("/etc/evil")], "absolute"),
        ([_file("../evil")], "'..'"),
        ([_file("rules/../../evil")], "'..'"),
        ([_special("manifest.json", tarfile.SYMTYPE, "/etc/passwd")], "symbolic link"),
        ([_file("a"), _special("manifest.json", tarfile.LNKTYPE, "a")], "hard link"),
        ([_special("dev", tarfile.CHRTYPE)], "device"),
        ([_special("fifo", tarfile.FIFOTYPE)], "device or FIFO"),
        ([_file("manifest.json"), _file("manifest.json")], "more than once"),
    ],
)
def test_hostile_members_are_refused(
    mu: Run, tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], needle: str
) -> None:
    evil = _tar(tmp_path / "evil.tar", *members)
    with pytest.raises(CheckFailed) as e:
        read_archive(evil)
    assert needle in e.value.message and e.value.code == "enforcer.archive_member"
    code, _, err = mu("hash", evil)
    assert code == 1 and needle in err
    assert not (tmp_path.parent / "evil").exists() and not (tmp_path / "evil").exists()


def test_not_an_archive_or_not_an_enforcer_is_bad_input(mu: Run, tmp_path: Path) -> None:
    (tmp_path / "junk.tar").write_bytes(b"not a tar archive at all" * 40)
    code, _, err = mu("test", f"--enforcer={tmp_path / 'junk.tar'}", "--golden-suite")
    assert code == 2 and "not a readable tar archive" in err
    _tar(tmp_path / "empty.tar", _file("README"))
    with pytest.raises(InputError, match=r"no manifest\.json"):
        read_enforcer_files(tmp_path / "empty.tar")
    code, _, err = mu("decide", f"--enforcer={tmp_path / 'missing.tar'}", "--transaction=x.json")
    assert code == 2


def test_write_archive_replaces_only_an_enforcer_archive(tmp_path: Path) -> None:
    files = {"manifest.json": b"{}", "rules/a.py": b"pass\n"}
    out = write_archive(files, tmp_path / "A.tar")
    assert read_archive(out) == files
    write_archive({**files, "rules/b.py": b""}, out)
    assert "rules/b.py" in read_archive(out)
    (tmp_path / "notes.tar").write_text("my notes")
    with pytest.raises(InputError, match="not an enforcer archive"):
        write_archive(files, tmp_path / "notes.tar")
    assert (tmp_path / "notes.tar").read_text() == "my notes"
    (tmp_path / "dir.tar").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        write_archive(files, tmp_path / "dir.tar")
    assert not list(tmp_path.glob(".*.tmp"))


def test_generate_refuses_to_overwrite_a_file_that_is_not_an_archive(
    mu: Run, o: Path, tmp_path: Path
) -> None:
    (tmp_path / "keep.tar").write_text("precious")
    code, _, err = mu("generate", f"--input={o}", f"--output={tmp_path / 'keep.tar'}")
    assert code == 2 and "not an enforcer archive" in err
    assert (tmp_path / "keep.tar").read_text() == "precious"
    assert Store(tmp_path / "store").receipts() == []  # refused before any gate ran
