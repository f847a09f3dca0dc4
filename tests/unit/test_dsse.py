"""Receipts as in-toto Statement v1 in a DSSE envelope, checked by securesystemslib ALONE.

The receipts come from the real pipeline (`mu init`, `mu generate` of the bundled example);
securesystemslib is the independent verifier: it must accept our envelopes with nothing of
ours but the raw public key, and refuse the same tampering that `verify_envelope` refuses.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from securesystemslib import exceptions as sslib_exceptions
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]  # re-exported implicitly

from finops_fabric import dsse
from finops_fabric.canonical import canonical_json
from finops_fabric.cli import main
from finops_fabric.errors import CheckFailed
from finops_fabric.keys import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
    key_id,
    load_private_key,
    load_public_key,
    public_key_hex,
)
from finops_fabric.receipts import seal

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "finops_fabric" / "examples" / "acme"
HEX64 = re.compile(r"[0-9a-f]{64}")

# Everything securesystemslib may raise for an envelope that does not verify or cannot be read.
SSLIB_REFUSES = (sslib_exceptions.Error, ValueError, KeyError, TypeError)


# --- fixtures: receipts made by the real pipeline ---------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("dsse")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FABRIC_HOME", str(root / "store"))
        assert main(["init"]) == 0
        onto = root / "O"
        shutil.copytree(EXAMPLE, onto)
        assert (
            main(["generate", f"--input={onto}", f"--output={root / 'A'}", f"--receipt={root / 'r.json'}"])
            == 0
        )
        bad = root / "O-bad"
        shutil.copytree(EXAMPLE, bad)
        (bad / "zz-incomplete.ttl").write_text(
            "@prefix fab: <https://w3id.org/finops-fabric/ns#> .\n"
            "@prefix ex: <https://example.com/acme/policy#> .\n"
            "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
            'ex:board-rule a fab:ApprovalRule ; rdfs:label "Big ones need the board" ;\n'
            "    fab:appliesTo ex:purchase ; fab:amountThreshold 5000000.0 .\n"
        )
        rc = main(
            ["generate", f"--input={bad}", f"--output={root / 'A-bad'}", f"--receipt={root / 'rej.json'}"]
        )
        assert rc == 1
        assert main(["keygen", f"--out={root / 'other'}"]) == 0
        yield SimpleNamespace(
            root=root,
            store=root / "store",
            receipt_path=root / "r.json",
            receipt=json.loads((root / "r.json").read_text()),
            rejection=json.loads((root / "rej.json").read_text()),
            private_key=load_private_key(root / "store" / "keys" / "operator.key"),
            public_key=load_public_key(root / "store" / "keys" / "operator.pub"),
            public_key_path=root / "store" / "keys" / "operator.pub",
            other_private_key=load_private_key(root / "other.key"),
            other_public_key=load_public_key(root / "other.pub"),
            other_key_path=root / "other.key",
            other_public_key_path=root / "other.pub",
        )


def sslib_key(public_key: Ed25519PublicKey) -> SSlibKey:
    """The securesystemslib key built only from the raw public key and our key id."""
    return SSlibKey(key_id(public_key), "ed25519", "ed25519", {"public": public_key_hex(public_key)})


def sslib_verify(env: dict[str, Any], public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Verify with securesystemslib alone; returns the payload parsed as JSON."""
    # from_dict rewrites the signature dicts in place: give it a copy, as read from a file.
    parsed = Envelope.from_dict(json.loads(json.dumps(env)))
    accepted = parsed.verify([sslib_key(public_key)], 1)
    assert list(accepted) == [key_id(public_key)]
    assert parsed.payload_type == "application/vnd.in-toto+json"
    doc: dict[str, Any] = json.loads(parsed.payload)
    return doc


def resign(payload_type: str, payload: bytes, private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """An envelope over any bytes, correctly signed: for checks beyond the signature."""
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {
                "keyid": key_id(private_key.public_key()),
                "sig": base64.b64encode(private_key.sign(dsse.pae(payload_type, payload))).decode("ascii"),
            }
        ],
    }


def resign_statement(
    made: SimpleNamespace, change: Callable[[dict[str, Any]], None], receipt: dict[str, Any] | None = None
) -> dict[str, Any]:
    stmt = dsse.statement(made.receipt if receipt is None else receipt)
    change(stmt)
    return resign(dsse.PAYLOAD_TYPE, canonical_json(stmt), made.private_key)


def expect_code(env: object, public_key: Ed25519PublicKey, code: str) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        dsse.verify_envelope(env, public_key)
    assert info.value.code == code, (info.value.code, info.value.message)
    return info.value


