"""The daemon's HTTP API (Starlette, served by uvicorn).

    POST /v1/decisions    transaction JSON → decision JSON (logged durably before the reply)
    GET  /v1/health       overall and per process: ok | degraded | failed
    GET  /metrics         Prometheus text format
    GET  /v1/deployment   what runs now: enforcer hash, receipts, per-rule artifact hashes
    GET  /v1/fleet        every process of this environment's daemons: what each serves
    POST /v1/deployments  deploy a receipted A (verify, boot, health-check, switch)
    GET  /openapi.json    the OpenAPI 3.1 description of the above

Every endpoint needs ``Authorization: Bearer <token>`` unless the app runs in development mode
(only allowed on loopback, checked by ``mu daemon``). Errors are JSON:
``{"error": {"code", "message"}}`` (with ``line`` and ``column`` for a body that is not
acceptable JSON). Request bodies are read by the strict reader of :mod:`finops_fabric.intake`:
at most ``max_body_bytes`` (64 KiB unless configured; 413 beyond, without reading the rest),
nested at most 32 deep, no duplicate keys, lone surrogates, NaN/Infinity or numbers beyond
±(2**53 - 1) (400), a transaction id that is a string (422), ``Content-Type`` JSON when given
(415).

Extension points for the other processes of the daemon (outbox, notifier, supervisor):
``app.state.metrics`` (:class:`Metrics`), ``app.state.decision_writers`` (callables run inside
each decision's SQLite transaction with the decision row id), ``app.state.health_sources``
(name → callable returning ``{"status": ..., ...}``), ``app.state.on_startup`` /
``app.state.on_shutdown`` (callables, sync or async, run by the lifespan),
``app.state.after_decision`` (callables given each answered decision; they must not block: shadow
mode, :mod:`finops_fabric.daemon.shadow`, hands it to a queue of its own).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from finops_fabric import __version__
from finops_fabric.daemon import decision_log
from finops_fabric.daemon.auth import TokenBook
from finops_fabric.daemon.runtime import Runtime, cron_matches, epoch_schedule, next_epoch, now_utc
from finops_fabric.daemon.tree_heads import HeadKeeper
from finops_fabric.errors import FabricError
from finops_fabric.intake.strict_json import JsonRefused, Limits, loads, too_large
from finops_fabric.intake.transaction import TransactionRefused, body_limit, parse_transaction, refused
from finops_fabric.store import Store

if TYPE_CHECKING:
    from finops_fabric.storage import DecisionLog, Storage

__all__ = ["DaemonApp", "Metrics", "create_app", "openapi_document"]

#: A decision whose write the log has not confirmed by then is refused (503), never answered.
WRITE_TIMEOUT_S = 5.0
_RANK = {"ok": 0, "degraded": 1, "failed": 2}
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The daemon's Prometheus metrics, in a registry of their own.

    ``decisions`` (counter, label outcome), ``latency`` (histogram, seconds, request in to
    response ready, including the durable log write), ``deployments`` (counter, label result),
    ``queue_depth`` (gauge, label queue: the outbox sets it), ``restarts`` (counter, label
    process: the supervisor increments it)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "decisions", "Decisions made, by outcome", ["outcome"], registry=self.registry
        )
        self.latency = Histogram(
            "decision_latency_seconds",
            "Time to decide and durably log one decision",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.deployments = Counter(
            "deployments", "Deployments attempted, by result", ["result"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "outbox_queue_depth", "Entries waiting in the outbox, by queue", ["queue"], registry=self.registry
        )
        self.restarts = Counter(
            "process_restarts", "Supervised process restarts, by process", ["process"], registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


#: A reply of the decision path before it becomes HTTP: status, JSON body (empty: none), and
#: extra headers (lowercase names).
Reply = tuple[int, bytes, list[tuple[bytes, bytes]]]


def _error_reply(status: int, code: str, message: str, **more: Any) -> Reply:
    body = {"error": {"code": code, "message": message, **more}}
    headers = [(b"www-authenticate", b"Bearer")] if status == 401 else []
    return status, json.dumps(body, sort_keys=True).encode("utf-8"), headers


def _response(reply: Reply) -> Response:
    status, body, headers = reply
    return Response(
        body,
        status,
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in headers},
        media_type="application/json" if body else None,
    )


def _error(status: int, code: str, message: str, **more: Any) -> Response:
    return _response(_error_reply(status, code, message, **more))


def _refused_reply(exc: TransactionRefused) -> Reply:
    return _error_reply(exc.status, exc.code, exc.message, **exc.details())


def _json_media_type(content_type: str) -> bool:
    """Whether a Content-Type names JSON (``application/json``, ``application/…+json``)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _unsupported_media_type(prefix: str, content_type: str) -> Reply:
    return _error_reply(
        415,
        f"{prefix}.unsupported_media_type",
        f"the body must be JSON (Content-Type: application/json), not {content_type[:80]!r}",
    )


