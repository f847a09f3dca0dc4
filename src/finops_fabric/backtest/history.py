"""A back-test over an environment's decision log: history replayed with the policy that made it.

First the log's hash chain and Merkle tree are verified (against the signed tree heads); a log
that does not verify is refused. Then, for every decision in the range, in id order:

- fidelity: the decision's own enforcer (the A its logged hash names, taken from the store's
  snapshot and verified) decides the logged transaction again, and must reproduce the logged
  decision JSON byte for byte; every mismatch is counted and shown, and an enforcer hash the
  store does not hold is named. Either makes the report "not reproducible" (exit 1);
- the new policy decides the same transaction (the batch kernel, checked against the new
  enforcer as every back-test is) and is compared with the logged outcome.

The log is read through :class:`LogReader` only (read-only; SQLite today), so another database
needs one more reader and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from finops_fabric.backtest.check import Checked, Checker
from finops_fabric.backtest.columns import from_dicts
from finops_fabric.backtest.kernel import Kernel
from finops_fabric.backtest.outcomes import from_decisions
from finops_fabric.backtest.run import (
    Options,
    Progress,
    _reasons_by,
    _regions_doc,
    examples_doc,
    impact_regions,
    jsonable,
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

    def count(self, since: str | None, until: str | None) -> int: ...

    def rows(self, since: str | None, until: str | None, batch: int) -> Iterator[list[LoggedRow]]: ...

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
        from finops_fabric.audit import default_trust
        from finops_fabric.daemon import decision_log
        from finops_fabric.daemon.tree_heads import decision_heads
        from finops_fabric.transparency import gather_heads, verify_log

        heads, findings = gather_heads(
            decision_heads(store, env), [], default_trust(store).keys, log="decisions", env=env
        )
        report = verify_log(decision_log.log_rows(self.conn), heads, noun="decision")
        report.findings[:0] = findings
        return report

    @staticmethod
    def _where(since: str | None, until: str | None) -> tuple[str, list[str]]:
        clauses, params = [], []
        if since is not None:
            clauses.append("decided_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("decided_at < ?")
            params.append(until)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def count(self, since: str | None, until: str | None) -> int:
        where, params = self._where(since, until)
        sql = "SELECT count(*) FROM decisions" + where  # noqa: S608 - fixed text; values are bound
        return int(self.conn.execute(sql, params).fetchone()[0])

    def rows(self, since: str | None, until: str | None, batch: int) -> Iterator[list[LoggedRow]]:
        where, params = self._where(since, until)
        columns = "id, decided_at, transaction_json, decision_json, enforcer_hash"
        sql = f"SELECT {columns} FROM decisions{where} ORDER BY id"  # noqa: S608 - fixed text; values are bound
        cur = self.conn.execute(sql, params)
        while chunk := cur.fetchmany(batch):
            yield [LoggedRow(*r) for r in chunk]

    def close(self) -> None:
        self.conn.close()


def _verify(store: Store, env: str) -> dict[str, Any]:
    reader = open_log(store, env)
    try:
        report = reader.verify(store, env)
        return {**report.to_dict(), "summary": report.summary()}
    finally:
        reader.close()


def verify_meanwhile(store: Store, env: str) -> Callable[[], dict[str, Any]]:
    """Verify the log's chain in a forked child while this process replays it (the replay is
    discarded unless the log verifies); where there is one CPU, or threads run, or the child
    fails for any reason, the verification is done here. Returns the function that waits for
    the report (``LogReport.to_dict()`` with its ``summary``)."""
    import os
    import pickle
    import threading

    if not hasattr(os, "fork") or (os.cpu_count() or 1) < 2 or threading.active_count() != 1:
        report = _verify(store, env)
        return lambda: report
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: verify, send the report back, leave without any clean-up
        code = 0
        try:
            os.close(read_fd)
            view = memoryview(pickle.dumps(_verify(store, env)))
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
                return _verify(store, env)
            return got
        return _verify(store, env)

    return wait


def open_log(store: Store, env: str) -> LogReader:
    """The reader of ``env``'s decision log (the one place that knows where it is kept)."""
    from finops_fabric.daemon import decision_log

    return SqliteLog(decision_log.db_path(store.home, env))


# --- the enforcers that made the decisions ------------------------------------------------------


@dataclass
class Enforcers:
    """Each logged enforcer hash → its A from the store (verified), or why it cannot be had."""

    store: Store
    loaded: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def get(self, h: str) -> Any:
        self.rows[h] = self.rows.get(h, 0) + 1
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


def _region_finder(whens: list[Any], reading: str) -> Callable[[Mapping[str, Any]], int | None]:
    from finops_fabric.analysis.region import contains

    def region_of(tx: Mapping[str, Any]) -> int | None:
        for i, w in enumerate(whens):
            if contains(w, tx, reading):
                return i
        return None

    return region_of


def _text_of(d: object) -> str:
    """A replayed decision as the daemon logs it (or why there is none)."""
    if isinstance(d, str):
        return d
    return json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)


