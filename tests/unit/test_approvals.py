"""Approvals (job 4): the compliance roster, `mu approve`, overrides through `mu generate
--approval`, forged approvals, production deploys that need an approved O, and the audit trail."""

from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from harness import Run, copy_example

from finops_fabric import approvals as ap
from finops_fabric.daemon.runtime import Runtime
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.keys import load_private_key, load_public_key
from finops_fabric.pipeline import load_ontology
from finops_fabric.receipts import seal
from finops_fabric.store import Store

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SOD_ROLE = (
    "@prefix fab: <https://w3id.org/finops-fabric/ns#> . @prefix ex: <https://example.com/acme/policy#> .\n"
    "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
    'ex:superuser a fab:Role ; rdfs:label "Super user" ;\n'
    "    fab:canApprove ex:wire ; fab:canExecute ex:wire .\n"
)


def keys(mu: Run, *names: str) -> None:
    for name in names:
        assert mu("keygen", f"--out={name}")[0] == 0


def home(tmp_path: Path) -> Path:
    return tmp_path / "store"


def roster_of_alice(mu: Run) -> None:
    keys(mu, "alice", "bob", "eve")
    assert mu("roster", "init", "--member=alice=alice.pub", "--key=alice.key")[0] == 0


def sod_policy(tmp_path: Path) -> Path:
    o = copy_example(tmp_path, "O_sod")
    (o / "zz-role.ttl").write_text(SOD_ROLE)
    return o


def approve(mu: Run, o: Path, key: str, *more: str) -> dict[str, Any]:
    out: dict[str, Any] = mu.json("approve", f"--ontology={o}", f"--key={key}", *more)
    return out


def doc(path: str | Path) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(Path(path).read_text())
    return got


# --- the roster ---------------------------------------------------------------------------------


def test_roster_init_show_add_remove(mu: Run, tmp_path: Path) -> None:
    roster_of_alice(mu)
    alice = ap.member_of("alice", load_public_key("alice.pub"))
    shown = mu.json("roster", "show")
    assert shown["version"] == 1 and shown["members"] == [{"name": "alice", "keyid": alice.keyid}]
    added = mu.json("roster", "add", "--name=bob", "--public-key=bob.pub", "--key=alice.key")
    assert added["version"] == 2 and [m["name"] for m in added["members"]] == ["alice", "bob"]
    assert added["change"]["action"] == "add"
    removed = mu.json("roster", "remove", f"--keyid={alice.keyid}", "--key=bob.key")
    assert removed["version"] == 3 and [m["name"] for m in removed["members"]] == ["bob"]
    # a removed member can no longer change the roster, and the last member cannot leave
    code, _, err = mu("roster", "add", "--name=alice", "--public-key=alice.pub", "--key=alice.key")
    assert code == 1 and "not on the compliance roster" in err
    bob = ap.load_roster(home(tmp_path)).members[0]
    code, _, err = mu("roster", "remove", f"--keyid={bob.keyid}", "--key=bob.key")
    assert code == 1 and "may not be empty" in err
    assert len(mu.json("roster", "show")["versions"]) == 3
    code, _, err = mu("roster", "init", "--member=eve=eve.pub", "--key=eve.key")
    assert code == 1 and "already has a compliance roster" in err


def test_roster_changes_need_a_member(mu: Run, tmp_path: Path) -> None:
    keys(mu, "alice", "eve")
    code, _, err = mu("roster", "init", "--member=alice=alice.pub", "--key=eve.key")
    assert code == 1 and "not on the compliance roster" in err
    code, _, err = mu("roster", "show")
    assert code == 2 and "no compliance roster" in err
    assert mu("roster", "init", "--member=alice=alice.pub", "--key=alice.key")[0] == 0
    code, _, err = mu("roster", "add", "--name=eve", "--public-key=eve.pub", "--key=eve.key")
    assert code == 1 and "not on the compliance roster" in err
    assert ap.load_roster(home(tmp_path)).version == 1
    assert mu("roster", "init", "--member=alice", "--key=alice.key")[0] == 2  # no key file named


def test_a_roster_version_signed_by_a_non_member_breaks_the_chain(mu: Run, tmp_path: Path) -> None:
    roster_of_alice(mu)
    store = Store(home(tmp_path))
    eve = ap.member_of("eve", load_public_key("eve.pub"))
    current = ap.load_roster(store.home)
    # written straight into the ledger, past every check of `mu roster add`
    store.append(
        {
            "kind": ap.ROSTER_KIND,
            "roster": {"version": 2, "members": [eve.to_dict()]},
            "previous_roster_hash": current.receipt_hash,
            "change": {"action": "add", "name": "eve", "keyid": eve.keyid},
            "signer": {"keyid": eve.keyid, "name": "eve"},
        },
        load_private_key("eve.key"),
    )
    with pytest.raises(CheckFailed, match="not one of version 1") as exc:
        ap.load_roster(store.home)
    assert exc.value.code == "roster.broken"
    code, _, err = mu("roster", "show")
    assert code == 1 and "only a roster member may change the roster" in err
    code, _, _ = mu("approve", f"--ontology={copy_example(tmp_path)}", "--key=eve.key")
    assert code == 1


