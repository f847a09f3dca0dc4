"""The decision hot path: the raw ASGI handler answers like the Starlette route, the fast
serialisers write exactly what the slow ones write, and group-commit waiters are woken per group."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import warnings
from collections.abc import Iterator, MutableMapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from finops_fabric.canonical import canonical_json
from finops_fabric.daemon import auth, decision_log, outbox
from finops_fabric.daemon.app import DaemonApp, create_app
from finops_fabric.enforcer import load_enforcer
from finops_fabric.errors import InputError
from finops_fabric.pipeline import generate
from finops_fabric.store import Store

Message = MutableMapping[str, Any]

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
TX = {
    "id": "f1",
    "type": "purchase",
    "amount": "105000",
    "currency": "USD",
    "actor_id": "u-1",
    "actor_level": "L2",
}


# --- serialisers --------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=8)
_scalars = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | _text
_json = st.recursive(
    _scalars | st.decimals(allow_nan=False, allow_infinity=False, places=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_text, _json, max_size=6))
def test_transaction_json_is_dumps_exact(tx: dict[str, Any]) -> None:
    assert decision_log.transaction_json(tx) == decision_log.dumps_exact(tx)


def test_transaction_json_of_a_parsed_body_keeps_decimals() -> None:
    tx = json.loads('{"b": 1.50, "a": [1e2, "x"], "c": 7}', parse_float=Decimal)
    assert decision_log.transaction_json(tx) == '{"a":[1E+2,"x"],"b":1.50,"c":7}'


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        _scalars | st.floats(allow_nan=False),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
        max_leaves=20,
    )
)
def test_canonical_text_is_rfc8785(value: Any) -> None:
    try:
        expected = canonical_json(value).decode("utf-8")
    except (InputError, UnicodeDecodeError):
        with pytest.raises((InputError, UnicodeEncodeError)):
            outbox.canonical_text(value)
        return
    assert outbox.canonical_text(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"é": 1, "e": "\u2028"},  # non-ASCII: written raw by RFC 8785
        {"\U0001f600": 1, "\ufb01": 2},  # UTF-16 key order differs from code point order
        ["\x7f", "\x01", 'q"\\'],
        [2**53 - 1, -(2**53 - 1), True, None],
    ],
)
def test_canonical_text_edge_cases(value: Any) -> None:
    assert outbox.canonical_text(value) == canonical_json(value).decode("utf-8")


def test_canonical_text_refuses_what_rfc8785_refuses() -> None:
    for bad in ([2**53], {"x": float("nan")}):
        with pytest.raises(InputError):
            outbox.canonical_text(bad)


def test_now_is_iso_utc_with_microseconds() -> None:
    before = dt.datetime.now(dt.UTC)
    stamp = decision_log._now()
    after = dt.datetime.now(dt.UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    parsed = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    assert before <= parsed <= after


# --- group commit -------------------------------------------------------------------------------


def test_concurrent_writes_are_settled_per_group_with_their_own_row_ids(tmp_path: Path) -> None:
    writer = decision_log.DecisionWriter(tmp_path / "d.db")
    h = "sha256:" + "a" * 64

    def entry(i: int) -> decision_log.LoggedDecision:
        d = {"transaction_id": f"g{i}", "decision": "APPROVE", "fired": [], "enforcer_hash": h}
        return decision_log.LoggedDecision.of("test", {"id": f"g{i}"}, d, h, h)

    def broken(conn: sqlite3.Connection, row_id: int) -> None:
        raise RuntimeError("no room")

    async def run() -> list[Any]:
        return await asyncio.gather(
            *(writer.write(entry(i), [broken] if i == 7 else []) for i in range(40)), return_exceptions=True
        )

    try:
        results = asyncio.run(run())
    finally:
        writer.close()
    assert isinstance(results[7], RuntimeError)
    ok = [r for i, r in enumerate(results) if i != 7]
    assert len(set(ok)) == 39
    conn = decision_log.connect(tmp_path / "d.db", readonly=True)
    rows = {r["id"]: r["transaction_id"] for r in decision_log.query(conn)}
    assert rows == {r: f"g{i}" for i, r in enumerate(results) if i != 7}


# --- the raw ASGI path against the Starlette route ----------------------------------------------


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("fast")
    store = Store(root / "store")
    store.init()
    g = generate(ACME, root / "A", store)
    assert g.status == "generated"
    yield store, root / "A", g.receipt
    shutil.rmtree(root, ignore_errors=True)


async def _call(
    app: DaemonApp, body: bytes, headers: list[tuple[bytes, bytes]], root_path: str = "", chunks: int = 1
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One POST /v1/decisions straight through ASGI (``root_path`` set: the Starlette route)."""
    step = max(1, -(-len(body) // chunks))
    parts = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": root_path + "/v1/decisions",
        "raw_path": (root_path + "/v1/decisions").encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await app(scope, receive, send)
    start = sent[0]
    assert start["type"] == "http.response.start"
    body_out = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body_out


def test_fast_path_answers_like_the_starlette_route(deployed: tuple[Store, Path, dict[str, Any]]) -> None:
    store, a, receipt = deployed
    app = create_app(store, "fast")
    operator = auth.create_token(store.home, ["operator"])
    auditor = auth.create_token(store.home, ["auditor"])
    with TestClient(app) as c:
        bearer = {"Authorization": f"Bearer {operator}"}
        deployer = auth.create_token(store.home, ["deployer"])
        body = {"enforcer": str(a), "generation_receipt_hash": receipt["receipt_hash"]}
        assert c.post(
            "/v1/deployments", json=body, headers={"Authorization": f"Bearer {deployer}"}
        ).is_success
        assert c.get("/v1/decisions", headers=bearer).status_code == 405  # other methods: the router
        via_client = c.post("/v1/decisions", json=TX, headers=bearer)
        assert via_client.status_code == 200
        assert via_client.json() == load_enforcer(a).decide(TX).to_dict()
        assert via_client.headers["content-type"] == "application/json"
        assert via_client.headers["x-enforcer-hash"] == receipt["outputs"]["enforcer_hash"]
        assert int(via_client.headers["x-decision-id"]) >= 1
        portal = c.portal
        assert portal is not None

        cases: list[tuple[bytes, list[tuple[bytes, bytes]], int]] = [
            (json.dumps({**TX, "id": "f2"}).encode(), [(b"authorization", f"Bearer {operator}".encode())], 1),
            (json.dumps({**TX, "id": "f3"}).encode(), [(b"authorization", f"Bearer {operator}".encode())], 3),
            (b"{not json", [(b"authorization", f"Bearer {operator}".encode())], 1),
            (b"[1]", [(b"authorization", f"Bearer {operator}".encode())], 1),
            (b"{}", [], 1),
            (b"{}", [(b"authorization", b"Bearer nope")], 1),
            (b"{}", [(b"authorization", f"Bearer {auditor}".encode())], 1),
        ]
        for body_bytes, headers, chunks in cases:
            fast = portal.call(_call, app, body_bytes, headers, "", chunks)
            routed = portal.call(_call, app, body_bytes.replace(b'"f', b'"r'), headers, "/mounted", chunks)
            assert fast[0] == routed[0], body_bytes
            for name in (b"content-type", b"www-authenticate", b"x-enforcer-hash"):
                assert fast[1].get(name) == routed[1].get(name), name
            assert int(fast[1][b"content-length"]) == len(fast[2])
            f_doc, r_doc = json.loads(fast[2]), json.loads(routed[2])
            if fast[0] == 200:
                assert f_doc["transaction_id"].replace("f", "r") == r_doc["transaction_id"]
                f_doc.pop("transaction_id"), r_doc.pop("transaction_id")
                assert int(routed[1][b"x-decision-id"]) > int(fast[1][b"x-decision-id"])
            assert f_doc == r_doc, body_bytes
        codes = [portal.call(_call, app, b, h, "", n)[0] for b, h, n in cases]
        assert codes == [200, 200, 400, 400, 401, 401, 403]
        text = c.get("/metrics", headers=bearer).text
        assert 'decisions_total{outcome="REJECT"}' in text


def test_fast_path_error_is_a_plain_500_and_raised(deployed: tuple[Store, Path, dict[str, Any]]) -> None:
    store, a, receipt = deployed

    def broken(decision: dict[str, Any], tx: dict[str, Any]) -> decision_log.ExtraWriter:
        def write(conn: sqlite3.Connection, row_id: int) -> None:
            raise RuntimeError("outbox on fire")

        return write

    for raising in (False, True):
        app = create_app(store, "fast500", dev=True)
        app.state.effect_writers.append(broken)
        with TestClient(app, raise_server_exceptions=raising) as c:
            body = {"enforcer": str(a), "generation_receipt_hash": receipt["receipt_hash"]}
            assert c.post("/v1/deployments", json=body).is_success
            if raising:
                with pytest.raises(RuntimeError, match="outbox on fire"):
                    c.post("/v1/decisions", json=TX)
            else:
                r = c.post("/v1/decisions", json=TX)
                assert r.status_code == 500 and r.text == "Internal Server Error"
                assert r.headers["content-type"].startswith("text/plain")
    conn = decision_log.connect(decision_log.db_path(store.home, "fast500"), readonly=True)
    assert decision_log.query(conn, transaction_id="f1") == []  # nothing logged, nothing answered


def test_client_gone_before_the_body_is_an_empty_400(deployed: tuple[Store, Path, dict[str, Any]]) -> None:
    store, a, receipt = deployed
    app = create_app(store, "fastgone", dev=True)
    with TestClient(app) as c:
        body = {"enforcer": str(a), "generation_receipt_hash": receipt["receipt_hash"]}
        assert c.post("/v1/deployments", json=body).is_success
        portal = c.portal
        assert portal is not None

        async def gone(root_path: str) -> tuple[int, dict[bytes, bytes], bytes]:
            sent: list[Message] = []

            async def receive() -> Message:
                return {"type": "http.disconnect"}

            async def send(message: Message) -> None:
                sent.append(message)

            scope = {
                "type": "http",
                "method": "POST",
                "path": root_path + "/v1/decisions",
                "root_path": root_path,
                "headers": [],
                "query_string": b"",
                "http_version": "1.1",
                "scheme": "http",
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 80),
                "state": {},
                "asgi": {"version": "3.0"},
            }
            await app(scope, receive, send)
            return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])

        for root in ("", "/m"):
            status, headers, out = portal.call(gone, root)
            assert (status, out, headers.get(b"content-type")) == (400, b"", None)


