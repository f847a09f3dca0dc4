"""The HTML audit report, rendered by a real browser (headless Chromium): the summary reads as
text, a hostile rule label stays text (no markup, no script), the page needs nothing external."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from services import chromium, require_chromium

import finops_fabric
from finops_fabric.cli import main
from finops_fabric.daemon.runtime import Runtime
from finops_fabric.store import Store

EXAMPLE = Path(finops_fabric.__file__).parent / "examples" / "acme"
HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)> & "quoted"'
APPROVER = "alice <b>compliance</b>"


@pytest.fixture(autouse=True)
def _browser() -> None:
    require_chromium()  # skipped locally without it; a failure under CI


def run(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


class Page(HTMLParser):
    """The tags, attributes and text of the DOM Chromium dumps."""

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


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("report")
    home = root / "store"
    assert run("init", "--home", home)[0] == 0
    o0 = root / "O0"
    shutil.copytree(EXAMPLE, o0)
    o1 = root / "O1"
    shutil.copytree(EXAMPLE, o1)
    wires = (o1 / "wires.ttl").read_text()
    escaped = HOSTILE.replace("\\", "\\\\").replace('"', '\\"')
    wires = wires.replace('"Wires over $50k need L3 or above"', f'"{escaped}"')
    (o1 / "wires.ttl").write_text(wires.replace('"50000"^^xsd:decimal', '"60000"^^xsd:decimal'))
    for i, o in enumerate((o0, o1)):
        got = run("generate", "--home", home, f"--input={o}", f"--output={root / f'A{i}'}", "--json")
        assert got[0] == 0, got
    # compliance (a roster member with a name that is markup) approves O1; production runs A1;
    # an operator asks what production runs (an attestation, not a deployment)
    assert run("keygen", f"--out={root / 'alice'}")[0] == 0
    member = f"--member={APPROVER}={root / 'alice.pub'}"
    assert run("roster", "init", "--home", home, member, f"--key={root / 'alice.key'}")[0] == 0
    approval = f"--output={root / 'o1.approval.json'}"
    assert run("approve", "--home", home, f"--ontology={o1}", f"--key={root / 'alice.key'}", approval)[0] == 0
    production = Runtime(Store(home), "production")
    assert production.deploy(root / "A1", json.loads(got[1])["receipt_hash"]).ok
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run("receipt", "--home", home, "--deployment=production", f"--timestamp={later}")[0] == 0
    page = root / "audit.html"
    code, out, err = run("audit-trail", "--home", home, "--rebuild", f"--report={page}", "--json")
    assert code == 0, (out[-2000:], err)
    doc: dict[str, object] = json.loads(out)
    return page, doc


def test_report_is_self_contained_html(report: tuple[Path, dict[str, object]]) -> None:
    page, _ = report
    src = page.read_text()
    assert src.startswith("<!DOCTYPE html>")
    assert "<script" not in src and "<link" not in src and "@import" not in src
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", src)
    assert "&lt;script&gt;alert(&quot;pwned&quot;)" in src


def test_chromium_renders_summary_and_hostile_label_as_text(
    report: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    page, doc = report
    got = chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    assert got.returncode == 0, got.stderr[-2000:]
    dom = Page()
    dom.feed(got.stdout)
    text = " ".join(dom.text)
    assert doc["summary"] == (
        "2 policy changes (generations), 1 deployment, 1 attestation, 1 approval, 1 roster version, "
        "6 receipts, all verified"
    )
    assert str(doc["summary"]) in text
    assert HOSTILE in text  # shown to the reader, character for character
    assert "script" not in dom.tags and "img" not in dom.tags
    assert not any(name.startswith("on") for name, _ in dom.attrs)
    assert "fab:amountThreshold" in text and "60000" in text
    assert "reproduced" in text and "Tree head" in text
    # for the auditor: what production runs, approved by whom (the roster's name, as text)
    line = re.sub(r"\s+", " ", text)
    runs = r"production runs A sha256:\w+… \(O sha256:\w+… ?, approved by alice <b>compliance</b>\) since "
    assert re.search(runs, line), line[:2000]
    assert "b" not in dom.tags
    assert "Environment production now runs A" in line
    assert f"Approved by {APPROVER} (compliance roster v1" in line
    assert "Attests that environment production runs A" in line and "nothing was deployed" in line
    # full hashes live in title attributes for the reader to hover
    titles = [v for k, v in dom.attrs if k == "title"]
    assert any(v and v.startswith("sha256:") and len(v) == 71 for v in titles)


def test_chromium_screenshot(report: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    page, _ = report
    shot = tmp_path / "audit.png"
    got = chromium(tmp_path / "profile", "--window-size=1200,2000", f"--screenshot={shot}", page.as_uri())
    assert got.returncode == 0, got.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000
