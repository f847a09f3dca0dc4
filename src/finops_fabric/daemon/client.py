"""How the CLI finds an environment's daemon and talks to it.

``mu daemon --env=ENV`` writes ``<store>/daemons/<ENV>.json`` (pid, host, port, started, token
hint) once it listens, and removes it on a clean shutdown. The CLI reads it, retrying until the
daemon answers or ``wait`` seconds pass. The token is ``$FABRIC_TOKEN`` or the local operator's
``<store>/daemons/<ENV>.token`` written by ``mu daemon``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from finops_fabric.canonical import write_bytes_atomic
from finops_fabric.errors import CheckFailed, InputError, Location
from finops_fabric.files import PRIVATE_FILE, private_dir
from finops_fabric.store import Store

__all__ = ["ENV_TOKEN", "DaemonClient", "DaemonInfo", "connect", "discovery_path", "token_path"]

#: Nagle off: a request's headers and body are separate writes, and a delayed ACK would add ~40 ms.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
ENV_TOKEN = "FABRIC_TOKEN"  # noqa: S105 - the name of a variable


def discovery_path(store: Store, env: str) -> Path:
    return store.home / "daemons" / f"{env}.json"


def token_path(store: Store, env: str) -> Path:
    return store.home / "daemons" / f"{env}.token"


@dataclass(frozen=True)
class DaemonInfo:
    env: str
    host: str
    port: int
    pid: int
    started: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def write_discovery(store: Store, info: DaemonInfo, token_hint: str, dev: bool) -> Path:
    path = discovery_path(store, info.env)
    private_dir(path.parent)
    doc = {
        "env": info.env,
        "host": info.host,
        "port": info.port,
        "pid": info.pid,
        "started": info.started,
        "url": info.url,
        "dev": dev,
        "token_hint": token_hint,
    }
    write_bytes_atomic(
        path, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8") + b"\n", mode=PRIVATE_FILE
    )
    return path


def read_discovery(store: Store, env: str) -> DaemonInfo | None:
    path = discovery_path(store, env)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return DaemonInfo(
            str(doc["env"]), str(doc["host"]), int(doc["port"]), int(doc["pid"]), str(doc["started"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_token(store: Store, env: str) -> str | None:
    token = os.environ.get(ENV_TOKEN)
    if token:
        return token.strip()
    try:
        return token_path(store, env).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


class DaemonClient:
    """HTTP calls to one daemon; errors become :class:`FabricError`s with plain words."""

    def __init__(self, info: DaemonInfo, token: str | None, *, timeout: float = 30.0) -> None:
        self.info = info
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=info.url,
            headers=headers,
            timeout=timeout,
            trust_env=False,
            transport=httpx.HTTPTransport(socket_options=NODELAY),
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, Any]:
        try:
            resp = self.http.request(
                method,
                path,
                content=body,
                headers={"Content-Type": "application/json"} if body is not None else None,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise InputError(
                f"cannot reach the {self.info.env} daemon at {self.info.url}: {exc}",
                code="daemon.unreachable",
                hint=f"is `mu daemon --env={self.info.env}` running?",
            ) from exc
        try:
            doc = resp.json()
        except ValueError:
            doc = resp.text
        if resp.status_code in ok:
            return resp.status_code, doc
        err = doc.get("error") if isinstance(doc, dict) else None
        message = err.get("message") if isinstance(err, dict) else str(doc)[:300]
        code = err.get("code") if isinstance(err, dict) else f"daemon.http_{resp.status_code}"
        if resp.status_code in (401, 403):
            raise CheckFailed(
                f"the {self.info.env} daemon refused the request: {message}",
                code=str(code),
                hint=f"set {ENV_TOKEN} to a token with the right role (mu daemon token create --role=...)",
            )
        if resp.status_code in (400, 413, 415) or str(code).startswith("tx."):  # the request was bad input
            raise InputError(f"the {self.info.env} daemon says: {message}", code=str(code))
        raise CheckFailed(f"the {self.info.env} daemon says: {message}", code=str(code))


def connect(store: Store, env: str, *, wait: float = 60.0, timeout: float = 30.0) -> DaemonClient:
    """Find ``env``'s daemon through the store and return a client once it answers on
    ``/v1/health``; retry until ``wait`` seconds have passed."""
    store.require()
    deadline = time.monotonic() + max(wait, 0.0)
    last = "its discovery file does not exist"
    while True:
        info = read_discovery(store, env)
        if info is not None:
            try:
                with httpx.Client(base_url=info.url, timeout=2.0, trust_env=False) as probe:
                    probe.get("/v1/health")  # any HTTP answer (even 401) means it is up
                return DaemonClient(info, read_token(store, env), timeout=timeout)
            except httpx.HTTPError as exc:
                last = f"it does not answer at {info.url} ({type(exc).__name__})"
        if time.monotonic() >= deadline:
            raise InputError(
                f"no {env} daemon is running for the store {store.home}: {last} (waited {wait:g} s)",
                code="daemon.unreachable",
                location=Location(file=str(discovery_path(store, env))),
                hint=f"start it with `mu daemon --env={env}` (same --home / FABRIC_HOME), or raise --wait",
            )
        time.sleep(0.25)


# --- deployment, shared by `mu deploy` and `mu rollback` ------------------------------------------


def verify_receipted(store: Store, path: Path) -> tuple[str, dict[str, Any]]:
    """Check A at ``path`` byte for byte against its manifest AND its generation receipt in the
    store's ledger (signature and artifact list); return (hash(A), the generation receipt)."""
    from finops_fabric.canonical import sha256_hex
    from finops_fabric.daemon.runtime import generation_receipt_for
    from finops_fabric.enforcer import verify_files
    from finops_fabric.receipts import verify_receipt

    files, _manifest, digest = verify_files(path)
    receipt = generation_receipt_for(store, digest)
    if receipt is None:
        raise CheckFailed(
            f"{path} (hash {digest}) has no generation receipt in the store {store.home}; "
            "only an enforcer made by `mu generate` in this store can be deployed",
            code="deploy.no_receipt",
            location=Location(file=str(path)),
        )
    verify_receipt(receipt, store.operator_public_key())
    listing = (receipt.get("outputs") or {}).get("artifacts")
    if isinstance(listing, dict):
        actual = {p: sha256_hex(b) for p, b in files.items()}
        differ = sorted(p for p in set(actual) | set(listing) if actual.get(p) != listing.get(p))
        if differ:
            raise CheckFailed(
                f"{path} does not hold exactly the artifacts of receipt {receipt['receipt_hash']}: "
                + ", ".join(differ[:10]),
                code="deploy.artifacts",
            )
    return digest, receipt


