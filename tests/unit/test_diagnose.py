"""Diagnosis (job 3.1): from a receipt, a transaction and what production observed, name the culprit
(tampering, drift, generator, runtime, configuration, or no failure) with every check as evidence,
and keep a signed diagnosis receipt in the ledger without breaking the audit trail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from harness import EX, Run, changed_example, copy_example, write_tx

from finops_fabric import pipeline
from finops_fabric.canonical import canonical_json, sha256_hex
from finops_fabric.daemon import decision_log
from finops_fabric.daemon.runtime import Runtime
from finops_fabric.diagnosis import CHECKS, ESCALATE_TO, Case, diagnose, transaction_hash
from finops_fabric.errors import InputError
from finops_fabric.generators.v3 import emit
from finops_fabric.golden import GoldenReport, run_golden_gate
from finops_fabric.keys import generate_keypair, load_private_key
from finops_fabric.receipts import load_receipt, seal, verify_receipt
from finops_fabric.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def line(mu: Run, tmp_path: Path) -> SimpleNamespace:
    """The example O generated into A with its receipt R.json, and a $105k purchase by L2."""
    o = copy_example(tmp_path)
    mu.json("generate", f"--input={o}", f"--output={tmp_path / 'A'}", f"--receipt={tmp_path / 'R.json'}")
    return SimpleNamespace(
        o=o,
        a=tmp_path / "A",
        r=tmp_path / "R.json",
        receipt=json.loads((tmp_path / "R.json").read_text()),
        tx=write_tx(tmp_path / "bad105.json"),
    )


def run_diagnose(mu: Run, line: SimpleNamespace, *args: object, code: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = mu.json(
        "diagnose", f"--receipt={line.r}", f"--transaction={line.tx}", *args, code=code
    )
    return out


def results(out: dict[str, Any]) -> dict[str, str]:
    assert [e["check"] for e in out["evidence"]] == list(CHECKS)
    return {e["check"]: e["result"] for e in out["evidence"]}


def evidence(out: dict[str, Any], check: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in out["evidence"] if e["check"] == check)
    return found


def fired(decision: dict[str, Any]) -> list[str]:
    return [f["rule"] for f in decision["fired"]]


def artifact_of(a: Path, rule: str) -> Path:
    manifest = json.loads((a / "manifest.json").read_text())
    return a / str(next(x["path"] for x in manifest["artifacts"] if x.get("rule") == rule))


def audit_verified(mu: Run) -> dict[str, Any]:
    out: dict[str, Any] = mu.json("audit-trail")
    assert out["verified"] is True and out["gaps"] == [], out
    return out


# --- runtime: A and O are right, production is not ---------------------------------------------


def test_runtime_when_a_and_o_agree_and_production_did_otherwise(
    mu: Run, line: SimpleNamespace, store: Store
) -> None:
    out = run_diagnose(mu, line, f"--ontology={line.o}", f"--enforcer={line.a}", "--observed=APPROVE")
    assert out["verdict"] == "runtime" and out["escalate_to"] == "operations/infrastructure"
    assert results(out) == {
        "receipt": "pass",
        "drift": "pass",
        "tampering": "pass",
        "replay": "pass",
        "differential": "pass",
        "production": "fail",
    }
    d = out["decision"]
    assert d["agreed"] == "REJECT" and d["observed"] == "APPROVE"
    for key in ("replayed_enforcer", "interpreter", "production_enforcer"):
        assert d[key]["decision"] == "REJECT" and fired(d[key]) == [EX + "approval-purchase"], key
    assert d["replayed_enforcer"]["enforcer_hash"] == line.receipt["outputs"]["enforcer_hash"]
    assert out["generation_receipt_hash"] == line.receipt["receipt_hash"]
    assert "Operations is cleared" not in out["summary"]
    # the diagnosis receipt: in the ledger, signed by the operator, and the trail still verifies
    mine = store.latest("diagnosis")
    assert mine is not None and mine["receipt_hash"] == out["receipt_hash"]
    verify_receipt(mine, store.operator_public_key())
    assert mine["kind"] == "diagnosis" and mine["verdict"] == "runtime"
    assert mine["inputs"]["generation_receipt_hash"] == line.receipt["receipt_hash"]
    assert mine["inputs"]["ontology_hash"] == line.receipt["inputs"]["ontology_hash"]
    assert mine["inputs"]["observed"] == "APPROVE"
    assert mine["inputs"]["transaction_hash"] == transaction_hash(json.loads(line.tx.read_text()))
    assert mine["outputs"]["evidence"] == out["evidence"] and mine["outputs"]["verdict"] == "runtime"
    assert mine["previous_receipt_hash"] == line.receipt["receipt_hash"]
    trail = audit_verified(mu)
    assert trail["receipts"] == 2


def test_human_output_names_verdict_team_and_every_check(mu: Run, line: SimpleNamespace) -> None:
    code, text, _ = mu(
        "diagnose",
        f"--receipt={line.r}",
        f"--transaction={line.tx}",
        "--observed=APPROVE",
        f"--ontology={line.o}",
    )
    assert code == 0
    assert text.startswith("Verdict: runtime; escalate to operations/infrastructure.")
    for check in CHECKS:
        assert f"] {check}:" in text
    assert "[skipped] tampering" in text and "diagnosis receipt sha256:" in text


def test_out_receipt_writes_the_same_receipt(
    mu: Run, line: SimpleNamespace, store: Store, tmp_path: Path
) -> None:
    out = run_diagnose(mu, line, "--observed=APPROVE", f"--out-receipt={tmp_path / 'D.json'}")
    written = load_receipt(tmp_path / "D.json")
    assert written == store.latest("diagnosis") and written["receipt_hash"] == out["receipt_hash"]
    pub = store.operator_public_key_path
    assert mu("verify-receipt", f"--receipt={tmp_path / 'D.json'}", f"--public-key={pub}")[0] == 0


# --- configuration and no failure: O itself decides as observed ---------------------------------


def test_configuration_when_o_itself_decides_as_observed(
    mu: Run, line: SimpleNamespace, tmp_path: Path
) -> None:
    # $95k by L2: O approves it (the rule is "over $100k needs L3"); the reporter expected a rejection
    line.tx = write_tx(tmp_path / "tx95.json", amount="95000")
    out = run_diagnose(mu, line, f"--enforcer={line.a}", "--observed=APPROVE", "--expected=REJECT")
    assert out["verdict"] == "configuration" and out["escalate_to"] == "compliance (owners of O)"
    assert results(out)["production"] == "pass" and results(out)["differential"] == "pass"
    assert out["decision"]["agreed"] == "APPROVE" and fired(out["decision"]["interpreter"]) == []
    assert "Operations is cleared" in out["summary"] and "compliance must fix O" in out["summary"]
    # without --expected the verdict is the same: production did what O says
    assert run_diagnose(mu, line, "--observed=APPROVE")["verdict"] == "configuration"


def test_no_failure_when_expected_equals_observed(mu: Run, line: SimpleNamespace) -> None:
    out = run_diagnose(mu, line, "--observed=REJECT", "--expected=REJECT")
    assert out["verdict"] == "no_failure" and out["escalate_to"] == "nobody"
    # production deviating from A and O is a runtime failure whatever was expected
    assert run_diagnose(mu, line, "--observed=APPROVE", "--expected=APPROVE")["verdict"] == "runtime"


# --- drift: O changed without a receipt ---------------------------------------------------------


def test_drift_when_o_now_is_not_the_receipted_o(mu: Run, line: SimpleNamespace, tmp_path: Path) -> None:
    o_now = changed_example(tmp_path)
    tx = write_tx(tmp_path / "wire.json", type="wire", amount="1500000", actor_level="L3")
    line.tx = tx
    out = run_diagnose(mu, line, f"--ontology={o_now}", f"--enforcer={line.a}", "--observed=APPROVE")
    assert out["verdict"] == "drift" and out["escalate_to"] == ESCALATE_TO["drift"]
    r = results(out)
    assert r["drift"] == "fail" and r["tampering"] == "pass" and r["replay"] == "pass"
    drift = evidence(out, "drift")
    assert [c["rule"] for c in drift["rules"]["changed"]] == [EX + "approval-wire-large"]
    assert "approval-wire-large" in drift["detail"] and "2000000" in drift["detail"]
    assert drift["older_receipt"] is None
    # what O now decides is evidence too: the changed threshold approves the $1.5M wire
    assert out["decision"]["ontology_now"]["decision"] == "APPROVE"
    assert out["decision"]["interpreter"]["decision"] == "REJECT"
    assert out["current_ontology_hash"] != out["ontology_hash"]
    assert "Operations is cleared" in out["summary"]


def test_drift_names_the_older_receipt_of_a_reverted_o(
    mu: Run, line: SimpleNamespace, tmp_path: Path
) -> None:
    o2 = changed_example(tmp_path)
    mu.json("generate", f"--input={o2}", f"--output={tmp_path / 'A2'}", f"--receipt={tmp_path / 'R2.json'}")
    line.r = tmp_path / "R2.json"
    out = run_diagnose(mu, line, f"--ontology={line.o}", "--observed=APPROVE")
    assert out["verdict"] == "drift"
    assert evidence(out, "drift")["older_receipt"] == line.receipt["receipt_hash"]


# --- tampering: production's A is not the receipted A --------------------------------------------


def test_tampering_names_the_edited_artifact_and_rule_and_never_runs_it(
    mu: Run, line: SimpleNamespace, tmp_path: Path
) -> None:
    prod = tmp_path / "A_prod"
    shutil.copytree(line.a, prod)
    mod = artifact_of(prod, EX + "approval-purchase")
    mod.write_text(mod.read_text().replace("100000", "1000000"))
    # drift at the same time: tampering still wins, and the drift is still reported
    out = run_diagnose(
        mu, line, f"--ontology={changed_example(tmp_path)}", f"--enforcer={prod}", "--observed=APPROVE"
    )
    assert out["verdict"] == "tampering" and out["escalate_to"] == "security"
    r = results(out)
    assert r["tampering"] == "fail" and r["drift"] == "fail" and r["replay"] == "pass"
    assert r["production"] == "fail"  # A and O still agree on REJECT
    t = evidence(out, "tampering")
    rel = mod.relative_to(prod).as_posix()
    assert [(p["artifact"], p["problem"], p.get("rule")) for p in t["problems"]] == [
        (rel, "edited", EX + "approval-purchase")
    ]
    assert (
        rel in t["detail"]
        and "approval-purchase" in t["detail"]
        and "hand edit" in t["problems"][0]["detail"]
    )
    assert "not_run" in out["decision"]["production_enforcer"]


def test_tampering_with_a_rewritten_manifest_names_hash_and_artifact(
    mu: Run, line: SimpleNamespace, tmp_path: Path
) -> None:
    prod = tmp_path / "A_prod"
    shutil.copytree(line.a, prod)
    mod = artifact_of(prod, EX + "sod-wire")
    mod.write_text(mod.read_text() + "\n# harmless?\n")
    manifest = json.loads((prod / "manifest.json").read_text())
    rel = mod.relative_to(prod).as_posix()
    for a in manifest["artifacts"]:
        if a["path"] == rel:
            a["sha256"] = sha256_hex(mod.read_bytes())
    (prod / "manifest.json").write_bytes(canonical_json(manifest))
    out = run_diagnose(mu, line, f"--enforcer={prod}", "--observed=REJECT", "--expected=REJECT")
    assert out["verdict"] == "tampering"
    problems = {(p["artifact"], p["problem"]) for p in evidence(out, "tampering")["problems"]}
    assert problems == {("manifest.json", "enforcer_hash"), (rel, "edited")}
    assert "not_run" in out["decision"]["production_enforcer"]  # self-consistent, but not receipted


def test_an_older_receipted_a_in_production_is_deployment_drift(
    mu: Run, line: SimpleNamespace, tmp_path: Path
) -> None:
    o2 = changed_example(tmp_path)
    mu.json("generate", f"--input={o2}", f"--output={tmp_path / 'A2'}", f"--receipt={tmp_path / 'R2.json'}")
    line.r = tmp_path / "R2.json"
    out = run_diagnose(mu, line, f"--enforcer={line.a}", "--observed=APPROVE")
    assert out["verdict"] == "drift"  # nobody edited code: production runs another receipted A
    t = evidence(out, "tampering")
    assert t["result"] == "fail" and t["deployed_receipt"] == line.receipt["receipt_hash"]
    assert t["problems"][0]["problem"] == "enforcer_hash"
    assert line.receipt["receipt_hash"] in t["problems"][0]["detail"]
    assert out["decision"]["production_enforcer"]["decision"] == "REJECT"  # receipted code does run


# --- generator: μ itself is at fault -------------------------------------------------------------


def _threshold_times_ten(monkeypatch: pytest.MonkeyPatch) -> None:
    """A defective generator: approval thresholds are emitted ten times too high."""
    real = emit._approval

    def scaled(rule):  # type: ignore[no-untyped-def]
        lines = real(rule)
        return [
            f"THRESHOLD = {emit.lit(rule.threshold * 10)}" if x.startswith("THRESHOLD = ") else x
            for x in lines
        ]

    monkeypatch.setattr(emit, "_approval", scaled)


def test_generator_when_the_receipted_a_disagrees_with_the_interpreter(
    mu: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A defective generator whose defect the golden gate missed: A was generated and receipted.
    _threshold_times_ten(monkeypatch)

    def blind(policy: Any, enforcer: Any) -> GoldenReport:
        report = run_golden_gate(policy, enforcer)
        report.disagreements.clear()
        report.failed_cases.clear()
        return report

    monkeypatch.setattr(pipeline, "run_golden_gate", blind)
    o = copy_example(tmp_path)
    mu.json("generate", f"--input={o}", f"--output={tmp_path / 'A'}", f"--receipt={tmp_path / 'R.json'}")
    out = mu.json(
        "diagnose",
        f"--receipt={tmp_path / 'R.json'}",
        f"--transaction={write_tx(tmp_path / 'bad105.json')}",
        f"--enforcer={tmp_path / 'A'}",
        "--observed=APPROVE",
    )
    assert out["verdict"] == "generator"
    assert out["escalate_to"] == "generator maintainers (platform engineering)"
    r = results(out)
    assert r["replay"] == "pass" and r["tampering"] == "pass" and r["differential"] == "fail"
    diff = evidence(out, "differential")
    assert diff["fired_only_by_a"] == [] and diff["fired_only_by_o"] == [EX + "approval-purchase"]
    assert out["decision"]["replayed_enforcer"]["decision"] == "APPROVE"
    assert out["decision"]["interpreter"]["decision"] == "REJECT"
    assert out["decision"]["production_enforcer"]["decision"] == "APPROVE"  # the receipted (defective) A
    assert "Operations is cleared" in out["summary"]


def test_generator_when_the_replay_does_not_reproduce_the_receipt(
    mu: Run, line: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _threshold_times_ten(monkeypatch)  # the generator now behaves differently from when it made A
    out = run_diagnose(mu, line, f"--enforcer={line.a}", "--observed=APPROVE")
    assert out["verdict"] == "generator"
    replay = evidence(out, "replay")
    assert replay["result"] == "fail" and replay["enforcer_hash"] != replay["expected_enforcer_hash"]
    differing = {e.get("rule") for e in replay["artifacts"]["differing"]}
    assert EX + "approval-purchase" in differing and "approval-purchase" in replay["detail"]
    assert results(out)["tampering"] == "pass"


# --- a decision from the daemon's decision log ----------------------------------------------------


@pytest.fixture
def logged(line: SimpleNamespace, store: Store) -> SimpleNamespace:
    """A deployed to env "test" by the daemon's runtime, and the $105k decision it logged."""
    runtime = Runtime(store, "test")
    result = runtime.deploy(line.a.absolute(), line.receipt["receipt_hash"])
    assert result.ok, result.reason
    assert runtime.active is not None
    enforcer = runtime.active.enforcer
    tx = json.loads(line.tx.read_text())
    conn = decision_log.connect(decision_log.db_path(store.home, "test"))

    def log(decision: dict[str, Any]) -> int:
        entry = decision_log.LoggedDecision.of(
            "test",
            tx,
            decision,
            enforcer.hash,
            runtime.active.generation_receipt_hash,  # type: ignore[union-attr]
        )
        return decision_log.commit_decision(conn, entry)

    real = enforcer.decide(tx).to_dict()
    faulty = {**real, "decision": "APPROVE", "fired": []}  # what a broken host might have logged
    ids = SimpleNamespace(real=log(real), faulty=log(faulty))
    conn.close()
    return ids


