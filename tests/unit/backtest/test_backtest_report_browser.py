"""The back-test report rendered by a real browser (headless Chromium): one self-contained page
whose per-day chart and per-rule bars are inline SVG, read back from the DOM; a hostile value in
a transaction stays text."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from harness import changed_example, copy_example
from services import chromium, require_chromium

from finops_fabric.backtest.simulate import transactions

HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)> & "quoted"'


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_renders_charts_as_svg_and_keeps_values_as_text(mu: Any, tmp_path: Path) -> None:
    require_chromium()
    old, new = copy_example(tmp_path, "O"), changed_example(tmp_path, "O2")
    lines = []
    for i, tx in enumerate(transactions(600, seed=5)):
        tx["timestamp"] = f"2026-11-{1 + i % 4:02d}T08:00:00Z"
        if i < 40:  # flipped by the change: the hostile value shows in the examples
            tx.update(type="wire", amount="1500000.00", actor_level="L3", id=f"{HOSTILE}-{i}")
            tx["attributes"] = {"country": "US", "vendor_risk": "low", "note": HOSTILE}
        lines.append(json.dumps(tx, default=str))
    data = tmp_path / "tx.jsonl"
    data.write_text("\n".join(lines) + "\n")
    report = tmp_path / "bt.html"
    doc = mu.json("backtest", f"--old={old}", f"--new={new}", f"--transactions={data}", f"--report={report}")
    assert doc["flips"]["REJECT→APPROVE"] >= 40
    proc = chromium(tmp_path / "profile", "--dump-dom", report.as_uri())
    assert proc.returncode == 0, proc.stderr
    page = Page()
    page.feed(proc.stdout)
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "img" not in tags
    assert not any(a.get("src") or a.get("href") for _, a in page.tags)  # self-contained
    svgs = {a.get("id") for t, a in page.tags if t == "svg"}
    assert {"per-day", "per-rule"} <= svgs
    days = [a for t, a in page.tags if t == "g" and a.get("class") == "day"]
    assert len(days) == len(doc["per_day"]) == 4
    rules = [a for t, a in page.tags if t == "g" and a.get("class") == "rule"]
    assert len(rules) == len(doc["by_rule"])
    text = "".join(page.text)
    assert json.dumps(HOSTILE) in text  # the transaction as JSON, shown as text
    assert f"{doc['rows']:,} rows" in text
