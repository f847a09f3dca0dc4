"""`mu audit-trail` and finops_fabric.audit: a clean chain verifies with the right counts and
rule diffs; every kind of tampering with the ledger or the store is found and named."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyoxigraph as ox
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import finops_fabric
from finops_fabric import audit
from finops_fabric.canonical import canonical_json, sha256_hex
from finops_fabric.cli import main
from finops_fabric.errors import CheckFailed, InputError
from finops_fabric.keys import generate_keypair, key_id, load_private_key, load_public_key
from finops_fabric.merkle import MerkleTree
from finops_fabric.rdf.canon import canonical_nquads
from finops_fabric.receipts import receipt_payload, seal
from finops_fabric.store import Store

EXAMPLE = Path(finops_fabric.__file__).parent / "examples" / "acme"
EX = "https://example.com/acme/policy#"
HOSTILE = '<script>alert("O")</script> & <b>bold</b>'


def run(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def trail(home: Path, *args: object, code: int = 0) -> dict[str, Any]:
    got, out, err = run("audit-trail", "--home", home, "--json", *args)
    assert got == code, (got, out[-2000:], err)
    doc: dict[str, Any] = json.loads(out)
    return doc


def edit(src: Path, dest: Path, *replacements: tuple[str, str]) -> Path:
    shutil.copytree(src, dest)
    for name in ("purchases.ttl", "wires.ttl", "reference.ttl"):
        p = dest / name
        text = p.read_text()
        for old, new in replacements:
            text = text.replace(old, new)
        p.write_text(text)
    return dest


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A store with O_t0 → O_t1 → O_t1 again → a rejection → O_t2 (5 receipts, 3 changes)."""
    root = tmp_path_factory.mktemp("chain")
    home = root / "store"
    assert run("init", "--home", home)[0] == 0
    o0 = edit(EXAMPLE, root / "O0")
    o1 = edit(
        o0,
        root / "O1",
        ('"50000"^^xsd:decimal', '"75000"^^xsd:decimal'),
        ('"Wires over $50k need L3 or above"', '"' + HOSTILE.replace('"', '\\"') + '"'),
    )
    bad = edit(o1, root / "bad")
    (bad / "board.ttl").write_text(
        "@prefix fab: <https://w3id.org/finops-fabric/ns#> .\n"
        "@prefix ex: <https://example.com/acme/policy#> .\n"
        "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
        "ex:approval-purchase-board a fab:ApprovalRule ; fab:appliesTo ex:purchase ;\n"
        '    fab:amountThreshold "5"^^xsd:decimal .\n'
    )
    o2 = edit(o1, root / "O2")
    wires = (o2 / "wires.ttl").read_text()
    start = wires.index("ex:approval-wire-large a")
    end = wires.index("ex:sod-wire a")
    wires = wires[:start] + wires[end:]
    wires += (
        '\nex:audit-wires a fab:AuditLogRule ; rdfs:label "Rejected wires are logged" ;\n'
        '    fab:onEvent fab:Rejected ; fab:ledger "rejections" .\n'
    )
    (o2 / "wires.ttl").write_text(wires)
    receipts = []
    for i, (o, want) in enumerate([(o0, 0), (o1, 0), (o1, 0), (bad, 1), (o2, 0)]):
        r = root / f"R{i}.json"
        got = run("generate", "--home", home, f"--input={o}", f"--output={root / f'A{i}'}", f"--receipt={r}")
        assert got[0] == want, got
        receipts.append(json.loads(r.read_text()))
    return SimpleNamespace(root=root, home=home, receipts=receipts, O=[o0, o1, o2])


@pytest.fixture
def store(chain: SimpleNamespace, tmp_path: Path) -> Path:
    """A private copy of the chain's store, free to tamper with."""
    home = tmp_path / "store"
    shutil.copytree(chain.home, home)
    return home