def test_decision_id_reads_transaction_outcome_receipt_and_deployed_a(
    mu: Run, line: SimpleNamespace, logged: SimpleNamespace, store: Store
) -> None:
    out = mu.json("diagnose", f"--decision-id={logged.faulty}", "--env=test")
    assert out["verdict"] == "runtime"
    assert out["observed"] == "APPROVE" and out["generation_receipt_hash"] == line.receipt["receipt_hash"]
    assert out["transaction_hash"] == transaction_hash(json.loads(line.tx.read_text()))
    t = evidence(out, "tampering")
    assert t["result"] == "pass" and "the daemon's copy of A" in t["enforcer"]
    assert t["logged_enforcer_hash"] == line.receipt["outputs"]["enforcer_hash"]
    assert t["source_copy"] == {
        "path": str(line.a.absolute()),
        "enforcer_hash": line.receipt["outputs"]["enforcer_hash"],
        "matches": True,
        "changed": [],
    }
    assert out["logged"]["decision_id"] == logged.faulty and out["logged"]["env"] == "test"
    assert evidence(out, "production")["fired_as_logged"] is False
    mine = store.latest("diagnosis")
    assert mine is not None and mine["inputs"]["decision"] == {"env": "test", "id": logged.faulty}
    # the real decision, with the only log of the store found without --env
    out = mu.json("diagnose", f"--decision-id={logged.real}", "--expected=APPROVE")
    assert out["verdict"] == "configuration" and evidence(out, "production")["fired_as_logged"] is True
    audit_verified(mu)