def post_deployment(
    store: Store,
    env: str,
    path: Path,
    generation_receipt_hash: str,
    *,
    kind: str = "deployment",
    now: bool = False,
    wait: float = 60.0,
    extra: dict[str, Any] | None = None,
    progress: Any = None,
) -> tuple[int, dict[str, Any]]:
    """POST A to ``env``'s daemon; wait for the epoch window when the daemon says so (409).
    Returns (HTTP status 200 or 422, the result document)."""
    body = {
        "enforcer": str(path.resolve()),
        "generation_receipt_hash": generation_receipt_hash,
        "env": env,
        "kind": kind,
        "now": now,
        **(extra or {}),
    }
    with connect(store, env, wait=wait, timeout=300.0) as daemon:
        while True:
            try:
                status, doc = daemon.request(
                    "POST", "/v1/deployments", body=json.dumps(body).encode("utf-8"), ok=(200, 409, 422)
                )
            except InputError as exc:
                if exc.code != "daemon.unreachable":
                    raise
                raise CheckFailed(
                    f"the {env} daemon went away during the deployment of {path} ({exc.message}); "
                    "it was not switched: a restarted daemon serves the A of its last successful deployment",
                    code="deploy.interrupted",
                    hint=f"restart `mu daemon --env={env}`; `mu receipt --deployment={env}`; deploy again",
                ) from exc
            if status != 409:
                break
            err = doc.get("error", {}) if isinstance(doc, dict) else {}
            nxt = err.get("next_epoch")
            if not isinstance(nxt, str):
                raise CheckFailed(f"the {env} daemon says: {err.get('message')}", code="deploy.outside_epoch")
            import datetime as dt

            target = dt.datetime.strptime(nxt, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
            delay = max((target - dt.datetime.now(dt.UTC)).total_seconds(), 0.0) + 0.5
            if progress is not None:
                progress(
                    f"{env} deploys in its next epoch window at {nxt}; waiting {delay:.0f} s (--now skips)"
                )
            time.sleep(delay)
    if status == 422 and isinstance(doc, dict) and "receipt" not in doc:
        err = doc.get("error", {})
        raise CheckFailed(f"the {env} daemon refused A: {err.get('message')}", code=str(err.get("code")))
    return status, doc


def decide_remote(store: Store, env: str, tx: dict[str, Any], *, wait: float = 10.0) -> dict[str, Any]:
    """Post one transaction (numbers kept exact) to ``env``'s daemon; return its decision."""
    from finops_fabric.daemon.decision_log import dumps_exact

    with connect(store, env, wait=wait) as daemon:
        _status, doc = daemon.request("POST", "/v1/decisions", body=dumps_exact(tx).encode("utf-8"))
    if not isinstance(doc, dict) or "decision" not in doc:
        raise CheckFailed(
            f"the {env} daemon answered without a decision: {str(doc)[:200]}", code="daemon.bad_answer"
        )
    return doc


# --- `mu receipt --deployment=ENV [--timestamp=T]` ----------------------------------------------


def _parse_time(value: str) -> Any:
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(
            f"--timestamp={value!r} is not an ISO 8601 time (e.g. 2025-01-31T12:00:00Z)", code="cli.usage"
        ) from exc
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def deployment_state_receipt(
    store: Store, env: str, timestamp: str | None, *, wait: float | None = None
) -> dict[str, Any]:
    """Sign (and keep in the ledger) a receipt of what ``env`` runs: now, asked of its daemon;
    or, with ``timestamp``, as of that time according to the ledger's deployment receipts."""
    import datetime as dt

    from finops_fabric.daemon.environments import check_env

    env = check_env(env)
    store.require()
    now = dt.datetime.now(dt.UTC)
    body: dict[str, Any] = {
        "kind": "deployment",
        "event": "state",
        "env": env,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if timestamp is None:
        with connect(store, env, wait=10.0 if wait is None else wait) as daemon:
            status, doc = daemon.request("GET", "/v1/deployment", ok=(200, 404))
        if status == 404 or not isinstance(doc, dict):
            raise CheckFailed(f"nothing is deployed to {env}", code="deployment.none")
        body["as_of"] = body["time"]
        body["source"] = f"the running {env} daemon at {daemon.info.url} (pid {daemon.info.pid})"
        body["inputs"] = {
            "generation_receipt_hash": doc.get("generation_receipt_hash"),
            "deployment_receipt_hash": doc.get("deployment_receipt_hash"),
            "ontology_hash": doc.get("ontology_hash"),
        }
        body["outputs"] = {
            "enforcer_hash": doc.get("enforcer_hash"),
            "deployed_at": doc.get("deployed_at"),
            "rules": doc.get("rules"),
        }
    else:
        at = _parse_time(timestamp)
        from finops_fabric.daemon.runtime import successful_deployments

        found: dict[str, Any] | None = None
        for r in successful_deployments(store, env):
            try:
                when = _parse_time(str(r.get("time")))
            except InputError:
                continue
            if when <= at:
                found = r
                break
        if found is None:
            raise CheckFailed(
                f"the ledger shows nothing deployed to {env} at {timestamp}", code="deployment.none"
            )
        body["as_of"] = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body["source"] = "the store's ledger of deployment receipts"
        body["inputs"] = {
            "generation_receipt_hash": (found.get("inputs") or {}).get("generation_receipt_hash"),
            "deployment_receipt_hash": found["receipt_hash"],
            "ontology_hash": (found.get("inputs") or {}).get("ontology_hash"),
        }
        body["outputs"] = {
            "enforcer_hash": (found.get("outputs") or {}).get("enforcer_hash"),
            "deployed_at": found.get("time"),
        }
    return store.append(body)


def deployment_state_lines(receipt: dict[str, Any]) -> list[str]:
    return [
        f"{receipt['env']} runs {receipt['outputs']['enforcer_hash']} (as of {receipt['as_of']}, "
        f"deployed {receipt['outputs'].get('deployed_at')})",
        f"generation receipt {receipt['inputs']['generation_receipt_hash']}",
        f"attestation receipt {receipt['receipt_hash']} (signed, kept in the ledger)",
    ]