def _declared_length(value: str | None) -> int | None:
    """A Content-Length header as a number (None when absent or not a number)."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


class _BodyReader:
    """Reads a request body of at most ``limit`` bytes: refuses a larger Content-Length at
    once and stops reading as soon as more bytes than that have come."""

    def __init__(self, limit: int, prefix: str) -> None:
        self.limit = limit
        self.prefix = prefix

    def refuse(self, size: int | None) -> TransactionRefused:
        return refused(too_large(size, self.limit), self.prefix)

    def check_declared(self, declared: int | None) -> None:
        if declared is not None and declared > self.limit:
            raise self.refuse(declared)

    async def read(self, chunks: AsyncIterator[bytes]) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self.limit:
                raise self.refuse(None)
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)


async def _request_chunks(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


_INTERNAL_ERROR = b"Internal Server Error"


class DaemonApp(Starlette):
    """Starlette, except that ``POST /v1/decisions`` (the hot path) is answered by a raw ASGI
    handler: no Request, Response, routing or middleware objects per decision. It gives the same
    statuses, headers and JSON as the Starlette route of the same path (which serves it when
    the app is mounted under a root path), and an unexpected error is a plain-text 500 and
    re-raised, as Starlette's ServerErrorMiddleware does."""

    decide_asgi: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/v1/decisions"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and self.decide_asgi is not None
        ):
            await self.decide_asgi(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _deploy_request_problem(req: Any, env: str) -> tuple[str, str] | None:
    """(code, message) of what is wrong with a deployment request's fields (None: nothing)."""
    if not isinstance(req, dict) or not isinstance(req.get("enforcer"), str):
        return "deploy.bad_request", 'give {"enforcer": PATH, "generation_receipt_hash": H}'
    if not req["enforcer"] or "\x00" in req["enforcer"]:
        return "deploy.bad_request", "enforcer is the path of A on the daemon's host"
    if not isinstance(req.get("generation_receipt_hash"), str):
        return "deploy.bad_request", "give generation_receipt_hash (the receipt of A)"
    if "env" in req and not isinstance(req["env"], str):
        return "deploy.bad_request", "env is the name of an environment"
    if req.get("env", env) != env:
        return "deploy.wrong_env", f"this daemon serves {env}, not {req['env'][:64]}"
    if req.get("kind", "deployment") not in ("deployment", "rollback"):
        return "deploy.bad_request", "kind is deployment or rollback"
    if not isinstance(req.get("now", False), bool):
        return "deploy.bad_request", "now is true or false"
    if not isinstance(req.get("rollback_to"), str | None):
        return "deploy.bad_request", "rollback_to is the hash of the receipt rolled back to"
    return None


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(doc, sort_keys=True, default=str), status, headers=headers, media_type="application/json"
    )


