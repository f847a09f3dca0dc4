"""`mu daemon --env=ENV [--host=127.0.0.1] [--port=0] [--dev] [--database=URL]`: run ENV's service.

    mu daemon token create --role=operator|deployer|auditor [--role=…] [--label=TEXT]
    mu daemon token list
    mu daemon token revoke --id=ID

The daemon listens on loopback by default (``--port=0`` picks a free port), writes
``<store>/daemons/<ENV>.json`` so the CLI finds it and ``<store>/daemons/<ENV>.token`` (0600,
roles operator and deployer) for the local operator, and removes both on a clean shutdown
(SIGTERM or Ctrl-C). ``--dev`` turns tokens off and is refused unless bound to loopback.
On start it verifies the store's receipt ledger, ENV's decision log and audit ledger against
their newest signed tree heads (and does not start when one does not verify), then boots the A
of the newest successful deployment of ENV in the ledger, if any. It signs tree heads of its
logs while it runs (:mod:`finops_fabric.daemon.tree_heads`).

``--database=postgresql://…`` (or ``environments.<ENV>.database`` in the store's config.json)
keeps ENV's decision log, outbox, audit ledger and deployments in that PostgreSQL database
instead of ``<store>/daemon-<ENV>.db``; it is migrated at start (:mod:`finops_fabric.storage`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from finops_fabric.cli import Out, action_options
from finops_fabric.daemon.environments import ENV_NAME, check_env
from finops_fabric.errors import InputError

__all__ = ["ENV_NAME", "check_env", "cmd_daemon", "is_loopback", "register"]

Register = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Several HTTP processes each listen on the port (the kernel spreads connections over them).
REUSE_PORT = hasattr(socket, "SO_REUSEPORT")


def _listen(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to (host, port), listening unless ``listen`` is false (then it only
    holds the port for the HTTP processes that listen on it with SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are
    # TCP; without it every small response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if reuse_port and not listen and port != 0:
            # the port must be free: SO_REUSEPORT alone would join another daemon's listeners on it
            with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            code="daemon.listen",
            hint="choose another --port (or --port=0 for a free one)",
        ) from exc
    return sock


def cmd_daemon(args: argparse.Namespace) -> int:
    if args.action == "token":
        return _token(args)
    from finops_fabric.daemon import client
    from finops_fabric.store import Store

    env = check_env(args.env)
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port={args.port} is not a port number (0-65535)", code="cli.usage")
    if not 1 <= args.processes <= 64:
        raise InputError(f"--processes={args.processes} is not from 1 to 64", code="cli.usage")
    if args.dev and not is_loopback(args.host):
        raise InputError(
            f"--dev turns off tokens and is only allowed on loopback, not on --host={args.host}",
            code="daemon.dev_not_loopback",
        )
    store = Store.open(args.home)
    from finops_fabric.daemon.runtime import epoch_schedule, next_epoch, now_utc
    from finops_fabric.intake.transaction import body_limit

    max_body = body_limit(store.home, args.max_body_bytes)  # a bad limit is refused before listening
    schedule = epoch_schedule(store, env)  # so is a bad epoch schedule (never a failed deploy later)
    if schedule is not None:
        next_epoch(schedule, now_utc())
    if args.inherit_fd is not None:  # one HTTP process of `mu daemon --processes=N`
        from finops_fabric.daemon.worker import DATABASE_ENV

        args.database = args.database or os.environ.get(DATABASE_ENV)  # the parent's --database
        storage = _open_storage(args, store, env)
        if args.inherit_fd >= 0:  # the parent's listening socket, shared
            sock = socket.socket(fileno=args.inherit_fd)
        else:  # a listening socket of its own on the parent's port (SO_REUSEPORT)
            sock = _listen(args.host, args.port, reuse_port=True)
        return _serve(args, store, env, sock, max_body, child=True, storage=storage)
    running = client.read_discovery(store, env)
    if not args.join and running is not None and running.pid != os.getpid() and _pid_alive(running.pid):
        raise InputError(
            f"a {env} daemon already runs for this store (pid {running.pid} at {running.url})",
            code="daemon.running",
            hint="stop it first, use another --env, or add --join to serve the environment beside it",
        )
    # PostgreSQL: connected and migrated before listening (a newer schema is refused, exit 2)
    storage = _open_storage(args, store, env)
    if args.processes > 1 and storage is not None:
        storage.close()  # migrated once here; each HTTP process opens its own pool
        storage = None
    try:
        group = args.processes > 1
        # --processes=N: the parent only holds the port; each HTTP process listens on it
        sock = _listen(
            args.host, args.port, reuse_port=group and REUSE_PORT, listen=not (group and REUSE_PORT)
        )
    except BaseException:
        if storage is not None:
            storage.close()
        raise
    if args.processes > 1:
        return _parent(args, store, env, sock)
    return _serve(args, store, env, sock, max_body, child=False, storage=storage)


def _open_storage(args: argparse.Namespace, store: Any, env: str) -> Any:
    """ENV's PostgreSQL storage when ``--database`` (or config.json) names one, else None (the
    store's SQLite file, opened by the decision log itself)."""
    from finops_fabric.storage import database_for, open_storage

    url = database_for(store.home, env, args.database)
    return open_storage(store.home, env, url) if url is not None and url.startswith("postgres") else None