# --- PAE ---------------------------------------------------------------------------------------


def test_pae_is_the_dsse_spec_test_vector() -> None:
    # secure-systems-lab/dsse protocol.md, "Test Vectors".
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@pytest.mark.parametrize(
    ("payload_type", "payload"),
    [
        ("application/vnd.in-toto+json", b'{"_type":"https://in-toto.io/Statement/v1"}'),
        ("", b""),
        ("t", b"\x00\xff DSSEv1 1 t 0 \n"),
        ("application/vnd.ünïcødé+json", "€ and ☃".encode()),  # LEN counts bytes, not characters
        ("x" * 1000, bytes(range(256)) * 300),
    ],
)
def test_pae_equals_securesystemslib(payload_type: str, payload: bytes) -> None:
    ours = dsse.pae(payload_type, payload)
    assert ours == Envelope(payload, payload_type, {}).pae()
    type_bytes = payload_type.encode("utf-8")
    assert ours == b" ".join(
        [b"DSSEv1", str(len(type_bytes)).encode(), type_bytes, str(len(payload)).encode(), payload]
    )


# --- key ids -----------------------------------------------------------------------------------


def test_key_id_is_the_one_securesystemslib_computes(made: SimpleNamespace) -> None:
    for public_key in (made.public_key, made.other_public_key):
        theirs = SSlibKey.from_crypto(public_key)
        assert theirs.keyid == key_id(public_key)
        assert theirs.keytype == "ed25519" and theirs.scheme == "ed25519"
        assert theirs.keyval == {"public": public_key_hex(public_key)}


# --- the Statement -----------------------------------------------------------------------------


def assert_statement_v1(stmt: dict[str, Any]) -> None:
    """in-toto/attestation spec/v1/statement.md: required fields and their types."""
    assert set(stmt) == {"_type", "subject", "predicateType", "predicate"}
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert isinstance(stmt["predicateType"], str) and stmt["predicateType"].startswith("https://")
    assert isinstance(stmt["predicate"], dict)
    assert isinstance(stmt["subject"], list) and stmt["subject"]
    for s in stmt["subject"]:
        assert set(s) == {"name", "digest"} and isinstance(s["name"], str) and s["name"]
        assert set(s["digest"]) == {"sha256"} and HEX64.fullmatch(s["digest"]["sha256"])
    names = [s["name"] for s in stmt["subject"]]
    assert names == sorted(names) and len(set(names)) == len(names)


def test_statement_of_a_generation_names_every_artifact(made: SimpleNamespace) -> None:
    stmt = dsse.statement(made.receipt)
    assert_statement_v1(stmt)
    assert stmt["predicateType"] == "https://w3id.org/finops-fabric/receipt/v1"
    assert stmt["predicate"] == made.receipt and stmt["predicate"] is not made.receipt
    artifacts = made.receipt["outputs"]["artifacts"]
    assert len(stmt["subject"]) == len(artifacts) > 1
    assert {s["name"]: "sha256:" + s["digest"]["sha256"] for s in stmt["subject"]} == artifacts
    assert "manifest.json" in artifacts
    assert any(name.startswith("rules/") for name in artifacts)


def test_statement_of_a_rejection_names_the_receipt(made: SimpleNamespace) -> None:
    assert made.rejection["kind"] == "rejection"
    stmt = dsse.statement(made.rejection)
    assert_statement_v1(stmt)
    assert stmt["subject"] == [
        {"name": "receipt", "digest": {"sha256": made.rejection["receipt_hash"].removeprefix("sha256:")}}
    ]


def test_statement_refuses_malformed_artifacts(made: SimpleNamespace) -> None:
    receipt = copy.deepcopy(made.receipt)
    receipt["outputs"]["artifacts"]["manifest.json"] = "md5:abc"
    with pytest.raises(CheckFailed) as info:
        dsse.statement(receipt)
    assert info.value.code == "dsse.artifacts"


# --- the envelope, verified by securesystemslib alone -------------------------------------------


@pytest.mark.parametrize("which", ["receipt", "rejection"])
def test_securesystemslib_verifies_our_envelope(made: SimpleNamespace, which: str) -> None:
    receipt = getattr(made, which)
    env = dsse.envelope(receipt, made.private_key)
    assert set(env) == {"payloadType", "payload", "signatures"}
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert env["signatures"] == [{"keyid": key_id(made.public_key), "sig": env["signatures"][0]["sig"]}]
    assert base64.b64decode(env["payload"]) == canonical_json(dsse.statement(receipt))
    stmt = sslib_verify(env, made.public_key)
    assert_statement_v1(stmt)
    assert stmt == dsse.statement(receipt)
    assert dsse.verify_envelope(env, made.public_key) == stmt