def test_decision_id_reads_the_a_that_served_not_the_edited_source_directory(
    mu: Run, line: SimpleNamespace, logged: SimpleNamespace, tmp_path: Path
) -> None:
    # The operator edits the directory they deployed from (here: regenerates a newer O into it).
    # The daemon verified its copy at deployment and never reads that directory again.
    o2 = changed_example(tmp_path)
    mu.json("generate", f"--input={o2}", f"--output={line.a}")
    mod = artifact_of(line.a, EX + "approval-purchase")
    mod.write_text(mod.read_text() + "\n# edited\n")
    out = mu.json("diagnose", f"--decision-id={logged.faulty}", "--env=test")
    assert out["verdict"] == "runtime", out["summary"]
    t = evidence(out, "tampering")
    assert t["result"] == "pass" and t["problems"] == []
    assert "exactly the receipted A" in t["detail"] and "has changed since the deployment" in t["detail"]
    assert t["source_copy"]["matches"] is False and "manifest.json" in t["source_copy"]["changed"]
    assert out["decision"]["production_enforcer"]["decision"] == "REJECT"  # the served A, run
    assert "security" not in out["escalate_to"]
    code, text, _ = mu("diagnose", f"--decision-id={logged.real}", "--env=test")
    assert code == 0 and "tampering" not in text.splitlines()[0] and "note: the directory" in text