def _local_token(store: Any, env: str) -> tuple[str, Any]:
    """A token for the local operator (roles operator and deployer), written 0600 beside the
    discovery file."""
    from finops_fabric.canonical import write_bytes_atomic
    from finops_fabric.daemon import auth, client
    from finops_fabric.files import PRIVATE_FILE, private_dir

    token = auth.create_token(store.home, ["operator", "deployer"], local_env=env, label="local operator")
    tpath = client.token_path(store, env)
    private_dir(tpath.parent)
    write_bytes_atomic(tpath, token.encode("ascii") + b"\n", mode=PRIVATE_FILE)
    return token, tpath


def _announce(args: argparse.Namespace, store: Any, env: str, host: str, port: int) -> Callable[[], None]:
    """Write the discovery file and the local token (unless this daemon joins one that already
    has them); the cleanup that removes them (once)."""
    from finops_fabric.daemon import auth, client

    if args.join:
        return lambda: print(f"mu daemon: {env} stopped", file=sys.stderr, flush=True)
    token, tpath = _local_token(store, env)
    info = client.DaemonInfo(
        env, str(host), int(port), os.getpid(), dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    dpath = client.write_discovery(store, info, auth.hash_token(token)[:12], args.dev)
    cleaned: list[bool] = []

    def cleanup() -> None:
        if cleaned:
            return
        cleaned.append(True)
        current = client.read_discovery(store, env)
        if current is None or current.pid == os.getpid():
            with contextlib.suppress(OSError):
                dpath.unlink()
        with contextlib.suppress(OSError):
            tpath.unlink()
        with contextlib.suppress(Exception):
            auth.revoke_local(store.home, env)
        print(f"mu daemon: {env} stopped", file=sys.stderr, flush=True)

    return cleanup


def _token_note(args: argparse.Namespace, store: Any, env: str) -> str:
    from finops_fabric.daemon import client

    if args.dev:
        return "; development mode: no tokens"
    if args.join:
        return "; tokens of the store"
    return f"; local token in {client.token_path(store, env)}"


def _serve(
    args: argparse.Namespace,
    store: Any,
    env: str,
    sock: socket.socket,
    max_body: int,
    *,
    child: bool,
    storage: Any = None,
) -> int:
    """Run one HTTP process of the daemon on ``sock`` (its own, or the parent's for ``child``),
    on ``storage`` (PostgreSQL) or the store's SQLite file (None)."""
    import uvicorn

    from finops_fabric.daemon import effects, fleet
    from finops_fabric.daemon.app import create_app
    from finops_fabric.daemon.runtime import Runtime

    host, port = sock.getsockname()[:2]
    runtime = Runtime(store, env)
    _inject_faults(runtime, env)
    # refuses a store whose ledger, decision log or audit ledger does not verify
    try:
        app = create_app(store, env, dev=args.dev, runtime=runtime, max_body_bytes=max_body, storage=storage)
    except BaseException:
        if storage is not None:
            storage.close()
        raise
    restored = runtime.restore()
    # Workers: one set per daemon, beside its single process or HTTP process 0 of a group. On
    # PostgreSQL every daemon (a joined one too: another host) runs its set, as items are
    # claimed with SKIP LOCKED and leases; on SQLite (one worker per kind for the outbox) a
    # daemon that joins another leaves delivery to that one.
    workers = (
        not args.no_workers
        and (not child or args.process_index == 0)
        and (storage is not None or not args.join)
    )
    if workers:
        effects.attach(app, store, env)
    else:
        effects.attach_outbox(app, store, env)  # the entries wait for a daemon with workers
    url = f"http://{f'[{host}]' if ':' in str(host) else host}:{port}"
    state = fleet.FleetState(storage) if storage is not None else fleet.FleetState.open(store.home, env)
    member = fleet.FleetMember(state, runtime, url)
    app.state.fleet = member
    app.state.on_startup.append(member.start)
    app.state.on_shutdown.insert(0, member.stop)
    if child:
        cleanup: Callable[[], None] = lambda: None  # noqa: E731 - the parent owns the files
        ready_fd = args.ready_fd

        def ready() -> None:
            if ready_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(ready_fd, b"ready\n")
                    os.close(ready_fd)

        app.state.on_startup.append(ready)
        _exit_with_parent()
    else:
        cleanup = _announce(args, store, env, str(host), int(port))
        print(
            f"mu daemon: serving {env} at {url} (pid {os.getpid()}"
            + (f", database {storage.where}" if storage is not None else "")
            + "); "
            + (
                f"running {restored}"
                if restored
                else str(runtime.last_health.get("detail", "nothing deployed yet"))
            )
            + _token_note(args, store, env),
            file=sys.stderr,
            flush=True,
        )
    # proxy_headers off: the daemon is reached directly (loopback by default), never through a
    # proxy whose X-Forwarded-* headers would matter, and the check costs time on every request.
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", workers=1, proxy_headers=False
    )
    server = uvicorn.Server(config)
    # Remove the discovery and token files at the lifespan's shutdown, because uvicorn
    # re-raises SIGTERM after a graceful shutdown, which ends the process.
    app.state.on_shutdown.append(cleanup)
    try:
        server.run(sockets=[sock])
    finally:
        cleanup()
        sock.close()
        if storage is not None:
            storage.close()
    return 0


