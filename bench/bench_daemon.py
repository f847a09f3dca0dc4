"""Load on the daemon over loopback: decisions per second and p50/p99 latency.

    python3 bench/bench_daemon.py [--requests=N] [--concurrency=C] [--quick] [--json] [--url=URL --token=T]

Without ``--url`` it builds everything itself in a temporary store (FABRIC_HOME): ``mu init``,
``mu generate`` of the bundled example ``acme``, ``mu daemon --env=bench --port=0`` (uvicorn, one
worker, no access log, tokens ON, the durable decision log ON: every decision is committed to
SQLite with synchronous=FULL before its response is sent), ``mu deploy``. Then an asyncio load
generator (raw asyncio streams, C keep-alive HTTP/1.1 connections) keeps C requests in flight until
a FIXED number N of decisions are answered, over a fixed mix of transactions (approve and
reject, purchases and wires). A warm-up of 500 requests is not counted. Every response must be
200; the count of decision-log rows is checked against the requests sent.

Reported: decisions/s over the whole timed run (N / wall time), p50, p99 and max latency
(per request, send to full response, measured in the load generator, which shares the
machine's cores with the daemon). Targets: >= 2,000 decisions/s and p99 < 25 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
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
    url: str, token: str | None, n: int, concurrency: int, offset: int
) -> tuple[float, list[float], int]:
    """C keep-alive HTTP/1.1 connections on raw asyncio streams (a thin client, so the figures
    measure the daemon rather than the client library), N requests in all."""
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

    async def worker() -> None:
        nonlocal next_i, errors
        reader, writer = await _connection(host.strip("[]"), int(port))
        try:
            while next_i < n:
                i = next_i
                next_i += 1
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

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return wall, latencies, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=30000, help="decisions in the timed run (fixed count)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="2,000 requests (a smoke run)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--url", help="an already running daemon (else one is started)")
    ap.add_argument("--token", help="bearer token for --url")
    args = ap.parse_args()
    n = 2000 if args.quick else args.requests

    daemon: subprocess.Popen[bytes] | None = None
    tmp = tempfile.TemporaryDirectory(prefix="bench-daemon-")
    home = Path(tmp.name) / "store"
    try:
        if args.url:
            url, token = args.url, args.token
        else:
            acme = c.REPO / "src" / "finops_fabric" / "examples" / "acme"
            _mu(home, "init")
            _mu(home, "generate", f"--input={acme}", f"--output={Path(tmp.name) / 'A'}")
            log = (Path(tmp.name) / "daemon.log").open("w")
            daemon = subprocess.Popen(
                [sys.executable, "-m", "finops_fabric.cli", "daemon", "--env=bench", "--port=0"],
                stdout=log,
                stderr=log,
                env={**os.environ, "FABRIC_HOME": str(home)},
            )
            _mu(home, "deploy", "--target=bench", f"--enforcer={Path(tmp.name) / 'A'}", "--wait=60")
            info = json.loads((home / "daemons" / "bench.json").read_text())
            url = info["url"]
            token = (home / "daemons" / "bench.token").read_text().strip()
        asyncio.run(_load(url, token, 500, args.concurrency, 10**9))  # warm-up, not counted
        wall, lat, errors = asyncio.run(_load(url, token, n, args.concurrency, 0))
        lat.sort()
        rate = n / wall
        logged = None
        if daemon is not None:
            import sqlite3

            conn = sqlite3.connect(f"file:{home / 'daemon-bench.db'}?mode=ro", uri=True)
            logged = conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
            conn.close()
        doc: dict[str, Any] = {
            "requests": n,
            "concurrency": args.concurrency,
            "errors": errors,
            "seconds": round(wall, 3),
            "decisions_per_second": round(rate, 1),
            "p50_ms": round(_pct(lat, 0.50) * 1000, 3),
            "p99_ms": round(_pct(lat, 0.99) * 1000, 3),
            "max_ms": round(lat[-1] * 1000, 3) if lat else None,
            "decision_log_rows": logged,
            "durable_log": "SQLite WAL, synchronous=FULL, committed before each response",
            "targets": {"decisions_per_second": TARGET_RATE, "p99_ms": TARGET_P99_MS},
            "meets_targets": rate >= TARGET_RATE and _pct(lat, 0.99) * 1000 < TARGET_P99_MS and errors == 0,
            "machine": c.machine(),
        }
        if args.json:
            c.emit_json(doc)
        else:
            print(
                c.table(
                    [
                        [
                            "daemon /v1/decisions",
                            n,
                            args.concurrency,
                            c.fmt_rate(rate),
                            f"{doc['p50_ms']:.2f}",
                            f"{doc['p99_ms']:.2f}",
                            f"{doc['max_ms']:.2f}",
                            errors,
                        ]
                    ],
                    ["run", "requests", "in flight", "decisions/s", "p50 ms", "p99 ms", "max ms", "errors"],
                )
            )
            print(
                f"targets: >= {TARGET_RATE:,.0f}/s and p99 < {TARGET_P99_MS:g} ms: "
                + ("met" if doc["meets_targets"] else "NOT met")
                + (f"; decision log rows: {logged}" if logged is not None else "")
                + f"; {doc['machine']['cpus']} CPUs"
            )
        return 0 if errors == 0 else 1
    finally:
        if daemon is not None:
            daemon.terminate()
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
