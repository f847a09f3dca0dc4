"""Load on the daemon over loopback: decisions per second, p50/p99 latency, decision to
notification sent, and what each process costs in CPU.

    python3 bench/bench_daemon.py [--client=auto|wrk|async] [--concurrency=C] [--duration=S]
                                  [--requests=N] [--dev] [--no-workers] [--no-smtp] [--quick] [--json]
    python3 bench/bench_daemon.py --rate=R [--duration=S] [--concurrency=C] ...   # a fixed rate
    python3 bench/bench_daemon.py --url=URL [--token=T]      # an already running daemon
    python3 bench/bench_daemon.py --processes=1,2 [--database=URL | --postgres] ...
    python3 bench/bench_daemon.py --shadow [--rate=400] [--rounds=2] [--duration=S]  # bench/_shadow.py

``--processes=N[,M...]`` runs the daemon as ``mu daemon --processes=N`` (N HTTP processes on one
port, each writing the shared log), one fresh store and daemon per figure, one after the other in
the same run, and reports each and the ratio of the others to the first. ``--database=URL`` runs
the daemon on that PostgreSQL database (``mu daemon --database=URL``; every commit durable:
``synchronous_commit=on``); ``--postgres`` starts a throwaway cluster for the run (Debian's
``initdb``/``pg_ctl``, as tests/unit/services.py does) and removes it afterwards.

Without ``--url`` it builds everything itself in a temporary store (FABRIC_HOME): ``mu init``,
``mu generate`` of the bundled example ``acme``, an SMTP sink (``bench/_smtp_sink.py``, a cheap
stand-in for a mail server elsewhere) named in the store's ``config.json``, ``mu daemon --env=bench
--port=0`` (tokens ON unless ``--dev``; the durable decision log always ON: every decision is
committed to SQLite (WAL) and the WAL fsynced before its response is sent; notification and audit
workers ON unless ``--no-workers``), ``mu deploy``. The transactions are a fixed mix (approve and
reject, purchases and wires: 6 notifications and 1 audit entry per 5 decisions), each with its
own id.

``--rate=R`` offers a fixed load instead of as much as the daemon takes: the asyncio client
sends request i at ``start + i/R`` (open loop, over up to C connections) for DURATION seconds,
and each latency is measured from the request's scheduled time, so a daemon that falls behind
is charged for the wait (no coordinated omission). Use it for decision to notification latency
at a sustainable rate.

The load generator is ``wrk`` (Debian package ``wrk``, with ``bench/bench_daemon.lua``: one
thread, C keep-alive connections, a fixed DURATION) when it is installed and works, else a thin
asyncio client (raw streams, C connections, a fixed count N); the report says which ran. A
warm-up is not counted. Every response must be 200, and the decision log must hold a row for
every answered request.

Reported: decisions/s, p50, p99 and max latency (send to full response, as the client saw it);
CPU seconds per 1,000 decisions of the client, the daemon, the workers and the SMTP sink (all
share the machine's cores); and, after the outbox has drained, decision to notification sent
(p50/p99 of the outbox's ``delivered_at - created_at`` for the timed run's notifications: from
the decision's transaction to the SMTP server's 250 for the mail). Targets: >= 2,000
decisions/s and p99 < 25 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

c.ensure_package()


TARGET_RATE = 2000.0
TARGET_P99_MS = 25.0

MIX = [
    {"type": "purchase", "amount": "95000", "currency": "USD", "actor_id": "u-1", "actor_level": "L2"},
    {"type": "purchase", "amount": "105000", "currency": "USD", "actor_id": "u-1", "actor_level": "L2"},
    {"type": "purchase", "amount": "105000", "currency": "USD", "actor_id": "u-2", "actor_level": "L3"},
    {"type": "wire", "amount": "10000", "currency": "USD", "actor_id": "u-1", "actor_level": "L3",
     "approver_id": "u-1", "country": "DE"},
    {"type": "wire", "amount": "1000", "currency": "USD", "actor_id": "u-1", "actor_level": "CFO",
     "approver_id": "u-9", "country": "KP"},
]  # fmt: skip


def _mu(home: Path, *args: str, timeout: float = 300) -> str:
    env = {**os.environ, "FABRIC_HOME": str(home)}
    p = subprocess.run(
        [sys.executable, "-m", "finops_fabric.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if p.returncode != 0:
        raise SystemExit(f"mu {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return p.stdout


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


async def _connection(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls
    return reader, writer


async def _load(
    url: str, token: str | None, n: int, concurrency: int, offset: int, rate: float | None = None
) -> tuple[float, list[float], int]:
    """C keep-alive HTTP/1.1 connections on raw asyncio streams (a thin client, so the figures
    measure the daemon rather than the client library), N requests in all; with ``rate``,
    request i is due at ``start + i/rate`` and its latency counts from then."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    requests = []
    for i in range(n):
        body = json.dumps({**MIX[i % len(MIX)], "id": f"b{offset + i}"}).encode()
        head = (
            f"POST /v1/decisions HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    latencies: list[float] = []
    errors = 0
    next_i = 0
    start = 0.0

    async def worker() -> None:
        nonlocal next_i, errors
        reader, writer = await _connection(host.strip("[]"), int(port))
        await ready.wait()
        try:
            while next_i < n:
                i = next_i
                next_i += 1
                if rate is not None:
                    t0 = start + i / rate
                    if (delay := t0 - time.perf_counter()) > 0:
                        await asyncio.sleep(delay)
                else:
                    t0 = time.perf_counter()
                writer.write(requests[i])
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if status_line.split()[1:2] != [b"200"]:
                    errors += 1
        finally:
            writer.close()

    ready = asyncio.Event()
    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await asyncio.sleep(0.2)  # the connections are open
    start = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    return wall, latencies, errors


# --- wrk ------------------------------------------------------------------------------------------

LUA = Path(__file__).resolve().parent / "bench_daemon.lua"


def wrk_works() -> str | None:
    """The path of a working ``wrk``, or None."""
    exe = shutil.which("wrk")
    if exe is None:
        return None
    try:
        p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return exe if "wrk" in (p.stdout + p.stderr) else None


def _wrk(
    exe: str, url: str, token: str | None, seconds: float, concurrency: int, run_id: str
) -> dict[str, Any]:
    """One wrk run; its JSON summary plus the CPU seconds wrk used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(
        [exe, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout=10s", "-s", str(LUA),
         url, "--", run_id, token or ""],
        capture_output=True, text=True, timeout=seconds + 60, check=False,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"^WRK_JSON (\{.*\})$", p.stdout, re.MULTILINE)
    if p.returncode != 0 or m is None:
        raise SystemExit(f"wrk failed ({p.returncode}): {p.stdout[-500:]} {p.stderr[-500:]}")
    doc: dict[str, Any] = json.loads(m.group(1))
    doc["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return doc


# --- CPU accounting -------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_of(pid: int) -> float:
    """utime + stime of a live process, seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with open(task / "children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _is_worker(pid: int) -> bool:
    try:
        return b"finops_fabric.daemon.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _cpu_snapshot(daemon: int | None, sink: int | None) -> dict[str, float]:
    """CPU seconds so far: the daemon (its HTTP processes: the parent of ``--processes=N`` and its
    children), its workers, the SMTP sink."""
    snap: dict[str, float] = {}
    if daemon is not None:
        tree = _descendants(daemon)
        snap["daemon"] = _cpu_of(daemon) + sum(_cpu_of(p) for p in tree if not _is_worker(p))
        snap["workers"] = sum(_cpu_of(p) for p in tree if _is_worker(p))
    if sink is not None:
        snap["smtp_sink"] = _cpu_of(sink)
    return snap


# --- the outbox after the run ---------------------------------------------------------------------


class _PgRo:
    """A PostgreSQL connection that takes the ``?`` placeholders of the SQLite queries here."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]

    def close(self) -> None:
        self.conn.close()


def _connect_ro(db: Path | str) -> Any:
    """Read the daemon's database: a SQLite file (read-only) or a PostgreSQL URL."""
    if isinstance(db, str):
        return _PgRo(db)
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def _max_decision_id(db: Path | str) -> int:
    conn = _connect_ro(db)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0])
    finally:
        conn.close()


