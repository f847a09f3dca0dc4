"""Ownership (job 4.1) on real git repositories: every change to O approved by the compliance
roster, no hand edits to generated code, every A receipted, the production receipt bound to an
approved O; shallow clones and damaged repositories refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from harness import EX, Run, copy_example

from finops_fabric.canonical import canonical_json, sha256_hex
from finops_fabric.store import Store

CAROL = ("Carol Compliance", "carol@example.com")
EVE = ("Eve Engineer", "eve@example.com")
THRESHOLD = ('"1000000"', '"2000000"')  # a threshold in wires.ttl (golden cases still hold)


class Repo:
    """A git repository in tmp_path holding O (policy/) and a generated A (A/)."""

    def __init__(self, mu: Run, tmp_path: Path) -> None:
        self.mu = mu
        self.tmp = tmp_path
        self.path = tmp_path / "repo"
        self.path.mkdir()
        self.git("init", "--quiet", "--initial-branch=main")
        self.policy = copy_example(self.path, "policy")
        self.a = self.path / "A"
        self.approvals = self.path / "approvals"
        self.approvals.mkdir()

    def git(self, *args: str, who: tuple[str, str] = CAROL) -> str:
        return self.git_in(self.path, *args, who=who)

    @staticmethod
    def git_in(where: Path, *args: str, who: tuple[str, str] = CAROL) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": who[0],
            "GIT_AUTHOR_EMAIL": who[1],
            "GIT_COMMITTER_NAME": who[0],
            "GIT_COMMITTER_EMAIL": who[1],
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        proc = subprocess.run(["git", *args], cwd=where, env=env, capture_output=True, text=True, check=True)
        return proc.stdout.strip()

    def commit(self, message: str, who: tuple[str, str] = CAROL) -> str:
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message, who=who)
        return self.git("rev-parse", "HEAD")

    def approve(self, name: str, key: str = "alice") -> None:
        out = self.approvals / f"{name}.approval.json"
        self.mu.json("approve", f"--ontology={self.policy}", f"--key={self.tmp / key}.key", f"--output={out}")

    def generate(self, output: Path | None = None, *extra: str) -> Any:
        target = output or self.a
        return self.mu.json("generate", f"--input={self.policy}", f"--output={target}", *extra)

    def raise_threshold(self) -> None:
        wires = self.policy / "wires.ttl"
        wires.write_text(wires.read_text().replace(*THRESHOLD))

    def ownership(self, *args: str, code: int) -> Any:
        return self.mu.json("ownership", f"--repo={self.path}", *args, code=code)


@pytest.fixture
def repo(mu: Run, tmp_path: Path) -> Repo:
    """Roster {alice}; first commit by Carol: O, alice's approval of it, and A generated from it."""
    assert mu("keygen", "--out", tmp_path / "alice")[0] == 0
    assert mu("keygen", "--out", tmp_path / "mallory")[0] == 0
    assert (
        mu(
            "roster",
            "init",
            "--member=alice=" + str(tmp_path / "alice.pub"),
            f"--key={tmp_path / 'alice.key'}",
        )[0]
        == 0
    )
    r = Repo(mu, tmp_path)
    r.approve("v1")
    r.generate()
    r.commit("O v1, approved by alice, and its A")
    return r


def kinds(out: Mapping[str, Any]) -> list[str]:
    return [v["kind"] for v in out["violations"]]


def author(who: tuple[str, str]) -> str:
    return f"{who[0]} <{who[1]}>"


def rule_module(a: Path, rule: str) -> Path:
    manifest = json.loads((a / "manifest.json").read_text())
    return a / str(next(x["path"] for x in manifest["artifacts"] if x.get("rule") == rule))


# --- a clean history --------------------------------------------------------------------------------


