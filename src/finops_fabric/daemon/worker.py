"""A worker process: delivers one kind of outbox item (notifications or audit entries).

    python -m finops_fabric.daemon.worker --env=ENV --kind=notification|audit --home=STORE

Loop: claim due items → deliver each → ack or fail (back-off); when nothing is due, sleep the
poll interval (50 ms). SIGTERM or SIGINT finishes the item in hand and exits 0. The worker also
exits when its parent (the supervisor) is gone, so a killed daemon leaves no orphans.

After a transport outage, the first successful delivery makes every backed-off item of the kind
due at once (the back-off protects a server that is down, not one that is back).

A notification whose idempotency key is already recorded as delivered is acknowledged without
being sent. When a webhook is configured, the mail part is recorded on its own first, so a
failing webhook does not make the mail go out twice. Audit items are appended to the hash-chained
ledger and acknowledged in one transaction.

Fault injection (tests, drills): ``FABRIC_WORKER_FAULT=exit-on-start`` makes the worker exit 1
at once; ``exit-after:N`` exits 1 after N deliveries.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from finops_fabric.daemon import audit_log, outbox
from finops_fabric.daemon.notifier import DeliveryError, Notifier

__all__ = ["ENV_FAULT", "Worker", "main"]

ENV_FAULT = "FABRIC_WORKER_FAULT"
POLL_INTERVAL_S = 0.05
BATCH = 32
LEASE_S = 30.0


class Worker:
    """The delivery loop of one process; :meth:`stop` (or a signal) ends it after the current item."""

    def __init__(
        self,
        home: str | Path,
        env: str,
        kind: str,
        *,
        poll_interval: float = POLL_INTERVAL_S,
        batch: int = BATCH,
        lease_seconds: float = LEASE_S,
        parent_pid: int | None = None,
    ) -> None:
        if kind not in outbox.KINDS:
            raise ValueError(f"unknown worker kind {kind!r}")
        self.home = Path(home)
        self.env = env
        self.kind = kind
        self.poll_interval = poll_interval
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.parent_pid = parent_pid
        self.stopping = threading.Event()
        self.delivered = 0
        self._exit_after: int | None = None
        self._was_down = False
        self.conn: sqlite3.Connection = outbox.open_db(outbox.db_path(self.home, env), synchronous="NORMAL")
        self.notifier = Notifier(self.home) if kind == "notification" else None

    def stop(self) -> None:
        self.stopping.set()

    def _parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def run(self) -> int:
        fault = os.environ.get(ENV_FAULT, "")
        if fault == "exit-on-start":
            return 1
        if fault.startswith("exit-after:"):
            self._exit_after = int(fault.split(":", 1)[1])
        try:
            outbox.release_leases(self.conn, self.kind)
            while not self.stopping.is_set():
                if self._parent_gone():
                    return 0
                done = self.run_once()
                if done < 0:
                    return 1
                if done == 0:
                    self.stopping.wait(self.poll_interval)
            return 0
        finally:
            if self.notifier is not None:
                self.notifier.close()
            self.conn.close()

    def run_once(self) -> int:
        """Claim one batch and deliver it; return how many items were claimed (-1: injected fault)."""
        items = outbox.claim(self.conn, self.kind, time.time(), self.batch, self.lease_seconds)
        down: DeliveryError | None = None
        for n, item in enumerate(items):
            if self.stopping.is_set() and n:
                # Hand the rest back at once rather than leaving them to their lease.
                self._release(items[n:])
                break
            if down is not None:  # the transport is unavailable: do not try the rest of the batch
                outbox.fail(self.conn, item, str(down), time.time())
                continue
            try:
                self.deliver(item)
            except DeliveryError as exc:
                outbox.fail(self.conn, item, str(exc), time.time(), permanent=exc.permanent)
                if exc.connection:
                    down = exc
                    self._was_down = True
                continue
            except Exception as exc:  # a bug or a malformed item: dead-letter it, keep the worker up
                outbox.fail(self.conn, item, f"{type(exc).__name__}: {exc}", time.time(), permanent=True)
                continue
            self.delivered += 1
            if self._was_down:  # the transport is back: what backed off is due now
                self._was_down = False
                with outbox.transaction(self.conn):
                    self.conn.execute(
                        "UPDATE outbox SET next_attempt_at = ? WHERE kind = ? AND state = 'pending'"
                        " AND next_attempt_at > ?",
                        (time.time(), self.kind, time.time()),
                    )
            if self._exit_after is not None and self.delivered >= self._exit_after:
                return -1
        return len(items)

    def _release(self, items: Sequence[outbox.Item]) -> None:
        with outbox.transaction(self.conn):
            for item in items:
                self.conn.execute(
                    "UPDATE outbox SET state = 'pending', attempts = attempts - 1, next_attempt_at = ?"
                    " WHERE id = ? AND state = 'delivering'",
                    (time.time(), item.id),
                )

    def deliver(self, item: outbox.Item) -> None:
        """Deliver and acknowledge one item (raises :class:`DeliveryError` when it could not)."""
        if self.kind == "audit":
            audit_log.append_item(self.conn, item)
            return
        assert self.notifier is not None
        key = item.idempotency_key
        if outbox.already_delivered(self.conn, key):
            outbox.ack(self.conn, item)
            return
        mail_key = key + "#mail"
        if not outbox.already_delivered(self.conn, mail_key):
            self.notifier.send_mail(item.payload)
            if self.notifier.webhook_configured():
                with outbox.transaction(self.conn):
                    self.conn.execute(
                        "INSERT OR IGNORE INTO outbox_delivered (idempotency_key, kind, delivered_at)"
                        " VALUES (?, 'notification-mail', ?)",
                        (mail_key, time.time()),
                    )
        self.notifier.post_webhook(item.payload)
        outbox.ack(self.conn, item)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m finops_fabric.daemon.worker", description=__doc__)
    p.add_argument("--env", required=True)
    p.add_argument("--kind", required=True, choices=outbox.KINDS)
    p.add_argument("--home", required=True)
    p.add_argument("--poll-interval", type=float, default=POLL_INTERVAL_S)
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--lease", type=float, default=LEASE_S)
    p.add_argument("--parent-pid", type=int, default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.environ.get(ENV_FAULT) == "exit-on-start":
        print(f"worker {args.kind}: injected fault exit-on-start", file=sys.stderr)
        return 1
    worker = Worker(
        args.home,
        args.env,
        args.kind,
        poll_interval=args.poll_interval,
        batch=args.batch,
        lease_seconds=args.lease,
        parent_pid=args.parent_pid,
    )

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with contextlib.suppress(AttributeError):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