def sql(home: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    db = sqlite3.connect(home / "fabric.db", isolation_level=None)
    try:
        for s in statements:
            db.execute(s, params) if params else db.execute(s)
    finally:
        db.close()


def body(home: Path, seq: int) -> dict[str, Any]:
    db = sqlite3.connect(home / "fabric.db")
    try:
        (text,) = db.execute("SELECT body FROM ledger WHERE seq = ?", (seq,)).fetchone()
    finally:
        db.close()
    doc: dict[str, Any] = json.loads(text)
    return doc


def put_row(home: Path, seq: int, doc: dict[str, Any]) -> None:
    sql(
        home,
        "UPDATE ledger SET body = ?, receipt_hash = ? WHERE seq = " + str(seq),
        params=(canonical_json(doc).decode(), doc["receipt_hash"]),
    )


def problems(doc: dict[str, Any]) -> list[tuple[int | None, str]]:
    return [(g["seq"], g["problem"]) for g in doc["gaps"]]


def fingerprint(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.rglob("*"))
        if p.is_file()
    }


# --- a clean chain ----------------------------------------------------------------------------


def test_clean_chain_verifies_with_counts_and_rule_diffs(chain: SimpleNamespace) -> None:
    doc = trail(chain.home)
    assert doc["verified"] is True and doc["gaps"] == []
    assert doc["receipts"] == 5 and doc["changes"] == 3
    assert doc["summary"] == (
        "3 policy changes (generations), 1 regeneration of the same O, 1 rejected attempt, "
        "5 receipts, all verified"
    )
    assert doc["by_kind"] == {"generation": 4, "rejection": 1}
    labels = [c["label"] for c in doc["chain"]]
    assert labels == ["policy change"] * 2 + [
        "regeneration of the same O",
        "rejected attempt",
        "policy change",
    ]
    assert [c["kind"] for c in doc["chain"]] == ["generation"] * 3 + ["rejection", "generation"]
    assert all(c["verified"] and c["signed_by"] for c in doc["chain"])
    t = doc["transitions"]
    assert [x["receipt_hash"] for x in t] == [r["receipt_hash"] for r in chain.receipts]
    assert all(x["valid"] for x in t)
    first, second, again, stop, third = t
    assert first["from"] is None and first["changed_o"] and EX + "approval-purchase" in first["added"]
    assert second["from"] == first["to"] and second["to"] == chain.receipts[1]["inputs"]["ontology_hash"]
    (change,) = second["changed"]
    assert change["rule"] == EX + "approval-wire"
    assert change["fields"]["fab:amountThreshold"] == {"old": "50000", "new": "75000"}
    assert change["fields"]["rdfs:label"] == {"old": "Wires over $50k need L3 or above", "new": HOSTILE}
    assert not again["changed_o"] and again["changed"] == [] and again["added"] == []
    assert stop["status"] == "rejected" and stop["valid"] and stop["from"] == stop["to"] == second["to"]
    assert third["from"] == second["to"]
    assert third["added"] == [EX + "audit-wires"] and third["removed"] == [EX + "approval-wire-large"]
    assert third["labels"][EX + "audit-wires"] == "Rejected wires are logged"
    assert third["validation"]["conforms"] is True
    head = doc["tree_head"]
    assert head["tree_size"] == 5 and head["signatures"]
    leaves = [bytes.fromhex(r["receipt_hash"][7:]) for r in chain.receipts]
    assert head["root_hash"] == "sha256:" + MerkleTree(leaves).root().hex()


def test_human_output_states_changes_and_summary(chain: SimpleNamespace) -> None:
    code, out, _ = run("audit-trail", "--home", chain.home)
    assert code == 0
    assert out.rstrip().endswith("1 rejected attempt, 5 receipts, all verified")
    (seq4,) = [line for line in out.splitlines() if line.startswith("seq 4 ")]
    assert "rejected attempt" in seq4 and "verified" in seq4
    assert f"~ {EX}approval-wire" in out and "fab:amountThreshold: '50000' → '75000'" in out
    assert f"+ {EX}audit-wires" in out and f"- {EX}approval-wire-large" in out
    assert "rejected" in out and "tree head: 5 receipts" in out


def test_verification_never_changes_the_store(store: Path, tmp_path: Path) -> None:
    before = fingerprint(store)
    trail(store, "--rebuild", f"--report={tmp_path / 'r.html'}", f"--tree-head={tmp_path / 'th.json'}")
    trail(store, f"--report={tmp_path / 'r.json'}", f"--consistency-from={tmp_path / 'th.json'}")
    assert fingerprint(store) == before
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert json.loads((tmp_path / "r.json").read_text())["verified"] is True