def test_a_clean_history_with_a_branch_and_a_merge_is_owned(repo: Repo) -> None:
    repo.git("checkout", "--quiet", "-b", "threshold")
    repo.raise_threshold()
    repo.approve("v2")
    repo.generate()
    feature = repo.commit("raise the wire threshold (approved), regenerate A", who=EVE)
    repo.git("checkout", "--quiet", "main")
    (repo.path / "README.md").write_text("policy repository\n")
    repo.commit("readme")
    repo.git("merge", "--quiet", "--no-ff", "-m", "merge threshold", "threshold")

    out = repo.ownership(code=0)
    assert out["owned"] is True and out["violations"] == []
    assert out["commits_checked"] == 4
    changes = out["ontology_changes"]
    assert [c["commit"] for c in changes] == [changes[0]["commit"], feature]  # the merge adds no new O
    assert all(c["approved_by"][0]["signer"] == "alice" for c in changes)
    assert changes[1]["files"] == ["policy/wires.ttl"] and changes[1]["author"] == author(EVE)
    assert [g["verified"] for g in out["generated_changes"]] == [True, True]
    prod = out["production_receipt"]
    assert prod["ontology_hash"] == changes[1]["ontology_hash"] and prod["approved_by"]
    code, text, _ = repo.mu("ownership", f"--repo={repo.path}")
    assert code == 0 and text.startswith("owned")


def test_a_change_to_the_files_that_leaves_hash_O_alone_needs_no_new_approval(repo: Repo) -> None:
    wires = repo.policy / "wires.ttl"
    wires.write_text("# a comment changes the file, not O\n" + wires.read_text())
    repo.commit("comment", who=EVE)
    out = repo.ownership(code=0)
    assert len(out["ontology_changes"]) == 1


# --- rule 2: generated code -------------------------------------------------------------------------


def test_an_engineer_hand_editing_generated_code_is_reported_with_author_and_file(repo: Repo) -> None:
    module = rule_module(repo.a, EX + "sanctions")
    module.write_text(module.read_text().replace("RULE = ", "RULE  = ", 1))  # a no-op, by hand
    sha = repo.commit("quick fix in the enforcer", who=EVE)
    out = repo.ownership(code=1)
    rel = module.relative_to(repo.path).as_posix()
    assert out["owned"] is False
    assert out["violations"] == [
        {
            "kind": "hand_edited_generated_code",
            "commit": sha,
            "author": author(EVE),
            "files": [rel],
            "detail": out["violations"][0]["detail"],
        }
    ]
    assert "sanctions" in out["violations"][0]["detail"]
    code, text, _ = repo.mu("ownership", f"--repo={repo.path}")
    assert code == 1 and text.startswith("NOT OWNED") and f"{sha[:12]} {author(EVE)}" in text


def test_a_hand_edit_merged_from_a_branch_is_reported_once_at_its_own_commit(repo: Repo) -> None:
    repo.git("checkout", "--quiet", "-b", "hotfix")
    module = rule_module(repo.a, EX + "approval-wire")
    module.write_text(module.read_text() + "# hot fix\n")
    edit = repo.commit("hot fix on a branch", who=EVE)
    repo.git("checkout", "--quiet", "main")
    (repo.path / "README.md").write_text("policy repository\n")
    repo.commit("readme")
    repo.git("merge", "--quiet", "--no-ff", "-m", "merge hotfix", "hotfix", who=CAROL)
    out = repo.ownership(code=1)
    assert out["commits_checked"] == 4
    assert [(v["kind"], v["commit"], v["author"]) for v in out["violations"]] == [
        ("hand_edited_generated_code", edit, author(EVE))
    ]


@pytest.mark.parametrize("change", ["extra", "deleted", "manifest"])
def test_extra_deleted_files_and_a_broken_manifest_are_hand_edits(repo: Repo, change: str) -> None:
    if change == "extra":
        target = repo.a / "rules" / "backdoor.py"
        target.write_text("ALLOW = True\n")
        expect = "not listed"
    elif change == "deleted":
        target = rule_module(repo.a, EX + "sod-wire")
        target.unlink()
        expect = "deleted"
    else:
        target = repo.a / "manifest.json"
        target.write_text(json.dumps(json.loads(target.read_text()), indent=2))
        expect = "canonical"
    sha = repo.commit(f"{change} in A", who=EVE)
    out = repo.ownership(code=1)
    assert kinds(out) == ["hand_edited_generated_code"]
    v = out["violations"][0]
    assert v["commit"] == sha and v["files"] == [target.relative_to(repo.path).as_posix()]
    assert expect in v["detail"]