# --- durability: the writer's own WAL fsync -------------------------------------------------------


def _entry(tx_id: str) -> decision_log.LoggedDecision:
    h = "sha256:" + "c" * 64
    d = {"transaction_id": tx_id, "decision": "REJECT", "fired": [], "enforcer_hash": h}
    return decision_log.LoggedDecision.of("test", {"id": tx_id}, d, h, h)


def test_the_wal_is_fsynced_after_commit_and_before_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    writer = decision_log.DecisionWriter(tmp_path / "d.db")
    try:
        assert writer._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: no fsync in COMMIT
        monkeypatch.setattr(os, "fsync", fsync)

        def writes_a_row(conn: sqlite3.Connection, row_id: int) -> None:
            events.append(("row", str(row_id)))

        row = writer.write_sync(_entry("w1"), [writes_a_row])
        events.append(("answered", str(row)))
    finally:
        writer.close()
    wal = str(tmp_path / "d.db-wal")
    assert events[0] == ("row", str(row)) and events[-1] == ("answered", str(row))
    assert ("fsync", wal) in events[1:-1]


def test_a_failed_fsync_is_not_answered_as_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = decision_log.DecisionWriter(tmp_path / "d.db")

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    try:
        monkeypatch.setattr(os, "fsync", broken)
        with pytest.raises(OSError, match="Input/output"):
            writer.write_sync(_entry("w2"))
        monkeypatch.undo()
        assert writer.write_sync(_entry("w3")) > 0
    finally:
        writer.close()