def _exit_with_parent() -> None:
    """An HTTP process of a group stops (SIGTERM to itself: a graceful shutdown) when its parent
    is gone, so a killed parent leaves no process behind on the port."""
    import signal
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _parent(args: argparse.Namespace, store: Any, env: str, sock: socket.socket) -> int:
    """``--processes=N``: bind once, run N HTTP processes on the socket, supervise them."""
    from finops_fabric.daemon.prefork import ProcessGroup, StartFailed

    host, port = sock.getsockname()[:2]
    passthrough = [f"--env={env}", f"--home={store.home}", f"--host={host}", f"--port={port}"]
    if args.dev:
        passthrough.append("--dev")
    if args.max_body_bytes is not None:
        passthrough.append(f"--max-body-bytes={args.max_body_bytes}")
    if args.no_workers:
        passthrough.append("--no-workers")
    if args.join:
        passthrough.append("--join")
    from finops_fabric.daemon.worker import DATABASE_ENV

    # the database URL reaches the HTTP processes in their environment, never on a command line
    child_env = {DATABASE_ENV: args.database} if args.database else {}

    def argv_of(index: int, fd: int, ready_fd: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "finops_fabric.cli",
            "daemon",
            *passthrough,
            f"--inherit-fd={fd}",
            f"--process-index={index}",
            f"--ready-fd={ready_fd}",
        ]

    group = ProcessGroup(argv_of, None if REUSE_PORT else sock, args.processes, env=child_env)
    try:
        group.start()
    except StartFailed as exc:
        sock.close()
        raise InputError(
            f"the {env} daemon did not start: {exc}", code="daemon.start_failed", hint="its error is above"
        ) from exc
    cleanup = _announce(args, store, env, str(host), int(port))
    url = f"http://{f'[{host}]' if ':' in str(host) else host}:{port}"
    print(
        f"mu daemon: serving {env} at {url} (pid {os.getpid()}) with {args.processes} HTTP processes "
        f"(pids {', '.join(str(p) for p in group.pids())})" + _token_note(args, store, env),
        file=sys.stderr,
        flush=True,
    )
    try:
        group.run()
    finally:
        cleanup()
        sock.close()
    return 0