def test_rebuild_reproduces_every_receipted_hash(chain: SimpleNamespace) -> None:
    doc = trail(chain.home, "--rebuild")
    steps = doc["rebuild"]
    assert [s["seq"] for s in steps] == [1, 2, 3, 5]
    assert all(s["reproduced"] for s in steps), steps
    assert steps[0]["base"] is None and steps[0]["applied"] == "from nothing"
    assert steps[1]["applied"] == "on the rebuilt previous O" and steps[1]["added"] > 0
    assert [s["ontology_hash"] for s in steps] == [
        r["inputs"]["ontology_hash"] for r in chain.receipts if r["kind"] == "generation"
    ]


def test_range_by_hash_and_by_file(chain: SimpleNamespace) -> None:
    r = chain.receipts
    doc = trail(chain.home, f"--from={r[1]['receipt_hash']}", f"--to={chain.root / 'R3.json'}")
    assert doc["receipts"] == 3 and doc["verified"]
    assert [c["seq"] for c in doc["chain"]] == [2, 3, 4]
    assert doc["transitions"][0]["from"] == r[0]["inputs"]["ontology_hash"]
    assert doc["changes"] == 1
    assert doc["transitions"][0]["changed"][0]["rule"] == EX + "approval-wire"
    code, _, err = run("audit-trail", "--home", chain.home, "--from=nonsense")
    assert code == 2 and "neither a receipt file nor a receipt hash" in err
    code, _, err = run("audit-trail", "--home", chain.home, "--from=sha256:" + "0" * 64)
    assert code == 1 and "not in the ledger" in err


# --- each failure is found and named ------------------------------------------------------------


def test_deleted_row_is_a_named_gap(store: Path) -> None:
    sql(store, "DELETE FROM ledger WHERE seq = 2")
    doc = trail(store, code=1)
    assert doc["verified"] is False
    assert problems(doc) == [(3, "deleted")]
    (gap,) = doc["gaps"]
    assert "seq 1 and seq 3" in gap["message"] and "(seq 2 is missing)" in gap["message"]
    assert "NOT verified" in doc["summary"] and "seq 3 deleted" in doc["summary"]


def test_deleted_newest_row_is_found_by_the_sequence_and_the_tree_head(store: Path, tmp_path: Path) -> None:
    head = tmp_path / "head.json"
    trail(store, f"--tree-head={head}")
    sql(store, "DELETE FROM ledger WHERE seq = 5")
    doc = trail(store, f"--consistency-from={head}", code=1)
    assert (None, "truncated") in problems(doc)
    assert doc["consistency"]["consistent"] is False and doc["consistency"]["problem"] == "log_truncated"


def test_altered_body_without_rehash(store: Path) -> None:
    doc = body(store, 2)
    doc["gates"]["golden"]["status"] = "FAIL"
    sql(store, "UPDATE ledger SET body = ? WHERE seq = 2", params=(canonical_json(doc).decode(),))
    out = trail(store, code=1)
    assert problems(out) == [(2, "altered")]
    assert "does not match its receipt_hash" in out["gaps"][0]["message"]
    assert out["chain"][1]["verified"] is False and out["chain"][0]["verified"] is True


def test_altered_body_resealed_with_another_key_fails_trust_and_the_link(store: Path, tmp_path: Path) -> None:
    key, _ = generate_keypair(tmp_path / "mallory")
    doc = body(store, 2)
    doc["outputs"]["enforcer_hash"] = "sha256:" + "0" * 64
    forged = seal(doc, load_private_key(key))
    put_row(store, 2, forged)
    sql(
        store,
        "UPDATE ledger SET enforcer_hash = ? WHERE seq = 2",
        params=(forged["outputs"]["enforcer_hash"],),
    )
    out = trail(store, code=1)
    assert problems(out) == [(2, "untrusted_signer"), (3, "deleted")]
    assert "none trusted" in out["gaps"][0]["message"]


def test_last_row_resealed_with_the_operator_key_breaks_consistency(store: Path, tmp_path: Path) -> None:
    head = tmp_path / "head.json"
    trail(store, f"--tree-head={head}")
    doc = body(store, 5)
    doc["time"] = "2030-01-01T00:00:00Z"
    put_row(store, 5, seal(doc, load_private_key(store / "keys" / "operator.key")))
    # an insider with the operator key leaves a chain that verifies on its own ...
    assert trail(store)["verified"] is True
    # ... but not against the tree head signed before
    out = trail(store, f"--consistency-from={head}", code=1)
    assert out["consistency"]["problem"] == "log_rewritten"
    assert "NOT verified" in out["summary"]