def backtest_history(
    store: Store,
    env: str,
    since: str | None,
    until: str | None,
    new: Side,
    options: Options,
    *,
    batch_size: int = 16_384,
    progress: Progress | None = None,
    note: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    reader = open_log(store, env)
    try:
        note(f"verifying the hash chain of the {env} decision log")
        verified = verify_meanwhile(store, env)
        total = reader.count(since, until)
        if progress is not None:
            progress.total = total
        kn = Kernel(new.policy, new.language)
        attrs = kn.attributes()
        checker = Checker([Checked("new", kn, new.enforcer)], seed=options.seed, rate=options.sample_rate)
        tally = Tally(examples_per_group=options.examples)
        enforcers = Enforcers(store)
        mismatches: list[dict[str, Any]] = []
        mismatch_count = 0
        unrecoverable = 0
        first_id: int | None = None
        last_id: int | None = None
        logged_of_examples: dict[int, Mapping[str, Any]] = {}
        regions_doc: dict[str, Any] | None = None
        regions_why: str | None = "not asked for (--no-regions)"
        region_of: Callable[[Mapping[str, Any]], int | None] | None = None
        for rows in reader.rows(since, until, min(batch_size, options.batch_size)):
            if first_id is None:
                first_id = rows[0].id
            last_id = rows[-1].id
            txs: list[dict[str, Any]] = []
            logged: list[dict[str, Any]] = []
            for r in rows:
                try:
                    tx = _TX.decode(r.transaction_json)
                    d = _PLAIN.decode(r.decision_json)
                except json.JSONDecodeError:
                    unrecoverable += 1
                    tx, d = {}, {"decision": "REJECT", "fired": [{"rule": "unreadable"}]}
                txs.append(tx)
                logged.append(d)
                enforcer = enforcers.get(r.enforcer_hash)
                if enforcer is None:
                    continue
                try:
                    replayed: Any = enforcer.decide(tx).to_dict()
                except Exception as exc:
                    replayed = f"raised {type(exc).__name__}: {exc}"
                # the same JSON document as the logged one (its text, when they differ: the log's
                # text is the canonical dump of the daemon's decision, verified by the chain)
                if replayed != d and (again := _text_of(replayed)) != r.decision_json:
                    mismatch_count += 1
                    if len(mismatches) < MISMATCHES_SHOWN:
                        mismatches.append(
                            {
                                "id": r.id,
                                "enforcer_hash": r.enforcer_hash,
                                "logged": r.decision_json,
                                "replayed": again,
                            }
                        )
            if region_of is None and options.regions and len(enforcers.rows) == 1:
                # one enforcer made the history so far: the regions of its O against the new one
                (only,) = enforcers.rows
                old_enf = enforcers.loaded.get(only)
                if old_enf is not None:
                    try:
                        policy = policy_of_snapshot(store, old_enf.ontology_hash, f"A {only}")
                        old_side = Side(
                            "old", policy, old_enf.language, old_enf.ontology_hash, old_enf, only, "enforcer"
                        )
                        note("computing the impact regions of the logged policy and the new one")
                        regions_doc, regions_why = impact_regions(old_side, new)
                    except FabricError as exc:
                        regions_doc, regions_why = None, exc.message
                if regions_doc is not None:
                    region_of = _region_finder(
                        [x["when"] for x in regions_doc["regions"]],
                        str(regions_doc.get("amount_reading", "trimmed")),
                    )
                else:
                    options = Options(**{**options.__dict__, "regions": False})
            elif len(enforcers.rows) > 1 and region_of is not None:
                region_of, regions_doc = None, None
                regions_why = "the history was decided by more than one enforcer"
            batch = from_dicts(txs, [r.id for r in rows], attrs, days=[r.decided_at[:10] for r in rows])
            old = from_decisions(logged)
            got = kn.decide(batch)
            checker.check(batch, [got])
            tally.add(batch, old, got, kn.language, region_of)
            by_id = {r.id: logged[i] for i, r in enumerate(rows)}
            for exs in tally.examples.values():
                for ex in exs:
                    if ex.row in by_id and ex.row not in logged_of_examples:
                        logged_of_examples[ex.row] = by_id[ex.row]
            if progress is not None:
                progress.advance(len(rows))
        if progress is not None:
            progress.close()
        report = verified()  # nothing is reported unless the log verified
        if not report["verified"]:
            raise CheckFailed(
                f"the {env} decision log does not verify, so its history is not replayed: "
                f"{report['summary']}",
                code="backtest.log_unverified",
                location=Location(file=reader.where),
                hint="`mu decisions verify --env=" + env + "` names every problem",
            )
    finally:
        reader.close()
    reproducible = mismatch_count == 0 and not enforcers.missing and unrecoverable == 0

    def logged_decision(ex: Example) -> Mapping[str, Any] | None:
        return logged_of_examples.get(ex.row)

    log = report
    doc: dict[str, Any] = {
        "mode": "history",
        "old": {
            "enforcers": [
                {
                    "enforcer_hash": h,
                    "rows": n,
                    "ontology_hash": enforcers.loaded[h].ontology_hash if h in enforcers.loaded else None,
                    "in_store": h in enforcers.loaded,
                    **({"missing": enforcers.missing[h]} if h in enforcers.missing else {}),
                }
                for h, n in sorted(enforcers.rows.items())
            ]
        },
        "new": new.describe(),
        "data": {
            "kind": "decision_log",
            "env": env,
            "since": since,
            "until": until,
            "first_id": first_id,
            "last_id": last_id,
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
        **tally.to_dict(),
        "unreadable": [],
        "unreadable_count": unrecoverable,
        "reproducible": reproducible,
        "fidelity": {
            "replayed": tally.rows - sum(enforcers.rows[h] for h in enforcers.missing),
            "mismatches": mismatch_count,
            "mismatch_examples": mismatches,
            "enforcers_missing": [
                {"enforcer_hash": h, "why": why} for h, why in sorted(enforcers.missing.items())
            ],
        },
        "examples": examples_doc(tally.examples, logged_decision, _reasons_by(new.enforcer)),
        "checked_by": checker.to_dict(),
        "regions": _regions_doc(regions_doc, regions_why, tally),
    }
    return jsonable(doc)  # type: ignore[no-any-return]