def test_decision_id_with_the_directory_edited_and_given_as_enforcer_is_tampering(
    mu: Run, line: SimpleNamespace, logged: SimpleNamespace
) -> None:
    # Saying "this is what production runs" about an edited directory still names the edit.
    mod = artifact_of(line.a, EX + "approval-purchase")
    mod.write_text(mod.read_text() + "\n")
    out = mu.json("diagnose", f"--decision-id={logged.real}", "--env=test", f"--enforcer={line.a}")
    assert out["verdict"] == "tampering"
    assert evidence(out, "tampering")["problems"][0]["rule"] == EX + "approval-purchase"


def test_decision_id_with_the_store_copy_damaged_warns_but_does_not_blame(
    mu: Run, line: SimpleNamespace, logged: SimpleNamespace, store: Store
) -> None:
    blob = line.receipt["outputs"]["artifacts"][
        artifact_of(line.a, EX + "approval-purchase").relative_to(line.a).as_posix()
    ]
    path = store.objects_dir / "blob" / blob.removeprefix("sha256:")
    path.write_bytes(path.read_bytes() + b"\n")
    out = mu.json("diagnose", f"--decision-id={logged.faulty}", "--env=test")
    assert out["verdict"] == "runtime"
    t = evidence(out, "tampering")
    assert t["result"] == "pass" and "WARNING: the store's copy" in t["detail"]
    # the directory it was deployed from is still exactly the logged A, so that one was run
    assert out["decision"]["production_enforcer"]["decision"] == "REJECT"


