"""The impact report, rendered by a real browser (headless Chromium): one self-contained page,
the regions and the pictures read as the DOM, a hostile type label stays text.

Without Chromium the tests skip (install it with `apt-get install -y chromium`); under CI=true
they fail instead, so CI never passes without having rendered the page."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)> & "quoted"'
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((b for b in (shutil.which(n) for n in BROWSERS) if b), None)


@pytest.fixture(autouse=True)
def _browser() -> None:
    if BROWSER is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no headless Chromium on PATH: the impact report was not rendered")
        pytest.skip("no headless Chromium on PATH (install it with `apt-get install -y chromium`)")


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert BROWSER is not None
    return subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture
def report(mu: Any, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    sides = []
    for name in ("t0", "t1"):
        o = tmp_path / name
        shutil.copytree(DATA / name, o)
        common = o / "common.ttl"
        escaped = HOSTILE.replace("\\", "\\\\").replace('"', '\\"')
        common.write_text(common.read_text().replace('rdfs:label "Purchase"', f'rdfs:label "{escaped}"'))
        sides.append(o)
    page = tmp_path / "impact.html"
    code, out, err = mu("impact", f"--old={sides[0]}", f"--new={sides[1]}", f"--report={page}", "--json")
    assert code == 1, (out[-2000:], err)
    return page, json.loads(out)


def test_the_page_is_self_contained(report: tuple[Path, dict[str, Any]]) -> None:
    page, _ = report
    src = page.read_text()
    assert src.startswith("<!DOCTYPE html>")
    assert "<script" not in src and "<link" not in src and "@import" not in src
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", src)
    assert "&lt;script&gt;alert(&quot;pwned&quot;)" in src


def test_chromium_renders_regions_pictures_and_hostile_text(
    report: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    page, doc = report
    got = chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    assert got.returncode == 0, got.stderr[-2000:]
    dom = Page()
    dom.feed(got.stdout)
    text = " ".join(dom.text)
    assert f"{len(doc['regions'])} regions of transactions whose outcome changes" in text
    for r in doc["regions"]:
        assert r["witness"]["id"] in text
    assert "REJECT → APPROVE (approval-purchase no longer fires" in text
    assert HOSTILE in text  # the type label, shown character for character
    assert "script" not in dom.tags and "img" not in dom.tags
    assert not any(name.startswith("on") for name, _ in dom.attrs)
    assert "svg" in dom.tags and dom.tags.count("rect") >= 2 * 7 * 3  # two panels, levels × amount cells
    assert "before (O_old)" in text and "after (O_new)" in text


def test_chromium_screenshot(report: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page, _ = report
    shot = tmp_path / "impact.png"
    got = chromium(tmp_path / "profile", "--window-size=1300,1600", f"--screenshot={shot}", page.as_uri())
    assert got.returncode == 0, got.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000
