"""Hostile request bodies get a 4xx with a stable code on the raw ASGI fast path and on the
Starlette route alike (never a 500), nothing is logged for them, and bodies are never read
past the size limit."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator, MutableMapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from finops_fabric.daemon import decision_log
from finops_fabric.daemon.app import DaemonApp, create_app
from finops_fabric.daemon.effects import attach_outbox
from finops_fabric.pipeline import generate
from finops_fabric.store import Store

Message = MutableMapping[str, Any]
ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"
TX = {"type": "purchase", "amount": "105000", "currency": "USD", "actor_id": "u-1", "actor_level": "L2"}

#: name -> (body, status, code)
HOSTILE: dict[str, tuple[bytes, int, str]] = {
    "big_int_amount": (
        b'{"id": "h", "type": "purchase", "amount": 9007199254740993, "actor_level": "L2"}',
        400,
        "tx.number_out_of_range",
    ),
    "big_int_attribute": (
        b'{"id": "h", "type": "wire", "attributes": {"n": 2e16}}',
        400,
        "tx.number_out_of_range",
    ),
    "nan": (b'{"id": "h", "type": "purchase", "amount": NaN}', 400, "tx.non_finite"),
    "infinity": (b'{"id": "h", "x": Infinity}', 400, "tx.non_finite"),
    "minus_infinity": (b'{"id": "h", "x": [-Infinity]}', 400, "tx.non_finite"),
    "lone_surrogate": (b'{"id": "\\ud800", "type": "purchase"}', 400, "tx.lone_surrogate"),
    "lone_surrogate_key": (b'{"id": "h", "\\udc00": 1}', 400, "tx.lone_surrogate"),
    "deep_1000": (b'{"id": "h", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}", 400, "tx.too_deep"),
    "deep_objects": (b'{"id": "h", "x": ' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}", 400, "tx.too_deep"),
    "duplicate_key": (b'{"id": "h", "amount": "1", "amount": "1000000"}', 400, "tx.duplicate_key"),
    "invalid_utf8": (b'{"id": "h", "actor_id": "\xff\xfe"}', 400, "tx.invalid_utf8"),
    "utf8_surrogate": (b'{"id": "h", "actor_id": "\xed\xb0\x80"}', 400, "tx.invalid_utf8"),
    "not_json": (b"{not json", 400, "tx.invalid_json"),
    "not_object": (b"[1, 2]", 400, "tx.not_object"),
    "id_int": (b'{"id": 5, "type": "purchase"}', 422, "tx.id_not_string"),
    "id_big_int": (b'{"id": 9007199254740991, "type": "purchase"}', 422, "tx.id_not_string"),
    "id_list": (b'{"id": ["a"], "type": "purchase"}', 422, "tx.id_not_string"),
    "too_large": (b'{"id": "h", "pad": "' + b"x" * 70_000 + b'"}', 413, "tx.too_large"),
}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("hostile")
    store = Store(root / "store")
    store.init()
    g = generate(ACME, root / "A", store)
    assert g.status == "generated"
    yield store, root / "A", g.receipt
    shutil.rmtree(root, ignore_errors=True)


async def _call(
    app: DaemonApp,
    body: bytes,
    *,
    root_path: str = "",
    path: str = "/v1/decisions",
    chunks: int = 1,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[bytes, bytes], bytes, int]:
    """One POST through ASGI (``root_path`` set: the Starlette route); also how many body
    messages the app took."""
    step = max(1, -(-len(body) // chunks))
    parts = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    messages: list[Message] = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)
    ]
    taken = [0]
    sent: list[Message] = []

    async def receive() -> Message:
        if messages:
            taken[0] += 1
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json")]
        if headers is None
        else headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await app(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:]), taken[0]


@pytest.fixture(scope="module")
def served(deployed: tuple[Store, Path, dict[str, Any]]) -> Iterator[tuple[DaemonApp, TestClient, Store]]:
    store, a, receipt = deployed
    app = create_app(store, "hostile", dev=True)
    attach_outbox(app, store, "hostile")  # the outbox rows are written too, as with workers
    with TestClient(app) as c:
        r = c.post(
            "/v1/deployments", json={"enforcer": str(a), "generation_receipt_hash": receipt["receipt_hash"]}
        )
        assert r.status_code == 200, r.text
        yield app, c, store


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("chunks", [1, 7])
def test_hostile_body_is_4xx_on_both_paths(
    name: str, chunks: int, served: tuple[DaemonApp, TestClient, Store]
) -> None:
    app, c, _ = served
    body, status, code = HOSTILE[name]
    portal = c.portal
    assert portal is not None
    for root in ("", "/mounted"):  # the raw fast path, then the Starlette route
        got, headers, out, _ = portal.call(partial(_call, app, body, root_path=root, chunks=chunks))
        assert got == status, (root, out)
        assert headers[b"content-type"] == b"application/json"
        doc = json.loads(out)
        assert doc["error"]["code"] == code, doc
        assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]


def test_the_test_client_sees_the_same(served: tuple[DaemonApp, TestClient, Store]) -> None:
    _, c, store = served
    before = _logged(store)
    for body, status, code in HOSTILE.values():
        r = c.post("/v1/decisions", content=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code)
    assert _logged(store) == before  # nothing decided, nothing logged
    ok = c.post("/v1/decisions", json={**TX, "id": "fine"})
    assert ok.status_code == 200
    rows = _logged(store)
    assert all(r["transaction_id"] is None or isinstance(r["transaction_id"], str) for r in rows)
    assert rows[-1]["transaction_id"] == "fine"


def _logged(store: Store) -> list[dict[str, Any]]:
    conn = decision_log.connect(decision_log.db_path(store.home, "hostile"), readonly=True)
    try:
        return decision_log.query(conn)
    finally:
        conn.close()


def test_amounts_stay_as_given(served: tuple[DaemonApp, TestClient, Store]) -> None:
    _, c, store = served
    r = c.post("/v1/decisions", content=json.dumps({**TX, "id": "spaced", "amount": " 1000 "}))
    assert r.status_code in (200, 400)  # how a spaced amount is decided is the enforcer's matter
    if r.status_code == 200:
        logged = next(x for x in _logged(store) if x["transaction_id"] == "spaced")
        assert logged["transaction"]["amount"] == " 1000 "


def test_size_limit_stops_reading(served: tuple[DaemonApp, TestClient, Store]) -> None:
    app, c, _ = served
    portal = c.portal
    assert portal is not None
    big = b'{"id": "h", "pad": "' + b"x" * 200_000 + b'"}'
    for root in ("", "/mounted"):
        # a declared length over the limit: refused before any of the body is read
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(big)).encode())]
        status, _, out, taken = portal.call(
            partial(_call, app, big, root_path=root, chunks=50, headers=headers)
        )
        assert (status, json.loads(out)["error"]["code"]) == (413, "tx.too_large")
        assert taken == 0, root
        # no length (chunked): reading stops once the limit is passed
        status, _, out, taken = portal.call(partial(_call, app, big, root_path=root, chunks=50))
        assert (status, json.loads(out)["error"]["code"]) == (413, "tx.too_large")
        assert taken < 20, (root, taken)


def test_configured_limit(deployed: tuple[Store, Path, dict[str, Any]], tmp_path: Path) -> None:
    store, a, receipt = deployed
    for app in (create_app(store, "lim", dev=True, max_body_bytes=300), _configured(store, 300)):
        with TestClient(app) as c:
            r = c.post(
                "/v1/deployments",
                json={"enforcer": str(a), "generation_receipt_hash": receipt["receipt_hash"]},
            )
            assert r.status_code == 200
            assert c.post("/v1/decisions", json={**TX, "id": "a"}).status_code == 200
            r = c.post("/v1/decisions", json={**TX, "id": "a", "pad": "x" * 300})
            assert (r.status_code, r.json()["error"]["code"]) == (413, "tx.too_large")
            assert "300 bytes" in r.json()["error"]["message"]


def _configured(store: Store, limit: int) -> DaemonApp:
    config = store.home / "config.json"
    config.write_text(json.dumps({"daemon": {"max_body_bytes": limit}}))
    try:
        return create_app(store, "lim2", dev=True)
    finally:
        config.unlink()


def test_media_type(served: tuple[DaemonApp, TestClient, Store]) -> None:
    _, c, _ = served
    body = json.dumps({**TX, "id": "mt"})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        for path in ("/v1/decisions", "/v1/deployments"):
            r = c.post(path, content=body, headers={"Content-Type": ctype})
            assert r.status_code == 415, (ctype, path)
            assert r.json()["error"]["code"].endswith(".unsupported_media_type")
    for ctype in ("application/json", "application/json; charset=utf-8", "application/vnd.tx+json"):
        assert c.post("/v1/decisions", content=body, headers={"Content-Type": ctype}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"x": ' + b"[" * 1000 + b"]" * 1000 + b"}", 400, "deploy.too_deep"),
        (
            b'{"enforcer": "/a", "enforcer": "/b", "generation_receipt_hash": "h"}',
            400,
            "deploy.duplicate_key",
        ),
        (b'{"enforcer": "\\ud800", "generation_receipt_hash": "h"}', 400, "deploy.lone_surrogate"),
        (b'{"enforcer": "/a", "generation_receipt_hash": "h", "now": NaN}', 400, "deploy.non_finite"),
        (b'{"pad": "' + b"x" * 70_000 + b'"}', 413, "deploy.too_large"),
        (b'{"enforcer": "/a\\u0000b", "generation_receipt_hash": "h"}', 400, "deploy.bad_request"),
        (b'{"enforcer": "", "generation_receipt_hash": "h"}', 400, "deploy.bad_request"),
        (b'{"enforcer": "/a", "generation_receipt_hash": 5}', 400, "deploy.bad_request"),
        (b'{"enforcer": "/a", "generation_receipt_hash": "h", "now": "yes"}', 400, "deploy.bad_request"),
        (b'{"enforcer": "/a", "generation_receipt_hash": "h", "env": 1}', 400, "deploy.bad_request"),
        (b'{"enforcer": "/a", "generation_receipt_hash": "h", "kind": "x"}', 400, "deploy.bad_request"),
        (b'{"enforcer": "/a", "generation_receipt_hash": "h", "rollback_to": []}', 400, "deploy.bad_request"),
        (b'{"enforcer": "/a", "generation_receipt_hash": "h", "env": "other"}', 400, "deploy.wrong_env"),
        (b'{"enforcer": "/' + b"a" * 5000 + b'", "generation_receipt_hash": "h"}', 422, "deploy.no_receipt"),
    ],
)
def test_deployment_bodies(
    served: tuple[DaemonApp, TestClient, Store], body: bytes, status: int, code: str
) -> None:
    _, c, _ = served
    r = c.post("/v1/deployments", content=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text


@pytest.mark.parametrize(
    ("status", "code", "exit_code"),
    [
        (413, "tx.too_large", 2),
        (415, "tx.unsupported_media_type", 2),
        (422, "tx.id_not_string", 2),
        (400, "tx.duplicate_key", 2),
        (422, "deploy.no_receipt", 1),
    ],
)
def test_the_cli_client_says_bad_input_for_a_refused_body(status: int, code: str, exit_code: int) -> None:
    import httpx

    from finops_fabric.daemon.client import DaemonClient, DaemonInfo
    from finops_fabric.errors import FabricError

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"code": code, "message": "refused"}})

    client = DaemonClient(DaemonInfo("test", "127.0.0.1", 1, 1, "now"), None)
    client.http = httpx.Client(base_url="http://127.0.0.1:1", transport=httpx.MockTransport(answer))
    with client, pytest.raises(FabricError) as info:
        client.request("POST", "/v1/decisions", body=b"{}")
    assert (info.value.code, info.value.exit_code) == (code, exit_code)


def test_a_bad_limit_is_bad_input(deployed: tuple[Store, Path, dict[str, Any]], tmp_path: Path) -> None:
    from finops_fabric import cli
    from finops_fabric.errors import InputError

    store, _, _ = deployed
    for bad in (0, -5, 10**9):
        with pytest.raises(InputError) as info:
            create_app(store, "badlimit", dev=True, max_body_bytes=bad)
        assert info.value.code == "config.max_body_bytes"
    assert cli.main(["daemon", "--env=badlimit", "--dev", "--max-body-bytes=0", f"--home={store.home}"]) == 2
