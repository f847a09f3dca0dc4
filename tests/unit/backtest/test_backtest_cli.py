"""`mu backtest` on files: every row counted (checked against an independent count made with the
generated enforcers one transaction at a time), the same counts from JSON Lines, CSV and
Parquet, unreadable rows listed by line, the receipt in the ledger, `mu approve --evidence`,
and a kernel that disagrees with an enforcer failing the run."""

from __future__ import annotations

import csv
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from harness import changed_example, copy_example

from finops_fabric import generators
from finops_fabric.backtest.simulate import transactions
from finops_fabric.interpreter import comparable

AR, RA = "APPROVE→REJECT", "REJECT→APPROVE"


def _txs(n: int = 3000) -> list[dict[str, Any]]:
    out = []
    for i, tx in enumerate(transactions(n, seed=7)):
        tx["timestamp"] = f"2026-11-{1 + i % 5:02d}T09:00:00Z"
        # amounts right at the changed threshold and around it
        if i % 50 == 0:
            tx.update(type="wire", amount=["1000000", "1000000.01", "999999.99", "2000000.01"][i // 50 % 4])
        out.append(tx)
    return out


def _write_jsonl(path: Path, txs: list[dict[str, Any]], bad_lines: dict[int, str]) -> Path:
    lines = [json.dumps(tx, default=str) for tx in txs]
    for at, text in sorted(bad_lines.items()):
        lines.insert(at - 1, text)
    path.write_text("\n".join(lines) + "\n")
    return path


def _enforcer(o: Path) -> Any:
    from finops_fabric.backtest.sides import load_side

    return load_side("x", o, None).enforcer


def _oracle(old: Any, new: Any, txs: list[dict[str, Any]]) -> dict[str, Any]:
    """The counts, made with the generated enforcers one transaction at a time."""
    flips: Counter[str] = Counter()
    by_rule: dict[str, Counter[str]] = {}
    amount = Decimal(0)
    changed_fired = 0
    for tx in txs:
        a, b = comparable(old.decide(tx).to_dict()), comparable(new.decide(tx).to_dict())
        if a[0] != b[0]:
            flips[f"{a[0]}→{b[0]}"] += 1
            amount += Decimal(str(tx["amount"]).strip())
        elif a[1] != b[1]:
            changed_fired += 1
        for r in set(a[1]) | set(b[1]):
            if (r in a[1]) != (r in b[1]):
                by_rule.setdefault(r, Counter())["gained" if r in b[1] else "lost"] += 1
    return {
        "flips": {AR: flips[AR], RA: flips[RA]},
        "changed_fired": changed_fired,
        "by_rule": {r: {"gained": c["gained"], "lost": c["lost"]} for r, c in sorted(by_rule.items())},
        "amount_flipped": amount,
    }


def test_jsonl_backtest_counts_every_row_as_the_enforcers_do(mu: Any, tmp_path: Path) -> None:
    old, new = copy_example(tmp_path, "O"), changed_example(tmp_path, "O2")
    txs = _txs()
    path = _write_jsonl(tmp_path / "tx.jsonl", txs, {5: "{not json", 100: "[1, 2]", 101: ""})
    doc = mu.json("backtest", f"--old={old}", f"--new={new}", f"--transactions={path}", "--batch-size=700")
    want = _oracle(_enforcer(old), _enforcer(new), txs)
    assert doc["rows"] == len(txs)
    assert [u["line"] for u in doc["unreadable"]] == [5, 100, 101]
    assert doc["unreadable_count"] == 3
    assert doc["reproducible"] is None
    assert doc["flips"] == want["flips"]
    assert doc["flips"][RA] > 0  # the raised threshold lets wires through
    assert doc["changed_fired"] == want["changed_fired"]
    assert doc["by_rule"] == want["by_rule"]
    assert Decimal(doc["amount_flipped"]) == want["amount_flipped"]
    assert sum(d[RA] for d in doc["per_day"].values()) == doc["flips"][RA]
    assert set(doc["per_day"]) == {f"2026-11-0{d}" for d in range(1, 6)}
    assert sum(r[RA] for r in doc["by_type_level"]) == doc["flips"][RA]
    # examples carry both sides' reasons, decided by the enforcers
    ex = next(e for e in doc["examples"] if e["group"] == RA)
    assert ex["old"]["decision"] == "REJECT" and ex["old"]["fired"][0]["reason"]
    assert ex["new"]["decision"] == "APPROVE"
    # the kernel was checked on every row within 0.01 of a threshold
    assert doc["checked_by"]["near_threshold"] >= 3 * len(txs) // 50 // 4
    assert doc["checked_by"]["disagreements"] == 0
    # the regions of `mu impact` count every changed row
    regions = doc["regions"]
    assert regions["available"] and regions["changed_rows_outside_every_region"] == 0
    assert sum(r["rows"] for r in regions["regions"]) == doc["changed_rows"]
    # the receipt is in the ledger and binds the file's hash and the counts
    from finops_fabric.store import Store

    stored = Store.locate(None).find(doc["receipt_hash"])
    assert stored is not None and stored["kind"] == "backtest"
    assert stored["inputs"]["data"]["sha256"] == doc["data"]["sha256"]
    assert stored["inputs"]["new_ontology_hash"] == doc["new"]["ontology_hash"]
    assert stored["counts"]["flips"] == doc["flips"]


def test_csv_and_parquet_give_the_counts_of_json_lines(mu: Any, tmp_path: Path) -> None:
    old, new = copy_example(tmp_path, "O"), changed_example(tmp_path, "O2")
    txs = _txs(1500)
    flat = []
    for tx in txs:
        row = {k: v for k, v in tx.items() if k != "attributes"}
        row.update({f"attributes.{k}": v for k, v in tx["attributes"].items()})
        row["amount"] = str(row["amount"])
        flat.append(row)
    names = sorted({k for r in flat for k in r})
    with (tmp_path / "tx.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        w.writerows(flat)
        f.write("too,few\n")
    pq.write_table(pa.Table.from_pylist(flat), tmp_path / "tx.parquet")
    jsonl = _write_jsonl(tmp_path / "tx.jsonl", [{**t, "amount": str(t["amount"])} for t in txs], {})
    keys = (
        "rows",
        "flips",
        "changed_fired",
        "by_rule",
        "amount_flipped",
        "per_day",
        "notifications",
        "audit",
    )
    docs = {
        name: mu.json(
            "backtest", f"--old={old}", f"--new={new}", f"--transactions={tmp_path / name}", "--no-receipt"
        )
        for name in ("tx.jsonl", "tx.csv", "tx.parquet")
    }
    assert jsonl.name in docs
    for name in ("tx.csv", "tx.parquet"):
        assert {k: docs[name][k] for k in keys} == {k: docs["tx.jsonl"][k] for k in keys}, name
    assert docs["tx.csv"]["unreadable"] == [
        {"line": len(txs) + 2, "error": f"2 cells where the header names {len(names)}"}
    ]


def test_a_kernel_that_disagrees_with_the_enforcer_fails_the_backtest(
    mu: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finops_fabric.backtest.kernel import Kernel

    real = Kernel.decide

    def broken(self: Kernel, batch: Any) -> Any:
        out = real(self, batch)
        for k in list(out.fired):  # forget one fired rule on the row the sample is sure to hold
            out.fired[k] = out.fired[k].copy()
            out.fired[k][:] = False
        out._reject = None
        return out

    old, new = copy_example(tmp_path, "O"), changed_example(tmp_path, "O2")
    path = _write_jsonl(tmp_path / "tx.jsonl", _txs(300), {})
    monkeypatch.setattr(Kernel, "decide", broken)
    code, out, err = mu("backtest", f"--old={old}", f"--new={new}", f"--transactions={path}")
    assert code == 1
    assert "disagrees with the old enforcer" in err
    assert out == ""


def test_bad_invocations_exit_2(mu: Any, tmp_path: Path) -> None:
    old = copy_example(tmp_path, "O")
    assert mu("backtest", f"--new={old}")[0] == 2
    assert mu("backtest", f"--new={old}", "--transactions=x.jsonl")[0] == 2  # no --old
    assert mu("backtest", f"--new={old}", f"--old={old}", "--transactions=missing.jsonl")[0] == 2
    (tmp_path / "tx.txt").write_text("{}\n")
    assert mu("backtest", f"--new={old}", f"--old={old}", f"--transactions={tmp_path / 'tx.txt'}")[0] == 2
    (tmp_path / "junk.jsonl").write_text("nope\nnope\n")
    code, out, _ = mu(
        "backtest", f"--new={old}", f"--old={old}", f"--transactions={tmp_path / 'junk.jsonl'}", "--json"
    )
    assert code == 2 and json.loads(out)["unreadable_count"] == 2
    assert (
        mu(
            "backtest",
            f"--new={old}",
            f"--old={old}",
            f"--transactions={tmp_path / 'junk.jsonl'}",
            "--engine=dask",
        )[0]
        == 2
    )


def test_approve_records_a_backtest_receipt_as_evidence(mu: Any, tmp_path: Path) -> None:
    old, new = copy_example(tmp_path, "O"), changed_example(tmp_path, "O2")
    path = _write_jsonl(tmp_path / "tx.jsonl", _txs(200), {})
    doc = mu.json(
        "backtest",
        f"--old={old}",
        f"--new={new}",
        f"--transactions={path}",
        f"--receipt={tmp_path / 'bt.json'}",
    )
    assert json.loads((tmp_path / "bt.json").read_text())["receipt_hash"] == doc["receipt_hash"]
    assert mu("keygen", "--out", tmp_path / "alice")[0] == 0
    assert (
        mu("roster", "init", f"--member=alice={tmp_path / 'alice.pub'}", f"--key={tmp_path / 'alice.key'}")[0]
        == 0
    )
    # the receipt is about O2: approving O with it is refused
    code, _, err = mu(
        "approve",
        f"--ontology={old}",
        f"--key={tmp_path / 'alice.key'}",
        f"--evidence={tmp_path / 'bt.json'}",
    )
    assert code == 1 and "not this O" in err
    approval = mu.json(
        "approve", f"--ontology={new}", f"--key={tmp_path / 'alice.key'}", f"--evidence={doc['receipt_hash']}"
    )
    assert approval["evidence"][0]["receipt_hash"] == doc["receipt_hash"]
    assert approval["evidence"][0]["rows"] == doc["rows"]
    from finops_fabric.approvals import stored_approvals

    recorded = stored_approvals(Path.cwd() / "store")[-1]
    assert recorded["inputs"]["evidence"] == [doc["receipt_hash"]]


def test_generators_pinned_per_side(mu: Any, tmp_path: Path) -> None:
    """A change of generator alone (language 1.0 → 1.1) is what a back-test then shows."""
    o = copy_example(tmp_path, "O")
    txs = _txs(400)
    txs[0]["type"] = "loan"  # language 1.1 fails closed on an undeclared type; 1.0 lets it through
    txs[0]["amount"] = "5"
    path = _write_jsonl(tmp_path / "tx.jsonl", txs, {})
    doc = mu.json(
        "backtest", f"--old={o}", f"--new={o}", "--old-generator=2", f"--transactions={path}", "--no-receipt"
    )
    assert doc["old"]["language"] == "1.0" and doc["new"]["language"] == generators.get().language
    assert doc["flips"][AR] >= 1


def test_enforcers_as_sides_take_their_policy_from_the_store(mu: Any, tmp_path: Path) -> None:
    old, new = copy_example(tmp_path, "O"), changed_example(tmp_path, "O2")
    assert mu("generate", f"--input={new}", f"--output={tmp_path / 'A2'}")[0] == 0
    path = _write_jsonl(tmp_path / "tx.jsonl", _txs(500), {})
    by_o = mu.json("backtest", f"--old={old}", f"--new={new}", f"--transactions={path}", "--no-receipt")
    by_a = mu.json(
        "backtest", f"--old={old}", f"--new={tmp_path / 'A2'}", f"--transactions={path}", "--no-receipt"
    )
    assert by_a["new"]["given_as"] == "enforcer" and by_o["new"]["given_as"] == "ontology"
    assert by_a["new"]["enforcer_hash"] == by_o["new"]["enforcer_hash"]
    assert by_a["flips"] == by_o["flips"] and by_a["by_rule"] == by_o["by_rule"]
    # an A whose O the store does not hold
    other = tmp_path / "other-store"
    code, _, err = mu(
        "backtest",
        f"--old={old}",
        f"--new={tmp_path / 'A2'}",
        f"--transactions={path}",
        f"--home={other}",
        "--no-receipt",
    )
    assert code == 2 and "there is no store" in err