def test_decision_id_without_the_deployed_directory_runs_the_store_copy(
    mu: Run, line: SimpleNamespace, logged: SimpleNamespace
) -> None:
    shutil.rmtree(line.a)
    out = mu.json("diagnose", f"--decision-id={logged.faulty}", "--env=test")
    assert out["verdict"] == "runtime"
    t = evidence(out, "tampering")
    assert t["result"] == "pass" and "is gone or unreadable now" in t["detail"]
    assert out["decision"]["production_enforcer"]["decision"] == "REJECT"


def test_decision_id_without_any_copy_checks_the_logged_hash(
    mu: Run, line: SimpleNamespace, logged: SimpleNamespace, store: Store
) -> None:
    shutil.rmtree(line.a)
    shutil.rmtree(store.objects_dir / "blob")
    out = mu.json("diagnose", f"--decision-id={logged.faulty}", "--env=test")
    assert out["verdict"] == "runtime"
    t = evidence(out, "tampering")
    assert t["result"] == "pass" and "only the logged hash was compared" in t["detail"]
    assert out["decision"]["production_enforcer"] == {"not_run": "A_prod is not available"}


def test_explicit_receipt_wins_over_the_logged_one(
    mu: Run, line: SimpleNamespace, logged: SimpleNamespace, tmp_path: Path
) -> None:
    o2 = changed_example(tmp_path)
    mu.json("generate", f"--input={o2}", f"--output={tmp_path / 'A2'}", f"--receipt={tmp_path / 'R2.json'}")
    out = mu.json("diagnose", f"--decision-id={logged.real}", f"--receipt={tmp_path / 'R2.json'}")
    assert out["generation_receipt_hash"] != line.receipt["receipt_hash"]
    assert out["verdict"] == "tampering"  # production ran an A that is not R2's
    assert "logged_enforcer" in {p["problem"] for p in evidence(out, "tampering")["problems"]}


