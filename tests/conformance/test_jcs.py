"""RFC 8785 (JCS) test vectors from ../shared/conformance/jcs through canonical_json."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import pytest

from finops_fabric.canonical import canonical_json

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
JCS = SHARED / "conformance" / "jcs"

if not JCS.is_dir():
    pytest.skip(f"RFC 8785 vectors not found at {JCS} (CI provides ../shared)", allow_module_level=True)

pytestmark = pytest.mark.conformance

NAMES = sorted(p.stem for p in (JCS / "input").glob("*.json"))
ES6_FILE = JCS / "es6numbers" / "es6testfile_first100k.txt.gz"


def test_the_vectors_are_there() -> None:
    assert NAMES == ["arrays", "french", "structures", "unicode", "values", "weird"]


@pytest.mark.parametrize("name", NAMES)
def test_input_canonicalizes_to_expected_output(name: str) -> None:
    obj = json.loads((JCS / "input" / f"{name}.json").read_text(encoding="utf-8"))
    assert canonical_json(obj) == (JCS / "output" / f"{name}.json").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_input_canonicalizes_to_expected_hex(name: str) -> None:
    obj = json.loads((JCS / "input" / f"{name}.json").read_text(encoding="utf-8"))
    expected = bytes.fromhex((JCS / "outhex" / f"{name}.txt").read_text(encoding="ascii"))
    assert canonical_json(obj) == expected


@pytest.mark.parametrize("name", NAMES)
def test_canonical_output_is_a_fixed_point(name: str) -> None:
    expected = (JCS / "output" / f"{name}.json").read_bytes()
    assert canonical_json(json.loads(expected.decode("utf-8"))) == expected


def test_es6_number_serialization() -> None:
    """Each line ``hex-ieee,expected``: the double's canonical form (RFC 8785 3.2.2.3)."""
    failures: list[str] = []
    count = 0
    with gzip.open(ES6_FILE, "rt", encoding="ascii") as fh:
        for line in fh:
            ieee_hex, expected = line.rstrip("\n").split(",")
            value = struct.unpack(">d", bytes.fromhex(ieee_hex.zfill(16)))[0]
            count += 1
            got = canonical_json([value])[1:-1].decode("ascii")
            if got != expected and len(failures) < 10:
                failures.append(f"{ieee_hex}: expected {expected}, got {got}")
    assert count == 100_000
    assert not failures, failures