def _rows_of_run(db: Path | str, id_pattern: str, after_id: int) -> int:
    conn = _connect_ro(db)
    try:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM decisions WHERE id > ? AND transaction_id LIKE ?",
                (after_id, id_pattern),
            ).fetchone()[0]
        )
    finally:
        conn.close()


def _by_process(db: Path | str, after_id: int) -> dict[str, int]:
    """How many of the run's decisions each daemon process answered (the log's process column)."""
    conn = _connect_ro(db)
    try:
        rows = conn.execute(
            "SELECT COALESCE(process, '-'), COUNT(*) FROM decisions WHERE id > ? GROUP BY 1 ORDER BY 1",
            (after_id,),
        ).fetchall()
    except Exception:  # a log without the column
        return {}
    finally:
        conn.close()
    return {str(r[0]): int(r[1]) for r in rows}


def _notifications(db: Path | str, first_id: int, last_id: int, drain_timeout: float) -> dict[str, Any]:
    """Wait (up to ``drain_timeout``) until the run's notifications are delivered, then their
    decision-to-sent latencies."""
    conn = _connect_ro(db)
    window = "kind = 'notification' AND decision_id > ? AND decision_id <= ?"
    try:
        t0 = time.perf_counter()
        while True:
            waiting = conn.execute(
                f"SELECT COUNT(*) FROM outbox WHERE {window} AND state IN ('pending', 'delivering')",
                (first_id, last_id),
            ).fetchone()[0]
            if waiting == 0 or time.perf_counter() - t0 > drain_timeout:
                break
            time.sleep(0.2)
        drained_after = time.perf_counter() - t0
        rows = conn.execute(
            f"SELECT delivered_at - created_at FROM outbox WHERE {window} AND state = 'delivered' ORDER BY 1",
            (first_id, last_id),
        ).fetchall()
        total = conn.execute(f"SELECT COUNT(*) FROM outbox WHERE {window}", (first_id, last_id)).fetchone()[0]
    finally:
        conn.close()
    lat = [float(r[0]) for r in rows]
    return {
        "queued": total,
        "delivered": len(lat),
        "undelivered_after_drain": waiting,
        "drain_seconds_after_run": round(drained_after, 2),
        "p50_ms": round(_pct(lat, 0.50) * 1000, 1) if lat else None,
        "p99_ms": round(_pct(lat, 0.99) * 1000, 1) if lat else None,
        "max_ms": round(lat[-1] * 1000, 1) if lat else None,
    }


