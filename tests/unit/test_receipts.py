"""receipts.py: payload bytes, sealing, the named verification checks, receipt files."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from finops_fabric.canonical import canonical_json, sha256_hex
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.keys import key_id
from finops_fabric.receipts import (
    RECEIPT_FORMAT,
    REQUIRED_KEYS,
    add_signature,
    load_receipt,
    receipt_payload,
    seal,
    verify_receipt,
    write_json_atomic,
)

H1 = "sha256:" + "1" * 64
H2 = "sha256:" + "2" * 64


def draft() -> dict[str, Any]:
    return {
        "format": RECEIPT_FORMAT,
        "kind": "generation",
        "time": "2025-01-01T00:00:00Z",
        "previous_receipt_hash": None,
        "inputs": {"ontology_hash": H1, "generator": {"version": "1.0.0", "id": "v1"}},
        "gates": {"ontology": {"status": "PASS", "evidence": []}, "golden": {"status": "PASS", "passed": 3}},
        "outputs": {"enforcer_hash": H2, "changed": ["urn:x:a"], "unchanged": ["urn:x:b", "urn:x:c"]},
        "amounts": {"limit": "105000.00", "count": 7, "ratio": 0.5, "flag": True, "none": None},
    }


@pytest.fixture
def operator() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def other() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def sealed(operator: Ed25519PrivateKey) -> dict[str, Any]:
    return seal(draft(), operator)


def code_of(receipt: Any, key: Ed25519PrivateKey) -> str:
    with pytest.raises(CheckFailed) as err:
        verify_receipt(receipt, key.public_key())
    assert err.value.exit_code == 1
    return err.value.code


# --- sealing ----------------------------------------------------------------------------------


def test_seal_hash_and_signature(sealed: dict[str, Any], operator: Ed25519PrivateKey) -> None:
    assert sealed["receipt_hash"] == sha256_hex(receipt_payload(sealed))
    assert sealed["receipt_hash"] == sha256_hex(canonical_json(draft()))
    (sig,) = sealed["signatures"]
    assert sig["keyid"] == key_id(operator.public_key())
    operator.public_key().verify(base64.b64decode(sig["sig"]), canonical_json(draft()))
    verify_receipt(sealed, operator.public_key())  # returns None; raises on any failure


def test_seal_does_not_modify_its_input(operator: Ed25519PrivateKey) -> None:
    d = draft()
    before = copy.deepcopy(d)
    out = seal(d, operator)
    out["outputs"]["changed"].append("mutated")
    assert d == before


def test_payload_ignores_only_top_level_hash_and_signatures(sealed: dict[str, Any]) -> None:
    assert receipt_payload(sealed) == receipt_payload({**sealed, "receipt_hash": H1, "signatures": []})
    nested = copy.deepcopy(sealed)
    nested["outputs"]["signatures"] = ["nested keys are content"]
    assert receipt_payload(nested) != receipt_payload(sealed)


def test_reseal_replaces_old_hash_and_signatures(sealed: dict[str, Any], other: Ed25519PrivateKey) -> None:
    again = seal(sealed, other)
    assert again["receipt_hash"] == sealed["receipt_hash"]
    assert [s["keyid"] for s in again["signatures"]] == [key_id(other.public_key())]


# --- the checks -------------------------------------------------------------------------------


def _leaf_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaf_paths(v, (*prefix, k))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from _leaf_paths(v, (*prefix, i))
    else:
        yield prefix


def _changed(value: Any) -> Any:
    if value is None:
        return H1  # well formed, so previous_receipt_hash gets past the schema check
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        if value.startswith("sha256:"):  # stay well formed, change the last digit
            return value[:-1] + ("0" if value[-1] != "0" else "1")
        return value + "x"
    return ["x"]


def test_any_changed_field_fails_the_hash_check(sealed: dict[str, Any], operator: Ed25519PrivateKey) -> None:
    paths = [p for p in _leaf_paths(sealed) if p[0] not in ("receipt_hash", "signatures")]
    assert len(paths) >= 15
    for path in paths:
        tampered = copy.deepcopy(sealed)
        node = tampered
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = _changed(node[path[-1]])
        assert tampered != sealed
        assert code_of(tampered, operator) == "receipt.hash", path


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(extra="added"),
        lambda r: r.pop("time"),
        lambda r: r["outputs"]["unchanged"].reverse(),
        lambda r: r["outputs"]["changed"].append("urn:x:z"),
        lambda r: r.update(previous_receipt_hash=H1),
        lambda r: r["amounts"].update(limit="105000.0"),
    ],
)
def test_structural_tampering_fails_the_hash_check(
    sealed: dict[str, Any], operator: Ed25519PrivateKey, mutate: Any
) -> None:
    mutate(sealed)
    assert code_of(sealed, operator) == "receipt.hash"


def test_wrong_key_is_not_a_signer(sealed: dict[str, Any], other: Ed25519PrivateKey) -> None:
    with pytest.raises(CheckFailed, match=f"not signed by key {key_id(other.public_key())}") as err:
        verify_receipt(sealed, other.public_key())
    assert err.value.code == "receipt.signature"


@pytest.mark.parametrize("bit", [0, 7, 200, 511])
def test_flipped_signature_bit_does_not_verify(
    sealed: dict[str, Any], operator: Ed25519PrivateKey, bit: int
) -> None:
    raw = bytearray(base64.b64decode(sealed["signatures"][0]["sig"]))
    raw[bit // 8] ^= 1 << (bit % 8)
    sealed["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(CheckFailed, match="does not verify") as err:
        verify_receipt(sealed, operator.public_key())
    assert err.value.code == "receipt.signature"


@pytest.mark.parametrize("sig", ["", "not base64!", "AAAA", base64.b64encode(b"\0" * 64).decode()])
def test_malformed_signature_value_does_not_verify(
    sealed: dict[str, Any], operator: Ed25519PrivateKey, sig: str
) -> None:
    sealed["signatures"][0]["sig"] = sig
    assert code_of(sealed, operator) == "receipt.signature"


def test_signature_claiming_another_keyid_does_not_verify(
    operator: Ed25519PrivateKey, other: Ed25519PrivateKey
) -> None:
    forged = seal(draft(), other)
    forged["signatures"][0]["keyid"] = key_id(operator.public_key())
    with pytest.raises(CheckFailed, match="does not verify"):
        verify_receipt(forged, operator.public_key())


@pytest.mark.parametrize("missing", REQUIRED_KEYS)
def test_missing_required_key_fails_schema(
    sealed: dict[str, Any], operator: Ed25519PrivateKey, missing: str
) -> None:
    del sealed[missing]
    with pytest.raises(CheckFailed, match=missing) as err:
        verify_receipt(sealed, operator.public_key())
    assert err.value.code == "receipt.schema"


@pytest.mark.parametrize(
    "bad",
    [
        "1" * 64,
        "sha256:" + "A" * 64,
        "sha256:" + "1" * 63,
        "SHA256:" + "1" * 64,
        "sha256:" + "1" * 64 + "\n",
        None,
        42,
    ],
)
def test_bad_receipt_hash_format_fails_schema(
    sealed: dict[str, Any], operator: Ed25519PrivateKey, bad: Any
) -> None:
    sealed["receipt_hash"] = bad
    assert code_of(sealed, operator) == "receipt.schema"


@pytest.mark.parametrize(
    "change",
    [
        {"signatures": []},
        {"signatures": "sig"},
        {"signatures": [{"keyid": "k"}]},
        {"signatures": [{"keyid": 1, "sig": "x"}]},
        {"signatures": ["x"]},
        {"previous_receipt_hash": "sha256:short"},
        {"kind": ""},
        {"format": None},
        {"extra": 2**60},  # not canonicalizable
    ],
)
def test_malformed_fields_fail_schema(
    sealed: dict[str, Any], operator: Ed25519PrivateKey, change: Any
) -> None:
    sealed.update(change)
    assert code_of(sealed, operator) == "receipt.schema"


def test_not_an_object_fails_schema(operator: Ed25519PrivateKey) -> None:
    assert code_of(["not", "an", "object"], operator) == "receipt.schema"


def test_checks_run_in_order(sealed: dict[str, Any], other: Ed25519PrivateKey) -> None:
    # tampered AND wrong key: the hash check speaks first; schema before both.
    sealed["kind"] = "rollback"
    assert code_of(sealed, other) == "receipt.hash"
    del sealed["format"]
    assert code_of(sealed, other) == "receipt.schema"


# --- co-signing -------------------------------------------------------------------------------


def test_add_signature_keeps_both_valid(
    sealed: dict[str, Any], operator: Ed25519PrivateKey, other: Ed25519PrivateKey
) -> None:
    both = add_signature(sealed, other)
    assert len(sealed["signatures"]) == 1  # input untouched
    assert len(both["signatures"]) == 2
    assert both["receipt_hash"] == sealed["receipt_hash"]
    verify_receipt(both, operator.public_key())
    verify_receipt(both, other.public_key())
    assert add_signature(both, other)["signatures"] == both["signatures"]


def test_add_signature_refuses_tampered_receipt(sealed: dict[str, Any], other: Ed25519PrivateKey) -> None:
    sealed["kind"] = "approval"
    with pytest.raises(CheckFailed) as err:
        add_signature(sealed, other)
    assert err.value.code == "receipt.hash"


# --- files ------------------------------------------------------------------------------------


def test_write_then_load_round_trip_verifies(
    tmp_path: Path, sealed: dict[str, Any], operator: Ed25519PrivateKey
) -> None:
    p = tmp_path / "R1.json"
    write_json_atomic(p, sealed)
    text = p.read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.startswith('{\n  "amounts"')
    assert json.loads(text) == sealed
    loaded = load_receipt(p)
    verify_receipt(loaded, operator.public_key())
    assert [q.name for q in tmp_path.iterdir()] == ["R1.json"]


def test_write_json_atomic_refuses_non_json_and_keeps_old_file(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    write_json_atomic(p, {"ok": 1})
    with pytest.raises(InputError):
        write_json_atomic(p, {"bad": float("nan")})
    with pytest.raises(InputError):
        write_json_atomic(p, {"bad": object()})
    with pytest.raises(InputError):
        write_json_atomic(p, {"bad": "\ud800"})
    assert json.loads(p.read_text()) == {"ok": 1}


def test_load_receipt_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_receipt(tmp_path / "none.json")
    assert err.value.code == "receipt.missing" and "none.json" in str(err.value)


def test_load_receipt_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "broken.json"
    p.write_text('{\n  "kind": "generation",\n  "receipt_hash": oops\n}\n')
    with pytest.raises(InputError) as err:
        load_receipt(p)
    assert err.value.code == "receipt.invalid_json"
    assert err.value.location is not None
    assert (err.value.location.file, err.value.location.line) == (str(p), 3)
    assert "broken.json:3" in str(err.value)


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"[1, 2]", "receipt.not_object"),
        (b'"just a string"', "receipt.not_object"),
        (b'{"kind": "a", "kind": "b"}', "receipt.invalid_json"),
        (b'{"x": NaN}', "receipt.invalid_json"),
        (b'{"x": "\xff"}', "receipt.invalid_json"),
        (b"", "receipt.invalid_json"),
    ],
)
def test_load_receipt_rejects(tmp_path: Path, content: bytes, code: str) -> None:
    p = tmp_path / "r.json"
    p.write_bytes(content)
    with pytest.raises(InputError) as err:
        load_receipt(p)
    assert err.value.code == code