def test_rewritten_body_and_index_columns(store: Path) -> None:
    doc = body(store, 3)
    sql(store, "UPDATE ledger SET body = ? WHERE seq = 3", params=(json.dumps(doc, indent=1),))
    sql(store, "UPDATE ledger SET kind = 'approval' WHERE seq = 4")
    out = trail(store, code=1)
    assert problems(out) == [(3, "rewritten"), (4, "altered")]
    assert "kind (column 'approval', body 'rejection')" in out["gaps"][1]["message"]


def test_receipt_signed_by_a_key_not_in_the_trust_file(store: Path, tmp_path: Path) -> None:
    key, pub = generate_keypair(tmp_path / "auditor")
    Store(store).append({"kind": "replay", "time": "2030-01-01T00:00:00Z"}, load_private_key(key))
    out = trail(store, code=1)
    assert problems(out) == [(6, "untrusted_signer")]
    # the auditor's key, trusted for replay receipts, makes it verify (JSON trust file)
    operator = store / "keys" / "operator.pub"
    trust = tmp_path / "trust.json"
    trust.write_text(
        json.dumps({"keys": [{"path": str(operator)}, {"path": "auditor.pub", "kinds": ["replay"]}]})
    )
    assert trail(store, f"--trust={trust}")["verified"] is True
    # trusted for other kinds only: still refused
    text = tmp_path / "trust.txt"
    text.write_text(f"# operator and auditor\n{operator}\nauditor.pub approval,kaizen\n")
    out = trail(store, f"--trust={text}", code=1)
    assert (
        problems(out) == [(6, "untrusted_signer")]
        and "trusted only for approval" in out["gaps"][0]["message"]
    )
    # a trust file without the operator key refuses every operator receipt
    only = tmp_path / "only.txt"
    only.write_text(pub.read_text())
    out = trail(store, f"--trust={only}", code=1)
    assert [p for _, p in problems(out)] == ["untrusted_signer"] * 5


def test_trust_file_errors_are_exit_2(store: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"keys": [{"path": str(store / "keys" / "operator.pub"), "keyid": "ab" * 32}]}))
    code, _, err = run("audit-trail", "--home", store, f"--trust={bad}")
    assert code == 2 and "does not match the key" in err
    code, _, err = run("audit-trail", "--home", store, f"--trust={tmp_path / 'absent'}")
    assert code == 2 and "cannot read trust file" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    assert run("audit-trail", "--home", store, f"--trust={empty}")[0] == 2
    assert run("audit-trail", "--home", tmp_path / "nostore")[0] == 2


def test_missing_o_snapshot(store: Path, chain: SimpleNamespace) -> None:
    oh = chain.receipts[4]["inputs"]["ontology_hash"]
    (store / "objects" / "ontology" / oh[7:]).unlink()
    out = trail(store, code=1)
    assert problems(out) == [(5, "snapshot_missing")]
    assert oh in out["gaps"][0]["message"]
    assert out["transitions"][4]["valid"] is False


def test_corrupt_o_snapshot(store: Path, chain: SimpleNamespace) -> None:
    oh = chain.receipts[1]["inputs"]["ontology_hash"]
    path = store / "objects" / "ontology" / oh[7:]
    path.write_bytes(path.read_bytes().replace(b"75000", b"99999"))
    out = trail(store, code=1)
    assert problems(out) == [(2, "snapshot_corrupt"), (3, "snapshot_corrupt")]


def test_invalid_o_is_an_invalid_transition(store: Path, chain: SimpleNamespace) -> None:
    """A generation whose O does not satisfy Σ (e.g. planted by hand with a matching hash)."""
    bad = canonical_nquads(
        [q.triple for q in ox.parse((chain.root / "bad" / "board.ttl").read_bytes(), ox.RdfFormat.TURTLE)]
    )
    st = Store(store)
    oh = st.put_object(bad, "ontology")
    doc = body(store, 5)
    doc["inputs"]["ontology_hash"] = oh
    del doc["receipt_hash"], doc["signatures"]
    st.append(doc)
    out = trail(store, code=1)
    assert problems(out) == [(6, "invalid_transition")]
    assert "does not satisfy Σ" in out["gaps"][0]["message"]


