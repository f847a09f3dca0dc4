"""Where a back-test's transactions come from, in batches of bounded size.

- JSON Lines (``.jsonl``, ``.ndjson``, ``.json``): each line one transaction, read by the strict
  reader every transaction passes through (numbers as ``int`` or ``Decimal``, never floats);
- CSV (``.csv``): a header row names the fields (``attributes.<name>`` for an attribute); every
  cell is text, and an empty cell is an absent field;
- Parquet (a ``.parquet`` file, or a directory of them): typed columns named the same way (or an
  ``attributes`` struct column); only the columns a policy can read are loaded.

A row that cannot be read (not JSON, not one object, a CSV row with the wrong number of cells) is
never decided: it is reported as unreadable with its line number and the reason, and counted.
Row numbers are line numbers for JSON Lines and CSV, and 1-based row numbers for Parquet.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finops_fabric.backtest.columns import (
    ATTR_PREFIX,
    CORE,
    TIME_FIELDS,
    Batch,
    attr_column,
    from_arrow,
    from_dicts,
)
from finops_fabric.errors import InputError, Location

FORMATS = ("jsonl", "csv", "parquet")
DEFAULT_BATCH = 65_536


@dataclass(frozen=True)
class Unreadable:
    line: int
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "error": self.error}


def format_of(path: Path) -> str:
    if path.is_dir():
        return "parquet"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise InputError(
        f"{path}: a transaction file is JSON Lines (.jsonl), CSV (.csv) or Parquet (.parquet, or a "
        "directory of them)",
        code="backtest.format",
        location=Location(file=str(path)),
    )


def file_digest(path: Path) -> str:
    """SHA-256 of the file (of a directory: of each Parquet file's name and digest, sorted)."""
    if path.is_dir():
        h = hashlib.sha256()
        for p in parquet_files(path):
            h.update(p.relative_to(path).as_posix().encode() + b"\0" + file_digest(p).encode() + b"\n")
        return "sha256:" + h.hexdigest()
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".parquet", ".pq"))
    if not found:
        raise InputError(
            f"{path} holds no .parquet files", code="backtest.empty", location=Location(file=str(path))
        )
    return found


def _open(path: Path) -> Any:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputError(
            f"cannot read the transaction file {path}: {exc.strerror}",
            code="backtest.unreadable",
            location=Location(file=str(path)),
        ) from exc


def jsonl_batches(
    path: Path, attributes: Iterable[str], batch_size: int = DEFAULT_BATCH
) -> Iterator[tuple[Batch | None, list[Unreadable]]]:
    from finops_fabric.intake.transaction import TransactionRefused, parse_transaction

    attrs = set(attributes)
    txs: list[dict[str, Any]] = []
    rows: list[int] = []
    bad: list[Unreadable] = []
    with _open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                bad.append(Unreadable(number, "an empty line, not a transaction"))
                continue
            try:
                tx = parse_transaction(line.rstrip(b"\r\n"))
            except TransactionRefused as exc:
                bad.append(Unreadable(number, exc.message))
                continue
            txs.append(tx)
            rows.append(number)
            if len(txs) >= batch_size:
                yield from_dicts(txs, rows, attrs), bad
                txs, rows, bad = [], [], []
    if txs or bad:
        yield (from_dicts(txs, rows, attrs) if txs else None), bad


def csv_batches(
    path: Path, attributes: Iterable[str], batch_size: int = DEFAULT_BATCH
) -> Iterator[tuple[Batch | None, list[Unreadable]]]:
    attrs = set(attributes)
    txs: list[dict[str, Any]] = []
    rows: list[int] = []
    bad: list[Unreadable] = []
    with _open(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(
                f"{path}: the header row cannot be read: {exc}",
                code="backtest.csv",
                location=Location(file=str(path), line=1),
            ) from exc
        width = len(header)
        line = reader.line_num
        while True:
            start = line + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError as exc:
                bad.append(Unreadable(start, f"not UTF-8 text: {exc.reason}"))
                break  # the decoder cannot resume in the middle of a file
            except csv.Error as exc:
                line = reader.line_num
                bad.append(Unreadable(start, f"not a CSV row: {exc}"))
                continue
            line = reader.line_num
            if not cells:
                bad.append(Unreadable(start, "an empty line, not a transaction"))
                continue
            if len(cells) != width:
                bad.append(Unreadable(start, f"{len(cells)} cells where the header names {width}"))
                continue
            tx: dict[str, Any] = {}
            tx_attrs: dict[str, Any] = {}
            for name, value in zip(header, cells, strict=True):
                if value == "":
                    continue
                if name.startswith(ATTR_PREFIX):
                    tx_attrs[name[len(ATTR_PREFIX) :]] = value
                else:
                    tx[name] = value
            tx["attributes"] = tx_attrs
            txs.append(tx)
            rows.append(start)
            if len(txs) >= batch_size:
                yield from_dicts(txs, rows, attrs), bad
                txs, rows, bad = [], [], []
    if txs or bad:
        yield (from_dicts(txs, rows, attrs) if txs else None), bad


def parquet_columns(schema_names: Iterable[str], attributes: Iterable[str]) -> list[str]:
    """The columns of a Parquet schema a back-test reads."""
    wanted = {"id", *CORE, *TIME_FIELDS, "attributes", *(attr_column(a) for a in attributes)}
    return [c for c in schema_names if c in wanted]


def parquet_batches(
    path: Path, attributes: Iterable[str], batch_size: int = DEFAULT_BATCH, first_row: int = 1
) -> Iterator[tuple[Batch | None, list[Unreadable]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    attrs = set(attributes)
    row = first_row
    for p in parquet_files(path):
        try:
            pf = pq.ParquetFile(p)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(
                f"{p} is not a readable Parquet file: {exc}",
                code="backtest.parquet",
                location=Location(file=str(p)),
            ) from exc
        columns = parquet_columns(pf.schema_arrow.names, attrs)
        try:
            for rb in pf.iter_batches(batch_size=batch_size, columns=columns):
                table = pa.Table.from_batches([rb])
                yield from_arrow(table, row, attrs), []
                row += table.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise InputError(
                f"{p}: Parquet data cannot be read past row {row}: {exc}",
                code="backtest.parquet",
                location=Location(file=str(p)),
            ) from exc


def file_batches(
    path: Path, attributes: Iterable[str], batch_size: int = DEFAULT_BATCH
) -> Iterator[tuple[Batch | None, list[Unreadable]]]:
    if not path.exists():
        raise InputError(
            f"there is no transaction file {path}", code="backtest.missing", location=Location(file=str(path))
        )
    fmt = format_of(path)
    if fmt == "jsonl":
        return jsonl_batches(path, attributes, batch_size)
    if fmt == "csv":
        return csv_batches(path, attributes, batch_size)
    return parquet_batches(path, attributes, batch_size)