# --- bad input: a named error, exit 2 (1 for a receipt that does not verify), nothing written ------


def nothing_written(store: Store, before: list[dict[str, Any]]) -> None:
    assert store.receipts() == before


def test_bad_input_is_refused_and_nothing_is_written(
    mu: Run, line: SimpleNamespace, logged: SimpleNamespace, store: Store, tmp_path: Path
) -> None:
    before = store.receipts()
    (tmp_path / "array.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text('{"amount": ')
    bad_o = copy_example(tmp_path, "O_malformed")
    (bad_o / "zz.ttl").write_text("this is not turtle .")
    cases: list[tuple[list[object], int, str]] = [
        (["--decision-id=999", "--env=test"], 2, "no decision 999"),
        (["--decision-id=abc", "--env=test"], 2, "not a decision id"),
        (["--decision-id=1", "--env=prod"], 2, "daemon-prod.db"),
        (["--decision-id=1", "--env=test", f"--transaction={line.tx}"], 2, "--decision-id"),
        (
            [f"--receipt={line.r}", f"--transaction={tmp_path / 'absent.json'}", "--observed=APPROVE"],
            2,
            "absent.json",
        ),
        (
            [f"--receipt={line.r}", f"--transaction={tmp_path / 'array.json'}", "--observed=APPROVE"],
            2,
            "array.json",
        ),
        (
            [f"--receipt={line.r}", f"--transaction={tmp_path / 'broken.json'}", "--observed=APPROVE"],
            2,
            "broken.json",
        ),
        ([f"--receipt={line.r}", f"--transaction={line.tx}", "--observed=approve"], 2, "APPROVE or REJECT"),
        ([f"--receipt={line.r}", f"--transaction={line.tx}", "--observed=REJECTED"], 2, "APPROVE or REJECT"),
        (
            [f"--receipt={line.r}", f"--transaction={line.tx}", "--observed=APPROVE", "--expected=yes"],
            2,
            "--expected",
        ),
        ([f"--transaction={line.tx}", "--observed=APPROVE"], 2, "--receipt"),
        (
            [
                f"--receipt={line.r}",
                f"--transaction={line.tx}",
                "--observed=APPROVE",
                f"--out-receipt={tmp_path}/no/D.json",
            ],
            2,
            "does not exist",
        ),
        (
            [f"--receipt={line.r}", f"--transaction={line.tx}", "--observed=APPROVE", f"--ontology={bad_o}"],
            2,
            "zz.ttl",
        ),
        (
            [
                f"--receipt={line.r}",
                f"--transaction={line.tx}",
                "--observed=APPROVE",
                f"--enforcer={tmp_path / 'x'}",
            ],
            2,
            "no enforcer at",
        ),
    ]
    for args, code, words in cases:
        got, _, err = mu("diagnose", *args)
        assert got == code and words in err, (args, got, err)
        nothing_written(store, before)


def _resealed(store: Store, receipt: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(seal(receipt, store.operator_private_key())))
    return path


def test_a_receipt_that_is_not_a_generation_receipt_is_exit_2(
    mu: Run, line: SimpleNamespace, store: Store, tmp_path: Path
) -> None:
    run_diagnose(mu, line, "--observed=APPROVE", f"--out-receipt={tmp_path / 'D.json'}")
    before = store.receipts()
    code, _, err = mu(
        "diagnose", f"--receipt={tmp_path / 'D.json'}", f"--transaction={line.tx}", "--observed=APPROVE"
    )
    assert code == 2 and "diagnosis receipt, not a generation receipt" in err
    o = copy_example(tmp_path, "O_bad")
    (o / "zz.ttl").write_text(
        "@prefix fab: <https://w3id.org/finops-fabric/ns#> .\n"
        "@prefix ex: <https://example.com/acme/policy#> .\n"
        "ex:board-rule a fab:ApprovalRule ; fab:appliesTo ex:purchase ; fab:amountThreshold 5000000.0 .\n"
    )
    mu.json(
        "generate", f"--input={o}", f"--output={tmp_path / 'Ax'}", f"--receipt={tmp_path / 'Rr.json'}", code=1
    )
    before = store.receipts()
    code, _, err = mu(
        "diagnose", f"--receipt={tmp_path / 'Rr.json'}", f"--transaction={line.tx}", "--observed=APPROVE"
    )
    assert code == 2 and "rejection receipt" in err
    r = load_receipt(line.r)
    del r["outputs"]["enforcer_hash"]
    bad = _resealed(store, r, tmp_path / "no-a.json")
    code, _, err = mu("diagnose", f"--receipt={bad}", f"--transaction={line.tx}", "--observed=APPROVE")
    assert code == 2 and "hash(A)" in err
    (tmp_path / "notjson.json").write_text("{")
    code, _, err = mu(
        "diagnose", f"--receipt={tmp_path / 'notjson.json'}", f"--transaction={line.tx}", "--observed=APPROVE"
    )
    assert code == 2 and "notjson.json" in err
    nothing_written(store, before)


def test_a_receipt_that_does_not_verify_is_exit_1(
    mu: Run, line: SimpleNamespace, store: Store, tmp_path: Path
) -> None:
    before = store.receipts()
    altered = dict(line.receipt, time="2000-01-01T00:00:00Z")
    (tmp_path / "altered.json").write_text(json.dumps(altered))
    forged = json.loads(json.dumps(line.receipt))
    forged["signatures"][0]["sig"] = forged["signatures"][0]["sig"][::-1]
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    key, _ = generate_keypair(tmp_path / "stranger")
    stranger = seal(line.receipt, load_private_key(key))
    (tmp_path / "stranger.json").write_text(json.dumps(stranger))
    for name, words in (
        ("altered.json", "does not match its receipt_hash"),
        ("forged.json", "does not verify"),
        ("stranger.json", "not signed by a key this store trusts"),
    ):
        code, out, err = mu(
            "diagnose",
            f"--receipt={tmp_path / name}",
            f"--transaction={line.tx}",
            "--observed=APPROVE",
            "--json",
        )
        assert code == 1 and words in err, (name, err)
        assert json.loads(out)["error"]["code"] in ("receipt.hash", "receipt.signature")
    nothing_written(store, before)


def test_a_receipt_signed_by_a_trusted_key_is_accepted(
    mu: Run, line: SimpleNamespace, store: Store, tmp_path: Path
) -> None:
    key, pub = generate_keypair(tmp_path / "release")
    (store.keys_dir / "trusted").mkdir()
    shutil.copy(pub, store.keys_dir / "trusted" / "release.pub")
    (tmp_path / "R-release.json").write_text(json.dumps(seal(line.receipt, load_private_key(key))))
    line.r = tmp_path / "R-release.json"
    assert run_diagnose(mu, line, "--observed=APPROVE")["verdict"] == "runtime"


def test_without_the_receipted_o_there_is_no_verdict_and_nothing_is_written(
    mu: Run, line: SimpleNamespace, store: Store
) -> None:
    snapshot = (
        store.objects_dir / "ontology" / line.receipt["inputs"]["ontology_hash"].removeprefix("sha256:")
    )
    snapshot.unlink()
    before = store.receipts()
    with pytest.raises(InputError) as e:
        diagnose(Case(line.receipt, json.loads(line.tx.read_text()), "APPROVE"), store)
    assert e.value.code == "diagnose.inconclusive" and "--ontology" in str(e.value.hint)
    nothing_written(store, before)
    # the receipted O given as O now stands in for the snapshot
    out = run_diagnose(mu, line, f"--ontology={line.o}", "--observed=APPROVE")
    assert out["verdict"] == "runtime" and evidence(out, "replay")["ontology_source"].startswith(
        "--ontology="
    )
    # a tampered A is a verdict even without the receipted O
    mod = artifact_of(line.a, EX + "approval-purchase")
    mod.write_text(mod.read_text() + "\n")
    out = run_diagnose(mu, line, f"--enforcer={line.a}", "--observed=APPROVE")
    assert out["verdict"] == "tampering" and results(out)["replay"] == "unavailable"


def test_many_diagnoses_keep_the_audit_trail_verified(mu: Run, line: SimpleNamespace, tmp_path: Path) -> None:
    for observed in ("APPROVE", "REJECT"):
        run_diagnose(mu, line, f"--ontology={line.o}", f"--enforcer={line.a}", f"--observed={observed}")
    o2 = changed_example(tmp_path)
    mu.json("generate", f"--input={o2}", f"--output={tmp_path / 'A2'}", f"--receipt={tmp_path / 'R2.json'}")
    run_diagnose(mu, line, f"--ontology={o2}", "--observed=APPROVE")
    trail = audit_verified(mu)
    assert trail["receipts"] == 5 and trail["changes"] == 2
    assert mu.json("drift", f"--enforcer={tmp_path / 'A2'}")["drift"] is False  # latest generation unaffected


def test_a_prod_may_be_an_archive(mu: Run, line: SimpleNamespace, tmp_path: Path) -> None:
    mu.json("generate", f"--input={line.o}", f"--output={tmp_path / 'A.tar'}")
    out = run_diagnose(mu, line, f"--enforcer={tmp_path / 'A.tar'}", "--observed=APPROVE")
    assert out["verdict"] == "runtime" and results(out)["tampering"] == "pass"
    assert out["decision"]["production_enforcer"]["decision"] == "REJECT"
