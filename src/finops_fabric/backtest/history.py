"""A back-test over an environment's decision log: history replayed with the policy that made it.

First the log's hash chain and Merkle tree are verified (against the signed tree heads); a log
that does not verify is refused. Then, for every decision in the range, in id order:

- fidelity: the decision's own enforcer (the A its logged hash names, taken from the store's
  snapshot and verified) decides the logged transaction again, and must reproduce the logged
  decision JSON byte for byte; every mismatch is counted and shown, and an enforcer hash the
  store does not hold is named. Either makes the report "not reproducible" (exit 1);
- the new policy decides the same transaction (the batch kernel, checked against the new
  enforcer as every back-test is) and is compared with the logged outcome.

The log is read through :class:`LogReader` only, read-only, from whichever database the
environment uses (``--database``, else ``environments.<env>.database`` of config.json, else the
store's SQLite file): :class:`SqliteLog` or :class:`PgLog`. Every process that reads (the
verifying child, each replaying child) opens a connection of its own; none is inherited.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from finops_fabric.backtest.check import Checked, Checker
from finops_fabric.backtest.columns import from_dicts
from finops_fabric.backtest.kernel import Kernel
from finops_fabric.backtest.outcomes import from_decisions
from finops_fabric.backtest.regions import Regions
from finops_fabric.backtest.run import (
    Options,
    Progress,
    _reasons_by,
    _regions_doc,
    examples_doc,
    impact_regions,
    jsonable,
    merge_checked,
)
from finops_fabric.backtest.sides import Side, enforcer_of_files, policy_of_snapshot
from finops_fabric.backtest.tally import Example, Tally
from finops_fabric.errors import CheckFailed, FabricError, InputError, Location
from finops_fabric.store import Store

MISMATCHES_SHOWN = 20
_TX = json.JSONDecoder(parse_float=Decimal)  # a logged transaction, as the daemon parsed it
_PLAIN = json.JSONDecoder()


class LoggedRow(NamedTuple):
    id: int
    decided_at: str
    transaction_json: str
    decision_json: str
    enforcer_hash: str


class LogReader(Protocol):
    """Read-only access to one environment's decision log."""

    where: str

    def verify(self, store: Store, env: str) -> Any: ...  # a transparency.LogReport

    def span(self, since: str | None, until: str | None) -> tuple[int, int, int]: ...

    def enforcers(self, since: str | None, until: str | None) -> list[str]: ...

    def rows(
        self, since: str | None, until: str | None, batch: int, lo: int | None = None, hi: int | None = None
    ) -> Iterator[list[LoggedRow]]: ...

    def close(self) -> None: ...


