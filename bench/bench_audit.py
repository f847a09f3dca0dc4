"""`mu audit-trail` over a large ledger: signatures, hash chain and Merkle tree head.

    python3 bench/bench_audit.py [--receipts 10000] [--realistic 1000] [--repeat 3] [--json]

Builds a store whose ledger holds N small synthetic receipts (kind ``deployment``: no O
snapshots to validate), sealed with the operator key by the same code as ``Store.append``
(``receipts.seal``) and inserted in one transaction (appending one by one would time SQLite's
fsyncs, not the audit); ``Store.init`` then signs the ledger's tree head over them. Then times,
best of --repeat:

- the whole verification in-process (``audit.audit_trail``: read, schema, hash, canonical
  body, trusted signature, links, Merkle tree) and the signed tree head;
- its phases, per receipt: reading the ledger; the canonical bytes (the signed payload and the
  canonical-body check) both with the rfc8785 package and with the audit's fast path
  (``json.dumps``, used only where proven identical); the Ed25519 verification; the whole row
  check; the link analysis; the Merkle root;
- ``mu audit-trail --json`` end to end as a child process (interpreter start and imports
  included).

--realistic M repeats the per-receipt phases for M receipts shaped like real generation
receipts (gates with evidence, 14 artifacts, golden results: about 6 KB), where canonical
JSON dominates. Target: 10,000 receipts verified in < 10 s. No timed assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
try:
    import finops_fabric  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "src"))

from finops_fabric import audit  # noqa: E402
from finops_fabric.canonical import canonical_json  # noqa: E402
from finops_fabric.receipts import RECEIPT_FORMAT, receipt_payload, seal  # noqa: E402
from finops_fabric.store import Store  # noqa: E402


def fake_hash(i: int, salt: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(f"{salt}{i}".encode()).hexdigest()


def small_body(i: int) -> dict[str, Any]:
    return {
        "format": RECEIPT_FORMAT,
        "kind": "deployment",
        "time": f"2030-01-01T00:{i // 3600 % 60:02d}:{i % 60:02d}Z",
        "target": "test",
        "inputs": {"ontology_hash": fake_hash(i, "O")},
        "outputs": {"enforcer_hash": fake_hash(i, "A")},
    }


def realistic_body(i: int) -> dict[str, Any]:
    artifacts = {f"rules/rule_{n:02d}.py": fake_hash(i * 100 + n, "art") for n in range(14)}
    return {
        **small_body(i),
        "kind": "generation",
        "doctrine": ["correct_by_construction", "idempotence", "typing", "provenance", "no_partials"],
        "inputs": {
            "ontology_hash": fake_hash(i, "O"),
            "previous_ontology_hash": fake_hash(i - 1, "O"),
            "delta_hash": fake_hash(i, "D"),
            "delta_size": {"added": 3, "removed": 1},
            "schema_hash": fake_hash(0, "S"),
            "schemas": [],
            "ontology_sources": ["purchases.ttl", "reference.ttl", "wires.ttl"],
            "generator": {
                "id": "finops-fabric/python-enforcer",
                "version": "1",
                "source_hash": fake_hash(0, "G"),
            },
        },
        "gates": {
            g: {
                "status": "PASS",
                "evidence": {"checked": ["sod", "levels", "golden"], "n": i, "note": "x" * 40},
            }
            for g in ("ontology", "invariant", "determinism", "golden", "replay", "operational", "waste")
        },
        "golden": {
            "passed": 7,
            "failed": 0,
            "cases": [{"scenario": f"case_{n}", "ok": True, "problems": []} for n in range(7)],
        },
        "outputs": {
            "enforcer_hash": fake_hash(i, "A"),
            "artifacts": artifacts,
            "rules": {
                f"https://example.com/acme/policy#rule-{n}": {"artifact": a, "sha256": h}
                for n, (a, h) in enumerate(artifacts.items())
            },
            "changed": ["https://example.com/acme/policy#rule-1"],
            "unchanged": [f"https://example.com/acme/policy#rule-{n}" for n in range(2, 14)],
            "added": [],
            "removed": [],
        },
    }


def build(store: Store, n: int, make: Callable[[int], dict[str, Any]]) -> float:
    """Seal ``n`` chained receipts with the operator key and insert them in one transaction."""
    start = time.perf_counter()
    key = store.operator_private_key()
    rows = []
    prev: str | None = None
    for i in range(n):
        body = make(i)
        body["previous_receipt_hash"] = prev
        sealed = seal(body, key)
        prev = sealed["receipt_hash"]
        rows.append(
            (
                sealed["receipt_hash"],
                sealed["kind"],
                sealed["previous_receipt_hash"],
                sealed["inputs"].get("ontology_hash"),
                sealed["outputs"].get("enforcer_hash"),
                canonical_json(sealed).decode("utf-8"),
            )
        )
    db = sqlite3.connect(store.db_path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO ledger (receipt_hash, kind, previous_receipt_hash, ontology_hash,"
            " enforcer_hash, body) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.execute("COMMIT")
    finally:
        db.close()
    store.init()  # signs the ledger's tree head over the rows inserted behind the store's back
    return time.perf_counter() - start


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def phases(store: Store, repeat: int) -> dict[str, float]:
    """Seconds for each phase over the whole ledger (best of ``repeat``)."""
    trust = audit.default_trust(store)
    ledger = audit.read_ledger(store)
    rows = ledger.rows
    docs = [r.doc for r in rows if r.doc is not None]
    payloads = [receipt_payload(d) for d in docs]
    key = trust.keys[next(iter(trust.keys))].key
    import base64

    sigs = [base64.b64decode(d["signatures"][0]["sig"]) for d in docs]

    def canon() -> None:
        for d in docs:
            receipt_payload(d)
            canonical_json(d)

    def fast() -> None:
        for r, d in zip(rows, docs, strict=True):
            audit._payload(d)
            audit._is_canonical(d, r.body)

    def verify() -> None:
        for s, p in zip(sigs, payloads, strict=True):
            key.verify(s, p)

    return {
        "read ledger (SQLite + JSON parse)": best(lambda: audit.read_ledger(store), repeat),
        "RFC 8785 payload + body (rfc8785, reference)": best(canon, repeat),
        "same bytes, fast path (json.dumps, hash-proven)": best(fast, repeat),
        "Ed25519 verify": best(verify, repeat),
        "every row check (check_row)": best(lambda: [audit.check_row(r, trust) for r in rows], repeat),
        "hash-chain links": best(lambda: audit.chain_gaps(rows, ledger.issued_seq, 0, len(rows)), repeat),
        "Merkle tree root": best(lambda: audit.ledger_tree(rows).root(), repeat),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--receipts", type=int, default=10_000)
    ap.add_argument("--realistic", type=int, default=1000, help="realistic-size receipts (0: skip)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "receipts": a.receipts,
    }
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        store = Store(Path(tmp) / "store")
        store.init()
        out["build_seconds"] = build(store, a.receipts, small_body)
        trust = audit.default_trust(store)
        result: list[audit.AuditResult] = []

        def full() -> None:
            r = audit.audit_trail(store, trust)
            r.tree_head = audit.sign_tree_head(r.tree, store.operator_private_key())
            result.append(r)

        out["verify_seconds"] = best(full, a.repeat)
        r = result[-1]
        out["verified"] = r.verified
        out["summary"] = r.summary()
        out["phases"] = phases(store, a.repeat)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO / "src") + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        cmd = [sys.executable, "-m", "finops_fabric.cli", "audit-trail", "--home", str(store.home), "--json"]
        cli = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, env=env, check=False)
            cli.append(time.perf_counter() - t)
        out["cli_seconds"] = min(cli)
        out["cli_exit"] = p.returncode
        out["cli_verified"] = json.loads(p.stdout).get("verified") if p.stdout else None
    if a.realistic:
        with tempfile.TemporaryDirectory(prefix="bench-audit-real-") as tmp:
            store = Store(Path(tmp) / "store")
            store.init()
            build(store, a.realistic, realistic_body)
            size = len(audit.read_ledger(store).rows[0].body)
            out["realistic"] = {
                "receipts": a.realistic,
                "body_bytes": size,
                "phases": phases(store, a.repeat),
            }

    if a.json:
        sys.stdout.write(json.dumps(out, indent=2, sort_keys=True) + "\n")
        return 0
    n = a.receipts
    print(f"ledger of {n:,} synthetic receipts (built and sealed in {out['build_seconds']:.2f} s)")
    print(f"  full verification in-process (audit_trail + signed tree head): {out['verify_seconds']:.2f} s")
    print(f"  `mu audit-trail --json` as a child process:                    {out['cli_seconds']:.2f} s")
    print(f"  {out['summary']}")
    print()
    sections = [("small receipts", n, out["phases"])]
    if "realistic" in out:
        sections.append(
            (
                f"realistic receipts ({out['realistic']['body_bytes']:,} bytes)",
                out["realistic"]["receipts"],
                out["realistic"]["phases"],
            )
        )
    for title, count, ph in sections:
        print(f"{title}: phase, seconds for {count:,}, µs per receipt")
        for name, secs in ph.items():
            print(f"  {name:<48} {secs:8.3f} s {secs / count * 1e6:10.1f} µs")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
