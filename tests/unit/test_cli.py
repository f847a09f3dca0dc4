"""The CLI, called in-process as an operator would: exit codes, JSON and plain-language output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import EX, EXAMPLE, Run, copy_example, write_tx

from finops_fabric.cli import main
from finops_fabric.enforcer import load_enforcer


def test_generate_test_decide_verify(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    out = mu.json(
        "generate", f"--input={o}", f"--output={tmp_path / 'A'}", f"--receipt={tmp_path / 'r.json'}"
    )
    assert out["status"] == "generated" and out["enforcer_hash"].startswith("sha256:")
    assert set(out["gates"].values()) == {"PASS"}
    receipt = json.loads((tmp_path / "r.json").read_text())
    assert receipt["outputs"]["enforcer_hash"] == out["enforcer_hash"]
    assert receipt["kind"] == "generation" and receipt["signatures"]
    suite = mu.json("test", f"--enforcer={tmp_path / 'A'}", "--golden-suite")
    assert suite["failed"] == 0 and suite["passed"] == 7
    d = mu.json("decide", f"--enforcer={tmp_path / 'A'}", f"--transaction={write_tx(tmp_path / 'tx.json')}")
    assert d["decision"] == "REJECT" and d["fired"][0]["rule"] == EX + "approval-purchase"
    assert d["fired"][0]["reason"] == "amount 105000.00 > 100000 requires L3 or above; actor is L2"
    assert d["enforcer_hash"] == out["enforcer_hash"]
    pub = tmp_path / "store" / "keys" / "operator.pub"
    assert mu("verify-receipt", f"--receipt={tmp_path / 'r.json'}", f"--public-key={pub}")[0] == 0
    receipt["outputs"]["changed"] = ["forged"]
    (tmp_path / "bad.json").write_text(json.dumps(receipt))
    assert mu("verify-receipt", f"--receipt={tmp_path / 'bad.json'}", f"--public-key={pub}")[0] == 1
    code, hashed, _ = mu("hash", tmp_path / "A")
    assert code == 0 and hashed.strip() == out["enforcer_hash"]


def test_human_output_is_plain(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    code, out, _ = mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}")
    assert code == 0 and "golden: 7 passed, 0 failed" in out
    code, out, _ = mu("test", f"--enforcer={tmp_path / 'A'}", "--scenario=transaction_105k_L2_actor")
    assert code == 0 and out.startswith("PASS transaction_105k_L2_actor: REJECT")


def test_unknown_scenario_lists_the_known_ones(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}")
    code, _, err = mu("test", f"--enforcer={tmp_path / 'A'}", "--scenario=nope")
    assert code == 2 and "wire_1k_to_KP" in err


def test_incomplete_rule_is_rejected_without_an_enforcer(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    (o / "zz-incomplete.ttl").write_text(
        "@prefix fab: <https://w3id.org/finops-fabric/ns#> . @prefix ex: <https://example.com/acme/policy#> ."
        "\n"
        "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
        "# two prefixes on one line above; the finding must still point at the rule's line\n"
        'ex:board-rule a fab:ApprovalRule ; rdfs:label "Big ones need the board" ;\n'
        "    fab:appliesTo ex:purchase ; fab:amountThreshold 5000000.0 .\n"
    )
    out = mu.json(
        "generate", f"--input={o}", f"--output={tmp_path / 'A'}", f"--receipt={tmp_path / 'r.json'}", code=1
    )
    assert out["status"] == "rejected" and not (tmp_path / "A").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["kind"] == "rejection" and r["gates"]["ontology"]["status"] == "FAIL"
    assert r["gates"]["golden"]["status"] == "SKIPPED"
    finding = next(f for f in r["findings"] if f["focus"] == EX + "board-rule")
    assert "requiredAuthority" in finding["message"] and finding["location"]["file"].endswith(
        "zz-incomplete.ttl"
    )
    assert finding["location"]["line"] == 4


def test_sod_violation_requires_a_compliance_override(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    (o / "zz-role.ttl").write_text(
        "@prefix fab: <https://w3id.org/finops-fabric/ns#> . @prefix ex: <https://example.com/acme/policy#> ."
        "\n"
        "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
        'ex:superuser a fab:Role ; rdfs:label "Super user" ;\n'
        "    fab:canApprove ex:wire ; fab:canExecute ex:wire .\n"
    )
    out = mu.json("generate", f"--input={o}", f"--output={tmp_path / 'A'}", code=1)
    assert out["compliance_override_required"] is True
    assert [v["invariant"] for v in out["violations"]] == ["sod"]
    assert out["violations"][0]["focus"] == EX + "superuser"


def test_malformed_input_is_exit_2_naming_file_and_line(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    (o / "broken.ttl").write_text(
        "@prefix ex: <https://example.com/> .\n\nex:a ex:b ex:c ex:d .\nex:e ex:f ex:g .\n"
    )
    code, _, err = mu("validate", f"--ontology={o}")
    assert code == 2 and "broken.ttl" in err and "line 3" in err
    code, _, err = mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}")
    assert code == 2 and not (tmp_path / "A").exists()


def test_bad_transaction_file(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}")
    (tmp_path / "tx.json").write_text('{"id": "x",\n "amount": }')
    code, _, err = mu("decide", f"--enforcer={tmp_path / 'A'}", f"--transaction={tmp_path / 'tx.json'}")
    assert code == 2 and "tx.json" in err and "line 2" in err
    code, _, err = mu("decide", f"--enforcer={tmp_path / 'A'}", f"--transaction={tmp_path / 'missing.json'}")
    assert code == 2 and "missing.json" in err


def test_float_amounts_are_never_binary_floats(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}")
    tx = tmp_path / "tx.json"
    tx.write_text(
        '{"id": "t", "type": "purchase", "amount": 100000.001, "actor_level": "L2", '
        '"approver_id": "a", "executor_id": "b", "attributes": {}}'
    )
    d = mu.json("decide", f"--enforcer={tmp_path / 'A'}", f"--transaction={tx}")
    assert d["decision"] == "REJECT" and "100000.001" in d["fired"][0]["reason"]


def test_minimal_change_reports_one_rule(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}")
    o2 = copy_example(tmp_path, "O2")
    wires = o2 / "wires.ttl"
    wires.write_text(wires.read_text().replace('"1000000"^^xsd:decimal', '"2000000"^^xsd:decimal'))
    out = mu.json("generate", f"--input={o2}", f"--output={tmp_path / 'A2'}", f"--previous={tmp_path / 'A'}")
    assert out["changed"] == [EX + "approval-wire-large"] and len(out["unchanged"]) == 8
    v = mu.json("verify-hashes", f"--old={tmp_path / 'A'}", f"--new={tmp_path / 'A2'}")
    assert [c["rule"] for c in v["changed"]] == [EX + "approval-wire-large"] and len(v["unchanged"]) == 8
    d = mu.json("diff", f"--old={o}", f"--new={o2}")
    assert d["changed"] == [
        {
            "rule": EX + "approval-wire-large",
            "label": "Wires over $1M need the CFO",
            "fields": {"fab:amountThreshold": {"old": "1000000", "new": "2000000"}},
        }
    ]
    assert (
        mu("verify-hashes", f"--old={tmp_path / 'A'}", f"--new={tmp_path / 'A2'}", "--expect-identical")[0]
        == 1
    )


def test_tampered_enforcer_is_refused(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}")
    module = next((tmp_path / "A" / "rules").glob("approval_purchase_*.py"))
    module.write_text(module.read_text().replace("100000", "1000000"))
    code, _, err = mu(
        "decide", f"--enforcer={tmp_path / 'A'}", f"--transaction={write_tx(tmp_path / 't.json')}"
    )
    assert code == 1 and module.name in err and "approval-purchase" in err
    assert mu("hash", tmp_path / "A")[0] == 1


def test_verify_hashes_checks_each_side_against_its_own_manifest(mu: Run, tmp_path: Path) -> None:
    o = copy_example(tmp_path)
    mu("generate", f"--input={o}", f"--output={tmp_path / 'A'}")
    shutil.copytree(tmp_path / "A", tmp_path / "A_edited")
    module = next((tmp_path / "A_edited" / "rules").glob("approval_purchase_*.py"))
    module.write_text(module.read_text().replace("100000", "1000000"))
    rel = f"rules/{module.name}"
    for old, new in (("A", "A_edited"), ("A_edited", "A")):
        code, out, err = mu("verify-hashes", f"--old={tmp_path / old}", f"--new={tmp_path / new}")
        assert (
            code == 1
            and out == ""
            and rel in err
            and "A_edited" in err
            and "does not match its manifest" in err
        )
    code, out, _ = mu("verify-hashes", f"--old={tmp_path / 'A'}", f"--new={tmp_path / 'A_edited'}", "--json")
    assert code == 1 and json.loads(out)["error"]["code"] == "enforcer.tampered"
    # a manifest that no longer is the generator's canonical JSON is refused too
    manifest = tmp_path / "A_edited" / "manifest.json"
    module.write_text(module.read_text().replace("1000000", "100000"))
    manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=1))
    code, _, err = mu("verify-hashes", f"--old={tmp_path / 'A'}", f"--new={tmp_path / 'A_edited'}")
    assert code == 1 and "manifest.json was edited" in err
    assert mu("verify-hashes", f"--old={tmp_path / 'A'}", f"--new={tmp_path / 'A'}")[0] == 0


def test_usage_errors_are_exit_2(mu: Run, tmp_path: Path) -> None:
    assert mu("generate")[0] == 2
    assert mu("frobnicate")[0] == 2
    assert mu("test", "--enforcer=nowhere", "--golden-suite", "--scenario=x")[0] == 2
    code, _, err = mu(
        "generate", f"--input={EXAMPLE}", f"--output={tmp_path / 'A'}", "--generator-version=99"
    )
    assert code == 2 and "unknown generator version" in err


def test_missing_store_says_run_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path / "nowhere"))
    code = main(["generate", f"--input={EXAMPLE}", f"--output={tmp_path / 'A'}"])
    assert code == 2 and "mu init" in capsys.readouterr().err


def test_generators_lists_versions(mu: Run) -> None:
    from finops_fabric import generators

    out = mu.json("generators")
    assert out["versions"] == ["1", "2", "3"] == generators.versions() and out["default"] == "3"
    assert {g["version"]: g["language"] for g in out["generators"]} == {"1": "1.0", "2": "1.0", "3": "1.1"}
    code, text, _ = mu("generators")
    assert code == 0 and "v3  language 1.1" in text and "(default)" in text.splitlines()[2]


def _policy_with_rules(path: Path, n: int) -> Path:
    path.mkdir()
    shutil.copy(EXAMPLE / "reference.ttl", path / "reference.ttl")
    lines = [
        "@prefix fab: <https://w3id.org/finops-fabric/ns#> . @prefix ex: <https://example.com/acme/policy#> ."
        "",
        "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .",
    ]
    for i in range(n):
        lines.append(
            f'ex:rule-{i} a fab:ApprovalRule ; rdfs:label "Rule {i}" ; fab:appliesTo ex:purchase ; '
            f"fab:amountThreshold {1000 + i}.00 ; fab:requiredAuthority ex:L{1 + i % 3} ."
        )
    (path / "rules.ttl").write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_a_killed_run_leaves_no_partial_enforcer(tmp_path: Path) -> None:
    env = {**os.environ, "FABRIC_HOME": str(tmp_path / "store")}
    mu_cmd = [sys.executable, "-m", "finops_fabric.cli"]
    subprocess.run([*mu_cmd, "init"], env=env, check=True, capture_output=True)
    o = _policy_with_rules(tmp_path / "O", 300)
    for i, delay in enumerate((0.5, 1.0, 1.5, 2.0, 2.5, 3.0)):
        out = tmp_path / f"A{i}"
        proc = subprocess.Popen(
            [*mu_cmd, "generate", f"--input={o}", f"--output={out}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():
            load_enforcer(out)  # complete and verified, or absent: never partial
    done = subprocess.run(
        [*mu_cmd, "generate", f"--input={o}", f"--output={tmp_path / 'A'}", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "generated"