def test_the_wal_file_is_reopened_when_replaced(tmp_path: Path) -> None:
    sync = decision_log._WalSync(tmp_path / "x.db")
    (tmp_path / "x.db-wal").write_bytes(b"one")
    sync()
    first = sync._ino
    (tmp_path / "x.db-wal").unlink()
    (tmp_path / "x.db-wal").write_bytes(b"two")
    sync()
    assert sync._ino != first
    sync.close()


def test_a_decision_the_log_cannot_take_is_a_503_never_an_answer(
    deployed: tuple[Store, Path, dict[str, Any]],
) -> None:
    """The database cannot take the decision (unreachable, locked past its timeout, an fsync that
    failed): 503 with a stable code and Retry-After, and nothing is answered or logged."""
    store, a, receipt = deployed
    failures: list[BaseException] = [sqlite3.OperationalError("disk I/O error"), OSError(5, "EIO")]

    def broken(decision: dict[str, Any], tx: dict[str, Any]) -> decision_log.ExtraWriter:
        def write(conn: sqlite3.Connection, row_id: int) -> None:
            raise failures[0]

        return write

    app = create_app(store, "fast503", dev=True)
    app.state.effect_writers.append(broken)
    with TestClient(app) as c:
        body = {"enforcer": str(a), "generation_receipt_hash": receipt["receipt_hash"]}
        assert c.post("/v1/deployments", json=body).is_success
        for code in ("storage.unavailable", "decisions.not_durable"):
            r = c.post("/v1/decisions", json=TX)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == code
            assert "none is given" in r.json()["error"]["message"]
            assert r.headers["retry-after"] == "1"
            failures.pop(0)
    conn = decision_log.connect(decision_log.db_path(store.home, "fast503"), readonly=True)
    assert decision_log.query(conn) == []  # nothing logged


def test_a_log_that_does_not_confirm_in_time_is_a_503_then_the_daemon_goes_on(
    deployed: tuple[Store, Path, dict[str, Any]],
) -> None:
    """Another connection holds the log's write lock past the write timeout (as a database that
    hangs would): 503 storage.timeout, not an answer; once it lets go, decisions go on."""
    store, a, receipt = deployed
    app = create_app(store, "fastslow", dev=True, write_timeout=0.3)
    with TestClient(app) as c:
        body = {"enforcer": str(a), "generation_receipt_hash": receipt["receipt_hash"]}
        assert c.post("/v1/deployments", json=body).is_success
        assert c.post("/v1/decisions", json=TX).status_code == 200
        blocker = sqlite3.connect(decision_log.db_path(store.home, "fastslow"), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            r = c.post("/v1/decisions", json={**TX, "id": "held"})
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "storage.timeout"
            assert r.headers["retry-after"] == "1"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        r = c.post("/v1/decisions", json={**TX, "id": "after"})
        assert r.status_code == 200, r.text