# --- mu approve ---------------------------------------------------------------------------------


def test_approve_signs_hash_o_and_records_it(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    code, _, err = mu("approve", f"--ontology={o}", "--key=missing.key")
    assert code == 2
    keys(mu, "alice", "eve")
    code, _, err = mu("approve", f"--ontology={o}", "--key=alice.key")
    assert code == 2 and "no compliance roster" in err
    assert mu("roster", "init", "--member=alice=alice.pub", "--key=alice.key")[0] == 0
    got = approve(mu, o, "alice.key")
    oh = load_ontology(o).hash
    assert got["ontology_hash"] == oh and got["override"] is None and got["signer"] == "alice"
    assert Path(got["file"]) == tmp_path / ap.approval_file_name(oh)
    assert got["file"].endswith(ap.APPROVAL_SUFFIX)
    written = doc(got["file"])
    assert written["kind"] == "approval" and written["receipt_hash"] == got["approval_hash"]
    stored = ap.stored_approvals(home(tmp_path))
    assert [d["receipt_hash"] for d in stored] == [got["approval_hash"]]
    roster = ap.load_roster(home(tmp_path))
    assert ap.verify_approval(written, roster, ontology_hash=oh) == ap.Approval(
        oh, None, roster.members[0].keyid, "alice", got["approval_hash"]
    )
    assert mu("verify-receipt", f"--receipt={got['file']}", "--public-key=alice.pub")[0] == 0
    override = approve(mu, o, "alice.key", "--override=sod", f"--output={tmp_path / 'x.approval.json'}")
    assert override["override"] == "sod" and (tmp_path / "x.approval.json").is_file()
    code, _, err = mu("approve", f"--ontology={o}", "--key=alice.key", "--override=nope")
    assert code == 2 and "sod, levels, golden, satisfiable" in err
    code, _, err = mu("approve", f"--ontology={o}", "--key=eve.key")
    assert code == 1 and "not on the compliance roster" in err
    assert len(ap.stored_approvals(home(tmp_path))) == 2
    # an unwritable --output is refused before the ledger records anything
    code, _, err = mu(
        "approve", f"--ontology={o}", "--key=alice.key", f"--output={tmp_path / 'no' / 'x.json'}"
    )
    assert code == 2 and "nothing was approved" in err
    code, _, err = mu("approve", f"--ontology={o}", "--key=alice.key", f"--output={tmp_path}")
    assert code == 2 and "is a directory" in err
    assert len(ap.stored_approvals(home(tmp_path))) == 2


def test_verify_approval_names_each_problem(mu: Run, tmp_path: Path) -> None:
    roster_of_alice(mu)
    h = home(tmp_path)
    good = ap.approve(h, "sha256:" + "a" * 64, load_private_key("alice.key"), override="sod")
    roster = ap.load_roster(h)
    assert ap.verify_approval(good, roster, override="sod").override == "sod"

    def code_of(d: dict[str, Any], **kw: Any) -> str:
        with pytest.raises(CheckFailed) as exc:
            ap.verify_approval(d, roster, **kw)
        return exc.value.code

    assert code_of(good) == "approval.override"  # an override is not an approval of O
    assert code_of(good, override="levels") == "approval.override"
    assert code_of(good, override="sod", ontology_hash="sha256:" + "b" * 64) == "approval.ontology"
    tampered = {**good, "override": "levels"}
    assert code_of(tampered, override="levels") == "approval.hash"
    bad_sig = {**good, "signatures": [{**good["signatures"][0], "sig": base64.b64encode(b"x" * 64).decode()}]}
    assert code_of(bad_sig, override="sod") == "approval.signature"
    body = {k: v for k, v in good.items() if k not in ("receipt_hash", "signatures")}
    eve = ap.member_of("eve", load_public_key("eve.pub"))
    forged = seal({**body, "signer": {"keyid": eve.keyid, "name": "alice"}}, load_private_key("eve.key"))
    assert code_of(forged, override="sod") == "approval.signer"
    assert code_of({**good, "kind": "generation"}) == "approval.schema"
    assert code_of({"kind": "approval"}) == "approval.schema"


# --- mu generate --approval ---------------------------------------------------------------------


def test_an_override_lets_sod_through_and_the_receipt_says_so(mu: Run, tmp_path: Path) -> None:
    roster_of_alice(mu)
    o = sod_policy(tmp_path)
    a = tmp_path / "A"
    # without an approval the line stops exactly as before
    out = mu.json("generate", f"--input={o}", f"--output={a}", f"--receipt={tmp_path / 'r0.json'}", code=1)
    assert out["status"] == "rejected" and out["compliance_override_required"] is True
    assert not a.exists()
    # an approval of O itself, or an override of another invariant, is not an override of sod
    plain = approve(mu, o, "alice.key")["file"]
    levels = approve(mu, o, "alice.key", "--override=levels")["file"]
    for given in ([plain], [levels], [plain, levels]):
        flags = [f"--approval={f}" for f in given]
        out = mu.json("generate", f"--input={o}", f"--output={a}", *flags, code=1)
        assert out["status"] == "rejected" and out["compliance_override_required"] is True
        assert not a.exists()
    assert "covers only: levels" in out["reason"]
    # the override for sod, signed by a roster member, for exactly this O
    sod = approve(mu, o, "alice.key", "--override=sod")
    out = mu.json(
        "generate",
        f"--input={o}",
        f"--output={a}",
        f"--approval={sod['file']}",
        f"--approval={plain}",
        f"--receipt={tmp_path / 'r.json'}",
    )
    assert out["status"] == "generated" and a.is_dir()
    alice = ap.load_roster(home(tmp_path)).members[0]
    assert out["overrides"] == [
        {"invariant": "sod", "approval_hash": sod["approval_hash"], "keyid": alice.keyid, "signer": "alice"}
    ]
    r = doc(tmp_path / "r.json")
    assert r["gates"]["invariant"]["status"] == "PASS"
    assert r["gates"]["invariant"]["evidence"]["overridden"] == ["sod"]
    assert r["gates"]["invariant"]["evidence"]["override_approvals"] == [sod["approval_hash"]]
    (rec,) = r["overrides"]
    assert rec["invariant"] == "sod" and rec["keyid"] == alice.keyid
    assert rec["approval"]["receipt_hash"] == sod["approval_hash"]  # the signed evidence itself
    assert [x["approval_hash"] for x in r["approvals"]] == [doc(plain)["receipt_hash"]]
    assert any(f["invariant"] == "sod" for f in r["findings"])  # the violation is still named
    code, human, _ = mu("generate", f"--input={o}", f"--output={a}", f"--approval={sod['file']}")
    assert code == 0 and "compliance override: sod let through, signed by alice" in human


def test_forged_approvals_let_nothing_through(mu: Run, tmp_path: Path) -> None:
    roster_of_alice(mu)
    h = home(tmp_path)
    o = sod_policy(tmp_path)
    a = tmp_path / "A"
    sod = approve(mu, o, "alice.key", "--override=sod")
    good = doc(sod["file"])

    def refused(name: str, d: dict[str, Any], words: str) -> None:
        path = tmp_path / f"{name}.approval.json"
        path.write_text(json.dumps(d))
        before = len(Store(h).receipts())
        code, _, err = mu("generate", f"--input={o}", f"--output={a}", f"--approval={path}")
        assert code == 1 and words in err and str(path) in err, (name, err)
        assert not a.exists() and len(Store(h).receipts()) == before

    body = {k: v for k, v in good.items() if k not in ("receipt_hash", "signatures")}
    eve = ap.member_of("eve", load_public_key("eve.pub"))
    refused(
        "eve",
        seal({**body, "signer": {"keyid": eve.keyid, "name": "eve"}}, load_private_key("eve.key")),
        "not on the compliance roster",
    )
    sig = base64.b64decode(good["signatures"][0]["sig"])
    flipped = base64.b64encode(bytes([sig[0] ^ 1]) + sig[1:]).decode()
    refused("badsig", {**good, "signatures": [{**good["signatures"][0], "sig": flipped}]}, "does not verify")
    refused("edited", {**good, "override": "levels"}, "changed after it was signed")
    other = approve(mu, copy_example(tmp_path), "alice.key", "--override=sod")
    refused("otherhash", doc(other["file"]), "not for this O")
    # an approver removed from the roster: their approvals no longer count
    assert mu("roster", "add", "--name=bob", "--public-key=bob.pub", "--key=alice.key")[0] == 0
    by_bob = approve(mu, o, "bob.key", "--override=sod")
    bob = ap.load_roster(h).members[1]
    assert mu("roster", "remove", f"--keyid={bob.keyid}", "--key=alice.key")[0] == 0
    refused("removed", doc(by_bob["file"]), "not on the compliance roster")
    (tmp_path / "junk.approval.json").write_text("{not json")
    assert (
        mu("generate", f"--input={o}", f"--output={a}", f"--approval={tmp_path / 'junk.approval.json'}")[0]
        == 2
    )


def test_audit_trail_verifies_roster_and_approval_receipts(mu: Run, tmp_path: Path) -> None:
    roster_of_alice(mu)
    assert mu("roster", "add", "--name=bob", "--public-key=bob.pub", "--key=alice.key")[0] == 0
    o = sod_policy(tmp_path)
    assert mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}")[0] == 1
    sod = approve(mu, o, "bob.key", "--override=sod")
    assert mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}", f"--approval={sod['file']}")[0] == 0
    approve(mu, o, "alice.key")
    trail = mu.json("audit-trail")
    kinds = [c["kind"] for c in trail["chain"]]
    assert kinds == ["roster", "roster", "rejection", "approval", "generation", "approval"]
    assert trail["verified"] is True and trail["gaps"] == []
    generated = next(t for t in trail["transitions"] if t["kind"] == "generation")
    assert generated["valid"] and any("compliance override for: sod" in n for n in generated["notes"])