FAULT_DEPLOY_PAUSE = "FABRIC_FAULT_DEPLOY_PAUSE"


def _inject_faults(runtime: Any, env: str) -> None:
    """A failpoint for the fault tests (in the manner of etcd's gofail): with
    ``FABRIC_FAULT_DEPLOY_PAUSE=SECONDS`` every deployment pauses after booting the new A and
    before its health check, and says so on stderr, so a test can kill the daemon mid-deployment.
    Unset (always, outside tests), nothing changes."""
    raw = os.environ.get(FAULT_DEPLOY_PAUSE)
    if not raw:
        return
    try:
        pause = float(raw)
    except ValueError as exc:
        raise InputError(
            f"{FAULT_DEPLOY_PAUSE}={raw!r} is not a number of seconds", code="cli.usage"
        ) from exc

    def hook(enforcer: Any) -> None:
        import time

        print(
            f"mu daemon: fault injection: {env} deployment of {enforcer.hash} paused {pause:g} s "
            "before its health check",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(pause)

    runtime.boot_hook = hook


def _token(args: argparse.Namespace) -> int:
    from finops_fabric.daemon import auth
    from finops_fabric.store import Store

    if args.verb == "list":
        return _token_list(args)
    if args.verb == "revoke":
        return _token_revoke(args)
    roles = args.role or []
    if not roles:
        raise InputError(f"give --role ({', '.join(auth.ROLES)})", code="cli.usage")
    store = Store.open(args.home)
    storage = _token_storage(args, store)
    try:
        token = auth.create_token(store.home, roles, label=args.label or "", storage=storage)
        where = storage.where if storage is not None else str(auth.tokens_path(store.home))
    finally:
        if storage is not None:
            storage.close()
    doc: dict[str, Any] = {"token": token, "roles": sorted(set(roles)), "sha256": auth.hash_token(token)}
    Out(args.json).emit(
        doc,
        lambda: [
            token,
            f"(roles {', '.join(sorted(set(roles)))}; shown once: only its SHA-256 is kept in {where})",
        ],
    )
    return 0


def _token_storage(args: argparse.Namespace, store: Any) -> Any:
    """The database that keeps the tokens of ``--env`` when that environment's logs are in
    PostgreSQL (every daemon of it accepts them), else ``None`` (the store's tokens.json)."""
    from finops_fabric.storage import external_storage

    env = getattr(args, "token_env", None)
    database = getattr(args, "token_database", None)
    if env is None:
        if database:
            raise InputError("--database goes with --env=ENV", code="cli.usage")
        return None
    return external_storage(store.home, check_env(env), database)


def _token_list(args: argparse.Namespace) -> int:
    from finops_fabric.daemon import auth
    from finops_fabric.store import Store

    store = Store.open(args.home)
    storage = _token_storage(args, store)
    try:
        rows = auth.list_tokens(store.home, storage)
        where = storage.where if storage is not None else str(auth.tokens_path(store.home))
    finally:
        if storage is not None:
            storage.close()

    def human() -> list[str]:
        if not rows:
            return [f"no tokens in {where}"]
        return [
            f"{r['id']}  {','.join(r['roles']):<18} {r['created']:<21} {r['label']}"
            + (f" (daemon {r['local_env']})" if "local_env" in r else "")
            for r in rows
        ]

    Out(args.json).emit({"tokens": rows}, human)
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from finops_fabric.daemon import auth
    from finops_fabric.store import Store

    if not args.id:
        raise InputError("give --id=ID (from `mu daemon token list`)", code="cli.usage")
    store = Store.open(args.home)
    storage = _token_storage(args, store)
    try:
        row = auth.revoke(store.home, args.id, storage)
    finally:
        if storage is not None:
            storage.close()
    Out(args.json).emit(
        {"revoked": row},
        lambda: [f"revoked token {row['id']} ({', '.join(row['roles'])}) {row['label']}".rstrip()],
    )
    return 0


def register(cmd: Register) -> None:
    sp = cmd("daemon", cmd_daemon, "run the enforcement service for ENV (or: daemon token create --role=R)")
    sp.add_argument("--env", metavar="ENV", help="the environment this daemon serves (test, production, …)")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback)")
    sp.add_argument(
        "--port", type=int, default=0, help="port (default 0: a free port, recorded in the store)"
    )
    sp.add_argument("--dev", action="store_true", help="development mode: no tokens (loopback only)")
    sp.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="N HTTP processes on the one port, sharing the database (default 1); the parent "
        "restarts one that exits",
    )
    sp.add_argument(
        "--join",
        action="store_true",
        help="serve ENV beside a daemon that already runs for it (another port or host of the same "
        "database); the first daemon keeps the discovery file and the local token (and, on SQLite, "
        "the workers)",
    )
    sp.add_argument(
        "--inherit-fd",
        type=int,
        metavar="FD",
        help="(set by the parent of --processes=N) serve on this inherited listening socket "
        "(-1: listen on --port with SO_REUSEPORT)",
    )
    sp.add_argument(
        "--process-index",
        type=int,
        default=0,
        metavar="I",
        help="(set by the parent of --processes=N) which HTTP process this is (0: the one with the workers)",
    )
    sp.add_argument(
        "--ready-fd",
        type=int,
        metavar="FD",
        help="(set by the parent of --processes=N) write a line here once serving",
    )
    sp.add_argument(
        "--max-body-bytes",
        type=int,
        metavar="N",
        help="the largest request body in bytes (default: daemon.max_body_bytes of the store's "
        "config.json, else 65536); larger bodies get 413",
    )
    sp.add_argument(
        "--database",
        metavar="URL",
        help="the database of ENV's logs: postgresql://USER@HOST[:PORT]/DATABASE (default: "
        "environments.ENV.database of the store's config.json, else SQLite in the store)",
    )
    sp.add_argument(
        "--no-workers",
        action="store_true",
        help="decide only: no notification or audit workers (their outbox entries wait for the next start)",
    )
    actions = sp.add_subparsers(dest="action", metavar="ACTION", parser_class=type(sp))
    tk = actions.add_parser(
        "token", help="manage access tokens", description="create, list or revoke access tokens"
    )
    tk.add_argument(
        "verb",
        choices=["create", "list", "revoke"],
        help="create: print a new token once; list: ids, roles, labels; revoke: remove one by --id",
    )
    tk.add_argument("--id", help="revoke: the token's id (a prefix of its SHA-256, from `token list`)")
    tk.add_argument(
        "--role", action="append", metavar="ROLE", help="operator, deployer or auditor (repeatable)"
    )
    tk.add_argument("--label", help="a note kept with the token's hash")
    tk.add_argument(
        "--env",
        dest="token_env",
        metavar="ENV",
        help="the tokens of ENV's database when its logs are in PostgreSQL (shared by its daemons)",
    )
    tk.add_argument(
        "--database", dest="token_database", metavar="URL", help="with --env: that database's URL"
    )
    action_options(tk)