def _delivered_notifications(db: Path | str | str) -> int:
    conn = _connect_ro(db)
    try:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE kind = 'notification' AND state = 'delivered'"
            ).fetchone()[0]
        )
    finally:
        conn.close()


# --- the daemon under test ------------------------------------------------------------------------


class _Setup:
    """A store with A deployed to a running ``mu daemon --env=bench`` (and an SMTP sink)."""

    def __init__(
        self,
        tmp: Path,
        *,
        dev: bool,
        workers: bool,
        smtp: bool,
        processes: int = 1,
        database: str | None = None,
    ) -> None:
        self.tmp = tmp
        self.home = tmp / "store"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.sink: subprocess.Popen[str] | None = None
        acme = c.REPO / "src" / "finops_fabric" / "examples" / "acme"
        _mu(self.home, "init")
        _mu(self.home, "generate", f"--input={acme}", f"--output={tmp / 'A'}")
        if smtp:
            port_file = tmp / "smtp.port"
            self.sink = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve().parent / "_smtp_sink.py"), str(port_file)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if time.monotonic() > deadline or self.sink.poll() is not None:
                    raise SystemExit("the SMTP sink did not start")
                time.sleep(0.05)
            config = {
                "smtp": {"host": "127.0.0.1", "port": int(port_file.read_text()), "from": "bench@localhost"}
            }
            (self.home / "config.json").write_text(json.dumps(config))
        argv = [sys.executable, "-m", "finops_fabric.cli", "daemon", "--env=bench", "--port=0"]
        argv += ["--dev"] if dev else []
        argv += [] if workers else ["--no-workers"]
        argv += [f"--processes={processes}"] if processes != 1 else []
        argv += [f"--database={database}"] if database else []
        self.log = (tmp / "daemon.log").open("w")
        self.daemon = subprocess.Popen(
            argv, stdout=self.log, stderr=self.log, env={**os.environ, "FABRIC_HOME": str(self.home)}
        )
        _mu(self.home, "deploy", "--target=bench", f"--enforcer={tmp / 'A'}", "--wait=60")
        info = json.loads((self.home / "daemons" / "bench.json").read_text())
        self.url: str = info["url"]
        self.token: str | None = None if dev else (self.home / "daemons" / "bench.token").read_text().strip()
        self.db: Path | str = database if database else self.home / "daemon-bench.db"

    def close(self) -> int | None:
        """Stop everything; the number of mails the sink received (None without a sink)."""
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
            self.log.close()
        mails = None
        if self.sink is not None:
            self.sink.terminate()
            try:
                out, _ = self.sink.communicate(timeout=10)
                mails = int(out.strip() or 0)
            except (subprocess.TimeoutExpired, ValueError):
                self.sink.kill()
        return mails