def test_securesystemslib_refuses_another_key(made: SimpleNamespace) -> None:
    env = dsse.envelope(made.receipt, made.private_key)
    with pytest.raises(SSLIB_REFUSES):
        sslib_verify(env, made.other_public_key)
    expect_code(env, made.other_public_key, "dsse.no_signature")


def _flip_payload_byte(env: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(env["payload"]))
    i = raw.index(b"https://w3id.org/finops-fabric/receipt/v1") + len("https://w3id.org/")
    raw[i] ^= 0x01
    env["payload"] = base64.b64encode(bytes(raw)).decode("ascii")


def _flip_signature_byte(env: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    raw[10] ^= 0x80
    env["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode("ascii")


def _change_payload_type(env: dict[str, Any]) -> None:
    env["payloadType"] = "application/vnd.in-toto.provenance+json"


@pytest.mark.parametrize(
    "tamper",
    [_flip_payload_byte, _flip_signature_byte, _change_payload_type],
    ids=["payload-byte", "signature-byte", "payload-type"],
)
def test_tampered_envelope_is_refused_by_both(
    made: SimpleNamespace, tamper: Callable[[dict[str, Any]], None]
) -> None:
    env = dsse.envelope(made.receipt, made.private_key)
    sslib_verify(env, made.public_key)  # intact: both accept
    bad = copy.deepcopy(env)
    tamper(bad)
    assert bad != env
    with pytest.raises(SSLIB_REFUSES):
        sslib_verify(bad, made.public_key)
    expect_code(bad, made.public_key, "dsse.signature")


# --- verify_envelope: one code per failure ------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        [],
        "envelope",
        {"payload": "e30=", "signatures": [{"keyid": "k", "sig": "AAAA"}]},
        {"payloadType": 7, "payload": "e30=", "signatures": [{"keyid": "k", "sig": "AAAA"}]},
        {"payloadType": "t", "signatures": [{"keyid": "k", "sig": "AAAA"}]},
        {"payloadType": "t", "payload": "not base64!", "signatures": [{"keyid": "k", "sig": "AAAA"}]},
        {"payloadType": "t", "payload": "e30=", "signatures": []},
        {"payloadType": "t", "payload": "e30=", "signatures": {"keyid": "k"}},
        {"payloadType": "t", "payload": "e30=", "signatures": [{"keyid": "k"}]},
        {"payloadType": "t", "payload": "e30=", "signatures": [{"keyid": 5, "sig": "AAAA"}]},
        {"payloadType": "t", "payload": "e30=", "signatures": [{"keyid": "k", "sig": "%%%%"}]},
        {"payloadType": "t", "payload": "e3=0", "signatures": [{"keyid": "k", "sig": "AAAA"}]},
    ],
)
def test_malformed_envelope(made: SimpleNamespace, env: object) -> None:
    expect_code(env, made.public_key, "dsse.malformed")


def test_a_receipt_is_not_an_envelope(made: SimpleNamespace) -> None:
    err = expect_code(made.receipt, made.public_key, "dsse.malformed")
    assert err.hint and "verify-receipt" in err.hint


def test_wrong_payload_type_even_when_signed(made: SimpleNamespace) -> None:
    payload = canonical_json(dsse.statement(made.receipt))
    expect_code(resign("application/json", payload, made.private_key), made.public_key, "dsse.payload_type")


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"_type": "https://in-toto.io/Statement/v1", "_type": "https://in-toto.io/Statement/v1"}',
        b'{"_type": "https://in-toto.io/Statement/v0.1", "subject": [], "predicateType": "x"}',
    ],
)
def test_payload_not_a_statement(made: SimpleNamespace, payload: bytes) -> None:
    expect_code(resign(dsse.PAYLOAD_TYPE, payload, made.private_key), made.public_key, "dsse.statement")


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"),
        lambda s: s.pop("subject"),
        lambda s: s.update(subject=[]),
        lambda s: s["subject"][0].pop("digest"),
        lambda s: s["subject"][0].update(digest={}),
        lambda s: s["subject"][0].update(name=7),
        lambda s: s.pop("predicateType"),
        lambda s: s.update(predicate=[1]),
    ],
    ids=["type", "no-subject", "empty-subject", "no-digest", "empty-digest", "name", "no-ptype", "predicate"],
)
def test_statement_structure_is_checked(
    made: SimpleNamespace, change: Callable[[dict[str, Any]], None]
) -> None:
    expect_code(resign_statement(made, change), made.public_key, "dsse.statement")


