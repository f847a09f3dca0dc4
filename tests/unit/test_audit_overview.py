"""What the audit trail tells an auditor first: receipts counted by what they record (a rejection
is an attempt, an attestation of what runs is not a deployment), each card labelled with its
environment or its approver's roster name, and what each environment runs since when."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from harness import Run, changed_example, copy_example

from finops_fabric.daemon.runtime import Runtime
from finops_fabric.report import SECTIONS, render_html
from finops_fabric.store import Store


@pytest.fixture
def deployed(mu: Run, tmp_path: Path) -> SimpleNamespace:
    """alice's roster; O0 generated and approved, deployed to test and production; O1 generated
    and deployed to test; a tampered A1 refused by test; test rolled back to A0; an attestation
    of what production runs; a rejected attempt (11 receipts)."""
    store = Store(tmp_path / "store")
    assert mu("keygen", "--out=alice")[0] == 0
    assert mu("roster", "init", "--member=alice=alice.pub", "--key=alice.key")[0] == 0
    o0, o1 = copy_example(tmp_path, "O0"), changed_example(tmp_path, "O1")
    g0 = mu.json("generate", f"--input={o0}", f"--output={tmp_path / 'A0'}")
    mu.json("approve", f"--ontology={o0}", "--key=alice.key")
    test, prod = Runtime(store, "test"), Runtime(store, "production")
    assert test.deploy(tmp_path / "A0", g0["receipt_hash"]).ok
    assert prod.deploy(tmp_path / "A0", g0["receipt_hash"]).ok
    g1 = mu.json("generate", f"--input={o1}", f"--output={tmp_path / 'A1'}")
    assert test.deploy(tmp_path / "A1", g1["receipt_hash"]).ok
    shutil.copytree(tmp_path / "A1", tmp_path / "A1-tampered")
    (tmp_path / "A1-tampered" / "golden.json").write_text("[]")
    assert not test.deploy(tmp_path / "A1-tampered", g1["receipt_hash"]).ok
    assert test.deploy(tmp_path / "A0", g0["receipt_hash"], kind="rollback").ok
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    mu.json("receipt", "--deployment=production", f"--timestamp={later}")
    bad = copy_example(tmp_path, "bad")
    (bad / "wires.ttl").write_text((bad / "wires.ttl").read_text().replace("fab:appliesTo", "fab:apliesTo"))
    assert mu("generate", f"--input={bad}", f"--output={tmp_path / 'A2'}")[0] == 1
    o0_hash = mu("hash", o0)[1].strip()
    return SimpleNamespace(g0=g0, g1=g1, o0_hash=o0_hash, home=tmp_path / "store")


def audit(mu: Run) -> dict[str, Any]:
    doc: dict[str, Any] = mu.json("audit-trail")
    return doc


def test_receipts_are_counted_by_what_they_record(mu: Run, deployed: SimpleNamespace) -> None:
    doc = audit(mu)
    assert doc["verified"] is True and doc["changes"] == 2
    assert doc["by_kind"] == {
        "approval": 1,
        "attestation": 1,
        "deployment": 3,
        "failed_deployment": 1,
        "generation": 2,
        "rejection": 1,
        "rollback": 1,
        "roster": 1,
    }
    assert doc["summary"] == (
        "2 policy changes (generations), 1 rejected attempt, 3 deployments, 1 failed deployment, "
        "1 rollback, 1 attestation, 1 approval, 1 roster version, 11 receipts, all verified"
    )


def test_each_card_is_labelled_with_its_environment_or_approver(mu: Run, deployed: SimpleNamespace) -> None:
    chain = audit(mu)["chain"]
    assert [c["label"] for c in chain] == [
        "roster version",
        "policy change",
        "approval",
        "deployment",
        "deployment",
        "policy change",
        "deployment",
        "failed deployment",
        "rollback",
        "attestation",
        "rejected attempt",
    ]
    assert [c.get("env") for c in chain if "env" in c] == [
        "test",
        "production",
        "test",
        "test",
        "test",
        "production",
    ]
    approval = chain[2]["approver"]
    assert approval["name"] == "alice" and approval["verified"] and approval["roster_version"] == 1
    assert approval["ontology_hash"] == deployed.o0_hash and approval["override"] is None
    assert chain[7]["reason"].startswith("verify failed")
    assert chain[9]["runs"] == deployed.g0["enforcer_hash"] and chain[9]["as_of"]


def test_what_each_environment_runs_and_who_approved_it(mu: Run, deployed: SimpleNamespace) -> None:
    envs = {e["env"]: e for e in audit(mu)["environments"]}
    assert set(envs) == {"production", "test"}
    prod, test = envs["production"], envs["test"]
    assert prod["enforcer_hash"] == deployed.g0["enforcer_hash"] and prod["approved_by"] == ["alice"]
    assert prod["by"] == "deployment" and prod["seq"] == 5
    assert test["enforcer_hash"] == deployed.g0["enforcer_hash"] and test["by"] == "rollback"
    code, out, _ = mu("audit-trail")
    assert code == 0
    assert f"production runs A {deployed.g0['enforcer_hash'][:15]}… (O " in out
    assert ", approved by alice) since " in out and "(deployment seq 5)" in out
    assert "attests that production runs A" in out and "alice approved O" in out
    assert "test: not switched (verify failed" in out


def test_the_report_shows_environments_attestations_and_approvers(mu: Run, deployed: SimpleNamespace) -> None:
    page = render_html(audit(mu))
    assert "<strong>production</strong> runs A" in page and "approved by alice" in page
    assert 'class="kind attestation">attestation<' in page and "nothing was deployed" in page
    assert 'class="kind rejection">rejected attempt<' in page
    assert "Environment <strong>test</strong> now runs A" in page
    assert "Approved by <strong>alice</strong>" in page
    assert "receipts by kind</dt><dd>approval: 1, attestation: 1, deployment: 3, failed deployment: 1" in page


def test_a_section_is_one_more_function() -> None:
    page = render_html({"summary": "s"}, [*SECTIONS, lambda doc: "<h2>Impact</h2>"])
    assert page.index("<h2>The chain</h2>") < page.index("<h2>Impact</h2>")
