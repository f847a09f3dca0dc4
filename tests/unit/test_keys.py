"""keys.py: Ed25519 key pairs, loading, key ids."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from finops_fabric import keys
from finops_fabric.errors import InputError
from finops_fabric.keys import (
    generate_keypair,
    key_id,
    keypair_paths,
    load_private_key,
    load_public_key,
    public_key_hex,
)

# The TUF / python-tuf test key (tests/repository_data, root.json): raw Ed25519 public key.
TUF_PUBLIC_HEX = "edcd0a32a07dce33f7c7873aaffbff36d20ea30787574ead335eefd337e4dacd"
# Its published key id, computed by securesystemslib's legacy _get_keyid, whose key dict also
# carried "keyid_hash_algorithms": ["sha256", "sha512"].
TUF_LEGACY_KEYID = "59a4df8af818e9ed7abe0764c0b47b4240952aa0d179b5b78346c470ac30278d"


def test_generate_keypair_writes_pem_pair_with_private_mode_0600(tmp_path: Path) -> None:
    key_path, pub_path = generate_keypair(tmp_path / "alice")
    assert (key_path, pub_path) == (tmp_path / "alice.key", tmp_path / "alice.pub")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert pub_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    private, public = load_private_key(key_path), load_public_key(pub_path)
    public.verify(private.sign(b"payload"), b"payload")
    assert key_id(private.public_key()) == key_id(public)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.key", "alice.pub"]


def test_private_key_is_0600_from_creation_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_fsync = os.fsync

    def spying_fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            seen.append(stat.S_IMODE(st.st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spying_fsync)
    old = os.umask(0)
    try:
        key_path, _ = generate_keypair(tmp_path / "bob")
    finally:
        os.umask(old)
    assert seen, "no file content was fsynced"
    assert seen[0] == 0o600  # the private key's temporary file, before it got its name
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_keypair_name_with_dot_keeps_the_dot(tmp_path: Path) -> None:
    assert keypair_paths(tmp_path / "auditor.v2") == (
        tmp_path / "auditor.v2.key",
        tmp_path / "auditor.v2.pub",
    )


@pytest.mark.parametrize("name", ["", ".", "..", "some/dir/.."])
def test_a_key_needs_a_name(name: str) -> None:
    with pytest.raises(InputError) as err:
        keypair_paths(name)
    assert err.value.code == "keys.bad_name"


def test_generate_creates_missing_parent_directories(tmp_path: Path) -> None:
    key_path, _ = generate_keypair(tmp_path / "a" / "b" / "carol")
    assert key_path.is_file()


@pytest.mark.parametrize("existing", ["k.key", "k.pub"])
def test_refuses_to_overwrite_either_file(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_bytes(b"precious")
    with pytest.raises(InputError) as err:
        generate_keypair(tmp_path / "k")
    assert err.value.code == "keys.exists"
    assert (tmp_path / existing).read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


def test_second_keygen_refused_and_first_key_unchanged(tmp_path: Path) -> None:
    key_path, _ = generate_keypair(tmp_path / "op")
    before = key_path.read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite"):
        generate_keypair(tmp_path / "op")
    assert key_path.read_bytes() == before


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _ec_private_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_load_private_key_errors(tmp_path: Path) -> None:
    _, pub = generate_keypair(tmp_path / "x")
    ed = Ed25519PrivateKey.generate()
    encrypted = ed.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    cases = {
        "keys.missing": tmp_path / "missing.key",
        "keys.unreadable": tmp_path,
        "keys.invalid": _write(tmp_path / "garbage.key", b"not a key at all"),
        "keys.encrypted": _write(tmp_path / "enc.key", encrypted),
        "keys.not_ed25519": _write(tmp_path / "ec.key", _ec_private_pem()),
    }
    for code, path in cases.items():
        with pytest.raises(InputError) as err:
            load_private_key(path)
        assert err.value.code == code, (code, err.value)
        assert err.value.location is not None and err.value.location.file == str(path)
    with pytest.raises(InputError) as err:
        load_private_key(pub)
    assert err.value.code == "keys.invalid" and err.value.hint and "public key" in err.value.hint
    broken = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(InputError) as err:
        load_private_key(_write(tmp_path / "broken.key", broken))
    assert err.value.code == "keys.invalid"


def test_load_public_key_errors(tmp_path: Path) -> None:
    key, _ = generate_keypair(tmp_path / "x")
    ec_pub = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    cases = {
        "keys.missing": tmp_path / "missing.pub",
        "keys.invalid": _write(
            tmp_path / "garbage.pub", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        ),
        "keys.not_ed25519": _write(tmp_path / "ec.pub", ec_pub),
    }
    for code, path in cases.items():
        with pytest.raises(InputError) as err:
            load_public_key(path)
        assert err.value.code == code, (code, err.value)
    with pytest.raises(InputError) as err:
        load_public_key(key)  # a private key is not accepted where a public key is expected
    assert err.value.code == "keys.invalid" and err.value.hint and "NAME.pub" in err.value.hint


def test_public_key_hex_is_raw_32_bytes() -> None:
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(TUF_PUBLIC_HEX))
    assert public_key_hex(public) == TUF_PUBLIC_HEX


def test_keyid_hashing_reproduces_published_tuf_keyid() -> None:
    # Same hashing procedure as securesystemslib, checked against a key id published by TUF.
    legacy = {
        "keyid_hash_algorithms": ["sha256", "sha512"],
        "keytype": "ed25519",
        "keyval": {"public": TUF_PUBLIC_HEX},
        "scheme": "ed25519",
    }
    assert keys._keyid_of(legacy) == TUF_LEGACY_KEYID


def test_key_id_follows_sslibkey_from_crypto_convention() -> None:
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(TUF_PUBLIC_HEX))
    expected_bytes = (
        b'{"keytype":"ed25519","keyval":{"public":"' + TUF_PUBLIC_HEX.encode() + b'"},"scheme":"ed25519"}'
    )
    assert key_id(public) == hashlib.sha256(expected_bytes).hexdigest()
    assert key_id(public) == "2345a90ad8d76f3677f9ad6695b0ba0b5c7b7fbf27fb0ed35fbdf7b71264a679"


def test_distinct_keys_have_distinct_ids() -> None:
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    assert key_id(a.public_key()) != key_id(b.public_key())
    assert len(key_id(a.public_key())) == 64