def _postgres(tmp: Path) -> tuple[Any, str]:
    """A throwaway PostgreSQL cluster (tests/unit/services.py's :class:`Cluster`) and the URL of a
    fresh database in it; durable commits (``synchronous_commit=on``, PostgreSQL's default)."""
    sys.path.insert(0, str(c.REPO / "tests" / "unit"))
    import services  # type: ignore[import-not-found]

    bindir = services.postgres_bindir()
    if bindir is None:
        raise SystemExit(f"--postgres: PostgreSQL is not installed ({services.INSTALL_POSTGRESQL})")
    cluster = services.Cluster(bindir).init()
    cluster.start()
    return cluster, cluster.create_database("bench")


def _fresh_database(cluster: Any, n: int) -> str:
    return str(cluster.create_database(f"bench{n}"))


def _run(
    args: argparse.Namespace, wrk: str | None, client: str, processes: int, database: str | None
) -> dict[str, Any]:
    """One figure: a fresh store and daemon (unless --url), warm-up, the timed run, the checks."""
    seconds = 3.0 if args.quick else args.duration
    n = 2000 if args.quick else args.requests
    if args.rate is not None:
        n = max(1, round(args.rate * seconds))
    tmp = tempfile.TemporaryDirectory(prefix="bench-daemon-")
    setup: _Setup | None = None
    try:
        if args.url:
            url, token = args.url, args.token
        else:
            setup = _Setup(
                Path(tmp.name),
                dev=args.dev,
                workers=not args.no_workers,
                smtp=not args.no_smtp,
                processes=processes,
                database=database,
            )
            url, token = setup.url, setup.token
        daemon_pid = setup.daemon.pid if setup is not None and setup.daemon is not None else None
        sink_pid = setup.sink.pid if setup is not None and setup.sink is not None else None
        # warm-up, not counted
        if wrk is not None:
            _wrk(wrk, url, token, 2, args.concurrency, "warm")
        else:
            asyncio.run(_load(url, token, 500, args.concurrency, 10**9))
        if args.shadow:  # bench/_shadow.py: the same daemon without and with a shadow enforcer
            import _shadow

            if setup is None:
                raise SystemExit("--shadow starts its own daemon (no --url)")
            return {"shadow_exit": _shadow.compare(args, setup, _load, _pct, _mu, _cpu_of)}
        first_id = _max_decision_id(setup.db) if setup is not None else 0
        cpu0 = _cpu_snapshot(daemon_pid, sink_pid)
        if wrk is not None:
            w = _wrk(wrk, url, token, seconds, args.concurrency, "run")
            answered, wall = int(w["requests"]), w["duration_us"] / 1e6
            errors = sum(int(v) for v in w["errors"].values())
            p50, p99, pmax = w["p50_us"] / 1000, w["p99_us"] / 1000, w["max_us"] / 1000
            client_cpu = float(w["cpu_s"])
        else:
            p0 = time.process_time()
            wall, lat, errors = asyncio.run(_load(url, token, n, args.concurrency, 0, args.rate))
            client_cpu = time.process_time() - p0
            lat.sort()
            answered = n
            p50, p99, pmax = _pct(lat, 0.50) * 1000, _pct(lat, 0.99) * 1000, lat[-1] * 1000
        cpu1 = _cpu_snapshot(daemon_pid, sink_pid)
        rate = answered / wall
        logged = notifications = None
        by_process: dict[str, int] = {}
        if setup is not None:
            time.sleep(0.5)  # the requests still in flight when wrk stopped are logged too
            last_id = _max_decision_id(setup.db)
            logged = _rows_of_run(setup.db, "run-%" if wrk is not None else "b%", first_id)
            by_process = _by_process(setup.db, first_id)
            if not args.no_workers and not args.no_smtp:
                notifications = _notifications(setup.db, first_id, last_id, args.drain_timeout)
        cpu = {k: cpu1[k] - cpu0[k] for k in cpu1} | {"client": client_cpu}
        per_k = {k: round(v / max(answered, 1) * 1000, 3) for k, v in cpu.items()}
        # wrk may end with up to C requests sent but not yet answered (the daemon still logs them)
        log_ok = logged is None or answered <= logged <= answered + args.concurrency
        meets = rate >= TARGET_RATE and p99 < TARGET_P99_MS and errors == 0 and args.rate is None
        doc: dict[str, Any] = {
            "client": client,
            "concurrency": args.concurrency,
            "daemon": "external"
            if setup is None
            else ("--dev" if args.dev else "tokens")
            + ("" if not args.no_workers else ", --no-workers")
            + (", no SMTP" if args.no_smtp else "")
            + (f", --processes={processes}" if processes != 1 else "")
            + (", PostgreSQL" if database else ", SQLite"),
            "processes": processes,
            "database": "postgresql" if database else "sqlite",
            "offered_rate": args.rate,
            "requests": answered,
            "errors": errors,
            "seconds": round(wall, 3),
            "decisions_per_second": round(rate, 1),
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
            "max_ms": round(pmax, 3),
            "decision_log_rows": logged,
            "decision_log_matches": log_ok,
            "decisions_by_process": by_process,
            "cpu_seconds_per_1000_decisions": per_k,
            "cpu_utilisation": {k: round(v / wall, 2) for k, v in cpu.items()},
            "decision_to_notification_sent": notifications,
            "durable_log": (
                "PostgreSQL, synchronous_commit=on: each commit flushed to its WAL before its responses"
                if database
                else "SQLite WAL; each commit group's WAL fsynced (by the writer, after COMMIT) before"
                " any of its responses"
            ),
            "targets": {"decisions_per_second": TARGET_RATE, "p99_ms": TARGET_P99_MS},
            "meets_targets": meets,
            "machine": c.machine(),
        }
        if setup is not None:
            db = setup.db
            mails = setup.close()
            setup = None
            doc["smtp_sink_mails"] = mails
            if mails is not None and not args.no_workers:
                # every mail the sink got against every notification the outbox says it delivered
                # (warm-up included): the difference is copies sent again (at least once)
                delivered = _delivered_notifications(db)
                doc["outbox_notifications_delivered"] = delivered
                doc["mails_sent_twice"] = mails - delivered
        return doc
    finally:
        if setup is not None:
            setup.close()
        tmp.cleanup()


