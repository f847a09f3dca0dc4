"""`mu backtest` as a library call: a file of transactions (old against new) or an environment's
decision log (each decision's own enforcer against new), every row, the report as one document.

A file is cut into partitions (each Parquet file of a directory; a JSON Lines or CSV file is one
partition); each partition is decided batch by batch by both kernels, checked against both
enforcers (:mod:`.check`) and counted (:mod:`.tally`); the tallies merge in partition order. The
local engine runs the partitions here, one after the other; the Dask engine
(:mod:`.distributed`) runs the same function on a cluster's workers, so both count identically.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finops_fabric.backtest.check import DEFAULT_SAMPLE_RATE, Checked, Checker
from finops_fabric.backtest.kernel import Kernel
from finops_fabric.backtest.outcomes import Comparable
from finops_fabric.backtest.regions import Regions
from finops_fabric.backtest.sides import Side, enforcer_of_files
from finops_fabric.backtest.sources import DEFAULT_BATCH, Unreadable, file_batches, format_of, parquet_files
from finops_fabric.backtest.tally import Example, Tally, example_groups
from finops_fabric.errors import CheckFailed, InputError

#: Unreadable rows listed in the document (all are counted).
UNREADABLE_LISTED = 10_000
RECEIPT_KIND = "backtest"


class Progress:
    """A one-line progress bar on stderr when it is a terminal (nothing otherwise)."""

    def __init__(self, enabled: bool, total: int | None = None, what: str = "rows") -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total
        self.what = what
        self._last = 0.0
        self.done = 0

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r[{bar:<30}] {self.done:,}/{self.total:,} {self.what} ({frac:.0%})")
        else:
            sys.stderr.write(f"\r… {self.done:,} {self.what}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 78 + "\r")
            sys.stderr.flush()


@dataclass
class Options:
    batch_size: int = DEFAULT_BATCH
    examples: int = 3
    seed: int = 0
    sample_rate: float = DEFAULT_SAMPLE_RATE
    regions: bool = True


# --- partitions -----------------------------------------------------------------------------------


@dataclass
class PartitionSpec:
    path: str
    first_row: int
    index: int
    old: tuple[str, str, dict[str, bytes], str, Any, str]
    new: tuple[str, str, dict[str, bytes], str, Any, str]
    options: Options
    regions: Regions | None = None


@dataclass
class PartitionResult:
    tally: Tally
    checked: dict[str, Any]
    unreadable: list[Unreadable] = field(default_factory=list)
    unreadable_count: int = 0


_ENFORCERS: dict[str, Any] = {}


def _rebuild(portable: tuple[str, str, dict[str, bytes], str, Any, str]) -> tuple[Kernel, Any]:
    name, source, files, ahash, policy, language = portable
    enforcer = _ENFORCERS.get(ahash)
    if enforcer is None:
        enforcer = _ENFORCERS[ahash] = enforcer_of_files(files, source)
        if enforcer.hash != ahash:
            raise CheckFailed(f"the {name} enforcer does not hash to {ahash}", code="enforcer.tampered")
    return Kernel(policy, language), enforcer


def run_partition(spec: PartitionSpec, progress: Callable[[int], None] | None = None) -> PartitionResult:
    """Decide, check and count one partition (in this process or on a worker)."""
    ko, eo = _rebuild(spec.old)
    kn, en = _rebuild(spec.new)
    attrs = ko.attributes() | kn.attributes()
    checker = Checker(
        [Checked("old", ko, eo), Checked("new", kn, en)],
        seed=spec.options.seed,
        rate=spec.options.sample_rate,
    )
    tally = Tally(examples_per_group=spec.options.examples)
    result = PartitionResult(tally, {})
    path = Path(spec.path)
    if format_of(path) == "parquet":
        from finops_fabric.backtest.sources import parquet_batches

        batches = parquet_batches(path, attrs, spec.options.batch_size, spec.first_row)
    else:
        batches = file_batches(path, attrs, spec.options.batch_size)
    for batch, bad in batches:
        result.unreadable_count += len(bad)
        room = UNREADABLE_LISTED - len(result.unreadable)
        result.unreadable += bad[: max(0, room)]
        if batch is None:
            continue
        old, new = ko.decide(batch), kn.decide(batch)
        checker.check(batch, [old, new])
        tally.add(batch, old, new, kn.language, spec.regions)
        if progress is not None:
            progress(batch.n)
    result.checked = checker.to_dict()
    return result


def merge_checked(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = dict(parts[0]) if parts else {}
    for p in parts[1:]:
        for k in ("rows_rechecked", "near_threshold", "decided_row_by_row", "sampled", "disagreements"):
            out[k] += p[k]
    return out


def partitions(path: Path) -> list[tuple[str, int]]:
    """(path, first row number) of each partition of a transaction file."""
    if format_of(path) != "parquet":
        return [(str(path), 1)]
    import pyarrow.parquet as pq

    out: list[tuple[str, int]] = []
    row = 1
    for p in parquet_files(path):
        out.append((str(p), row))
        try:
            row += pq.ParquetFile(p).metadata.num_rows
        except Exception as exc:
            raise InputError(f"{p} is not a readable Parquet file: {exc}", code="backtest.parquet") from exc
    return out


# --- regions ---------------------------------------------------------------------------------------


def impact_regions(old: Side, new: Side) -> tuple[dict[str, Any] | None, str | None]:
    """``mu impact``'s document for the pair (its regions), or why there is none."""
    from finops_fabric.analysis.impact import SideInfo
    from finops_fabric.analysis.run import analyse
    from finops_fabric.analysis.sides import LoadedSide

    def loaded(s: Side) -> LoadedSide:
        info = SideInfo(s.policy, s.ontology_hash, s.language, s.generator, s.source)
        return LoadedSide(info, s.enforcer.generator)

    try:
        result = analyse(loaded(old), loaded(new))
    except InputError as exc:
        return None, exc.message
    return result.to_dict(), None