def test_missing_delta(store: Path, chain: SimpleNamespace) -> None:
    dh = chain.receipts[1]["inputs"]["delta_hash"]
    (store / "objects" / "delta" / dh[7:]).unlink()
    out = trail(store, "--rebuild", code=1)
    assert problems(out) == [(2, "delta_missing")]
    steps = {s["seq"]: s for s in out["rebuild"]}
    assert steps[2]["reproduced"] is False
    # the next step starts from the stored snapshot of the O it was taken against
    assert steps[3]["reproduced"] and "stored snapshot" in steps[3]["applied"]


def test_delta_that_does_not_reproduce_the_hash(store: Path, chain: SimpleNamespace) -> None:
    dh = chain.receipts[4]["inputs"]["delta_hash"]
    path = store / "objects" / "delta" / dh[7:]
    d = json.loads(path.read_bytes())
    d["added"] = d["added"][1:]
    forged = canonical_json(d)
    st = Store(store)
    new = st.put_object(forged, "delta")
    doc = body(store, 5)
    doc["inputs"]["delta_hash"] = new
    del doc["receipt_hash"], doc["signatures"]
    st.append(doc)
    out = trail(store, "--rebuild", code=1)
    assert problems(out) == [(6, "rebuild_mismatch")]


def test_reordered_rows(store: Path) -> None:
    sql(
        store,
        "UPDATE ledger SET seq = 100 WHERE seq = 2",
        "UPDATE ledger SET seq = 2 WHERE seq = 3",
        "UPDATE ledger SET seq = 3 WHERE seq = 100",
    )
    out = trail(store, code=1)
    assert {p for _, p in problems(out)} == {"reordered"}
    assert [s for s, _ in problems(out)] == [2, 3, 4]
    assert "rows are out of order" in out["gaps"][0]["message"]


def test_duplicated_row(store: Path) -> None:
    sql(
        store,
        "CREATE TABLE copy AS SELECT * FROM ledger",
        "DROP TABLE ledger",
        "ALTER TABLE copy RENAME TO ledger",
        "INSERT INTO ledger SELECT 6, receipt_hash, kind, previous_receipt_hash, ontology_hash,"
        " enforcer_hash, body FROM ledger WHERE seq = 2",
    )
    out = trail(store, code=1)
    assert problems(out) == [(6, "duplicated")]
    assert "already stored at seq 2" in out["gaps"][0]["message"]


def test_seq_gap_with_intact_links(store: Path) -> None:
    sql(store, "UPDATE ledger SET seq = 9 WHERE seq = 5", "UPDATE sqlite_sequence SET seq = 9")
    out = trail(store, code=1)
    assert problems(out) == [(9, "seq_gap")]


# --- Merkle proofs and tree heads ---------------------------------------------------------------


def test_prove_inclusion(chain: SimpleNamespace) -> None:
    h = chain.receipts[2]["receipt_hash"]
    out = trail(chain.home, f"--prove={h}")
    inc = out["inclusion"]
    assert inc["verified"] and inc["leaf_index"] == 2 and inc["seq"] == 3 and len(inc["audit_path"]) == 3
    assert inc["root_hash"] == out["tree_head"]["root_hash"]
    out = trail(chain.home, f"--prove={chain.root / 'R4.json'}")
    assert out["inclusion"]["leaf_index"] == 4
    out = trail(chain.home, "--prove=sha256:" + "1" * 64, code=1)
    assert out["inclusion"]["included"] is False and "inclusion not proven" in out["summary"]


def test_consistency_with_an_earlier_tree_head(store: Path, tmp_path: Path) -> None:
    head = tmp_path / "head.json"
    trail(store, f"--tree-head={head}")
    Store(store).append({"kind": "deployment", "time": "2030-01-01T00:00:00Z"})
    out = trail(store, f"--consistency-from={head}")
    con = out["consistency"]
    assert con["consistent"] and con["old_tree_size"] == 5 and con["tree_size"] == 6 and con["proof"]
    # an unsigned or forged old tree head is refused
    forged = json.loads(head.read_text())
    forged["tree_size"] = 4
    head.write_text(json.dumps(forged))
    out = trail(store, f"--consistency-from={head}", code=1)
    assert out["consistency"]["problem"] == "tree_head_untrusted"
    head.write_text("{not json")
    assert run("audit-trail", "--home", store, f"--consistency-from={head}")[0] == 2