def test_wrong_predicate_type(made: SimpleNamespace) -> None:
    env = resign_statement(made, lambda s: s.update(predicateType="https://slsa.dev/provenance/v1"))
    expect_code(env, made.public_key, "dsse.predicate_type")


def test_predicate_not_a_receipt(made: SimpleNamespace) -> None:
    expect_code(
        resign_statement(made, lambda s: s["predicate"].pop("signatures")), made.public_key, "dsse.predicate"
    )
    expect_code(resign_statement(made, lambda s: s.pop("predicate")), made.public_key, "dsse.predicate")


def test_embedded_receipt_hash_must_match(made: SimpleNamespace) -> None:
    def forge(s: dict[str, Any]) -> None:
        s["predicate"]["outputs"]["changed"] = ["forged"]

    expect_code(resign_statement(made, forge), made.public_key, "receipt.hash")


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["subject"][0]["digest"].update(sha256="0" * 64),
        lambda s: s["subject"].pop(),
        lambda s: s["subject"].append({"name": "extra.py", "digest": {"sha256": "1" * 64}}),
        lambda s: s["subject"][0].update(name="renamed.json"),
        lambda s: s["subject"][0]["digest"].update(sha512="2" * 128),
    ],
    ids=["digest", "dropped", "added", "renamed", "extra-algorithm"],
)
def test_subjects_must_be_the_receipts_artifacts(
    made: SimpleNamespace, change: Callable[[dict[str, Any]], None]
) -> None:
    err = expect_code(resign_statement(made, change), made.public_key, "dsse.subject")
    assert "subjects do not match" in err.message


def test_rejection_subject_must_be_the_receipt_hash(made: SimpleNamespace) -> None:
    env = resign_statement(made, lambda s: s["subject"][0]["digest"].update(sha256="3" * 64), made.rejection)
    expect_code(env, made.public_key, "dsse.subject")


def test_subject_order_does_not_matter(made: SimpleNamespace) -> None:
    env = resign_statement(made, lambda s: s["subject"].reverse())
    assert dsse.verify_envelope(env, made.public_key)["subject"][0]["name"] == "supervision.json"


def test_envelope_refuses_a_receipt_changed_after_sealing(made: SimpleNamespace) -> None:
    forged = copy.deepcopy(made.receipt)
    forged["kind"] = "approval"
    with pytest.raises(CheckFailed) as info:
        dsse.envelope(forged, made.private_key)
    assert info.value.code == "receipt.hash"


def test_envelope_of_a_receipt_sealed_by_another_key(made: SimpleNamespace) -> None:
    receipt = seal(made.receipt, made.other_private_key)
    env = dsse.envelope(receipt, made.private_key)
    assert sslib_verify(env, made.public_key)["predicate"]["signatures"][0]["keyid"] == key_id(
        made.other_public_key
    )


def test_url_safe_unpadded_base64_and_keyless_signatures_are_accepted(made: SimpleNamespace) -> None:
    # DSSE: verifiers MUST accept standard and URL-safe base64; the key id is only a hint.
    env = dsse.envelope(made.receipt, made.private_key)
    raw_payload = base64.b64decode(env["payload"])
    raw_sig = base64.b64decode(env["signatures"][0]["sig"])
    alt = {
        "payloadType": env["payloadType"],
        "payload": base64.urlsafe_b64encode(raw_payload).decode("ascii").rstrip("="),
        "signatures": [{"sig": base64.urlsafe_b64encode(raw_sig).decode("ascii").rstrip("=")}],
    }
    assert dsse.verify_envelope(alt, made.public_key) == dsse.statement(made.receipt)


# --- the CLI -----------------------------------------------------------------------------------


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: object) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err