# --- the document --------------------------------------------------------------------------------------


def _decision(c: Comparable | None, decided: Mapping[str, Any] | None) -> dict[str, Any]:
    if decided is not None:
        return {
            "decision": decided["decision"],
            "fired": decided.get("fired", []),
            "notifications": decided.get("notifications", []),
            "audit": decided.get("audit", []),
        }
    assert c is not None
    return {"decision": c[0], "fired": [{"rule": r} for r in c[1]]}


def examples_doc(
    examples: Mapping[str, Sequence[Example]],
    old_decide: Callable[[Example], Mapping[str, Any] | None],
    new_decide: Callable[[Example], Mapping[str, Any] | None],
) -> list[dict[str, Any]]:
    """Each example with both sides' decisions and reasons (decided again by the enforcers)."""
    out = []
    for ex in example_groups(examples):
        out.append(
            {
                **ex.to_dict(),
                "old": _decision(ex.old, old_decide(ex)),
                "new": _decision(ex.new, new_decide(ex)),
            }
        )
    return out


def _reasons_by(enforcer: Any) -> Callable[[Example], Mapping[str, Any] | None]:
    def decide(ex: Example) -> Mapping[str, Any] | None:
        try:
            d: Mapping[str, Any] = enforcer.decide(dict(ex.transaction)).to_dict()
        except Exception:
            return None
        return d

    return decide


def jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def backtest_file(
    old: Side,
    new: Side,
    path: Path,
    options: Options,
    *,
    engine: str = "local",
    scheduler: str | None = None,
    progress: Progress | None = None,
    note: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    from finops_fabric.backtest.sources import file_digest

    fmt = format_of(path)
    parts = partitions(path) if path.exists() else [(str(path), 1)]
    regions_doc: dict[str, Any] | None = None
    regions_why: str | None = "not asked for (--no-regions)"
    if options.regions:
        note("computing the impact regions of the pair")
        regions_doc, regions_why = impact_regions(old, new)
    whens = Regions.of(regions_doc) if regions_doc is not None else None
    for side in (old, new):  # this process has both loaded already
        _ENFORCERS.setdefault(side.enforcer_hash, side.enforcer)
    specs = [
        PartitionSpec(p, first, i, old.portable(), new.portable(), options, whens)
        for i, (p, first) in enumerate(parts)
    ]
    if engine == "dask":
        from finops_fabric.backtest.distributed import run_on_dask

        if fmt != "parquet":
            raise InputError(
                "--engine=dask runs over Parquet (a file, or a directory of them)", code="cli.usage"
            )
        results = run_on_dask(specs, scheduler, progress)
    else:
        results = [run_partition(s, progress.advance if progress else None) for s in specs]
    if progress is not None:
        progress.close()
    tally = results[0].tally
    for r in results[1:]:
        tally.merge(r.tally)
    unreadable = [u for r in results for u in r.unreadable][:UNREADABLE_LISTED]
    unreadable_count = sum(r.unreadable_count for r in results)
    doc: dict[str, Any] = {
        "mode": "file",
        "old": old.describe(),
        "new": new.describe(),
        "data": {
            "kind": "file",
            "file": str(path),
            "format": fmt,
            "sha256": file_digest(path),
            "partitions": len(parts),
        },
        "engine": engine,
        **tally.to_dict(),
        "unreadable": [u.to_dict() for u in unreadable],
        "unreadable_count": unreadable_count,
        "reproducible": None,
        "examples": examples_doc(tally.examples, _reasons_by(old.enforcer), _reasons_by(new.enforcer)),
        "checked_by": merge_checked([r.checked for r in results]),
    }
    doc["regions"] = _regions_doc(regions_doc, regions_why, tally)
    return jsonable(doc)  # type: ignore[no-any-return]


def _regions_doc(regions_doc: Mapping[str, Any] | None, why: str | None, tally: Tally) -> dict[str, Any]:
    if regions_doc is None:
        return {"available": False, "why": why}
    counts = tally.regions or []
    regions = regions_doc.get("regions") or []
    return {
        "available": True,
        "amount_reading": regions_doc.get("amount_reading"),
        "regions": [
            {"summary": r["summary"], "when": r["when"], "rows": counts[i] if i < len(counts) else 0}
            for i, r in enumerate(regions)
        ],
        "changed_rows_outside_every_region": tally.outside_regions,
    }