def create_app(
    store: Store,
    env: str,
    *,
    dev: bool = False,
    runtime: Runtime | None = None,
    writer: DecisionLog | None = None,
    max_body_bytes: int | None = None,
    write_timeout: float = WRITE_TIMEOUT_S,
    storage: Storage | None = None,
    process: str | None = None,
) -> DaemonApp:
    """The ASGI app for ``env``'s daemon over ``store``. ``dev``: no tokens (loopback only).
    ``max_body_bytes``: the largest request body (default: ``daemon.max_body_bytes`` of the
    store's config.json, else 64 KiB). ``write_timeout``: how long a decision waits for the log
    to confirm its write before it is refused (503 ``storage.timeout``; the decision may still
    be logged, but it was not given). ``storage``: the database when it is not the store's
    SQLite file (PostgreSQL). ``process``: what each decision records as the process that
    answered it (default ``host:pid``)."""
    from finops_fabric.storage import default_process

    process = process or default_process()
    limits = Limits(max_bytes=body_limit(store.home, max_body_bytes))
    assert limits.max_bytes is not None
    tx_body = _BodyReader(limits.max_bytes, "tx")
    deploy_body = _BodyReader(limits.max_bytes, "deploy")
    runtime = runtime if runtime is not None else Runtime(store, env)
    own_writer = writer is None
    if writer is None:
        writer = (
            storage.decision_writer()
            if storage is not None
            else decision_log.DecisionWriter(decision_log.db_path(store.home, env))
        )
    # The ledger, the decision log and the audit ledger verified against their newest signed
    # heads (or the daemon does not start); heads signed from here on.
    keeper = HeadKeeper(store, env, writer, storage=storage)
    try:
        keeper.boot()
    except BaseException:
        if own_writer:
            writer.close()
        raise
    metrics = Metrics()
    tokens = TokenBook(store.home, storage)
    decision_writers: list[decision_log.ExtraWriter] = []
    # Per decision: factories (decision, transaction) -> writer, e.g. the outbox's entries.
    effect_writers: list[Callable[[dict[str, Any], dict[str, Any]], decision_log.ExtraWriter]] = []
    health_sources: dict[str, Callable[[], dict[str, Any]]] = {}
    on_startup: list[Callable[[], Any]] = []
    on_shutdown: list[Callable[[], Any]] = []
    outcome_counters: dict[str, Any] = {}
    # Per answered decision (row id, transaction, decision, the Active that made it); must not block.
    after_decision: list[Callable[[int, dict[str, Any], dict[str, Any], Any], None]] = []
    health_sources["tree_heads"] = keeper.health
    on_startup.append(keeper.start)

    def refusal(authorization: str, permission: str) -> Reply | None:
        """Why a request with this Authorization header may not ``permission`` (None: it may)."""
        if dev:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error_reply(401, "auth.missing", "this endpoint needs Authorization: Bearer <token>")
        roles = tokens.roles(token.strip())
        if roles is None:
            return _error_reply(401, "auth.invalid", "the bearer token is not valid for this store")
        if not TokenBook.allows(roles, permission):
            return _error_reply(
                403,
                "auth.forbidden",
                f"a token with role(s) {', '.join(sorted(roles)) or 'none'} may not {permission}",
            )
        return None

    def deny(request: Request, permission: str) -> Response | None:
        refused = refusal(request.headers.get("authorization", ""), permission)
        return None if refused is None else _response(refused)

    async def decide_reply(
        authorization: str,
        content_type: str | None,
        declared_length: int | None,
        read_body: Callable[[], Awaitable[bytes | None]],
    ) -> Reply:
        """Decide one transaction: auth, the active A, the body (None: the client went away),
        decide, log durably (with the effect writers' rows), metrics; the reply."""
        started = time.perf_counter()
        if (refused_auth := refusal(authorization, "decide")) is not None:
            return refused_auth
        active = runtime.active  # read once: this request finishes on this A
        if active is None:
            return _error_reply(
                503,
                "daemon.not_deployed",
                f"nothing is deployed to {env} yet; deploy an enforcer first "
                f"(mu deploy --target={env} --enforcer=A)",
            )
        if content_type is not None and not _json_media_type(content_type):
            return _unsupported_media_type("tx", content_type)
        try:
            tx_body.check_declared(declared_length)
            body = await read_body()
            if body is None:
                return 400, b"", []  # nobody is listening; nothing was decided
            tx = parse_transaction(body, limits)
        except TransactionRefused as exc:
            return _refused_reply(exc)
        enforcer = active.enforcer
        try:
            decision = enforcer.decide(tx).to_dict()
            entry = decision_log.LoggedDecision.of(
                env, tx, decision, enforcer.hash, active.generation_receipt_hash, process
            )
        except Exception as exc:
            return _error_reply(
                400, "tx.undecidable", f"the enforcer could not decide this transaction: {exc}"
            )
        writers = [*decision_writers, *(w(decision, tx) for w in effect_writers)]
        try:
            async with asyncio.timeout(write_timeout):  # one timer handle, no task of its own
                row_id = await writer.write(entry, writers)
        except TimeoutError:  # the database does not answer (a partition, a server that hangs)
            status, body, headers = _error_reply(
                503,
                "storage.timeout",
                f"the decision log did not confirm the write within {write_timeout:g} s, so no decision "
                "is given; retry",
            )
            return status, body, [*headers, (b"retry-after", b"1")]
        except (FabricError, OSError, sqlite3.OperationalError) as exc:  # database gone, locked, fsync failed
            # Fail closed: a decision that is not durably logged is never given.
            code = (
                exc.code
                if isinstance(exc, FabricError)
                else "decisions.not_durable"
                if isinstance(exc, OSError)
                else "storage.unavailable"
            )
            message = exc.message if isinstance(exc, FabricError) else str(exc)
            status, body, headers = _error_reply(
                503, code, f"the decision could not be logged, so none is given; retry: {message}"
            )
            return status, body, [*headers, (b"retry-after", b"1")]
        outcome = entry.outcome
        counter = outcome_counters.get(outcome)
        if counter is None:
            counter = outcome_counters[outcome] = metrics.decisions.labels(outcome=outcome)
        counter.inc()
        metrics.latency.observe(time.perf_counter() - started)
        for hook in after_decision:  # e.g. shadow mode: a non-blocking hand-off, never a wait
            hook(row_id, tx, decision, active)
        # the logged decision JSON is the response body: serialised once
        return (
            200,
            entry.decision_json.encode("utf-8"),
            [
                (b"x-decision-id", str(row_id).encode("ascii")),
                (b"x-enforcer-hash", enforcer.hash.encode("ascii")),
            ],
        )

    async def decide(request: Request) -> Response:
        async def read_body() -> bytes | None:
            try:
                return await tx_body.read(_request_chunks(request))
            except ClientDisconnect:
                return None

        headers = request.headers
        return _response(
            await decide_reply(
                headers.get("authorization", ""),
                headers.get("content-type"),
                _declared_length(headers.get("content-length")),
                read_body,
            )
        )

    async def decide_asgi(scope: Scope, receive: Receive, send: Send) -> None:
        authorization = ""
        content_type: str | None = None
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                declared = _declared_length(value.decode("latin-1"))

        async def read_body() -> bytes | None:
            chunks: list[bytes] = []
            size = 0
            limit = tx_body.limit
            while True:
                message = await receive()
                if message["type"] == "http.request":
                    chunk: bytes = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise tx_body.refuse(None)
                    if not message.get("more_body", False):
                        return b"".join([*chunks, chunk]) if chunks else chunk
                    chunks.append(chunk)
                elif message["type"] == "http.disconnect":
                    return None

        started = False
        try:
            status, body, headers = await decide_reply(authorization, content_type, declared, read_body)
            headers.append((b"content-length", str(len(body)).encode("ascii")))
            if body:
                headers.append((b"content-type", b"application/json"))
            started = True
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except Exception:
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-length", str(len(_INTERNAL_ERROR)).encode("ascii")),
                            (b"content-type", b"text/plain; charset=utf-8"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _INTERNAL_ERROR})
            raise

    def health_doc() -> dict[str, Any]:
        active = runtime.active
        processes: dict[str, dict[str, Any]] = {
            "decision": {
                "status": "ok" if active is not None else "degraded",
                "enforcer_hash": active.hash if active is not None else None,
                "detail": runtime.last_health.get("detail", "nothing deployed yet"),
            }
        }
        for name, source in sorted(health_sources.items()):
            try:
                processes[name] = dict(source())
            except Exception as exc:
                processes[name] = {"status": "failed", "detail": f"health source raised: {exc}"}
        worst = max((_RANK.get(str(p.get("status")), 2) for p in processes.values()), default=0)
        overall = next(k for k, v in _RANK.items() if v == worst)
        return {"status": overall, "env": env, "version": __version__, "processes": processes}

    async def health(request: Request) -> Response:
        if (denied := deny(request, "read")) is not None:
            return denied
        doc = health_doc()
        return _json(doc, 503 if doc["status"] == "failed" else 200)

    async def metrics_endpoint(request: Request) -> Response:
        if (denied := deny(request, "read")) is not None:
            return denied
        return Response(metrics.render(), 200, media_type=CONTENT_TYPE_LATEST)

    async def deployment(request: Request) -> Response:
        if (denied := deny(request, "read")) is not None:
            return denied
        active = runtime.active
        if active is None:
            return _error(404, "daemon.not_deployed", f"nothing is deployed to {env} yet", env=env)
        return _json({"deployed": True, **active.describe()})

    async def fleet_endpoint(request: Request) -> Response:
        """Every daemon process of this environment recorded in its database: what each serves,
        whether it is ready and alive (heartbeat within the TTL)."""
        if (denied := deny(request, "read")) is not None:
            return denied
        member = getattr(request.app.state, "fleet", None)
        if member is None:
            return _json({"env": env, "processes": []})
        try:
            rows = await run_in_threadpool(member.state.processes)
        except Exception as exc:  # the database cannot be read now
            return _error(503, "storage.unavailable", f"the fleet's rows cannot be read: {exc}")
        return _json({"env": env, "process": member.process, "processes": rows})

    async def deploy(request: Request) -> Response:
        if (denied := deny(request, "deploy")) is not None:
            return denied
        content_type = request.headers.get("content-type")
        if content_type is not None and not _json_media_type(content_type):
            return _response(_unsupported_media_type("deploy", content_type))
        try:
            deploy_body.check_declared(_declared_length(request.headers.get("content-length")))
            raw = await deploy_body.read(_request_chunks(request))
            try:
                req = loads(raw, limits)
            except JsonRefused as exc:
                raise refused(exc, "deploy") from None
        except TransactionRefused as exc:
            return _response(_refused_reply(exc))
        except ClientDisconnect:
            return Response(b"", 400)
        problem = _deploy_request_problem(req, env)
        if problem is not None:
            return _error(400, *problem)
        receipt_hash = req["generation_receipt_hash"]
        kind = req.get("kind", "deployment")
        try:
            schedule = epoch_schedule(store, env)
        except FabricError as exc:  # the store's configuration is broken: not the client's fault
            return _error(503, exc.code, f"the deployment schedule cannot be read: {exc.message}")
        now = now_utc()
        if schedule is not None and not req.get("now") and not cron_matches(schedule, now):
            nxt = next_epoch(schedule, now)
            return _error(
                409,
                "deploy.outside_epoch",
                f"{env} deploys only in its epoch window ({schedule}); the next one opens at "
                f"{nxt.strftime('%Y-%m-%dT%H:%MZ')} (or deploy with --now)",
                next_epoch=nxt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                schedule=schedule,
            )
        extra: dict[str, Any] = {}
        if kind == "rollback":
            extra["rollback_to"] = req.get("rollback_to")
        if req.get("now") and schedule is not None:
            extra["epoch"] = {"schedule": schedule, "bypassed": True}
        elif schedule is not None:
            extra["epoch"] = {"schedule": schedule, "window": now.strftime("%Y-%m-%dT%H:%MZ")}
        try:
            result = await run_in_threadpool(
                runtime.deploy, Path(req["enforcer"]), receipt_hash, kind=kind, extra=extra
            )
        except FabricError as exc:
            metrics.deployments.labels(result="refused").inc()
            return _error(422, exc.code, exc.message)
        metrics.deployments.labels(result="ok" if result.ok else "failed").inc()
        return _json(result.to_dict(), 200 if result.ok else 422)

    async def openapi(request: Request) -> Response:
        if (denied := deny(request, "read")) is not None:
            return denied
        return _json(openapi_document())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for hook in on_startup:
            result = hook()
            if inspect.isawaitable(result):
                await result
        try:
            yield
        finally:
            for hook in on_shutdown:
                try:
                    result = hook()
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # noqa: S110 - one failing hook must not stop the others
                    pass
            keeper.close()  # closes the writer (every decision committed), then the last heads

    app = DaemonApp(
        routes=[
            Route("/v1/decisions", decide, methods=["POST"]),
            Route("/v1/health", health, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/v1/deployment", deployment, methods=["GET"]),
            Route("/v1/deployments", deploy, methods=["POST"]),
            Route("/v1/fleet", fleet_endpoint, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.decide_asgi = decide_asgi
    app.state.store = store
    app.state.env = env
    app.state.dev = dev
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.decision_log = writer
    app.state.storage = storage
    app.state.process = process
    app.state.tree_heads = keeper
    app.state.decision_writers = decision_writers
    app.state.effect_writers = effect_writers
    app.state.health_sources = health_sources
    app.state.on_startup = on_startup
    app.state.on_shutdown = on_shutdown
    app.state.after_decision = after_decision
    app.state.refusal = refusal
    from finops_fabric.daemon import shadow  # shadow mode: its routes, its hook, a restored session

    shadow.attach(app, store, env, runtime)
    return app


# --- OpenAPI --------------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return {"description": description, **_content(_ref("Error"))}


_AUTH_ERRORS = {
    # Any request: the HTTP server itself refuses a malformed request line or header (a
    # Content-Length that is not a number, say) before the daemon sees it, with a plain-text 400.
    "400": {
        "description": "the HTTP request itself is malformed",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    "401": _err("missing or invalid bearer token"),
    "403": _err("the token's role may not do this"),
}


def openapi_document() -> dict[str, Any]:
    """A hand-written OpenAPI 3.1 document for the daemon's endpoints."""
    rule_list = {"type": "array", "items": {"type": "string", "description": "rule IRI"}}
    hash_ = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "FinOps Fabric enforcement daemon",
            "version": __version__,
            "description": "Decide transactions with a deployed enforcer A; deploy, observe, audit.",
        },
        "servers": [{"url": "http://127.0.0.1:{port}", "variables": {"port": {"default": "8080"}}}],
        "security": [{"bearer": []}],
        "paths": {
            "/v1/decisions": {
                "post": {
                    "summary": "Decide one transaction (role operator)",
                    "description": "Numbers are read exactly (integers within ±(2^53 - 1), others as "
                    "decimals); the body is at most 64 KiB unless configured, nested at most 32 deep, "
                    "with no duplicate keys, lone surrogates or NaN/Infinity. The decision is logged "
                    "durably (with the enforcer hash and generation receipt hash) before the response "
                    "is sent.",
                    "requestBody": {"required": True, **_content(_ref("Transaction"))},
                    "responses": {
                        "200": {
                            "description": "the decision",
                            "headers": {
                                "X-Decision-Id": {"schema": {"type": "string"}},
                                "X-Enforcer-Hash": {"schema": hash_},
                            },
                            **_content(_ref("Decision")),
                        },
                        **_AUTH_ERRORS,
                        "400": _err(
                            "the body is not acceptable JSON (tx.invalid_json, tx.invalid_utf8, "
                            "tx.duplicate_key, tx.lone_surrogate, tx.non_finite, tx.number_out_of_range, "
                            "tx.too_deep), not one object (tx.not_object), or cannot be decided "
                            "(tx.undecidable)"
                        ),
                        "413": _err(
                            "the body is larger than the limit (tx.too_large; 64 KiB unless configured)"
                        ),
                        "415": _err("the Content-Type is not JSON (tx.unsupported_media_type)"),
                        "422": _err("the transaction id is not a string (tx.id_not_string)"),
                        "503": _err(
                            "nothing is deployed yet (daemon.not_deployed), or the decision could not "
                            "be logged, so none is given (storage.unavailable when the database cannot "
                            "be reached, storage.timeout when it does not confirm in time, "
                            "storage.schema_newer; retry after Retry-After seconds)"
                        ),
                    },
                }
            },
            "/v1/health": {
                "get": {
                    "summary": "Overall and per-process health (role any)",
                    "responses": {
                        "200": {"description": "ok or degraded", **_content(_ref("Health"))},
                        **_AUTH_ERRORS,
                        "503": {"description": "a process failed", **_content(_ref("Health"))},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (role any)",
                    "description": "decisions_total{outcome}, decision_latency_seconds, "
                    "deployments_total{result}, outbox_queue_depth{queue}, process_restarts_total{process}",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/v1/deployment": {
                "get": {
                    "summary": "What runs now (role any)",
                    "responses": {
                        "200": {"description": "the deployed A", **_content(_ref("Deployment"))},
                        **_AUTH_ERRORS,
                        "404": _err("nothing is deployed yet"),
                    },
                }
            },
            "/v1/deployments": {
                "post": {
                    "summary": "Deploy a receipted A (role deployer)",
                    "description": "Verify A against its generation receipt, boot it, run its golden cases, "
                    "and switch atomically. On failure the old A keeps serving. Either way a deployment "
                    "(or rollback) receipt is appended to the store's ledger.",
                    "requestBody": {"required": True, **_content(_ref("DeployRequest"))},
                    "responses": {
                        "200": {"description": "deployed", **_content(_ref("DeployResult"))},
                        **_AUTH_ERRORS,
                        "400": _err(
                            "malformed request (deploy.bad_request, deploy.wrong_env, or JSON refused "
                            "as for decisions: deploy.invalid_json, deploy.too_deep, ...)"
                        ),
                        "409": _err("outside the environment's epoch window (see next_epoch)"),
                        "503": _err("the store's epoch schedule cannot be read (config.epoch)"),
                        "413": _err("the body is larger than the limit (deploy.too_large)"),
                        "415": _err("the Content-Type is not JSON (deploy.unsupported_media_type)"),
                        "422": {
                            "description": "refused (no generation receipt) or failed (receipt says why)",
                            "content": {
                                "application/json": {
                                    "schema": {"oneOf": [_ref("DeployResult"), _ref("Error")]}
                                }
                            },
                        },
                    },
                }
            },
            "/v1/fleet": {
                "get": {
                    "summary": "Every process of this environment's daemons: what each serves (role any)",
                    "responses": {
                        "200": {"description": "the processes", **_content(_ref("Fleet"))},
                        **_AUTH_ERRORS,
                        "503": _err("the database cannot be read now (storage.unavailable)"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document (role any)",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", **_content({"type": "object"})},
                        **_AUTH_ERRORS,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "line": {"type": "integer"},
                                "column": {"type": "integer"},
                            },
                        }
                    },
                },
                "Transaction": {
                    "type": "object",
                    "description": "A transaction of POLICY-LANGUAGE.md (id, type, amount, currency, "
                    "actor_id, actor_level, ...); amounts as decimal strings or JSON numbers within "
                    "±(2^53 - 1), read exactly",
                    "properties": {"id": {"type": "string"}},
                    "additionalProperties": True,
                },
                "Decision": {
                    "type": "object",
                    "required": ["decision", "fired", "notifications", "audit", "enforcer_hash"],
                    "properties": {
                        "transaction_id": {"type": ["string", "null"]},
                        "decision": {"enum": ["APPROVE", "REJECT"]},
                        "fired": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"rule": {"type": "string"}, "reason": {"type": "string"}},
                            },
                        },
                        "notifications": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"rule": {"type": "string"}, "recipient": {"type": "string"}},
                            },
                        },
                        "audit": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "rule": {"type": "string"},
                                    "ledger": {"type": "string"},
                                    "flags": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                        "enforcer_hash": hash_,
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "processes"],
                    "properties": {
                        "status": {"enum": ["ok", "degraded", "failed"]},
                        "env": {"type": "string"},
                        "version": {"type": "string"},
                        "processes": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["status"],
                                "properties": {"status": {"enum": ["ok", "degraded", "failed"]}},
                            },
                        },
                    },
                },
                "Deployment": {
                    "type": "object",
                    "properties": {
                        "deployed": {"type": "boolean"},
                        "env": {"type": "string"},
                        "enforcer_hash": hash_,
                        "generation_receipt_hash": hash_,
                        "deployment_receipt_hash": {"oneOf": [hash_, {"type": "null"}]},
                        "deployed_at": {"type": "string", "format": "date-time"},
                        "ontology_hash": hash_,
                        "rules": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {"artifact": {"type": "string"}, "sha256": hash_},
                            },
                        },
                    },
                },
                "Fleet": {
                    "type": "object",
                    "required": ["env", "processes"],
                    "properties": {
                        "env": {"type": "string"},
                        "process": {"type": "string", "description": "the process that answered"},
                        "processes": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "process": {"type": "string", "description": "host:pid"},
                                    "pid": {"type": "integer"},
                                    "url": {"type": "string"},
                                    "serving": {"oneOf": [hash_, {"type": "null"}]},
                                    "deployment_seq": {"type": "integer"},
                                    "ready": {"type": "boolean"},
                                    "problem": {"type": ["string", "null"]},
                                    "heartbeat_age_s": {"type": "number"},
                                    "alive": {"type": "boolean"},
                                },
                            },
                        },
                    },
                },
                "DeployRequest": {
                    "type": "object",
                    "required": ["enforcer", "generation_receipt_hash"],
                    "properties": {
                        "enforcer": {
                            "type": "string",
                            "description": "absolute path of A on the daemon's host",
                        },
                        "generation_receipt_hash": hash_,
                        "env": {"type": "string"},
                        "kind": {"enum": ["deployment", "rollback"]},
                        "rollback_to": {"type": "string"},
                        "now": {"type": "boolean", "description": "deploy outside the epoch window"},
                    },
                },
                "DeployResult": {
                    "type": "object",
                    "required": ["status", "receipt_hash", "restarted", "kept", "receipt"],
                    "properties": {
                        "status": {"enum": ["deployed", "failed"]},
                        "enforcer_hash": {"oneOf": [hash_, {"type": "null"}]},
                        "receipt_hash": hash_,
                        "restarted": rule_list,
                        "kept": rule_list,
                        "removed": rule_list,
                        "reason": {"type": ["string", "null"]},
                        "receipt": {"type": "object"},
                    },
                },
            },
        },
    }
    from finops_fabric.daemon.shadow import openapi_paths, openapi_schemas  # shadow mode's endpoints

    doc["paths"].update(openapi_paths(_AUTH_ERRORS))
    doc["components"]["schemas"].update(openapi_schemas())
    return doc
