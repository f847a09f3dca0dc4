"""A worker process: delivers one kind of outbox item (notifications or audit entries).

    python -m finops_fabric.daemon.worker --env=ENV --kind=notification|audit --home=STORE

Loop: claim a batch of due items → deliver them → record the outcome; unless the batch was
full, sleep the poll interval (50 ms) before the next claim, so under a moderate load the
worker takes SQLite's write lock (which the decision path needs) a few times per poll interval
for a batch, not for every item or two as it arrives. SIGTERM or SIGINT finishes the message
in hand, hands the rest of the batch back and exits 0. The worker also exits when its parent
(the supervisor) is gone, so a killed daemon leaves no orphans.

Notifications: the batch goes out over one SMTP session (pipelined when the server offers it,
see :meth:`Notifier.send_mails`), and each item is acknowledged as soon as the server has
accepted its message, before the next message's data is sent: a worker killed at any moment
leaves at most one message accepted by the server but not acknowledged (it is sent again with
the same Message-ID; at-least-once). A notification whose idempotency key is already recorded as
delivered is acknowledged without being sent. When a webhook is configured, the mail part is
recorded on its own first, so a failing webhook does not make the mail go out twice.

When the transport is unavailable (no SMTP server configured, connection refused, the session
broke), the item in hand and the rest of its batch are failed with their back-off, and the
worker stops claiming notifications: it probes the server (opens a session, nothing else) after
0.5 s, doubling to 5 s (±20 %), and claims again only once that succeeds; then every backed-off
notification is due at once (the back-off protects a server that is down, not one that is
back). Items waiting during an outage are not charged attempts for it.

Audit items: a batch is appended to the hash-chained ledger and acknowledged in one
transaction, which holds the write lock only for the inserts (the entries' canonical bytes are
written before it begins); a malformed item is dead-lettered without holding up the others.
There is no lease to wait on and no window for a duplicate.

Fault injection (tests, drills): ``FABRIC_WORKER_FAULT=exit-on-start`` makes the worker exit 1
at once; ``exit-after:N`` exits 1 after N deliveries.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finops_fabric.storage import Storage

from finops_fabric.daemon import audit_log, delivery, outbox
from finops_fabric.daemon.notifier import DeliveryError, Notifier, NotTried, PermanentError
from finops_fabric.errors import FabricError

__all__ = ["ENV_FAULT", "AckJournal", "Worker", "journal_path", "main"]

ENV_FAULT = "FABRIC_WORKER_FAULT"
#: The database URL a worker uses when it is not the store's SQLite file (set by the supervisor).
DATABASE_ENV = "FABRIC_DATABASE_URL"
POLL_INTERVAL_S = 0.05
BATCH = 64
LEASE_S = 30.0
#: Probing a transport that is down: first after 0.5 s, doubling up to 5 s.
PROBE_BASE_S = 0.5
PROBE_CAP_S = 5.0


def journal_path(home: str | Path, env: str, kind: str) -> Path:
    """``<home>/daemon-<env>.<kind>-acks``: the ack journal of ``kind``'s worker."""
    db = outbox.db_path(home, env)
    return db.with_name(f"{db.stem}.{kind}-acks")


_JOURNAL_LINE = re.compile(r"(sha256:[0-9a-f]{64}) ([0-9]+(?:\.[0-9]+)?)")