@pytest.fixture
def mu(
    made: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Run:
    monkeypatch.setenv("FABRIC_HOME", str(made.store))
    monkeypatch.chdir(tmp_path)
    return Run(capsys)


def test_cli_export_and_verify(mu: Run, made: SimpleNamespace, tmp_path: Path) -> None:
    out_file = tmp_path / "receipt.dsse.json"
    code, out, _ = mu("receipt", "export", "--format=dsse", made.receipt_path, f"--output={out_file}")
    assert code == 0 and str(out_file) in out and key_id(made.public_key) in out
    env = json.loads(out_file.read_text())
    assert sslib_verify(env, made.public_key) == dsse.statement(made.receipt)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    code, out, _ = mu("receipt", "verify-dsse", out_file, f"--public-key={made.public_key_path}")
    assert code == 0 and out.startswith("verified:") and "also signed by this key" in out
    code, out, _ = mu("receipt", "verify-dsse", out_file, "--public-key", made.public_key_path, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["verified"] is True and doc["receipt_hash"] == made.receipt["receipt_hash"]
    assert doc["keyid"] == key_id(made.public_key) and doc["receipt_signed_by_key"] is True
    assert len(doc["subjects"]) == len(made.receipt["outputs"]["artifacts"])


def test_cli_export_to_stdout_with_another_key(mu: Run, made: SimpleNamespace) -> None:
    code, out, _ = mu("receipt", "export", made.receipt_path, f"--key={made.other_key_path}")
    assert code == 0
    env = json.loads(out)
    assert sslib_verify(env, made.other_public_key)["predicate"] == made.receipt
    assert env["signatures"][0]["keyid"] == key_id(made.other_public_key)


def test_cli_export_json_summary(mu: Run, made: SimpleNamespace, tmp_path: Path) -> None:
    code, out, _ = mu(
        "receipt", "--json", "export", "--format=dsse", made.receipt_path, f"--output={tmp_path / 'e.json'}"
    )
    doc = json.loads(out)
    assert code == 0 and doc["subjects"] == len(made.receipt["outputs"]["artifacts"])
    assert doc["keyid"] == key_id(made.public_key) and doc["output"] == str(tmp_path / "e.json")


def test_cli_verify_refuses_tampering_and_other_keys(mu: Run, made: SimpleNamespace, tmp_path: Path) -> None:
    env = dsse.envelope(made.receipt, made.private_key)
    _flip_payload_byte(env)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(env))
    code, _, err = mu("receipt", "verify-dsse", bad, f"--public-key={made.public_key_path}")
    assert code == 1 and "does not verify" in err
    code, out, _ = mu("receipt", "verify-dsse", bad, f"--public-key={made.public_key_path}", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["verified"] is False and doc["error"]["code"] == "dsse.signature"

    good = tmp_path / "good.json"
    good.write_text(json.dumps(dsse.envelope(made.receipt, made.private_key)))
    code, _, err = mu("receipt", "verify-dsse", good, f"--public-key={made.other_public_key_path}")
    assert code == 1 and "no signature by key" in err
    code, _, err = mu("receipt", "verify-dsse", made.receipt_path, f"--public-key={made.public_key_path}")
    assert code == 1 and "verify-receipt" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["receipt"], "give an action"),
        (["receipt", "frob", "x"], "unknown action 'frob'"),
        (["receipt", "export", "{r}", "--format=cose"], "unknown --format=cose"),
        (["receipt", "export", "{r}", "--format=json", "--key=k"], "keeps its own signatures"),
        (["receipt", "export"], "RECEIPT"),
        (["receipt", "verify-dsse", "{r}"], "--public-key"),
        (["receipt", "export", "{r}", "--public-key=k"], "has no option --public-key"),
        (["receipt", "--timestamp=2025-01-01T00:00:00Z"], "--deployment"),
        (["receipt", "--deployment=production", "export", "{r}"], "not both"),
        (["receipt", "export", "missing.json"], "no receipt at"),
        (["receipt", "verify-dsse", "missing.json", "--public-key={pub}"], "no envelope at"),
        (["receipt", "export", "{r}", "--key=missing.key"], "no private key"),
        (["receipt", "export", "{r}", "--output=no/such/dir/e.json"], "cannot write"),
    ],
)
def test_cli_usage_and_input_errors_exit_2(
    mu: Run, made: SimpleNamespace, args: list[str], needle: str
) -> None:
    argv = [a.format(r=made.receipt_path, pub=made.public_key_path) for a in args]
    code, _, err = mu(*argv)
    assert code == 2 and needle in err, err


def test_cli_verify_unreadable_envelope_exit_2(mu: Run, made: SimpleNamespace, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"payloadType": "x",\n  oops}')
    code, _, err = mu("receipt", "verify-dsse", broken, f"--public-key={made.public_key_path}")
    assert code == 2 and "line 2" in err


def test_cli_deployment_receipt_and_export_do_not_mix(mu: Run, made: SimpleNamespace) -> None:
    code, _, err = mu("receipt", "--deployment=production", "export", made.receipt_path)
    assert code == 2 and "Traceback" not in err


def test_cli_export_without_a_store(mu: Run, made: SimpleNamespace, tmp_path: Path) -> None:
    code, _, err = mu("receipt", "export", made.receipt_path, f"--home={tmp_path / 'nowhere'}")
    assert code == 2 and "mu init" in err
