"""Replay (job 2.1): regenerate A from a receipt, its O snapshot and the pinned generator only, in
a clean place; every refusal has its own code; the auditor's receipt agrees with production's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from harness import EX, Run, changed_example, copy_example

from finops_fabric.enforcer import read_tree
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.keys import load_public_key
from finops_fabric.receipts import check_hash, load_receipt, seal, verify_receipt
from finops_fabric.replay import CHECKS, regenerate
from finops_fabric.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def generated(mu: Run, tmp_path: Path) -> Path:
    """O generated into tmp_path/A with its receipt at tmp_path/R.json; returns the receipt path."""
    o = copy_example(tmp_path)
    mu.json("generate", f"--input={o}", f"--output={tmp_path / 'A'}", f"--receipt={tmp_path / 'R.json'}")
    return tmp_path / "R.json"


def resealed(store: Store, receipt: dict[str, Any], path: Path) -> Path:
    """Write ``receipt`` re-sealed by the operator (a well-formed, validly signed receipt)."""
    path.write_text(json.dumps(seal(receipt, store.operator_private_key())))
    return path


def refused(mu: Run, *args: object, code: int = 1) -> dict[str, Any]:
    got, out, err = mu("replay", *args, "--json")
    assert got == code, (got, out, err)
    assert "refused" in err or "error" in err
    doc: dict[str, Any] = json.loads(out) if out.strip() else {}
    return doc


# --- a replay that matches ----------------------------------------------------------------------


def test_replay_of_a_fresh_generation_matches_byte_for_byte(mu: Run, generated: Path, tmp_path: Path) -> None:
    r = json.loads(generated.read_text())
    out = mu.json("replay", f"--receipt={generated}", f"--output={tmp_path / 'A_replayed'}")
    assert out["match"] is True and out["verdict"] == "match"
    assert out["enforcer_hash"] == out["expected_enforcer_hash"] == r["outputs"]["enforcer_hash"]
    assert out["ontology_hash"] == r["inputs"]["ontology_hash"]
    assert out["generator"] == r["inputs"]["generator"]
    arts = out["artifacts"]
    assert arts["matching"] == len(r["outputs"]["artifacts"]) and arts["matching"] > 10
    assert arts["differing"] == arts["missing"] == arts["extra"] == []
    assert [c["check"] for c in out["checks"]] == list(CHECKS)
    assert read_tree(tmp_path / "A_replayed") == read_tree(tmp_path / "A")
    assert "receipt_hash" not in out  # no auditor receipt unless --sign-as


def test_library_regenerate_returns_the_same_bytes(generated: Path, store: Store, tmp_path: Path) -> None:
    result = regenerate(load_receipt(generated), store)
    assert result.match
    assert result.files == read_tree(tmp_path / "A")
    assert result.ontology_source.startswith("store snapshot")


def test_human_output_says_match(mu: Run, generated: Path) -> None:
    code, out, _ = mu("replay", f"--receipt={generated}")
    assert code == 0 and out.startswith("MATCH") and "identical" in out


def test_replay_changes_nothing_in_the_store(mu: Run, generated: Path, store: Store) -> None:
    def snapshot() -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        return store.receipts(), read_tree(store.objects_dir)

    before = snapshot()
    mu.json("replay", f"--receipt={generated}")
    assert snapshot() == before


def test_replay_of_an_older_receipt_restores_the_old_a(mu: Run, generated: Path, tmp_path: Path) -> None:
    o2 = changed_example(tmp_path)
    mu.json("generate", f"--input={o2}", f"--output={tmp_path / 'A2'}", f"--receipt={tmp_path / 'R2.json'}")
    out = mu.json("replay", f"--receipt={generated}", f"--output={tmp_path / 'A_old'}")
    assert out["match"] is True
    assert read_tree(tmp_path / "A_old") == read_tree(tmp_path / "A")
    assert read_tree(tmp_path / "A_old") != read_tree(tmp_path / "A2")


def test_replay_with_the_receipted_o_needs_no_snapshot(
    mu: Run, generated: Path, store: Store, tmp_path: Path
) -> None:
    r = json.loads(generated.read_text())
    (store.objects_dir / "ontology" / r["inputs"]["ontology_hash"].removeprefix("sha256:")).unlink()
    out = mu.json("replay", f"--receipt={generated}", f"--ontology={tmp_path / 'O'}")
    assert out["match"] is True and out["ontology_source"].startswith("--ontology=")


def test_generator_version_may_name_the_pinned_version(mu: Run, generated: Path) -> None:
    assert mu.json("replay", f"--receipt={generated}", "--generator-version=3")["match"] is True
    assert mu.json("replay", f"--receipt={generated}", "--generator-version=v3")["match"] is True


def test_receipt_without_the_artifact_list_compares_hash_a(
    mu: Run, generated: Path, store: Store, tmp_path: Path
) -> None:
    r = load_receipt(generated)
    del r["outputs"]["artifacts"]
    out = mu.json("replay", f"--receipt={resealed(store, r, tmp_path / 'old-style.json')}")
    assert out["match"] is True and out["artifacts"]["compared_with"] == "outputs.enforcer_hash only"


# --- a replay that does not match ---------------------------------------------------------------


def test_mismatch_names_each_differing_artifact(
    mu: Run, generated: Path, store: Store, tmp_path: Path
) -> None:
    r = load_receipt(generated)
    art = r["outputs"]["rules"][EX + "sod-wire"]["artifact"]
    r["outputs"]["artifacts"][art] = "sha256:" + "1" * 64
    r["outputs"]["artifacts"]["rules/ghost.py"] = "sha256:" + "2" * 64
    r["outputs"]["enforcer_hash"] = "sha256:" + "3" * 64
    bad = resealed(store, r, tmp_path / "claims-other.json")
    out = mu.json("replay", f"--receipt={bad}", f"--output={tmp_path / 'kept'}", code=1)
    assert out["match"] is False and out["verdict"] == "mismatch"
    assert out["artifacts"]["differing"] == [
        {
            "artifact": art,
            "rule": EX + "sod-wire",
            "expected": "sha256:" + "1" * 64,
            "actual": out["artifacts"]["differing"][0]["actual"],
        }
    ]
    assert [m["artifact"] for m in out["artifacts"]["missing"]] == ["rules/ghost.py"]
    assert out["output"] is None and not (tmp_path / "kept").exists()
    code, text, _ = mu("replay", f"--receipt={bad}")
    assert code == 1 and text.startswith("MISMATCH") and art in text and "sod-wire" in text


# --- refusals, each with its own code -------------------------------------------------------------


def test_tampered_receipt_is_refused_before_anything_else(mu: Run, generated: Path, tmp_path: Path) -> None:
    r = json.loads(generated.read_text())
    r["inputs"]["ontology_hash"] = "sha256:" + "0" * 64
    (tmp_path / "t.json").write_text(json.dumps(r))
    out = refused(mu, f"--receipt={tmp_path / 't.json'}")
    assert out["match"] is False and out["refused"]["code"] == "receipt.hash"


def test_bad_operator_signature_is_refused(mu: Run, generated: Path, tmp_path: Path) -> None:
    r = json.loads(generated.read_text())
    r["signatures"][0]["sig"] = r["signatures"][0]["sig"][::-1]
    (tmp_path / "s.json").write_text(json.dumps(r))
    assert refused(mu, f"--receipt={tmp_path / 's.json'}")["refused"]["code"] == "receipt.signature"


def test_rejection_receipt_has_no_a_to_replay(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    (o / "zz-incomplete.ttl").write_text(
        "@prefix fab: <https://w3id.org/finops-fabric/ns#> .\n"
        "@prefix ex: <https://example.com/acme/policy#> .\n"
        "ex:board-rule a fab:ApprovalRule ; fab:appliesTo ex:purchase ; fab:amountThreshold 5000000.0 .\n"
    )
    mu.json(
        "generate", f"--input={o}", f"--output={tmp_path / 'A'}", f"--receipt={tmp_path / 'Rr.json'}", code=1
    )
    out = refused(mu, f"--receipt={tmp_path / 'Rr.json'}")
    assert out["refused"]["code"] == "replay.rejection_receipt"
    assert "no A to replay" in out["refused"]["message"]


def test_receipt_of_another_kind_is_refused(mu: Run, generated: Path, tmp_path: Path) -> None:
    mu("keygen", "--out", tmp_path / "auditor")
    mu.json("replay", f"--receipt={generated}", f"--sign-as={tmp_path / 'auditor.key'}")
    out = refused(mu, f"--receipt={tmp_path / 'R.replay.json'}")
    assert out["refused"]["code"] == "replay.not_generation"


@pytest.mark.parametrize(
    ("edit", "code", "words"),
    [
        (lambda r: r.pop("inputs"), "replay.missing_inputs", "cannot be replayed"),
        (lambda r: r["inputs"].pop("ontology_hash"), "replay.missing_inputs", "ontology_hash"),
        (lambda r: r["inputs"].pop("generator"), "replay.unpinned_generator", "not pinned"),
        (lambda r: r["inputs"]["generator"].pop("source_hash"), "replay.unpinned_generator", "source_hash"),
        (lambda r: r["outputs"].pop("enforcer_hash"), "replay.missing_outputs", "enforcer_hash"),
        (lambda r: r["inputs"]["generator"].update(version="99"), "replay.unknown_generator", "v99"),
        (lambda r: r["inputs"]["generator"].update(id="someone/else"), "replay.generator_changed", "someone"),
    ],
)
def test_receipt_that_cannot_be_replayed_says_why(
    mu: Run, generated: Path, store: Store, tmp_path: Path, edit: Any, code: str, words: str
) -> None:
    r = load_receipt(generated)
    edit(r)
    out = refused(mu, f"--receipt={resealed(store, r, tmp_path / 'edited.json')}")
    assert out["refused"]["code"] == code and words in out["refused"]["message"], out


def test_changed_generator_source_is_refused_naming_both_hashes(
    mu: Run, generated: Path, store: Store, tmp_path: Path
) -> None:
    r = load_receipt(generated)
    ours = r["inputs"]["generator"]["source_hash"]
    r["inputs"]["generator"]["source_hash"] = "sha256:" + "5" * 64
    out = refused(mu, f"--receipt={resealed(store, r, tmp_path / 'other-gen.json')}")
    assert out["refused"]["code"] == "replay.generator_changed"
    assert ours in out["refused"]["message"] and "sha256:" + "5" * 64 in out["refused"]["message"]


def test_generator_version_other_than_the_pinned_one_is_refused(mu: Run, generated: Path) -> None:
    out = refused(mu, f"--receipt={generated}", "--generator-version=2")
    assert out["refused"]["code"] == "replay.generator_not_pinned" and "kaizen" in out["refused"]["hint"]


def test_missing_snapshot_names_the_hash_and_suggests_ontology(
    mu: Run, generated: Path, store: Store
) -> None:
    h = json.loads(generated.read_text())["inputs"]["ontology_hash"]
    (store.objects_dir / "ontology" / h.removeprefix("sha256:")).unlink()
    code, _, err = mu("replay", f"--receipt={generated}")
    assert code == 2 and h in err and "--ontology" in err
    with pytest.raises(InputError) as e:
        regenerate(load_receipt(generated), store)
    assert e.value.code == "replay.snapshot_missing"


def test_corrupted_snapshot_is_refused(mu: Run, generated: Path, store: Store) -> None:
    h = json.loads(generated.read_text())["inputs"]["ontology_hash"]
    snap = store.objects_dir / "ontology" / h.removeprefix("sha256:")
    data = bytearray(snap.read_bytes())
    data[10] ^= 0x01
    snap.write_bytes(bytes(data))
    with pytest.raises(CheckFailed) as e:
        regenerate(load_receipt(generated), store)
    assert e.value.code == "replay.snapshot_corrupt" and h in e.value.message
    assert refused(mu, f"--receipt={generated}")["refused"]["code"] == "replay.snapshot_corrupt"


def test_another_o_is_not_the_receipted_o(mu: Run, generated: Path, tmp_path: Path) -> None:
    out = refused(mu, f"--receipt={generated}", f"--ontology={changed_example(tmp_path)}")
    assert out["refused"]["code"] == "replay.ontology_mismatch"
    assert "not the receipted O" in out["refused"]["message"]


def test_unreadable_receipt_is_exit_2(mu: Run, tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    code, _, err = mu("replay", f"--receipt={tmp_path / 'broken.json'}")
    assert code == 2 and "broken.json" in err
    code, _, err = mu("replay", f"--receipt={tmp_path / 'absent.json'}")
    assert code == 2 and "absent.json" in err


# --- the auditor's own receipt ---------------------------------------------------------------------


def ledger_is_one_chain(store: Store) -> list[dict[str, Any]]:
    ledger = store.receipts()
    previous = None
    for r in ledger:
        check_hash(r)
        assert r["previous_receipt_hash"] == previous
        previous = r["receipt_hash"]
    return ledger


def test_sign_as_writes_an_auditor_receipt_that_agrees_with_production(
    mu: Run, generated: Path, store: Store, tmp_path: Path
) -> None:
    mu("keygen", "--out", tmp_path / "auditor")
    before = store.receipts()
    out = mu.json("replay", f"--receipt={generated}", f"--sign-as={tmp_path / 'auditor.key'}")
    prod = json.loads(generated.read_text())
    path = tmp_path / "R.replay.json"
    assert out["replay_receipt"] == str(path) and out["match"] is True
    mine = json.loads(path.read_text())
    assert out["receipt_hash"] == mine["receipt_hash"]
    assert mine["kind"] == "replay" and mine["replay_of"] == prod["receipt_hash"]
    assert mine["verdict"] == "match" and mine["gates"]["replay"]["status"] == "PASS"
    assert mine["inputs"]["ontology_hash"] == prod["inputs"]["ontology_hash"]
    assert mine["inputs"]["generator"] == prod["inputs"]["generator"]
    assert mine["outputs"]["enforcer_hash"] == prod["outputs"]["enforcer_hash"]
    assert mine["outputs"]["artifacts"] == prod["outputs"]["artifacts"]
    assert mine["comparison"]["differing"] == []
    # verifiable with the auditor's public key, and not with the operator's
    assert mu("verify-receipt", f"--receipt={path}", f"--public-key={tmp_path / 'auditor.pub'}")[0] == 0
    assert mu("verify-receipt", f"--receipt={path}", f"--public-key={store.operator_public_key_path}")[0] == 1
    # an auditor the store does not trust stays out of the operator's ledger, which still verifies
    assert out["ledger"] is False and "keys/trusted" in out["ledger_note"]
    assert mine["previous_receipt_hash"] is None
    assert ledger_is_one_chain(store) == before


def test_a_trusted_auditor_receipt_joins_the_ledger_chain(
    mu: Run, generated: Path, store: Store, tmp_path: Path
) -> None:
    mu("keygen", "--out", tmp_path / "auditor")
    (store.keys_dir / "trusted").mkdir()
    shutil.copy(tmp_path / "auditor.pub", store.keys_dir / "trusted" / "auditor.pub")
    out = mu.json("replay", f"--receipt={generated}", f"--sign-as={tmp_path / 'auditor.key'}")
    assert out["ledger"] is True
    mine = json.loads((tmp_path / "R.replay.json").read_text())
    ledger = ledger_is_one_chain(store)
    assert ledger[-1] == mine and mine["previous_receipt_hash"] == ledger[-2]["receipt_hash"]
    verify_receipt(mine, load_public_key(tmp_path / "auditor.pub"))
    with pytest.raises(CheckFailed):  # signed by the auditor, not as if by the operator
        verify_receipt(mine, store.operator_public_key())
    # the latest generation is still the operator's
    assert store.latest("generation") == json.loads(generated.read_text())


def test_sign_as_with_out_receipt_and_without_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mu: Run, generated: Path
) -> None:
    mu("keygen", "--out", tmp_path / "auditor")
    shutil.copy(generated, tmp_path / "copy.json")
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path / "no-store-here"))
    out = mu.json(
        "replay",
        f"--receipt={tmp_path / 'copy.json'}",
        f"--ontology={tmp_path / 'O'}",
        f"--sign-as={tmp_path / 'auditor.key'}",
        f"--out-receipt={tmp_path / 'mine.json'}",
    )
    assert out["match"] is True and out["ledger"] is False
    mine = json.loads((tmp_path / "mine.json").read_text())
    assert mine["previous_receipt_hash"] is None and mine["receipt_hash"] == out["receipt_hash"]
    verify_receipt(mine, load_public_key(tmp_path / "auditor.pub"))
    assert not (tmp_path / "no-store-here").exists()


def test_without_a_store_or_ontology_the_snapshot_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mu: Run, generated: Path
) -> None:
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path / "no-store-here"))
    code, _, err = mu("replay", f"--receipt={generated}")
    assert code == 2 and "--ontology" in err


def test_sign_as_with_an_unreadable_key_is_exit_2(mu: Run, generated: Path, tmp_path: Path) -> None:
    code, _, err = mu("replay", f"--receipt={generated}", f"--sign-as={tmp_path / 'nobody.key'}")
    assert code == 2 and "nobody.key" in err
    assert not (tmp_path / "R.replay.json").exists()