class AckJournal:
    """Crash insurance for acknowledgements not yet committed to the outbox.

    The notification worker acknowledges a batch in one transaction after its last message,
    but records each message the server accepted here first (one ``write`` of ``key time``, no
    fsync), before the next message's data is sent; after the commit the journal is emptied.
    A worker killed mid-batch leaves the keys in the file (the page cache keeps them, as it
    keeps a commit made with ``synchronous=NORMAL``), and its successor acknowledges them
    (:meth:`recover`) before taking the leases back, so at most the one message whose answer
    was in flight is sent again, as when each message had its own transaction. A power cut may
    lose the file's tail like the WAL's: those messages are sent again (at least once; the
    receiver drops copies by Message-ID)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return self._fd

    def record(self, key: str, at: float) -> None:
        os.write(self._open(), f"{key} {at:.6f}\n".encode("ascii"))

    def clear(self) -> None:
        os.ftruncate(self._open(), 0)

    def recover_into(self, ack: Callable[[Sequence[tuple[str, float]]], None]) -> int:
        """:meth:`recover` through ``ack`` (``[(key, delivered at)]``), for any storage."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return 0
        lines = text.split("\n")[:-1]
        found = [m.groups() for line in lines if (m := _JOURNAL_LINE.fullmatch(line))]
        if found:
            ack([(key, float(at)) for key, at in found])
        self.clear()
        return len(lines)

    def recover(self, conn: sqlite3.Connection) -> int:
        """Acknowledge every item the journal names (as delivered when it says), empty it;
        return how many lines it held. A torn last line (no newline) is ignored."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return 0
        lines = text.split("\n")[:-1]
        found = [m.groups() for line in lines if (m := _JOURNAL_LINE.fullmatch(line))]
        if found:
            with outbox.transaction(conn):
                for key, at in found:
                    conn.execute(
                        "UPDATE outbox SET state = 'delivered', delivered_at = ?, last_error = NULL"
                        " WHERE idempotency_key = ? AND state != 'delivered'",
                        (float(at), key),
                    )
                    conn.execute(
                        "INSERT OR IGNORE INTO outbox_delivered (idempotency_key, kind, delivered_at)"
                        " SELECT idempotency_key, kind, ? FROM outbox WHERE idempotency_key = ?",
                        (float(at), key),
                    )
        self.clear()
        return len(lines)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _ExitAfter(Exception):
    """The injected ``exit-after:N`` fault fired."""


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
        #: Transport state: consecutive failures, and when to probe it again (0: it is up).
        self._failures = 0
        self.probe_at = 0.0
        self.notifier = Notifier(self.home) if kind == "notification" else None
        self.journal = AckJournal(journal_path(self.home, env, kind))
        #: The transport state last recorded for the daemon's health ("down: why", or None: up).
        recorded = self._connect()
        self._recorded_down: str | None = (
            str(recorded["reason"]) if recorded is not None and recorded["state"] == "down" else None
        )

    def _connect(self) -> dict[str, Any] | None:
        """Open the database; the transport state recorded there."""
        self.conn: sqlite3.Connection = outbox.open_db(
            outbox.db_path(self.home, self.env), synchronous="NORMAL"
        )
        return delivery.read_transport(self.conn, self.kind)

    def stop(self) -> None:
        self.stopping.set()

    # --- what the worker does to the outbox (StorageWorker does it through a Storage) -----------

    def _close_db(self) -> None:
        self.conn.close()

    def _claim(self, now: float) -> list[outbox.Item]:
        return outbox.claim(self.conn, self.kind, now, self.batch, self.lease_seconds)

    def _delivered_keys(self, keys: Sequence[str]) -> set[str]:
        return outbox.delivered_keys(self.conn, keys)

    def _ack_many(self, delivered: Sequence[tuple[outbox.Item, float]]) -> None:
        outbox.ack_many(self.conn, delivered)

    def _mark_mail(self, item: outbox.Item, t: float) -> None:
        with outbox.transaction(self.conn):
            self.conn.execute(
                "INSERT OR IGNORE INTO outbox_delivered (idempotency_key, kind, delivered_at)"
                " VALUES (?, 'notification-mail', ?)",
                (item.idempotency_key + "#mail", t),
            )

    def _release(self, items: Sequence[outbox.Item]) -> None:
        outbox.release(self.conn, items)

    def _fail_many(self, failures: Sequence[tuple[outbox.Item, str, bool]], now: float) -> None:
        outbox.fail_many(self.conn, failures, now)

    def _requeue_backed_off(self, now: float) -> None:
        with outbox.transaction(self.conn):
            self.conn.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE kind = ? AND state = 'pending'"
                " AND next_attempt_at > ?",
                (now, self.kind, now),
            )

    def _set_transport(self, reason: str | None) -> None:
        if reason is None:
            delivery.record_up(self.conn, self.kind)
        else:
            delivery.record_down(self.conn, self.kind, reason)

    def _append_audit(self, item: outbox.Item) -> None:
        audit_log.append_item(self.conn, item)

    def _parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def run(self) -> int:
        fault = os.environ.get(ENV_FAULT, "")
        if fault == "exit-on-start":
            return 1
        if fault.startswith("exit-after:"):
            self._exit_after = int(fault.split(":", 1)[1])
        try:
            self.take_over()
            while not self.stopping.is_set():
                if self._parent_gone():
                    return 0
                done = self.run_once()
                if done < 0:
                    return 1
                if done < self.batch:  # drained: let the next batch gather rather than take the
                    self.stopping.wait(self.poll_interval)  # write lock for every item or two
            return 0
        finally:
            if self.notifier is not None:
                self.notifier.close()
            self.journal.close()
            self._close_db()

    def take_over(self) -> None:
        """What a worker does when it starts: acknowledge what the ack journal says a
        predecessor delivered, then hand its leases back (they are due at once)."""
        if self.kind == "notification":
            self.journal.recover(self.conn)
        outbox.release_leases(self.conn, self.kind)

    def run_once(self) -> int:
        """Claim one batch and deliver it; return how many items were claimed (-1: injected
        fault). Returns 0 without touching the outbox while a down transport is not due a probe."""
        try:
            if self.kind == "audit":
                return self._run_audit()
            return self._run_notifications()
        except _ExitAfter:
            return -1

    # --- notifications ----------------------------------------------------------------------

    def _transport_up(self) -> bool:
        """False while the transport is known to be down (probing it when a probe is due)."""
        if not self.probe_at:
            return True
        now = time.time()
        if now < self.probe_at:
            return False
        assert self.notifier is not None
        try:
            self.notifier.connect()
        except DeliveryError as exc:
            self._transport_down(exc)
            return False
        self.probe_at = 0.0
        self._record_up()
        print("worker notification: transport is back", file=sys.stderr, flush=True)
        self._requeue_backed_off(now)  # what backed off during the outage is due now
        return True

    def _record_up(self) -> None:
        if self._recorded_down is not None:
            with contextlib.suppress(sqlite3.Error, FabricError):  # health only: never stops a delivery
                self._set_transport(None)
                self._recorded_down = None

    def _transport_down(self, exc: DeliveryError) -> None:
        if self._recorded_down != str(exc):
            with contextlib.suppress(sqlite3.Error, FabricError):
                self._set_transport(str(exc))
                self._recorded_down = str(exc)
        self._failures += 1
        delay = outbox.backoff_delay(self._failures, base=PROBE_BASE_S, cap=PROBE_CAP_S)
        if not self.probe_at:
            print(f"worker notification: transport down: {exc}", file=sys.stderr, flush=True)
        self.probe_at = time.time() + delay

    def _run_notifications(self) -> int:
        if not self._transport_up():
            return 0
        items = self._claim(time.time())
        if items:
            self._deliver_notifications(items)
        return len(items)

    def _deliver_notifications(self, items: Sequence[outbox.Item]) -> list[DeliveryError | None]:
        """Send and record ``items`` (claimed); per item, None (delivered) or its error, which
        has been recorded (:func:`outbox.fail_many`) or, for untried items, handed back."""
        assert self.notifier is not None
        notifier = self.notifier
        keys = [item.idempotency_key for item in items]
        done = self._delivered_keys(keys + [k + "#mail" for k in keys])
        outcome: dict[int, DeliveryError | None] = {}
        now = time.time()
        acks = [(item, now) for item in items if item.idempotency_key in done]
        for item, _ in acks:
            outcome[item.id] = None
        self._ack_many(acks)
        self._count(len(acks))
        rest = [it for it in items if it.id not in outcome]
        try:
            if rest:
                notifier.connect()  # also (re)reads the configuration: is there a webhook?
        except DeliveryError as exc:
            outcome.update((it.id, exc) for it in rest)
            rest = []
        # The mail part, unless recorded as sent (a webhook that failed after it).
        mail = [it for it in rest if it.idempotency_key + "#mail" not in done]
        webhook = notifier.webhook_configured()

        accepted: list[tuple[outbox.Item, float]] = []

        def on_sent(i: int) -> None:
            item, t = mail[i], time.time()
            if webhook:  # record the mail part; the webhook comes next
                self._mark_mail(item, t)
                return
            self.journal.record(item.idempotency_key, t)  # before the next message's data goes out
            accepted.append((item, t))
            outcome[item.id] = None
            self._count(1)

        try:
            errors = notifier.send_mails([it.payload for it in mail], on_sent, stop=self.stopping.is_set)
        finally:  # one transaction acknowledges every accepted message (also when on_sent raised)
            if accepted:
                self._ack_many(accepted)
                self.journal.clear()
        for item, err in zip(mail, errors, strict=True):
            if err is not None:
                outcome[item.id] = err
        if webhook:
            self._post_webhooks([it for it in items if it.id not in outcome], outcome)
        untried = [it for it in items if isinstance(outcome.get(it.id), NotTried)]
        self._release(untried)
        failures = [
            (it, str(err), err.permanent)
            for it in items
            if (err := outcome.get(it.id)) is not None and not isinstance(err, NotTried)
        ]
        self._fail_many(failures, time.time())
        down = next((err for it in items if (err := outcome.get(it.id)) is not None and err.connection), None)
        if down is not None:
            self._transport_down(down)
        elif any(outcome.get(it.id, 1) is None for it in items):
            self._failures = 0
            self._record_up()
        return [outcome.get(it.id) for it in items]

    def _post_webhooks(self, items: Sequence[outbox.Item], outcome: dict[int, DeliveryError | None]) -> None:
        assert self.notifier is not None
        down: DeliveryError | None = None
        for item in items:
            if down is not None or self.stopping.is_set():
                outcome[item.id] = down or NotTried("not sent: stopping")
                continue
            try:
                self.notifier.post_webhook(item.payload)
            except DeliveryError as exc:
                outcome[item.id] = exc
                down = exc if exc.connection else None
                continue
            except (KeyError, TypeError, ValueError) as exc:
                outcome[item.id] = PermanentError(f"malformed notification payload: {exc!r}")
                continue
            self._ack_many([(item, time.time())])
            outcome[item.id] = None
            self._count(1)

    def _count(self, n: int) -> None:
        self.delivered += n
        if n and self._exit_after is not None and self.delivered >= self._exit_after:
            raise _ExitAfter

    def deliver(self, item: outbox.Item) -> None:
        """Deliver and acknowledge one claimed item (raises the :class:`DeliveryError` when it
        could not; the item is then failed with its back-off)."""
        if self.kind == "audit":
            self._append_audit(item)
            return
        (err,) = self._deliver_notifications([item])
        if err is not None:
            raise err

    # --- audit entries ------------------------------------------------------------------------

    def _run_audit(self) -> int:
        """Append a batch of due audit items to their ledgers and acknowledge them, in one
        transaction that holds SQLite's write lock only for the inserts: each entry's canonical
        bytes are written before it begins (the expensive part). The chain is extended by
        :func:`audit_log.append_canonical`, as :func:`audit_log.append_item` extends it; a
        malformed item is dead-lettered in the same transaction."""
        conn = self.conn
        now = time.time()
        if not outbox.any_due(conn, self.kind, now):
            return 0
        limit = self.batch if self._exit_after is None else max(1, self._exit_after - self.delivered)
        rows = conn.execute(
            "SELECT id, idempotency_key, payload, attempts FROM outbox"
            " WHERE kind = 'audit' AND state IN ('pending', 'delivering') AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (now, limit),
        ).fetchall()
        ready: list[tuple[int, str, int, str, bytes]] = []  # id, key, attempts, ledger, entry bytes
        bad: list[tuple[int, int, str]] = []  # id, attempts, error
        for row_id, key, payload, attempts in rows:
            try:
                ledger, data = audit_log.entry_of(key, outbox.load_payload(payload))
            except Exception as exc:  # a malformed item: dead-letter it, keep the rest
                bad.append((row_id, attempts, f"{type(exc).__name__}: {exc}"))
                continue
            ready.append((row_id, key, attempts, ledger, data))
        appended = 0
        with outbox.transaction(conn):
            heads = audit_log.Heads()
            for row_id, key, attempts, ledger, data in ready:
                (state,) = conn.execute("SELECT state FROM outbox WHERE id = ?", (row_id,)).fetchone()
                if state not in ("pending", "delivering"):
                    continue  # acknowledged meanwhile (a predecessor's last transaction)
                audit_log.append_canonical(conn, ledger, key, data, heads)
                conn.execute(
                    "UPDATE outbox SET state = 'delivered', attempts = ?, delivered_at = ?,"
                    " last_error = NULL WHERE id = ?",
                    (attempts + 1, now, row_id),
                )
                conn.execute(
                    "INSERT OR IGNORE INTO outbox_delivered (idempotency_key, kind, delivered_at)"
                    " VALUES (?, 'audit', ?)",
                    (key, now),
                )
                appended += 1
            conn.executemany(
                "UPDATE outbox SET state = 'dead', attempts = ?, next_attempt_at = ?, last_error = ?"
                " WHERE id = ? AND state IN ('pending', 'delivering')",
                [(attempts + 1, now, error[:2000], row_id) for row_id, attempts, error in bad],
            )
        self._count(appended)
        return len(rows)


class StorageWorker(Worker):
    """The worker over a :class:`~finops_fabric.storage.Storage` (PostgreSQL): claims are
    leased to this process (``FOR UPDATE SKIP LOCKED``), so any number of workers on any host
    share the outbox; a lease a dead worker held expires by itself (its successor does not take
    every lease back, as other hosts' workers hold theirs); audit entries are appended one item
    at a time under the ledger's lock."""

    def __init__(self, home: str | Path, env: str, kind: str, storage: Storage, **options: Any) -> None:
        self.storage = storage
        self._db_down = False
        super().__init__(home, env, kind, **options)

    def _connect(self) -> dict[str, Any] | None:
        return self.storage.read_transport(self.kind)

    def run_once(self) -> int:
        """:meth:`Worker.run_once`; while the database is unreachable the worker waits and tries
        again (the pool reconnects by itself): what it had claimed stays leased to it until the
        lease runs out, then any worker delivers it."""
        from finops_fabric.storage import StorageUnavailable

        try:
            done = super().run_once()
        except StorageUnavailable as exc:
            if not self._db_down:
                print(f"worker {self.kind}: {exc.message}; trying again", file=sys.stderr, flush=True)
            self._db_down = True
            self.stopping.wait(min(1.0, 10 * self.poll_interval))
            return 0
        if self._db_down:
            print(f"worker {self.kind}: the database is back", file=sys.stderr, flush=True)
            self._db_down = False
        return done

    def _close_db(self) -> None:
        self.storage.close()

    def take_over(self) -> None:
        if self.kind == "notification":
            self.journal.recover_into(self.storage.ack_keys)

    def _claim(self, now: float) -> list[outbox.Item]:
        return self.storage.claim(self.kind, now, self.batch, self.lease_seconds)

    def _delivered_keys(self, keys: Sequence[str]) -> set[str]:
        return self.storage.delivered_keys(keys)

    def _ack_many(self, delivered: Sequence[tuple[outbox.Item, float]]) -> None:
        self.storage.ack_many(delivered)

    def _mark_mail(self, item: outbox.Item, t: float) -> None:
        self.storage.mark_sent(item.idempotency_key + "#mail", "notification-mail", t)

    def _release(self, items: Sequence[outbox.Item]) -> None:
        self.storage.release(items)

    def _fail_many(self, failures: Sequence[tuple[outbox.Item, str, bool]], now: float) -> None:
        self.storage.fail_many(failures, now)

    def _requeue_backed_off(self, now: float) -> None:
        self.storage.requeue_backed_off(self.kind, now)

    def _set_transport(self, reason: str | None) -> None:
        self.storage.record_transport(self.kind, reason)

    def _append_audit(self, item: outbox.Item) -> None:
        self.storage.audit_append_item(item)

    def _run_audit(self) -> int:
        limit = self.batch if self._exit_after is None else max(1, self._exit_after - self.delivered)
        items = self.storage.claim(self.kind, time.time(), limit, self.lease_seconds)
        appended = 0
        bad: list[tuple[outbox.Item, str, bool]] = []
        for item in items:
            try:
                self.storage.audit_append_item(item)
            except (KeyError, TypeError, ValueError) as exc:  # a malformed item: dead-letter it
                bad.append((item, f"{type(exc).__name__}: {exc}", True))
                continue
            appended += 1
        self.storage.fail_many(bad, time.time())
        self._count(appended)
        return len(items)


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
    options: dict[str, Any] = {
        "poll_interval": args.poll_interval,
        "batch": args.batch,
        "lease_seconds": args.lease,
        "parent_pid": args.parent_pid,
    }
    from finops_fabric.storage import database_for, default_process, open_storage

    # the URL comes in the environment (never on the command line, where `ps` shows it)
    url = database_for(Path(args.home), args.env, os.environ.get(DATABASE_ENV) or None)
    worker: Worker
    if url is not None and url.startswith("postgres"):
        storage = open_storage(Path(args.home), args.env, url, process=f"{default_process()}:{args.kind}")
        worker = StorageWorker(args.home, args.env, args.kind, storage, **options)
    else:
        worker = Worker(args.home, args.env, args.kind, **options)

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with contextlib.suppress(AttributeError):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
