"""The batch kernel decides exactly as the generated enforcers do: on every row of a boundary
corpus (thresholds ±0.01, every level, unknown and missing fields, both languages) and for random
policies and transactions (hypothesis)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finops_fabric import generators, load_enforcer
from finops_fabric import model as m
from finops_fabric.backtest.columns import from_arrow, from_dicts
from finops_fabric.backtest.corpus import boundary_corpus
from finops_fabric.backtest.kernel import Kernel
from finops_fabric.interpreter import Interpreter, comparable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
from policygen import policy_pair, transaction


def _disagreements(kernel: Kernel, enforcer: Any, txs: list[dict[str, Any]]) -> list[Any]:
    batch = from_dicts(txs, range(1, len(txs) + 1), kernel.attributes())
    got = kernel.decide(batch)
    bad = []
    for i, tx in enumerate(txs):
        want = comparable(enforcer.decide(dict(tx)).to_dict())
        if got.row(i) != want:
            bad.append((tx, got.row(i), want))
    return bad


@pytest.mark.parametrize("version", ["1", "2", "3"])
def test_boundary_corpus_agrees_with_the_generated_enforcer(
    version: str, policies: SimpleNamespace, tmp_path: Path
) -> None:
    policy = policies.policy_of(policies.FULL_RULES)
    gen = generators.get(version)
    root = policies.write_tree(tmp_path / "A", gen.build(policy, policies.ZERO_HASH))
    enforcer = load_enforcer(root)
    kernel = Kernel(policy, gen.language)
    txs = list(boundary_corpus([policy], size=6000))
    assert len(txs) >= 6000
    assert _disagreements(kernel, enforcer, txs) == []
    # in batches of another size (scales and dictionaries are per batch)
    for start in range(0, 600, 97):
        assert _disagreements(kernel, enforcer, txs[start : start + 97]) == []


def test_arrow_columns_decide_as_the_rows_they_hold(policies: SimpleNamespace) -> None:
    """A Parquet-like table (typed columns, attributes.<name>) is decided as its rows are."""
    from decimal import Decimal

    policy = policies.policy_of(policies.FULL_RULES)
    kernel = Kernel(policy, "1.1")
    table = pa.table(
        {
            "id": ["a", "b", "c", "d", "e"],
            "type": ["purchase", "wire", None, "refund", "loan"],
            "amount": pa.array(
                [Decimal("100000.01"), Decimal("50000.50"), Decimal("1"), Decimal("-0.01"), None],
                pa.decimal128(18, 2),
            ),
            "actor_level": ["L2", "CFO", "L1", "L9", "L3"],
            "approver_id": ["u", "u", None, "x", "y"],
            "executor_id": ["v", "u", "w", "x", "z"],
            "attributes.country": ["US", "IR", None, "KP", "US"],
            "attributes.score": pa.array([Decimal("0.75"), Decimal("0.74"), None, Decimal("1"), None]),
            "attributes.bucket": pa.array([3, 7, 1, None, 3], pa.int64()),
            "timestamp": ["2026-01-02T10:00:00Z"] * 5,
        }
    )
    batch = from_arrow(table, 1, kernel.attributes())
    got = kernel.decide(batch)
    interp = Interpreter(policy, "1.1")
    for i in range(table.num_rows):
        assert got.row(i) == interp.decide(batch.transaction(i)).comparable()
    assert batch.table.column("day").to_pylist() == ["2026-01-02"] * 5


def test_typed_and_dictionary_columns_decide_as_their_python_values(policies: SimpleNamespace) -> None:
    """Dictionary-encoded codes, integer and boolean parties, decimals of any scale, binary
    floats: each read as the interpreter reads the Python value the column holds."""
    from decimal import Decimal

    policy = policies.policy_of(policies.FULL_RULES)
    txs = list(boundary_corpus([policy], size=0))[:2000]
    n = len(txs)
    for version in ("2", "3"):
        language = generators.get(version).language
        kernel = Kernel(policy, language)
        enforcer = _enforcer(version, policy)

        def col(values: list[Any], typ: Any = None) -> pa.Array:
            return pa.array(values, typ)

        codes = [t.get("type") if isinstance(t.get("type"), str) else None for t in txs]
        table = pa.table(
            {
                "id": [t["id"] for t in txs],
                "type": col(codes).dictionary_encode(),
                "amount": col([Decimal(i * 137 % 200_001) / 100 for i in range(n)], pa.decimal128(20, 4)),
                "actor_level": col([["L1", "L2", "L3", "CFO", "Board", "L9", None][i % 7] for i in range(n)]),
                "approver_id": col([i % 3 for i in range(n)], pa.int64()),
                "executor_id": col([[True, False, None][i % 3] for i in range(n)], pa.bool_()),
                "attributes.score": col([i % 5 / 4 for i in range(n)], pa.float64()),
                "attributes.bucket": col([Decimal(i % 9) for i in range(n)], pa.decimal128(5, 0)),
                "attributes.country": col(
                    [["US", "IR", "KP", None][i % 4] for i in range(n)]
                ).dictionary_encode(),
                "attributes.vendor_risk": col([["high", "low", " high"][i % 3] for i in range(n)]),
                "attributes.channel": col([[True, False][i % 2] for i in range(n)], pa.bool_()),
            }
        )
        batch = from_arrow(table, 1, kernel.attributes())
        got = kernel.decide(batch)
        for i in range(n):
            tx = batch.transaction(i)
            assert got.row(i) == comparable(enforcer.decide(tx).to_dict()), (language, tx)


def _enforcer(version: str, policy: m.Policy) -> Any:
    gen = generators.get(version)
    files = gen.build(policy, "sha256:" + "0" * 64, None)
    manifest = json.loads(files["manifest.json"])
    return gen.load(files, manifest, "sha256:" + hashlib.sha256(files["manifest.json"]).hexdigest())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(policy_pair(), st.sampled_from(["1", "3"]), st.lists(transaction(), min_size=1, max_size=60))
def test_random_policies_agree_with_their_enforcers(
    pair: tuple[m.Policy, m.Policy], version: str, txs: list[dict[str, Any]]
) -> None:
    for policy in pair:
        kernel = Kernel(policy, generators.get(version).language)
        enforcer = _enforcer(version, policy)
        extra = list(boundary_corpus([policy], size=0))[:300]
        assert _disagreements(kernel, enforcer, txs + extra) == []