class SqliteLog:
    """The decision log in ``<store>/daemon-<env>.db``, opened read-only."""

    def __init__(self, path: Path) -> None:
        from finops_fabric.daemon import decision_log

        if not path.is_file():
            raise InputError(
                f"there is no decision log {path}", code="backtest.no_log", location=Location(file=str(path))
            )
        self.where = str(path)
        self.conn = decision_log.connect(path, readonly=True)

    def verify(self, store: Store, env: str) -> Any:
        from finops_fabric.daemon import decision_log

        return _verify_rows(store, env, decision_log.log_rows(self.conn))

    @staticmethod
    def _where(
        since: str | None, until: str | None, lo: int | None = None, hi: int | None = None
    ) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if lo is not None:
            clauses.append("id >= ?")
            params.append(lo)
        if hi is not None:
            clauses.append("id <= ?")
            params.append(hi)
        if since is not None:
            clauses.append("decided_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("decided_at < ?")
            params.append(until)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def span(self, since: str | None, until: str | None) -> tuple[int, int, int]:
        """(how many decisions, the first id, the last id) in the time range."""
        where, params = self._where(since, until)
        sql = "SELECT count(*), min(id), max(id) FROM decisions" + where  # noqa: S608 - values are bound
        n, lo, hi = self.conn.execute(sql, params).fetchone()
        return int(n), int(lo or 1), int(hi or 0)

    def enforcers(self, since: str | None, until: str | None) -> list[str]:
        where, params = self._where(since, until)
        sql = "SELECT DISTINCT enforcer_hash FROM decisions" + where  # noqa: S608 - values are bound
        return sorted(str(r[0]) for r in self.conn.execute(sql, params))

    def rows(
        self, since: str | None, until: str | None, batch: int, lo: int | None = None, hi: int | None = None
    ) -> Iterator[list[LoggedRow]]:
        where, params = self._where(since, until, lo, hi)
        columns = "id, decided_at, transaction_json, decision_json, enforcer_hash"
        sql = f"SELECT {columns} FROM decisions{where} ORDER BY id"  # noqa: S608 - fixed text; values are bound
        cur = self.conn.execute(sql, params)
        while chunk := cur.fetchmany(batch):
            yield [LoggedRow._make(r) for r in chunk]

    def close(self) -> None:
        self.conn.close()


_PG_COLUMNS = "id, decided_at, transaction_json, decision_json, enforcer_hash"


class PgLog:
    """The decision log in a PostgreSQL database, read through one connection of this process's
    own (autocommit, every transaction read-only); its URL is shown with the password hidden."""

    def __init__(self, url: str, env: str) -> None:
        import psycopg

        from finops_fabric.storage.config import redact
        from finops_fabric.storage.migrations import check_postgres

        self.url = url
        self.where = redact(url)
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        try:
            self.conn.execute("SET default_transaction_read_only = on")
            if check_postgres(self.conn, self.where) == 0:
                raise InputError(
                    f"there is no decision log in {self.where}: no daemon has run for {env} on this database",
                    code="backtest.no_log",
                )
        except psycopg.OperationalError as exc:
            self.conn.close()
            raise self._lost(exc) from None
        except BaseException:
            self.conn.close()
            raise

    def _lost(self, exc: BaseException) -> FabricError:
        from finops_fabric.storage.postgres import _unavailable

        return _unavailable(exc, self.where, self.url)

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            return self.conn.execute(sql, params).fetchall()
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        except psycopg.Error as exc:  # a table or column missing, a permission refused …
            why = self._lost(exc).message.partition(" is unavailable: ")[2]
            raise InputError(
                f"cannot read the decision log in {self.where}: {why}", code="backtest.unreadable"
            ) from None

    def log_rows(self) -> Iterator[Any]:
        """Every row as :func:`verify_log` reads it (what ``mu decisions verify`` reads)."""
        from finops_fabric.daemon import decision_log
        from finops_fabric.storage.postgres import _SELECT

        last = 0
        while batch := self._query(_SELECT + " WHERE id > %s ORDER BY id LIMIT 10000", (last,)):
            for r in batch:
                yield decision_log._log_row(r)
            last = int(batch[-1][0])

    def verify(self, store: Store, env: str) -> Any:
        return _verify_rows(store, env, self.log_rows())

    @staticmethod
    def _where(
        since: str | None, until: str | None, lo: int | None = None, hi: int | None = None
    ) -> tuple[str, list[object]]:
        where, params = SqliteLog._where(since, until, lo, hi)
        return where.replace("?", "%s"), params

    def span(self, since: str | None, until: str | None) -> tuple[int, int, int]:
        where, params = self._where(since, until)
        sql = "SELECT count(*), min(id), max(id) FROM decisions" + where  # noqa: S608 - values are bound
        ((n, lo, hi),) = self._query(sql, params)
        return int(n), int(lo or 1), int(hi or 0)

    def enforcers(self, since: str | None, until: str | None) -> list[str]:
        where, params = self._where(since, until)
        sql = "SELECT DISTINCT enforcer_hash FROM decisions" + where  # noqa: S608 - values are bound
        return sorted(str(r[0]) for r in self._query(sql, params))

    def rows(
        self, since: str | None, until: str | None, batch: int, lo: int | None = None, hi: int | None = None
    ) -> Iterator[list[LoggedRow]]:
        """Pages of ``batch`` rows in id order (each page a query of its own, from the last id)."""
        where, params = self._where(since, until, None, hi)
        after = (lo or 1) - 1
        glue = " AND " if where else " WHERE "
        sql = f"SELECT {_PG_COLUMNS} FROM decisions{where}{glue}id > %s ORDER BY id LIMIT %s"  # noqa: S608
        while page := self._query(sql, [*params, after, batch]):
            yield [LoggedRow._make(r) for r in page]
            after = int(page[-1][0])

    def close(self) -> None:
        self.conn.close()


def _verify_rows(store: Store, env: str, rows: Iterable[Any]) -> Any:
    """The log's rows checked against ``env``'s signed tree heads, as ``mu decisions verify``
    checks them (a transparency.LogReport)."""
    from finops_fabric.audit import default_trust
    from finops_fabric.daemon.tree_heads import decision_heads
    from finops_fabric.transparency import gather_heads, verify_log

    heads, findings = gather_heads(
        decision_heads(store, env), [], default_trust(store).keys, log="decisions", env=env
    )
    report = verify_log(rows, heads, noun="decision")
    report.findings[:0] = findings
    return report


def _verify(store: Store, env: str, database: str | None = None) -> dict[str, Any]:
    reader = open_log(store, env, database)
    try:
        report = reader.verify(store, env)
        return {**report.to_dict(), "summary": report.summary()}
    finally:
        reader.close()


def verify_meanwhile(store: Store, env: str, database: str | None = None) -> Callable[[], dict[str, Any]]:
    """Verify the log's chain in a forked child while this process replays it (the replay is
    discarded unless the log verifies); where there is one CPU, or threads run, or the child
    fails for any reason, the verification is done here. Returns the function that waits for
    the report (``LogReport.to_dict()`` with its ``summary``)."""
    import os
    import pickle
    import threading

    if not hasattr(os, "fork") or (os.cpu_count() or 1) < 2 or threading.active_count() != 1:
        report = _verify(store, env, database)
        return lambda: report
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: verify, send the report back, leave without any clean-up
        code = 0
        try:
            os.close(read_fd)
            view = memoryview(pickle.dumps(_verify(store, env, database)))
            while view:
                view = view[os.write(write_fd, view) :]
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)

    def wait() -> dict[str, Any]:
        chunks = []
        try:
            while chunk := os.read(read_fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(read_fd)
            _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            try:
                got: dict[str, Any] = pickle.loads(b"".join(chunks))  # noqa: S301 - our own child's pipe
            except Exception:  # verify here instead
                return _verify(store, env, database)
            return got
        return _verify(store, env, database)

    return wait


def open_log_path(store: Store, env: str) -> Path:
    from finops_fabric.daemon import decision_log

    return decision_log.db_path(store.home, env)


def open_log(store: Store, env: str, database: str | None = None) -> LogReader:
    """The reader of ``env``'s decision log (the one place that knows where it is kept): the
    database ``database`` names, else ``environments.<env>.database`` of the store's
    config.json, else the store's SQLite file."""
    from finops_fabric.storage.config import database_for, scheme_of

    url = database_for(store.home, env, database)
    if url is not None and scheme_of(url) == "postgresql":
        return PgLog(url, env)
    if url is not None:
        return SqliteLog(Path(url.partition("://")[2]))
    return SqliteLog(open_log_path(store, env))


# --- the enforcers that made the decisions ------------------------------------------------------


@dataclass
class Enforcers:
    """Each logged enforcer hash → its A from the store (verified), or why it cannot be had."""

    store: Store
    loaded: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def get(self, h: str) -> Any:
        """The A with hash ``h`` (None when the store cannot give it; why is in ``missing``)."""
        if h not in self.rows:
            self.rows[h] = 0
        if h in self.loaded:
            return self.loaded[h]
        if h in self.missing:
            return None
        from finops_fabric.daemon.runtime import generation_receipt_for

        gen = generation_receipt_for(self.store, h)
        listing = (gen.get("outputs") or {}).get("artifacts") if gen is not None else None
        if not isinstance(listing, dict):
            self.missing[h] = "no generation receipt in the store's ledger lists its artifacts"
            return None
        try:
            enforcer = enforcer_of_files(self.store.get_tree(listing), f"the store's copy of A {h}")
        except FabricError as exc:
            self.missing[h] = f"the store's copy does not verify: {exc.message}"
            return None
        if enforcer.hash != h:
            self.missing[h] = f"the store's copy hashes to {enforcer.hash}"
            return None
        self.loaded[h] = enforcer
        return enforcer


def _text_of(d: object) -> str:
    """A replayed decision as the daemon logs it (or why there is none)."""
    if isinstance(d, str):
        return d
    return json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class Part:
    """What replaying one id range of the log found."""

    tally: Tally
    checked: dict[str, Any]
    enforcer_rows: dict[str, int]
    missing: dict[str, str]
    ontology_of: dict[str, str]
    mismatches: list[dict[str, Any]]
    mismatch_count: int = 0
    unrecoverable: int = 0
    first_id: int | None = None
    last_id: int | None = None
    logged_of_examples: dict[int, Mapping[str, Any]] = field(default_factory=dict)


def replay_part(
    store: Store,
    env: str,
    where: tuple[str | None, str | None, int, int],
    new: Side,
    options: Options,
    batch_size: int,
    region_of: Regions | None,
    progress: Progress | None = None,
    database: str | None = None,
) -> Part:
    """Replay the decisions of the log between ids ``lo`` and ``hi`` (inclusive) in the time
    range: each by its own enforcer (fidelity), and by the new policy's kernel (the comparison)."""
    since, until, lo, hi = where
    kn = Kernel(new.policy, new.language)
    attrs = kn.attributes()
    checker = Checker([Checked("new", kn, new.enforcer)], seed=options.seed, rate=options.sample_rate)
    enforcers = Enforcers(store)
    part = Part(Tally(examples_per_group=options.examples), {}, enforcers.rows, enforcers.missing, {}, [])
    tally = part.tally
    reader = open_log(store, env, database)
    try:
        for rows in reader.rows(since, until, batch_size, lo, hi):
            if part.first_id is None:
                part.first_id = rows[0].id
            part.last_id = rows[-1].id
            txs: list[dict[str, Any]] = []
            logged: list[dict[str, Any]] = []
            for h, count in Counter(r.enforcer_hash for r in rows).items():
                enforcers.get(h)
                enforcers.rows[h] += count
            loaded = enforcers.loaded
            for r in rows:
                try:
                    tx = _TX.decode(r.transaction_json)
                    d = _PLAIN.decode(r.decision_json)
                except json.JSONDecodeError:
                    part.unrecoverable += 1
                    tx, d = {}, {"decision": "REJECT", "fired": [{"rule": "unreadable"}]}
                txs.append(tx)
                logged.append(d)
                enforcer = loaded.get(r.enforcer_hash)
                if enforcer is None:
                    continue
                try:
                    replayed: Any = enforcer.decide(tx).to_dict()
                except Exception as exc:
                    replayed = f"raised {type(exc).__name__}: {exc}"
                # the same JSON document as the logged one (its text, when they differ: the log's
                # text is the canonical dump of the daemon's decision, verified by the chain)
                if replayed != d and (again := _text_of(replayed)) != r.decision_json:
                    part.mismatch_count += 1
                    if len(part.mismatches) < MISMATCHES_SHOWN:
                        part.mismatches.append(
                            {
                                "id": r.id,
                                "enforcer_hash": r.enforcer_hash,
                                "logged": r.decision_json,
                                "replayed": again,
                            }
                        )
            batch = from_dicts(txs, [r.id for r in rows], attrs, days=[r.decided_at[:10] for r in rows])
            got = kn.decide(batch)
            checker.check(batch, [got])
            tally.add(batch, from_decisions(logged), got, kn.language, region_of)
            by_id = {r.id: logged[i] for i, r in enumerate(rows)}
            for exs in tally.examples.values():
                for ex in exs:
                    if ex.row in by_id and ex.row not in part.logged_of_examples:
                        part.logged_of_examples[ex.row] = by_id[ex.row]
            if progress is not None:
                progress.advance(len(rows))
    finally:
        reader.close()
    part.checked = checker.to_dict()
    part.ontology_of = {h: e.ontology_hash for h, e in enforcers.loaded.items()}
    return part


def _in_children(calls: Sequence[Callable[[], Part]]) -> list[Part]:
    """Run each call in a forked child (results pickled back through a pipe); a child that fails
    is run again here, so a failure shows as it would without children."""
    import os
    import pickle

    children = []
    for call in calls:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(read_fd)
                view = memoryview(pickle.dumps(call()))
                while view:
                    view = view[os.write(write_fd, view) :]
            except BaseException:
                code = 1
            os._exit(code)
        os.close(write_fd)
        children.append((pid, read_fd))
    out: list[Part] = []
    for call, (pid, read_fd) in zip(calls, children, strict=True):
        chunks = []
        try:
            while chunk := os.read(read_fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(read_fd)
            _, status = os.waitpid(pid, 0)
        got: Part | None = None
        if os.waitstatus_to_exitcode(status) == 0:
            try:
                got = pickle.loads(b"".join(chunks))  # noqa: S301 - our own child's pipe
            except Exception:
                got = None
        out.append(got if got is not None else call())
    return out


#: Below this many decisions the history is replayed in this process only.
PARALLEL_FROM = 50_000


def _workers(total: int) -> int:
    import os
    import threading

    if not hasattr(os, "fork") or threading.active_count() != 1 or total < PARALLEL_FROM:
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


def backtest_history(
    store: Store,
    env: str,
    since: str | None,
    until: str | None,
    new: Side,
    options: Options,
    *,
    batch_size: int = 16_384,
    workers: int | None = None,
    progress: Progress | None = None,
    note: Callable[[str], None] = lambda _: None,
    database: str | None = None,
) -> dict[str, Any]:
    """``database``: the log's database URL when not the one config.json (or the store's SQLite
    file) gives. No connection is open while children are forked: each opens its own."""
    reader = open_log(store, env, database)
    try:
        where = reader.where
        total, lo, hi = reader.span(since, until)
        enforcer_hashes = reader.enforcers(since, until)
    finally:
        reader.close()
    note(f"verifying the hash chain of the {env} decision log ({where})")
    verified = verify_meanwhile(store, env, database)
    regions_doc: dict[str, Any] | None = None
    regions_why: str | None = "not asked for (--no-regions)"
    region_of: Regions | None = None
    if options.regions:
        regions_doc, regions_why = _history_regions(store, enforcer_hashes, new, note)
        if regions_doc is not None:
            region_of = Regions.of(regions_doc)
    size = min(batch_size, options.batch_size)
    n = workers if workers is not None else _workers(total)
    if progress is not None:
        progress.total = total
    if n <= 1 or hi < lo:
        parts = [
            replay_part(store, env, (since, until, lo, hi), new, options, size, region_of, progress, database)
        ]
    else:
        step = (hi - lo + n) // n
        ranges = [(a, min(hi, a + step - 1)) for a in range(lo, hi + 1, step)]
        note(f"replaying {total:,} decisions in {len(ranges)} processes")

        def call(a: int, b: int) -> Callable[[], Part]:
            return lambda: replay_part(
                store, env, (since, until, a, b), new, options, size, region_of, database=database
            )

        parts = _in_children([call(a, b) for a, b in ranges])
        if progress is not None:
            progress.advance(total)
    if progress is not None:
        progress.close()
    report = verified()  # nothing is reported unless the log verified
    if not report["verified"]:
        raise CheckFailed(
            f"the {env} decision log does not verify, so its history is not replayed: {report['summary']}",
            code="backtest.log_unverified",
            location=Location(file=where),
            hint=f"`mu decisions verify --env={env}{' --database=URL' * bool(database)}` names every problem",
        )
    tally = parts[0].tally
    for p in parts[1:]:
        tally.merge(p.tally)
    rows_by: dict[str, int] = {}
    missing: dict[str, str] = {}
    ontology_of: dict[str, str] = {}
    logged_of_examples: dict[int, Mapping[str, Any]] = {}
    for p in parts:
        for h, c in p.enforcer_rows.items():
            rows_by[h] = rows_by.get(h, 0) + c
        missing.update(p.missing)
        ontology_of.update(p.ontology_of)
        logged_of_examples.update(p.logged_of_examples)
    mismatch_count = sum(p.mismatch_count for p in parts)
    unrecoverable = sum(p.unrecoverable for p in parts)
    mismatches = [m for p in parts for m in p.mismatches][:MISMATCHES_SHOWN]
    reproducible = mismatch_count == 0 and not missing and unrecoverable == 0
    firsts = [p.first_id for p in parts if p.first_id is not None]
    lasts = [p.last_id for p in parts if p.last_id is not None]

    def logged_decision(ex: Example) -> Mapping[str, Any] | None:
        return logged_of_examples.get(ex.row)

    log = report
    doc: dict[str, Any] = {
        "mode": "history",
        "old": {
            "enforcers": [
                {
                    "enforcer_hash": h,
                    "rows": c,
                    "ontology_hash": ontology_of.get(h),
                    "in_store": h not in missing,
                    **({"missing": missing[h]} if h in missing else {}),
                }
                for h, c in sorted(rows_by.items())
            ]
        },
        "new": new.describe(),
        "data": {
            "kind": "decision_log",
            "env": env,
            "since": since,
            "until": until,
            "first_id": min(firsts) if firsts else None,
            "last_id": max(lasts) if lasts else None,
            "log": {
                "size": log["size"],
                "root_hash": log["root_hash"],
                "chain_hash": log["chain_hash"],
                "covered_by_signed_head": log["covered_by_signed_head"],
                "heads": log["heads"],
                "summary": log["summary"],
            },
        },
        "engine": "local",
        "processes": len(parts),
        **tally.to_dict(),
        "unreadable": [],
        "unreadable_count": unrecoverable,
        "reproducible": reproducible,
        "fidelity": {
            "replayed": tally.rows - sum(rows_by[h] for h in missing),
            "mismatches": mismatch_count,
            "mismatch_examples": mismatches,
            "enforcers_missing": [{"enforcer_hash": h, "why": why} for h, why in sorted(missing.items())],
        },
        "examples": examples_doc(tally.examples, logged_decision, _reasons_by(new.enforcer)),
        "checked_by": merge_checked([p.checked for p in parts]),
        "regions": _regions_doc(regions_doc, regions_why, tally),
    }
    return jsonable(doc)  # type: ignore[no-any-return]


def _history_regions(
    store: Store, hashes: Sequence[str], new: Side, note: Callable[[str], None]
) -> tuple[dict[str, Any] | None, str | None]:
    """The impact regions of the logged policy against the new one, when one enforcer made the
    whole range and the store holds it and its O."""
    if len(hashes) != 1:
        return None, "the history was decided by more than one enforcer" if hashes else "no decisions"
    (only,) = hashes
    enforcers = Enforcers(store)
    old_enf = enforcers.get(only)
    if old_enf is None:
        return None, f"the enforcer {only} is not in the store ({enforcers.missing[only]})"
    try:
        policy = policy_of_snapshot(store, old_enf.ontology_hash, f"A {only}")
    except FabricError as exc:
        return None, exc.message
    old_side = Side("old", policy, old_enf.language, old_enf.ontology_hash, old_enf, only, "enforcer")
    note("computing the impact regions of the logged policy and the new one")
    return impact_regions(old_side, new)