def test_tree_head_signature(chain: SimpleNamespace) -> None:
    st = Store(chain.home)
    trust = audit.default_trust(st)
    tree = audit.ledger_tree(audit.read_ledger(st).rows)
    head = audit.sign_tree_head(tree, st.operator_private_key(), "2030-01-01T00:00:00Z")
    assert set(head) == {"tree_size", "root_hash", "timestamp", "signatures"}
    assert audit.verify_tree_head(head, trust) == head["signatures"][0]["keyid"]
    with pytest.raises(CheckFailed):
        audit.verify_tree_head({**head, "tree_size": 4}, trust)
    with pytest.raises(CheckFailed):
        audit.verify_tree_head(audit.sign_tree_head(tree, None), trust)


def test_unsigned_tree_head_without_the_operator_key(store: Path) -> None:
    (store / "keys" / "operator.key").unlink()
    out = trail(store)
    assert out["tree_head"]["signatures"] == [] and "unsigned" in out["notes"][0]


# --- rebuild when line-level application needs re-canonicalization ---------------------------


def test_rebuild_recanonicalizes_when_blank_node_labels_differ(tmp_path: Path) -> None:
    st = Store(tmp_path / "s")
    st.init()
    base = b'<https://e.x/a> <https://e.x/p> "1" .\n'
    triples = [
        q.triple
        for q in ox.parse(
            base + b'<https://e.x/a> <https://e.x/q> _:n .\n_:n <https://e.x/p> "2" .\n', ox.RdfFormat.N_QUADS
        )
    ]
    new = canonical_nquads(triples)
    assert b"_:c14n0" in new
    o_base, o_new = st.put_object(base, "ontology"), st.put_object(new, "ontology")
    d0 = st.put_object(canonical_json({"added": base.decode().splitlines(), "removed": []}), "delta")
    added = sorted(set(new.decode().splitlines()) - set(base.decode().splitlines()))
    relabelled = [line.replace("_:c14n0", "_:zz") for line in added]
    d1 = st.put_object(canonical_json({"added": relabelled, "removed": []}), "delta")
    for oh, prev, dh in ((o_base, None, d0), (o_new, o_base, d1)):
        st.append(
            {
                "kind": "generation",
                "inputs": {"ontology_hash": oh, "previous_ontology_hash": prev, "delta_hash": dh},
            }
        )
    ledger = audit.read_ledger(st)
    steps, gaps = audit.rebuild(ledger.rows, 0, 2, audit._Objects(st))
    assert not gaps
    assert [s["method"] for s in steps] == ["lines", "recanonicalized"]


def test_trust_text_file_with_inline_pem(tmp_path: Path) -> None:
    _, pub = generate_keypair(tmp_path / "k")
    f = tmp_path / "trust.txt"
    f.write_text("# inline\n" + pub.read_text())
    trust = audit.load_trust(f)
    assert list(trust.keys) == [key_id(load_public_key(pub))]


# --- the fast canonical path is exact -----------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_fast_json_is_used_only_where_it_equals_rfc8785(value: Any) -> None:
    fast = audit._fast_json(value)
    try:
        exact = canonical_json(value).decode("utf-8")
    except InputError:
        exact = None
    if fast is not None and audit._same_in_jcs(value):
        assert fast == exact
    doc = {"v": value}
    stored = '{"v":' + exact + "}" if exact is not None else ""
    assert audit._is_canonical(doc, stored) is (exact is not None)


def test_fast_payload_falls_back_to_the_exact_payload() -> None:
    doc: dict[str, Any] = {"format": "f", "kind": "k", "previous_receipt_hash": None, "n": 100.0, "x": 1e-7}
    exact = receipt_payload(doc)
    doc["receipt_hash"] = sha256_hex(exact)
    doc["signatures"] = []
    assert audit._payload(doc) == (exact, doc["receipt_hash"])
    assert b'"n":100,' in exact and b'"x":1e-7' in exact
    body = '{"n":100.0}'
    assert audit._is_canonical(json.loads(body), body) is False
    assert audit._is_canonical({"n": 100}, '{"n":100}') is True