def test_a_later_proper_regeneration_is_clean_but_the_hand_edit_stays_reported(repo: Repo) -> None:
    module = rule_module(repo.a, EX + "sanctions")
    module.write_text(module.read_text() + "# hot fix\n")
    bad = repo.commit("hot fix", who=EVE)
    shutil.rmtree(repo.a)
    repo.generate()
    repo.commit("regenerate A")
    out = repo.ownership(code=1)
    assert [(v["kind"], v["commit"]) for v in out["violations"]] == [("hand_edited_generated_code", bad)]
    assert [g["verified"] for g in out["generated_changes"]] == [True, False, True]


def test_an_unreceipted_but_self_consistent_A_is_reported(repo: Repo, tmp_path: Path) -> None:
    # Eve generates A from an approved O, but in her own store: A verifies, nothing receipts it.
    repo.raise_threshold()
    repo.approve("v2")
    elsewhere = tmp_path / "eve-store"
    assert repo.mu("init", f"--home={elsewhere}")[0] == 0
    shutil.rmtree(repo.a)
    repo.generate(repo.a, f"--home={elsewhere}")
    sha = repo.commit("regenerate on my laptop", who=EVE)
    out = repo.ownership(code=1)
    assert kinds(out) == ["unreceipted_generated_code"]
    v = out["violations"][0]
    assert v["commit"] == sha and v["author"] == author(EVE) and "A/manifest.json" in v["files"]
    manifest = (repo.a / "manifest.json").read_bytes()
    assert sha256_hex(manifest) in v["detail"]
    assert out["generated_changes"][-1] == {
        "commit": sha,
        "author": author(EVE),
        "directory": "A",
        "enforcer_hash": sha256_hex(manifest),
        "verified": True,
        "generation_receipt": None,
    }


def test_a_hand_edit_with_a_rewritten_manifest_is_an_unreceipted_A(repo: Repo) -> None:
    module = rule_module(repo.a, EX + "sanctions")
    module.write_text(module.read_text() + "# tweak\n")
    manifest = json.loads((repo.a / "manifest.json").read_text())
    rel = module.relative_to(repo.a).as_posix()
    for art in manifest["artifacts"]:
        if art["path"] == rel:
            art["sha256"] = sha256_hex(module.read_bytes())
    (repo.a / "manifest.json").write_bytes(canonical_json(manifest))
    sha = repo.commit("tweak and fix up the manifest", who=EVE)
    out = repo.ownership(code=1)
    assert [(v["kind"], v["commit"]) for v in out["violations"]] == [("unreceipted_generated_code", sha)]


# --- rule 1: changes to O ---------------------------------------------------------------------------


def test_a_change_to_O_without_approval_is_reported(repo: Repo) -> None:
    repo.raise_threshold()
    sha = repo.commit("raise the wire threshold", who=EVE)
    out = repo.ownership(code=1)
    assert kinds(out) == ["unapproved_ontology_change"]
    v = out["violations"][0]
    assert (v["commit"], v["author"], v["files"]) == (sha, author(EVE), ["policy/wires.ttl"])
    onto_hash = out["ontology_changes"][-1]["ontology_hash"]
    assert onto_hash in v["detail"] and out["ontology_changes"][-1]["approved_by"] == []


