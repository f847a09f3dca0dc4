"""The impact of a change as one self-contained HTML page (no scripts, no external resources):
both policies, a picture per transaction type (the amount axis against the authority levels,
coloured by decision before and after, the cells that change outlined), and the regions as a
table with their outcome before and after, effects and witness. Every string from O or from a
transaction is escaped, so a hostile label stays text.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finops_fabric.analysis.grid import APPROVE, MIXED, REJECT, Grid, decision_grid
from finops_fabric.analysis.impact import Impact
from finops_fabric.analysis.space import Side
from finops_fabric.canonical import write_bytes_atomic
from finops_fabric.errors import InputError, Location

COLOURS = {APPROVE: "#34a853", REJECT: "#d93025", MIXED: "#f9ab00"}
CSS = """
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #202124;
       max-width: 1200px; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .75rem; border-bottom: 1px solid #dadce0; padding-bottom: .25rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .3rem; }
code, .hash { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; }
.summary { font-size: 1.2rem; font-weight: 600; padding: .9rem 1.1rem; border-radius: 8px; margin: 1rem 0; }
.summary.same { background: #e6f4ea; color: #17663a; border: 1px solid #a8dab5; }
.summary.differs { background: #fef7e0; color: #8a5a00; border: 1px solid #f6d68a; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.facts dt { color: #5f6368; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; font-size: .92rem; }
th, td { text-align: left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid #dadce0; }
th { font-weight: 600; color: #5f6368; font-size: .85rem; }
td.when code, td.witness code { white-space: pre-wrap; overflow-wrap: anywhere; }
.decision { font-weight: 700; white-space: nowrap; }
.APPROVE { color: #17663a; } .REJECT { color: #a50e0e; }
.legend span { display: inline-block; margin-right: 1.2rem; }
.legend i { display: inline-block; width: .9rem; height: .9rem; vertical-align: -2px; margin-right: .3rem;
            border-radius: 2px; }
.muted { color: #5f6368; }
figure { margin: .5rem 0 1.5rem; }
figcaption { font-size: .85rem; color: #5f6368; }
footer { margin-top: 3rem; font-size: .8rem; color: #5f6368; }
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _panel(g: Grid, cells: list[list[str]], x0: int, title: str, outline: bool) -> list[str]:
    cw, ch, top = max(8, min(60, 520 // max(1, len(g.columns)))), 22, 28
    out = [f'<text x="{x0}" y="16" font-size="13" font-weight="600">{esc(title)}</text>']
    for r, level in enumerate(g.levels):
        y = top + r * ch
        out.append(f'<text x="{x0 - 6}" y="{y + 15}" font-size="11" text-anchor="end">{esc(level)}</text>')
        for c, value in enumerate(cells[r]):
            x = x0 + c * cw
            changed = outline and g.changed(r, c)
            stroke = (
                ' stroke="#202124" stroke-width="2.5"' if changed else ' stroke="#ffffff" stroke-width="1"'
            )
            tip = f"{level}, {g.columns[c][0]}: {value}"
            out.append(
                f'<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="{COLOURS[value]}"{stroke}>'
                f"<title>{esc(tip)}</title></rect>"
            )
    step = max(1, len(g.columns) // 8)
    for c in range(0, len(g.columns), step):
        lx = x0 + c * cw + cw // 2
        ly = top + len(g.levels) * ch + 12
        turn = f"rotate(-35 {lx} {ly})"
        out.append(
            f'<text x="{lx}" y="{ly}" font-size="9" text-anchor="end" transform="{turn}">'
            f"{esc(g.columns[c][0])}</text>"
        )
    return out


def grid_svg(g: Grid) -> str:
    """Before and after side by side, as inline SVG."""
    cw = max(8, min(60, 520 // max(1, len(g.columns))))
    width = len(g.columns) * cw
    left = 90
    height = 28 + len(g.levels) * 22 + 90
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" role="img"']
    total = left + width + left + width + 20
    parts.append(
        f' width="{total}" height="{height}" viewBox="0 0 {total} {height}"'
        ' font-family="system-ui, sans-serif">'
    )
    parts.append(
        f"<title>{esc(g.type_code)}: decision by amount and authority level, before and after</title>"
    )
    parts += _panel(g, g.old, left, "before (O_old)", False)
    parts += _panel(g, g.new, left + width + left, "after (O_new)", True)
    parts.append("</svg>")
    return "".join(parts)


def _json(value: object) -> str:
    return esc(json.dumps(value, sort_keys=True, default=str, ensure_ascii=False))


def _effects(r: dict[str, Any]) -> str:
    e = r["effects"]
    items = [f"+ notify {esc(x['recipient'])}" for x in e["notified_added"]]
    items += [f"− notify {esc(x['recipient'])}" for x in e["notified_removed"]]
    items += [f"+ audit {esc(x['ledger'])} {esc(','.join(x['flags']))}" for x in e["audit_added"]]
    items += [f"− audit {esc(x['ledger'])} {esc(','.join(x['flags']))}" for x in e["audit_removed"]]
    return "<br>".join(items) or '<span class="muted">—</span>'


def _rules(names: Sequence[str], partial: Sequence[str]) -> str:
    from finops_fabric.analysis.summary import short

    return "<br>".join(
        f'<code title="{esc(n)}">{esc(short(n))}</code>'
        + (" <span class='muted'>(in part)</span>" if n in partial else "")
        for n in names
    )


def _regions(doc: dict[str, Any]) -> str:
    rows = []
    for r in doc["regions"]:
        old, new = r["old"], r["new"]
        partial = r.get("fired_in_part") or []
        rows.append(
            f'<tr id="{esc(r["witness"]["id"])}"><td>{esc(r["witness"]["id"])}</td>'
            f"<td>{esc(r['summary'])}</td>"
            f'<td class="when"><code>{_json(r["when"])}</code></td>'
            f'<td><span class="decision {esc(old["decision"])}">{esc(old["decision"])}</span><br>'
            f"{_rules(old['fired'], partial)}</td>"
            f'<td><span class="decision {esc(new["decision"])}">{esc(new["decision"])}</span><br>'
            f"{_rules(new['fired'], partial)}</td>"
            f"<td>{_effects(r)}</td>"
            f'<td class="witness"><code>{_json(r["witness"])}</code></td></tr>'
        )
    return (
        "<table><thead><tr><th>#</th><th>transactions</th><th>when</th><th>before</th><th>after</th>"
        f"<th>effects</th><th>witness</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def change_impact_html(imp: dict[str, Any]) -> str:
    """One change's impact inside the audit report: its regions, or why there are none."""
    if imp.get("error"):
        return f'<p class="note">Impact not computed: {esc(imp["error"])}</p>'
    if imp.get("equivalent"):
        return '<p class="note">Impact: equivalent (every transaction is decided exactly as before).</p>'
    rows = "".join(
        f"<tr><td>{esc(r['summary'])}</td><td><code>{_json(r['witness'])}</code></td></tr>"
        for r in imp.get("regions") or []
    )
    total = imp.get("regions_total", 0)
    shown = len(imp.get("regions") or [])
    more = f" (the first {shown} shown)" if shown < total else ""
    defects = imp.get("defects") or []
    warn = (
        f'<p class="problem">✗ {len(defects)} witness(es) not decided as stated: '
        f"{esc(defects[0]['problem'])}</p>"
        if defects
        else ""
    )
    return (
        f"<h3>Impact: {esc(total)} region(s) of transactions whose outcome changed{esc(more)}</h3>{warn}"
        "<table><thead><tr><th>transactions</th><th>witness</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def render_impact(doc: dict[str, Any], result: Impact | None = None) -> str:
    """The page for an impact document; ``result`` (when given) adds the pictures."""
    same = bool(doc["equivalent"])
    n = len(doc["regions"])
    headline = (
        "Equivalent: every transaction gets the same decision, fired rules, notifications and audit entries"
        if same
        else f"{n} region{'s' if n != 1 else ''} of transactions whose outcome changes"
    )

    def side(s: dict[str, Any]) -> str:
        gen = s.get("generator") or {}
        return (
            f"<code>{esc(s['ontology_hash'])}</code> "
            f'<span class="muted">(generator v{esc(gen.get("version", "?"))}, '
            f"language {esc(s['language'])}{', ' + esc(s['source']) if s.get('source') else ''})</span>"
        )

    checked = doc.get("checked_by") or {}
    body = [
        "<header><h1>Impact of a policy change</h1></header>",
        f'<div class="summary {"same" if same else "differs"}">{esc(headline)}</div>',
        '<dl class="facts">',
        f"<dt>O_old</dt><dd>{side(doc['old'])}</dd>",
        f"<dt>O_new</dt><dd>{side(doc['new'])}</dd>",
        f"<dt>amount reading</dt><dd>{esc(doc.get('amount_reading'))}</dd>",
        f"<dt>witnesses</dt><dd>{esc(checked.get('witnesses', 0))} decided by both generated enforcers "
        "and the reference interpreter of each side</dd></dl>",
    ]
    if result is not None and not same:
        body.append("<h2>Decisions by amount and authority level</h2>")
        body.append(
            '<p class="legend">'
            + "".join(f'<span><i style="background:{c}"></i>{esc(k)}</span>' for k, c in COLOURS.items())
            + '<span class="muted">mixed: other fields decide; '
            + "outlined: the decision there changes</span></p>"
        )
        sides = (Side(result.old.policy, result.old.language), Side(result.new.policy, result.new.language))
        declared = sorted({t.code for p in (result.old.policy, result.new.policy) for t in p.types})
        named = [r["when"].get("type") for r in doc["regions"]]
        codes = (
            declared if any(c is None for c in named) else sorted({t for c in named for t in c.get("in", [])})
        )
        for code in codes[:12]:
            g = decision_grid(*sides, code)
            if g is None:
                continue
            body.append(
                f"<figure><h3>{esc(code)}</h3>{grid_svg(g)}<figcaption>Columns: amount cells cut at the "
                "thresholds and compared amounts of both policies; rows: authority levels."
                "</figcaption></figure>"
            )
    if not same:
        body.append("<h2>Regions</h2>")
        body.append(_regions(doc))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Impact — {esc(headline)}</title><style>{CSS}</style></head><body>{''.join(body)}"
        "<footer>Written by mu impact. The regions are disjoint and cover exactly the transactions whose "
        "decision, fired rules, notifications or audit entries differ; "
        "the JSON form (--json) carries every value."
        "</footer></body></html>\n"
    )


def write_impact_report(
    path: str | os.PathLike[str], doc: dict[str, Any], result: Impact | None = None
) -> Path:
    p = Path(path)
    try:
        return write_bytes_atomic(p, render_impact(doc, result).encode("utf-8"))
    except OSError as exc:
        raise InputError(
            f"cannot write {p}: {exc.strerror or exc}",
            code="fabric.file_unwritable",
            location=Location(file=str(p)),
        ) from exc
