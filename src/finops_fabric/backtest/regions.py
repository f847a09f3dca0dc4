"""Each changed row counted under the `mu impact` region that holds it.

A region states the decision on both sides, so a row is looked for only among the regions of
its own pair of decisions; membership is :func:`finops_fabric.analysis.region.contains`, the
impact document's own definition of a region."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class Regions:
    def __init__(self, regions: Sequence[Mapping[str, Any]], reading: str) -> None:
        self.reading = reading
        self.by_pair: dict[tuple[bool, bool], list[tuple[int, Mapping[str, Any]]]] = {}
        for i, r in enumerate(regions):
            pair = (r["old"]["decision"] == "REJECT", r["new"]["decision"] == "REJECT")
            self.by_pair.setdefault(pair, []).append((i, r["when"]))

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Regions:
        """The regions of an impact document (``mu impact --json``)."""
        return cls(doc.get("regions") or [], str(doc.get("amount_reading", "trimmed")))

    def find(self, tx: Mapping[str, Any], old_rejects: bool, new_rejects: bool) -> int | None:
        from finops_fabric.analysis.region import contains

        for i, when in self.by_pair.get((old_rejects, new_rejects), ()):
            if contains(when, tx, self.reading):
                return i
        return None