def test_an_approval_by_someone_off_the_roster_does_not_count(repo: Repo, tmp_path: Path) -> None:
    # mallory may not approve here (`mu approve` refuses); in her own store she is the roster,
    # and the approval she signs there is committed to the repository.
    repo.raise_threshold()
    code, _, err = repo.mu("approve", f"--ontology={repo.policy}", f"--key={tmp_path / 'mallory.key'}")
    assert code == 1 and "not on the compliance roster" in err
    own = tmp_path / "mallory-store"
    mallory = (f"--member=mallory={tmp_path / 'mallory.pub'}", f"--key={tmp_path / 'mallory.key'}")
    assert repo.mu("init", f"--home={own}")[0] == 0
    assert repo.mu("roster", "init", *mallory, f"--home={own}")[0] == 0
    out_file = repo.approvals / "v2.approval.json"
    repo.mu.json("approve", f"--ontology={repo.policy}", mallory[1], f"--output={out_file}", f"--home={own}")
    sha = repo.commit("raise the threshold, approved by mallory", who=EVE)
    out = repo.ownership(code=1)
    assert kinds(out) == ["unapproved_ontology_change"] and out["violations"][0]["commit"] == sha
    assert "not on the compliance roster" in out["violations"][0]["detail"]
    assert out["approvals"]["valid"] == 1  # alice's approval of v1


def test_a_committed_approval_file_counts_and_a_forged_one_is_named(repo: Repo, tmp_path: Path) -> None:
    # alice approves v2 through another store whose roster also has her: the approval reaches this
    # store only as a file committed to the repository.
    other = tmp_path / "other-store"
    alice_pub, alice_key = tmp_path / "alice.pub", tmp_path / "alice.key"
    assert repo.mu("init", f"--home={other}")[0] == 0
    assert (
        repo.mu("roster", "init", f"--member=alice={alice_pub}", f"--key={alice_key}", f"--home={other}")[0]
        == 0
    )
    repo.raise_threshold()
    out_file = repo.approvals / "v2.approval.json"
    repo.mu.json(
        "approve",
        f"--ontology={repo.policy}",
        f"--key={alice_key}",
        f"--output={out_file}",
        f"--home={other}",
    )
    repo.commit("raise the threshold, with alice's approval file", who=EVE)
    out = repo.ownership(code=0)
    assert out["ontology_changes"][-1]["approved_by"][0]["signer"] == "alice"

    # a forged approval of a further change (signature not alice's) is named, and does not count
    doc = json.loads(out_file.read_text())
    wires = repo.policy / "wires.ttl"
    wires.write_text(wires.read_text().replace('"2000000"', '"3000000"'))
    third = repo.mu("hash", repo.policy)[1].strip()
    doc["ontology_hash"] = doc["inputs"]["ontology_hash"] = third
    (repo.approvals / "v3.approval.json").write_text(json.dumps(doc))
    sha = repo.commit("raise again, 'approved'", who=EVE)
    out = repo.ownership(code=1)
    assert kinds(out) == ["unapproved_ontology_change"] and out["violations"][0]["commit"] == sha
    assert "v3.approval.json" in out["violations"][0]["detail"]
    assert "changed after it was signed" in out["violations"][0]["detail"]
    assert any("v3.approval.json" in i["source"] for i in out["approvals"]["ignored"])


def test_an_override_is_not_an_approval_of_O(repo: Repo) -> None:
    repo.raise_threshold()
    out_file = repo.approvals / "v2.sod.approval.json"
    repo.mu.json(
        "approve",
        f"--ontology={repo.policy}",
        f"--key={repo.tmp / 'alice.key'}",
        "--override=sod",
        f"--output={out_file}",
    )
    repo.commit("raise the threshold with an override only", who=EVE)
    out = repo.ownership(code=1)
    assert kinds(out) == ["unapproved_ontology_change"]
    assert "override of invariant 'sod'" in out["violations"][0]["detail"]


