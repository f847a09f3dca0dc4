"""The ledger's hash chain: every row links to the one before it, or the gap is named.

The first row's ``previous_receipt_hash`` is null and every other row links to the row before
it. A link to a hash that is not in the ledger is a deleted (or replaced) row (``deleted``); a
link to a row elsewhere is a reordering (``reordered``); the same receipt twice is
``duplicated``; seq numbers that jump (``seq_gap``) or stop short of the number SQLite issued
(``truncated``) are gaps too.
"""

from __future__ import annotations

from finops_fabric.audit.ledger import Gap, Row, short

__all__ = ["chain_gaps"]


def chain_gaps(rows: list[Row], issued_seq: int | None, start: int, end: int) -> list[Gap]:
    """Gaps in the links of rows[start:end] (each checked against the row before it)."""
    first_index: dict[str, int] = {}
    duplicate: set[int] = set()
    gaps: list[Gap] = []
    for i, row in enumerate(rows):
        if row.hash in first_index:
            duplicate.add(i)
            if start <= i < end:
                j = first_index[row.hash]
                gaps.append(
                    Gap.at(row, "duplicated", f"repeats the receipt already stored at seq {rows[j].seq}")
                )
        else:
            first_index[row.hash] = i
    before: Row | None = None
    for i in range(start):
        if i not in duplicate:
            before = rows[i]
    for i in range(start, end):
        row = rows[i]
        if i in duplicate:
            continue
        gaps += _link_gaps(row, before, rows, first_index)
        before = row
    if end == len(rows) and issued_seq is not None:
        last = rows[-1].seq if rows else 0
        if issued_seq > last:
            missing = issued_seq - last
            gaps.append(
                Gap(
                    None,
                    None,
                    "truncated",
                    f"the ledger ends at seq {last} but SQLite has issued seq numbers up to {issued_seq}: "
                    f"the newest {missing} receipt{'s were' if missing != 1 else ' was'} deleted",
                )
            )
    return gaps


def _link_gaps(row: Row, before: Row | None, rows: list[Row], index: dict[str, int]) -> list[Gap]:
    prev = row.previous
    if before is None:
        if prev is None:
            return []
        if prev in index:
            where = rows[index[prev]].seq
            return [Gap.at(row, "reordered", f"stands first but links back to seq {where} ({short(prev)})")]
        return [
            Gap.at(
                row,
                "deleted",
                f"the first row links to {prev}, which is not in the ledger: the receipt(s) before it "
                "were deleted",
            )
        ]
    jump = row.seq - before.seq - 1
    if prev == before.hash:
        if jump > 0:
            return [
                Gap.at(
                    row,
                    "seq_gap",
                    f"seq numbers jump from {before.seq} to {row.seq} although the hash link holds: "
                    f"{jump} row(s) were removed and the chain re-sealed, or rows were renumbered",
                )
            ]
        return []
    if prev is None:
        return [
            Gap.at(
                row, "reordered", f"claims to be the first receipt (no previous) but follows seq {before.seq}"
            )
        ]
    if prev not in index:
        lost = (
            f" (seq {before.seq + 1} is missing)"
            if jump == 1
            else f" (seq {before.seq + 1}–{row.seq - 1} are missing)"
            if jump > 1
            else ""
        )
        return [
            Gap.at(
                row,
                "deleted",
                f"links to {prev}, which is not in the ledger: the receipt between seq {before.seq} and "
                f"seq {row.seq} was deleted or replaced{lost}",
            )
        ]
    return [
        Gap.at(
            row,
            "reordered",
            f"follows seq {before.seq} in the ledger, but its hash link names the receipt at seq "
            f"{rows[index[prev]].seq} ({short(prev)}): rows are out of order",
        )
    ]