# --- production deploys ---------------------------------------------------------------------------


def test_production_refuses_an_unapproved_o(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    a = tmp_path / "A"
    gen = mu.json("generate", f"--input={o}", f"--output={a}")
    store = Store(home(tmp_path))
    receipt_hash = gen["receipt_hash"]
    # no roster at all: nothing can be approved, so production refuses
    code, _, err = mu("deploy", "--target=production", f"--enforcer={a}", "--wait=0")
    assert code == 1 and "no roster" in err
    roster_of_alice(mu)
    code, _, err = mu("deploy", "--target=production", f"--enforcer={a}", "--wait=0", "--json")
    assert code == 1 and "has no approval by a member of the compliance roster" in err
    # the daemon refuses too, whoever asks it: nothing is receipted and nothing changes
    prod = Runtime(store, "production")
    before = len(store.receipts())
    with pytest.raises(CheckFailed) as exc:
        prod.deploy(a, receipt_hash)
    assert exc.value.code == "deploy.unapproved" and prod.active is None
    assert len(store.receipts()) == before
    # an override or an approval signed by a non-member is not an approval of O
    approve(mu, o, "alice.key", "--override=sod")
    with pytest.raises(CheckFailed, match="override of invariant 'sod'"):
        prod.deploy(a, receipt_hash)
    # test deploys do not need an approval
    assert Runtime(store, "test").deploy(a, receipt_hash).ok
    approve(mu, o, "alice.key")
    result = prod.deploy(a, receipt_hash)
    assert result.ok and prod.active is not None and prod.active.hash == gen["enforcer_hash"]
    # the CLI's own check passes now: it goes on to look for the daemon (none runs here)
    code, _, err = mu("deploy", "--target=production", f"--enforcer={a}", "--wait=0")
    assert code == 2 and "no production daemon is running" in err


def test_production_daemon_refuses_unapproved_and_keeps_serving(mu: Run, tmp_path: Path) -> None:
    from finops_fabric.daemon.app import create_app

    roster_of_alice(mu)
    o1, o2 = copy_example(tmp_path, "O1"), copy_example(tmp_path, "O2")
    (o2 / "wires.ttl").write_text((o2 / "wires.ttl").read_text().replace('"1000000"', '"2000000"'))
    g1 = mu.json("generate", f"--input={o1}", f"--output={tmp_path / 'A1'}")
    g2 = mu.json("generate", f"--input={o2}", f"--output={tmp_path / 'A2'}")
    approve(mu, o1, "alice.key")
    store = Store(home(tmp_path))
    app = create_app(store, "production", dev=True)

    def post(path: Path, receipt_hash: str) -> Any:
        body = {"enforcer": str(path), "generation_receipt_hash": receipt_hash, "now": True}
        return client.post("/v1/deployments", content=json.dumps(body))

    with TestClient(app) as client:
        assert post(tmp_path / "A1", g1["receipt_hash"]).status_code == 200
        before = len(store.receipts())
        r = post(tmp_path / "A2", g2["receipt_hash"])
        assert r.status_code == 422 and r.json()["error"]["code"] == "deploy.unapproved"
        assert len(store.receipts()) == before
        served = client.get("/v1/deployment").json()
        assert served["enforcer_hash"] == g1["enforcer_hash"]


def test_load_roster_without_a_roster_is_input_error(mu: Run, tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        ap.load_roster(home(tmp_path))
    assert exc.value.code == "approvals.no_roster"
    assert ap.stored_approvals(home(tmp_path)) == []
