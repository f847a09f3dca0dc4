"""Loading A from disk: every byte is checked before any generated code runs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from finops_fabric import model as m
from finops_fabric.canonical import canonical_json
from finops_fabric.enforcer import (
    Enforcer,
    check_files,
    enforcer_hash,
    load_enforcer,
    verify_files,
)
from finops_fabric.errors import CheckFailed, InputError

EX = "https://example.com/test#"
RULE = EX + "approval-purchase"


@pytest.fixture(scope="module")
def policy(policies: SimpleNamespace) -> m.Policy:
    return policies.policy_of(policies.FULL_RULES)


@pytest.fixture(scope="module")
def built(policies: SimpleNamespace, policy: m.Policy) -> dict[str, bytes]:
    return policies.build(policy)


@pytest.fixture
def a_dir(tmp_path: Path, policies: SimpleNamespace, built: dict[str, bytes]) -> Path:
    return policies.write_tree(tmp_path / "A", built)


def _rule_path(built: dict[str, bytes], rule: str = RULE) -> str:
    manifest = json.loads(built["manifest.json"])
    (path,) = [a["path"] for a in manifest["artifacts"] if a.get("rule") == rule]
    return str(path)


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _tampered(a_dir: Path) -> CheckFailed:
    with pytest.raises(CheckFailed) as ei:
        load_enforcer(a_dir)
    assert ei.value.code == "enforcer.tampered"
    assert ei.value.exit_code == 1
    return ei.value


def test_a_written_enforcer_loads_and_decides(
    a_dir: Path, built: dict[str, bytes], policies: SimpleNamespace
) -> None:
    enf = load_enforcer(a_dir)
    assert isinstance(enf, Enforcer)
    expected_hash = "sha256:" + hashlib.sha256(built["manifest.json"]).hexdigest()
    assert enf.hash == expected_hash == enforcer_hash(a_dir)
    assert enf.ontology_hash == policies.ZERO_HASH
    d = enf.decide(policies.tx(amount="100000.01", actor_level="L2")).to_dict()
    assert d["decision"] == "REJECT"
    assert [f["rule"] for f in d["fired"]] == [RULE]
    assert d["enforcer_hash"] == expected_hash
    assert enf.decide(policies.tx()).to_dict()["decision"] == "APPROVE"
    assert enf.rule_artifacts()[RULE] == _rule_path(built)
    assert set(enf.rule_modules()) == set(enf.rule_artifacts())
    assert enf.golden_cases() == []
    assert enf.transaction(policies.tx(amount="5")).amount == 5


def test_load_enforcer_accepts_a_string_path(a_dir: Path) -> None:
    assert load_enforcer(str(a_dir)).hash == enforcer_hash(a_dir)


def test_a_changed_byte_in_a_rule_module_is_tampering(a_dir: Path, built: dict[str, bytes]) -> None:
    rel = _rule_path(built)
    f = a_dir / rel
    data = bytearray(f.read_bytes())
    i = data.index(b"THRESHOLD = Decimal('100000')") + len("THRESHOLD = Decimal('")
    data[i] = ord("9")  # 100000 -> 900000: still valid Python, a very different policy
    f.write_bytes(bytes(data))
    e = _tampered(a_dir)
    assert rel in e.message
    assert RULE in e.message
    assert "changed" in e.message
    assert e.location is not None and e.location.file == str(a_dir)


def test_a_changed_support_file_is_tampering(a_dir: Path) -> None:
    f = a_dir / "runtime.py"
    f.write_bytes(f.read_bytes() + b"\n")
    e = _tampered(a_dir)
    assert "runtime.py changed" in e.message


def test_a_missing_file_is_tampering(a_dir: Path, built: dict[str, bytes]) -> None:
    rel = _rule_path(built, EX + "sanctions")
    (a_dir / rel).unlink()
    e = _tampered(a_dir)
    assert f"{rel} missing" in e.message
    assert EX + "sanctions" in e.message


@pytest.mark.parametrize(
    "extra", ["rules/evil.py", "sitecustomize.py", "notes.txt", "rules/sub/x.py", ".hidden"]
)
def test_an_extra_file_is_tampering(a_dir: Path, extra: str) -> None:
    p = a_dir / extra
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("import os\n")
    e = _tampered(a_dir)
    assert f"{extra} extra" in e.message


def test_a_reformatted_manifest_is_refused(a_dir: Path) -> None:
    f = a_dir / "manifest.json"
    manifest = json.loads(f.read_bytes())
    f.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    with pytest.raises(CheckFailed) as ei:
        load_enforcer(a_dir)
    assert ei.value.code == "enforcer.manifest_edited"
    assert "manifest.json" in ei.value.message


def test_a_manifest_with_a_trailing_newline_is_refused(a_dir: Path) -> None:
    f = a_dir / "manifest.json"
    f.write_bytes(f.read_bytes() + b"\n")
    with pytest.raises(CheckFailed) as ei:
        load_enforcer(a_dir)
    assert ei.value.code == "enforcer.manifest_edited"


def test_a_canonical_manifest_edit_to_cover_a_changed_module_changes_the_hash(
    a_dir: Path, built: dict[str, bytes]
) -> None:
    """Re-listing a tampered module canonically loads, but hash(A) no longer matches any receipt."""
    rel = _rule_path(built)
    module = (a_dir / rel).read_bytes().replace(b"Decimal('100000')", b"Decimal('900000')")
    (a_dir / rel).write_bytes(module)
    manifest = json.loads((a_dir / "manifest.json").read_bytes())
    for art in manifest["artifacts"]:
        if art["path"] == rel:
            art["sha256"] = "sha256:" + hashlib.sha256(module).hexdigest()
    (a_dir / "manifest.json").write_bytes(canonical_json(manifest))
    enf = load_enforcer(a_dir)
    assert enf.hash != "sha256:" + hashlib.sha256(built["manifest.json"]).hexdigest()


def test_a_manifest_naming_another_generator_source_is_refused(a_dir: Path) -> None:
    manifest = json.loads((a_dir / "manifest.json").read_bytes())
    manifest["generator"]["source_hash"] = "sha256:" + "f" * 64
    (a_dir / "manifest.json").write_bytes(canonical_json(manifest))
    with pytest.raises(CheckFailed) as ei:
        load_enforcer(a_dir)
    assert ei.value.code == "enforcer.generator_mismatch"


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"artifacts": 3}', b"\xff\xfe"])
def test_an_invalid_manifest_is_refused(a_dir: Path, payload: bytes) -> None:
    (a_dir / "manifest.json").write_bytes(payload)
    with pytest.raises(CheckFailed) as ei:
        load_enforcer(a_dir)
    assert ei.value.code == "enforcer.manifest_invalid"


def test_a_symlinked_file_is_refused(a_dir: Path, built: dict[str, bytes], tmp_path: Path) -> None:
    rel = _rule_path(built)
    outside = tmp_path / "outside.py"
    outside.write_bytes((a_dir / rel).read_bytes())  # identical bytes: only the link is wrong
    (a_dir / rel).unlink()
    os.symlink(outside, a_dir / rel)
    with pytest.raises(CheckFailed) as ei:
        load_enforcer(a_dir)
    assert ei.value.code == "enforcer.symlink"
    assert rel in ei.value.message


def test_a_symlinked_manifest_is_refused(a_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "manifest.json"
    outside.write_bytes((a_dir / "manifest.json").read_bytes())
    (a_dir / "manifest.json").unlink()
    os.symlink(outside, a_dir / "manifest.json")
    with pytest.raises(CheckFailed) as ei:
        load_enforcer(a_dir)
    assert ei.value.code == "enforcer.symlink"


def test_a_symlinked_directory_is_refused(a_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "rules-elsewhere"
    (a_dir / "rules").rename(outside)
    os.symlink(outside, a_dir / "rules", target_is_directory=True)
    with pytest.raises(CheckFailed) as ei:
        load_enforcer(a_dir)
    assert ei.value.code == "enforcer.symlink"
    assert "rules" in ei.value.message


def test_an_extra_symlinked_directory_is_refused(a_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.py").write_text("import os\n")
    os.symlink(outside, a_dir / "rules" / "linked", target_is_directory=True)
    with pytest.raises(CheckFailed) as ei:
        load_enforcer(a_dir)
    assert ei.value.code == "enforcer.symlink"
    assert "rules/linked" in ei.value.message


def test_a_dangling_symlink_is_refused(a_dir: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "nowhere", a_dir / "dangling")
    with pytest.raises(CheckFailed) as ei:
        load_enforcer(a_dir)
    assert ei.value.code == "enforcer.symlink"


def test_no_pycache_appears_inside_a(a_dir: Path, policies: SimpleNamespace) -> None:
    before = _tree(a_dir)
    enf = load_enforcer(a_dir)
    for amount in ("1", "100000.01", "2000000"):
        enf.decide(policies.tx(amount=amount, type="wire"))
    load_enforcer(a_dir)
    after = _tree(a_dir)
    assert after == before
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in after)


def test_nothing_is_written_to_a(a_dir: Path) -> None:
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in a_dir.rglob("*") if p.is_file()}
    load_enforcer(a_dir)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in a_dir.rglob("*") if p.is_file()} == stamps


def test_a_missing_directory_and_a_non_enforcer(tmp_path: Path) -> None:
    with pytest.raises(InputError) as ei:
        load_enforcer(tmp_path / "nope")
    assert ei.value.code == "enforcer.not_found"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as ei2:
        load_enforcer(empty)
    assert ei2.value.code == "enforcer.not_an_enforcer"
    with pytest.raises(InputError):
        enforcer_hash(empty)


def test_check_files_reports_every_problem(built: dict[str, bytes]) -> None:
    manifest = json.loads(built["manifest.json"])
    files = dict(built)
    rel = _rule_path(built)
    files[rel] = files[rel] + b"# edited\n"
    del files["runtime.py"]
    files["extra.py"] = b""
    problems = {(p.artifact, p.problem, p.rule) for p in check_files(files, manifest)}
    assert problems == {(rel, "changed", RULE), ("runtime.py", "missing", None), ("extra.py", "extra", None)}
    assert check_files(built, manifest) == []


def test_verify_files_returns_the_verified_bytes(a_dir: Path, built: dict[str, bytes]) -> None:
    files, manifest, h = verify_files(a_dir)
    assert files == built
    assert manifest == json.loads(built["manifest.json"])
    assert h == "sha256:" + hashlib.sha256(built["manifest.json"]).hexdigest()