def test_ontology_path_leaves_other_rdf_files_out_of_O(repo: Repo) -> None:
    shapes = repo.path / "shapes"
    shapes.mkdir()
    (shapes / "extra.ttl").write_text("@prefix ex: <https://example.com/s#> .\nex:a ex:b ex:c .\n")
    repo.commit("organisation shapes", who=EVE)
    out = repo.ownership(code=1)  # by default every RDF file outside A is part of O
    assert kinds(out) == ["unapproved_ontology_change"]
    assert out["violations"][0]["files"] == ["shapes/extra.ttl"]
    out = repo.ownership("--ontology-path=policy", code=0)
    assert out["ontology_paths"] == ["policy"] and len(out["ontology_changes"]) == 1
    # --repo may name a directory inside the repository: O is then the RDF files under it
    out = repo.mu.json("ownership", f"--repo={repo.policy}", code=0)
    assert out["ontology_changes"][0]["files"] == [f"policy/{n}" for n in sorted(os.listdir(repo.policy))]
    code, _, err = repo.mu("ownership", f"--repo={repo.path}", "--ontology-path=../elsewhere")
    assert code == 2 and "not a path inside the repository" in err
    code, _, err = repo.mu("ownership", f"--repo={repo.path}", "--ontology-path=nothing-here")
    assert code == 2 and "no commit" in err


def test_a_commit_that_breaks_O_is_reported(repo: Repo) -> None:
    wires = repo.policy / "wires.ttl"
    wires.write_text(wires.read_text() + "\nthis is not turtle\n")
    sha = repo.commit("oops", who=EVE)
    out = repo.ownership(code=1)
    assert kinds(out) == ["unapproved_ontology_change"] and out["violations"][0]["commit"] == sha
    assert (
        "wires.ttl" in out["violations"][0]["detail"] and "no longer loads" in out["violations"][0]["detail"]
    )


# --- rule 3: the production receipt -----------------------------------------------------------------


def test_a_receipt_bound_to_an_unapproved_O_is_reported(repo: Repo, tmp_path: Path) -> None:
    repo.raise_threshold()  # in the working tree only: never committed, never approved
    receipt = tmp_path / "R2.json"
    repo.generate(tmp_path / "A2", f"--receipt={receipt}")
    out = repo.ownership(f"--receipt={receipt}", code=1)
    assert kinds(out) == ["receipt_not_approved", "production_ontology_not_in_repository"]
    v = out["violations"][0]
    r = json.loads(receipt.read_text())
    assert v["commit"] is None and r["inputs"]["ontology_hash"] in v["detail"]
    assert "no commit" in v["detail"]
    assert out["production_receipt"]["in_repository"] is False
    # without --receipt the store's latest generation receipt is that same receipt
    out = repo.ownership(code=1)
    assert out["production_receipt"]["receipt_hash"] == r["receipt_hash"]
    assert kinds(out) == ["receipt_not_approved", "production_ontology_not_in_repository"]
    # the first receipt (approved O) is fine
    first = Store(Path(os.environ["FABRIC_HOME"])).receipts("generation")[0]
    assert repo.ownership(f"--receipt={first['receipt_hash']}", code=0)["owned"] is True


def test_the_receipt_names_the_commit_that_brought_in_its_unapproved_O(repo: Repo) -> None:
    repo.raise_threshold()
    shutil.rmtree(repo.a)
    repo.generate()
    sha = repo.commit("raise threshold and regenerate, no approval", who=EVE)
    out = repo.ownership(code=1)
    assert kinds(out) == ["unapproved_ontology_change", "receipt_not_approved"]
    assert [v["commit"] for v in out["violations"]] == [sha, sha]
    assert out["violations"][1]["author"] == author(EVE)


def test_the_production_deployment_is_the_receipt_that_counts(repo: Repo) -> None:
    store = Store(Path(os.environ["FABRIC_HOME"]))
    gen = store.latest("generation")
    assert gen is not None
    store.append(
        {
            "kind": "deployment",
            "event": "deploy",
            "env": "production",
            "inputs": {
                "generation_receipt_hash": gen["receipt_hash"],
                "ontology_hash": gen["inputs"]["ontology_hash"],
            },
            "gates": {"operational": {"status": "PASS", "evidence": {}}},
            "outputs": {"enforcer_hash": gen["outputs"]["enforcer_hash"]},
        }
    )
    repo.raise_threshold()  # a later, unapproved generation that never reached production
    repo.generate(repo.tmp / "A2")
    out = repo.ownership(code=0)
    prod = out["production_receipt"]
    assert (prod["kind"], prod["env"], prod["ontology_hash"]) == (
        "deployment",
        "production",
        gen["inputs"]["ontology_hash"],
    )


