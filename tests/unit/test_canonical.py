"""canonical.py: RFC 8785 bytes, hashes, atomic writes."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from finops_fabric.canonical import canonical_json, is_sha256, sha256_file, sha256_hex, write_bytes_atomic
from finops_fabric.errors import InputError


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": [1, 2, {"z": None, "a": True}], "a": "x"}) == (
        b'{"a":"x","b":[1,2,{"a":true,"z":null}]}'
    )


def test_keys_are_ordered_by_utf16_code_units_not_code_points() -> None:
    # RFC 8785 section 3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33.
    obj = {"\ufb33": 1, "\U0001f600": 2, "\u20ac": 3, "\r": 4, "1": 5, "\u0080": 6, "\u00f6": 7}
    out = canonical_json(obj).decode("utf-8")
    order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    positions = [out.index(f'"{k}"' if k != "\r" else '"\\r"') for k in order]
    assert positions == sorted(positions)


def test_strings_are_utf8_with_minimal_escapes() -> None:
    assert canonical_json('é\u20ac\n"\\\u001f/') == '"é€\\n\\"\\\\\\u001f/"'.encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, b"0.1"),
        (1e21, b"1e+21"),
        (1e20, b"100000000000000000000"),
        (1e-7, b"1e-7"),
        (-0.0, b"0"),
        (4.5, b"4.5"),
        (2**53 - 1, b"9007199254740991"),
        (-(2**53) + 1, b"-9007199254740991"),
        (True, b"true"),
        (None, b"null"),
    ],
)
def test_numbers_and_literals(value: object, expected: bytes) -> None:
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [2**53, -(2**53), float("nan"), float("inf"), float("-inf"), {1: "x"}, {"a": {1, 2}}, b"bytes", "\ud800"],
)
def test_unrepresentable_values_are_input_errors(value: object) -> None:
    with pytest.raises(InputError) as err:
        canonical_json({"v": value})
    assert err.value.code == "canonical.unrepresentable"
    assert err.value.exit_code == 2


def test_sha256_hex_known_vector() -> None:
    assert sha256_hex(b"abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("sha256:" + "a" * 64, True),
        ("sha256:" + "A" * 64, False),
        ("sha256:" + "a" * 63, False),
        ("sha256:" + "a" * 65, False),
        ("a" * 64, False),
        ("sha512:" + "a" * 64, False),
        ("sha256:" + "g" * 64, False),
        (None, False),
        (42, False),
    ],
)
def test_is_sha256(value: object, ok: bool) -> None:
    assert is_sha256(value) is ok


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    assert sha256_file(p) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert sha256_file(str(p)) == sha256_hex(data)


def test_sha256_file_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        sha256_file(tmp_path / "nope")
    assert err.value.location is not None and err.value.location.file == str(tmp_path / "nope")
    with pytest.raises(InputError, match="directory"):
        sha256_file(tmp_path)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_write_bytes_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_bytes_atomic(target, b"one")
    write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert _leftovers(tmp_path) == []


def test_write_bytes_atomic_exclusive_refuses_existing(tmp_path: Path) -> None:
    target = tmp_path / "k"
    target.write_bytes(b"original")
    with pytest.raises(FileExistsError):
        write_bytes_atomic(target, b"new", exclusive=True)
    assert target.read_bytes() == b"original"
    assert _leftovers(tmp_path) == []


def test_write_bytes_atomic_exact_mode_despite_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_bytes_atomic(tmp_path / "secret", b"s", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


def test_interrupted_write_leaves_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "receipt.json"
    target.write_bytes(b"old complete content")

    def boom(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old complete content"
    assert _leftovers(tmp_path) == []
