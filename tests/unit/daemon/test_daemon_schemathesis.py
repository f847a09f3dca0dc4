"""Schemathesis against the daemon's own OpenAPI document: every operation, with data that fits
the document and data that does not (its examples, coverage and fuzzing phases), must never
get a server error. The app runs in this process under uvicorn on a loopback port the test
opens (and stops: no thread is left behind), as ``mu daemon`` builds it: an A deployed, the
outbox writing each decision's rows (workers are not needed for that), development mode so
that requests reach the handlers rather than the token check."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from finops_fabric.daemon.app import create_app, openapi_document
from finops_fabric.daemon.effects import attach_outbox
from finops_fabric.daemon.runtime import Runtime
from finops_fabric.pipeline import generate
from finops_fabric.store import Store

ACME = Path(__file__).resolve().parents[3] / "src" / "finops_fabric" / "examples" / "acme"


@pytest.fixture(scope="module")
def daemon_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("schemathesis")
    store = Store(root / "store")
    store.init()
    g = generate(ACME, root / "A", store)
    assert g.status == "generated"
    runtime = Runtime(store, "fuzz")
    assert runtime.deploy(root / "A", g.receipt["receipt_hash"]).ok
    app = create_app(store, "fuzz", dev=True, runtime=runtime)
    attach_outbox(app, store, "fuzz")
    # IPPROTO_TCP said: asyncio then turns Nagle off, as for `mu daemon` (else ~40 ms per request)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="fuzzed-daemon")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the daemon did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        shutil.rmtree(root, ignore_errors=True)


schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_server_error(case: Any, daemon_url: str) -> None:
    with requests.Session() as session:
        session.trust_env = False  # straight to loopback, whatever proxy the environment names
        response = case.call(base_url=daemon_url, session=session, timeout=30)
    # 503 is documented: /v1/health when a process failed (none does here)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