# --- bad input: exit 2 ------------------------------------------------------------------------------


def test_a_shallow_clone_is_refused(repo: Repo, tmp_path: Path) -> None:
    repo.raise_threshold()
    repo.approve("v2")
    repo.commit("second")
    clone = tmp_path / "shallow"
    repo.git("clone", "--quiet", "--depth=1", f"file://{repo.path}", str(clone))
    code, out, err = repo.mu("ownership", f"--repo={clone}", "--json")
    assert code == 2 and out == "" and "shallow clone" in err


def test_a_repository_with_a_missing_object_is_refused(repo: Repo) -> None:
    blob = repo.git("rev-parse", "HEAD:policy/wires.ttl")
    (repo.path / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    code, _, err = repo.mu("ownership", f"--repo={repo.path}")
    assert code == 2 and "damaged" in err and blob in err


def test_a_damaged_object_is_refused(repo: Repo) -> None:
    blob = repo.git("rev-parse", "HEAD:policy/reference.ttl")
    path = repo.path / ".git" / "objects" / blob[:2] / blob[2:]
    path.chmod(0o644)
    path.write_bytes(b"\x78\x01garbage")
    code, _, err = repo.mu("ownership", f"--repo={repo.path}")
    assert code == 2 and "damaged" in err


def test_not_a_repository_and_no_roster_are_refused(mu: Run, tmp_path: Path) -> None:
    plain = copy_example(tmp_path, "plain")
    code, _, err = mu("ownership", f"--repo={plain}")
    assert code == 2 and "not a git repository" in err
    code, _, err = mu("ownership", f"--repo={tmp_path / 'nowhere'}")
    assert code == 2 and "not a directory" in err
    Repo.git_in(plain, "init", "--quiet")
    code, _, err = mu("ownership", f"--repo={plain}")
    assert code == 2 and "has no commits" in err
    Repo.git_in(plain, "add", "--all")
    Repo.git_in(plain, "commit", "--quiet", "-m", "O")
    code, _, err = mu("ownership", f"--repo={plain}")
    assert code == 2 and "no compliance roster" in err


# --- the O production runs is one of the repository's ------------------------------------------------


def test_production_running_an_approved_o_that_was_never_committed_is_reported(
    repo: Repo, tmp_path: Path
) -> None:
    from finops_fabric.daemon.runtime import Runtime

    repo.raise_threshold()  # approved by compliance, generated and deployed, but never committed
    repo.approve("v2-uncommitted")
    g = repo.generate(tmp_path / "A2")
    store = Store(Path(os.environ["FABRIC_HOME"]))
    result = Runtime(store, "production").deploy(tmp_path / "A2", g["receipt_hash"])
    assert result.ok, result.reason
    out = repo.ownership(code=1)
    assert kinds(out) == ["production_ontology_not_in_repository"]
    prod = out["production_receipt"]
    assert prod["source"] == "the latest production deployment in the store" and prod["approved_by"]
    assert prod["in_repository"] is False and prod["first_commit"] is None
    assert prod["ontology_hash"] in out["violations"][0]["detail"]
    # once that O (still in the working tree) is committed, production's O is in the history
    sha = repo.commit("the O production runs")
    out = repo.ownership(code=0)
    assert (
        out["production_receipt"]["in_repository"] is True
        and out["production_receipt"]["first_commit"] == sha
    )


def test_deleting_o_from_the_repository_is_reported(repo: Repo) -> None:
    shutil.rmtree(repo.policy)
    sha = repo.commit("remove the policy", who=EVE)
    out = repo.ownership(code=1)
    assert kinds(out) == ["ontology_deleted"]
    v = out["violations"][0]
    assert v["commit"] == sha and v["author"] == author(EVE) and "policy/wires.ttl" in v["files"]
    # putting it back does not undo the deletion in the history
    copy_example(repo.path, "policy")
    repo.commit("restore the policy")
    assert kinds(repo.ownership(code=1)) == ["ontology_deleted"]
