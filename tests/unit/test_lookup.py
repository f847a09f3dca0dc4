"""An auditor fetches by hash: `mu receipt show|export sha256:…`, `mu snapshot export
sha256:<hash(O)>`, `mu replay --receipt=sha256:…`, and a deployment receipt followed to the
generation receipt whose A it deployed."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from harness import Run, copy_example

from finops_fabric.daemon.runtime import Runtime
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.keys import generate_keypair, load_private_key
from finops_fabric.lookup import export_snapshot, find_receipt, generation_behind, verify_trusted
from finops_fabric.pipeline import load_ontology
from finops_fabric.receipts import seal
from finops_fabric.store import Store


@pytest.fixture
def line(mu: Run, tmp_path: Path) -> SimpleNamespace:
    o = copy_example(tmp_path)
    mu.json("generate", f"--input={o}", f"--output={tmp_path / 'A'}", f"--receipt={tmp_path / 'R.json'}")
    receipt = json.loads((tmp_path / "R.json").read_text())
    store = Store(tmp_path / "store")
    deployed = Runtime(store, "test").deploy((tmp_path / "A").absolute(), receipt["receipt_hash"])
    assert deployed.ok, deployed.reason
    return SimpleNamespace(o=o, a=tmp_path / "A", receipt=receipt, store=store, deployment=deployed.receipt)


def test_receipt_show_by_hash_prints_the_verified_receipt(mu: Run, line: SimpleNamespace) -> None:
    h = line.receipt["receipt_hash"]
    assert mu.json("receipt", "show", h) == line.receipt
    code, out, _ = mu("receipt", "show", h)
    assert code == 0 and f"generation receipt {h}" in out
    assert line.receipt["inputs"]["ontology_hash"] in out and "hash holds; signed by" in out
    dep = mu.json("receipt", "show", line.deployment["receipt_hash"])
    assert dep["kind"] == "deployment" and dep["env"] == "test"


def test_receipt_export_by_hash_writes_the_receipt(mu: Run, line: SimpleNamespace, tmp_path: Path) -> None:
    h = line.receipt["receipt_hash"]
    doc = mu.json("receipt", "export", h, f"--output={tmp_path / 'R_out.json'}")
    assert doc["format"] == "json" and doc["receipt_hash"] == h and doc["source"] == "ledger"
    assert json.loads((tmp_path / "R_out.json").read_text()) == line.receipt
    pub = tmp_path / "store" / "keys" / "operator.pub"
    assert mu("verify-receipt", f"--receipt={tmp_path / 'R_out.json'}", f"--public-key={pub}")[0] == 0
    code, out, _ = mu("receipt", "export", h)  # stdout
    assert code == 0 and json.loads(out) == line.receipt
    envelope = mu.json("receipt", "export", "--format=dsse", h, f"--output={tmp_path / 'R.dsse.json'}")
    assert envelope["format"] == "dsse" and envelope["receipt_hash"] == h


def test_unknown_hash_and_bare_hex_are_named(mu: Run, line: SimpleNamespace, tmp_path: Path) -> None:
    missing = "sha256:" + "ab" * 32
    code, _, err = mu("receipt", "show", missing)
    assert code == 2 and "no receipt" in err and missing in err
    onto = line.receipt["inputs"]["ontology_hash"]
    code, _, err = mu("receipt", "show", onto)
    assert code == 2 and "is hash(O) of generation receipt" in err and "snapshot export" in err
    code, _, err = mu("receipt", "export", onto.removeprefix("sha256:"), f"--output={tmp_path / 'x.json'}")
    assert code == 2 and "sha256:<64 lowercase hex>" in err
    assert not (tmp_path / "x.json").exists()


def test_a_receipt_not_signed_by_a_trusted_key_is_refused(
    mu: Run, line: SimpleNamespace, tmp_path: Path
) -> None:
    generate_keypair(tmp_path / "stranger")
    forged = seal({k: v for k, v in line.receipt.items()}, load_private_key(tmp_path / "stranger.key"))
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    code, _, err = mu("receipt", "export", tmp_path / "forged.json", f"--output={tmp_path / 'out.json'}")
    assert code == 1 and "not signed by a key this store trusts" in err
    assert not (tmp_path / "out.json").exists()
    altered = dict(line.receipt, time="2001-01-01T00:00:00Z")
    (tmp_path / "altered.json").write_text(json.dumps(altered))
    code, _, err = mu("receipt", "show", tmp_path / "altered.json")
    assert code == 1 and "receipt_hash" in err
    with pytest.raises(CheckFailed):
        verify_trusted(line.store, altered)


def test_snapshot_export_writes_o_that_hashes_back(mu: Run, line: SimpleNamespace, tmp_path: Path) -> None:
    onto = line.receipt["inputs"]["ontology_hash"]
    doc = mu.json("snapshot", "export", onto, f"--output={tmp_path / 'O_snap'}")
    assert doc["verified"] is True and doc["files"] == ["ontology.nq"]
    assert mu("hash", tmp_path / "O_snap")[1].strip() == onto == load_ontology(line.o).hash
    # the exported O regenerates the receipted A
    replay = mu.json(
        "replay", f"--receipt={line.receipt['receipt_hash']}", f"--ontology={tmp_path / 'O_snap'}"
    )
    assert replay["match"] is True
    # refusals: an existing directory, a receipt hash instead of hash(O), no such snapshot
    code, _, err = mu("snapshot", "export", onto, f"--output={tmp_path / 'O_snap'}")
    assert code == 2 and "not an empty directory" in err
    code, _, err = mu("snapshot", "export", line.receipt["receipt_hash"], f"--output={tmp_path / 'x'}")
    assert code == 2 and f"its hash(O) is {onto}" in err and not (tmp_path / "x").exists()
    code, _, err = mu("snapshot", "export", "policy", f"--output={tmp_path / 'x'}")
    assert code == 2 and "not a hash(O)" in err


def test_snapshot_export_checks_the_hash_before_the_directory_appears(
    line: SimpleNamespace, tmp_path: Path
) -> None:
    onto = line.receipt["inputs"]["ontology_hash"]
    obj = line.store.objects_dir / "ontology" / onto.removeprefix("sha256:")
    obj.write_bytes(obj.read_bytes() + b"<https://x/s> <https://x/p> <https://x/o> .\n")
    with pytest.raises(CheckFailed) as e:
        export_snapshot(line.store, onto, tmp_path / "O_bad")
    assert e.value.code == "store.object_corrupt" and not (tmp_path / "O_bad").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_replay_takes_a_hash_and_follows_a_deployment_receipt(
    mu: Run, line: SimpleNamespace, tmp_path: Path
) -> None:
    out = mu.json("replay", f"--receipt={line.receipt['receipt_hash']}")
    assert (
        out["match"] is True and out["replay_of"] == line.receipt["receipt_hash"] and out["followed"] is None
    )
    dep = line.deployment["receipt_hash"]
    out = mu.json("replay", f"--receipt={dep}")
    assert out["match"] is True and out["replay_of"] == line.receipt["receipt_hash"]
    assert dep in out["followed"] and line.receipt["receipt_hash"] in out["followed"]
    code, text, _ = mu("replay", f"--receipt={dep}")
    assert code == 0 and "deployed the A of generation receipt" in text
    # signed by an auditor, the replay receipt of a hash goes next to the working directory
    generate_keypair(tmp_path / "auditor")
    signed = mu.json("replay", f"--receipt={dep}", f"--sign-as={tmp_path / 'auditor.key'}")
    assert Path(signed["replay_receipt"]).is_file()


def test_a_deployment_receipt_whose_generation_is_unknown_is_refused_by_name(
    mu: Run, line: SimpleNamespace, tmp_path: Path
) -> None:
    (tmp_path / "D.json").write_text(json.dumps(line.deployment))
    other = Store(tmp_path / "other")
    other.init()
    code, out, err = mu("replay", f"--receipt={tmp_path / 'D.json'}", f"--home={other.home}", "--json")
    assert code == 1 and line.receipt["receipt_hash"] in err
    assert json.loads(out)["refused"]["code"] == "receipt.no_generation"
    with pytest.raises(CheckFailed, match="not in the ledger"):
        generation_behind(other, line.deployment)
    assert generation_behind(line.store, line.receipt) is None


def test_find_receipt_reads_files_and_hashes(line: SimpleNamespace, tmp_path: Path) -> None:
    assert find_receipt(line.store, line.receipt["receipt_hash"]).source == "ledger"
    assert find_receipt(line.store, str(tmp_path / "R.json")).receipt == line.receipt
    with pytest.raises(InputError):
        find_receipt(line.store, str(tmp_path / "absent.json"))


def test_rollback_finds_its_receipt_the_same_way(line: SimpleNamespace, tmp_path: Path) -> None:
    from finops_fabric.commands.rollback import _generation_receipt

    gen = line.receipt["receipt_hash"]
    assert _generation_receipt(line.store, gen)["receipt_hash"] == gen
    assert _generation_receipt(line.store, line.deployment["receipt_hash"])["receipt_hash"] == gen
    assert _generation_receipt(line.store, str(tmp_path / "R.json"))["receipt_hash"] == gen
    with pytest.raises(InputError, match="no receipt"):
        _generation_receipt(line.store, "sha256:" + "cd" * 32)