def _print(doc: dict[str, Any]) -> None:
    per_k = doc["cpu_seconds_per_1000_decisions"]
    row = [f"{doc['client']}, {doc['daemon']}", doc["requests"], doc["concurrency"],
           c.fmt_rate(doc["decisions_per_second"]), f"{doc['p50_ms']:.2f}", f"{doc['p99_ms']:.2f}",
           f"{doc['max_ms']:.2f}", doc["errors"]]  # fmt: skip
    header = ["run", "requests", "in flight", "decisions/s", "p50 ms", "p99 ms", "max ms", "errors"]
    print(c.table([row], header))
    if len(doc.get("decisions_by_process") or {}) > 1:
        print(
            "decisions by process: " + ", ".join(f"{p} {n}" for p, n in doc["decisions_by_process"].items())
        )
    print(
        "CPU s per 1,000 decisions: "
        + ", ".join(f"{k} {v:.3f} ({doc['cpu_utilisation'][k]:.2f} cores)" for k, v in per_k.items())
    )
    if doc.get("smtp_sink_mails") is not None:
        print(
            f"SMTP sink: {doc['smtp_sink_mails']} mails for {doc.get('outbox_notifications_delivered')}"
            f" delivered notifications ({doc.get('mails_sent_twice')} sent twice)"
        )
    notifications = doc["decision_to_notification_sent"]
    if notifications is not None:
        print(
            f"decision to notification sent: p50 {notifications['p50_ms']} ms, p99 "
            f"{notifications['p99_ms']} ms, max {notifications['max_ms']} ms "
            f"({notifications['delivered']}/{notifications['queued']} delivered, outbox drained "
            f"{notifications['drain_seconds_after_run']} s after the run)"
        )
    logged = doc["decision_log_rows"]
    print(
        f"targets: >= {TARGET_RATE:,.0f}/s and p99 < {TARGET_P99_MS:g} ms: "
        + ("met" if doc["meets_targets"] else "NOT met")
        + (
            f"; decision log rows: {logged}" + ("" if doc["decision_log_matches"] else " (MISMATCH)")
            if logged is not None
            else ""
        )
        + f"; {c.machine_line()}"
    )


def _processes(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not 1 <= v <= 64 for v in values):
        raise SystemExit(f"--processes={text}: give N or N,M,... (each 1-64)")
    return values


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--client", choices=["auto", "wrk", "async"], default="auto", help="load generator")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight (connections)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of the timed run (wrk)")
    ap.add_argument("--requests", type=int, default=20000, help="decisions in the timed run (async client)")
    ap.add_argument(
        "--rate", type=float, help="offer a fixed load: decisions per second for --duration (async client)"
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run (3 s, or 2,000 requests)")
    ap.add_argument("--dev", action="store_true", help="daemon in development mode (no tokens)")
    ap.add_argument("--no-workers", action="store_true", help="daemon without notification/audit workers")
    ap.add_argument("--no-smtp", action="store_true", help="no SMTP sink (notifications stay queued)")
    ap.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for notifications")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--url", help="an already running daemon (else one is started)")
    ap.add_argument("--token", help="bearer token for --url")
    ap.add_argument(
        "--processes",
        default="1",
        metavar="N[,M...]",
        help="HTTP processes of the daemon; several values: one figure each, and their ratio to the first",
    )
    ap.add_argument("--shadow", action="store_true", help="p99 at --rate (400/s) without and with a shadow A")
    ap.add_argument("--rounds", type=int, default=2, help="--shadow: rounds of each kind, alternating")
    db = ap.add_mutually_exclusive_group()
    db.add_argument("--database", metavar="URL", help="run the daemon on this PostgreSQL database")
    db.add_argument(
        "--postgres", action="store_true", help="start a throwaway PostgreSQL cluster for the run"
    )
    args = ap.parse_args()
    counts = _processes(args.processes)
    if args.shadow and len(counts) > 1:
        raise SystemExit("--shadow measures one daemon: give one --processes value")
    if args.url and (len(counts) > 1 or args.database or args.postgres):
        raise SystemExit(
            "--url measures a running daemon: --processes, --database and --postgres do not apply"
        )
    if args.rate is not None and args.client == "wrk":
        raise SystemExit("--rate needs the asyncio client (wrk offers no fixed rate)")
    wrk = wrk_works() if args.client in ("auto", "wrk") and args.rate is None else None
    if args.client == "wrk" and wrk is None:
        raise SystemExit("--client=wrk: wrk is not installed or does not run (apt-get install wrk)")
    client = (
        "wrk" if wrk is not None else "async" if args.rate is None else f"async, fixed rate {args.rate:g}/s"
    )
    cluster = None
    pg_tmp = None
    docs: list[dict[str, Any]] = []
    try:
        if args.postgres:
            pg_tmp = tempfile.TemporaryDirectory(prefix="bench-pg-")
            cluster, _url = _postgres(Path(pg_tmp.name))
        for k, processes in enumerate(counts):
            database = args.database or (_fresh_database(cluster, k) if cluster is not None else None)
            doc = _run(args, wrk, client, processes, database)
            if args.shadow:
                return int(doc["shadow_exit"])
            docs.append(doc)
            if not args.json:
                _print(doc)
    finally:
        if cluster is not None:
            cluster.destroy()
        if pg_tmp is not None:
            pg_tmp.cleanup()
    base = docs[0]["decisions_per_second"]
    ratios = {
        f"{d['processes']}_to_{docs[0]['processes']}": round(d["decisions_per_second"] / base, 2)
        for d in docs[1:]
        if base
    }
    if args.json:
        c.emit_json(docs[0] if len(docs) == 1 else {"runs": docs, "throughput_ratio": ratios})
    elif ratios:
        print(
            "throughput ratio (same run): "
            + ", ".join(f"{k.replace('_to_', ' to ')} processes {v:.2f}x" for k, v in ratios.items())
        )
    return 0 if all(d["errors"] == 0 and d["decision_log_matches"] for d in docs) else 1


if __name__ == "__main__":
    sys.exit(main())
