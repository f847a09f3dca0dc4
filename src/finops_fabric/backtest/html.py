"""A back-test as one self-contained HTML page (no scripts, no external resources): the totals,
a chart of flips per day and bars of fires gained and lost per rule (inline SVG), flips by type
and level, effects per recipient and ledger, the impact regions and the examples with both
reasons. Every string from O or from a transaction is escaped."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finops_fabric.canonical import write_bytes_atomic
from finops_fabric.errors import InputError, Location

AR = "APPROVE→REJECT"
RA = "REJECT→APPROVE"
RED, GREEN, GREY = "#d93025", "#34a853", "#9aa0a6"
CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #202124;
       max-width: 1200px; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .75rem; border-bottom: 1px solid #dadce0; padding-bottom: .25rem; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; overflow-wrap: anywhere; }
.summary { font-size: 1.15rem; font-weight: 600; padding: .9rem 1.1rem; border-radius: 8px;
           margin: 1rem 0; background: #fef7e0; border: 1px solid #f6d68a; }
.summary.bad { background: #fce8e6; border-color: #f4b4ae; color: #a50e0e; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { color: #5f6368; } dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; font-size: .92rem; }
th, td { text-align: left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid #dadce0; }
th { color: #5f6368; font-size: .85rem; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.APPROVE { color: #17663a; font-weight: 700; } .REJECT { color: #a50e0e; font-weight: 700; }
.legend i { display: inline-block; width: .8rem; height: .8rem; margin: 0 .3rem 0 1rem;
           vertical-align: -1px; }
figure { margin: .5rem 0 1.5rem; } figcaption { font-size: .85rem; color: #5f6368; }
"""


def e(x: object) -> str:
    return html.escape(str(x), quote=True)


def day_chart(per_day: Mapping[str, Mapping[str, int]]) -> str:
    """Flips per day as stacked bars (APPROVE→REJECT red, REJECT→APPROVE green)."""
    days = sorted(per_day)
    if not days:
        return '<p class="muted" id="per-day-none">The rows carry no timestamp: no per-day chart.</p>'
    width, height, pad = 960, 240, 40
    peak = max(max(per_day[d][AR] + per_day[d][RA] for d in days), 1)
    step = (width - 2 * pad) / len(days)
    bar = max(step * 0.8, 1.0)
    parts = [
        f'<svg id="per-day" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 40}" '
        'width="100%" role="img" aria-label="flips per day">',
        f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="{GREY}"/>',
        f'<text x="{pad - 6}" y="{pad}" text-anchor="end" font-size="11">{peak:,}</text>',
        f'<text x="{pad - 6}" y="{height}" text-anchor="end" font-size="11">0</text>',
    ]
    for i, d in enumerate(days):
        x = pad + i * step
        ar, ra = per_day[d][AR], per_day[d][RA]
        h_ar = (height - pad) * ar / peak
        h_ra = (height - pad) * ra / peak
        title = f"{d}: {per_day[d]['rows']:,} rows, {ar:,} {AR}, {ra:,} {RA}"
        parts.append(
            f'<g class="day"><title>{e(title)}</title>'
            f'<rect x="{x:.2f}" y="{height - h_ar:.2f}" width="{bar:.2f}" height="{h_ar:.2f}" fill="{RED}"/>'
            f'<rect x="{x:.2f}" y="{height - h_ar - h_ra:.2f}" width="{bar:.2f}" height="{h_ra:.2f}" '
            f'fill="{GREEN}"/></g>'
        )
    label_every = max(1, len(days) // 12)
    for i in range(0, len(days), label_every):
        x = pad + i * step + bar / 2
        parts.append(
            f'<text x="{x:.2f}" y="{height + 16}" text-anchor="middle" font-size="11">{e(days[i])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def rule_bars(by_rule: Mapping[str, Mapping[str, int]]) -> str:
    """Per rule: fires gained (red, right of the axis) and lost (green, left)."""
    rules = sorted(by_rule, key=lambda r: -(by_rule[r]["gained"] + by_rule[r]["lost"]))[:40]
    if not rules:
        return '<p id="per-rule-none">No rule fires more or less often.</p>'
    row_h, label_w, width = 26, 420, 960
    half = (width - label_w) / 2
    mid = label_w + half
    peak = max(max(by_rule[r]["gained"], by_rule[r]["lost"]) for r in rules) or 1
    height = row_h * len(rules) + 10
    parts = [
        f'<svg id="per-rule" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="fires gained and lost per rule">',
        f'<line x1="{mid}" y1="0" x2="{mid}" y2="{height}" stroke="{GREY}"/>',
    ]
    for i, r in enumerate(rules):
        y = i * row_h + 4
        g, lo = by_rule[r]["gained"], by_rule[r]["lost"]
        wg, wl = (half - 60) * g / peak, (half - 60) * lo / peak
        short = r.rsplit("#", 1)[-1] if "#" in r else r  # the rule's name; the full IRI on hover
        short = short if len(short) <= 56 else short[:53] + "…"
        parts.append(
            f'<g class="rule"><title>{e(r)}: fires {g:,} more, {lo:,} fewer</title>'
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12">{e(short)}</text>'
            f'<rect x="{mid - wl:.2f}" y="{y}" width="{wl:.2f}" height="{row_h - 8}" fill="{GREEN}"/>'
            f'<rect x="{mid:.2f}" y="{y}" width="{wg:.2f}" height="{row_h - 8}" fill="{RED}"/>'
            f'<text x="{mid + wg + 4:.2f}" y="{y + 14}" font-size="11">+{g:,}</text>'
            f'<text x="{mid - wl - 4:.2f}" y="{y + 14}" text-anchor="end" font-size="11">−{lo:,}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(head: Sequence[str], rows: Sequence[Sequence[object]], numeric_from: int = 1) -> str:
    out = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = "".join(
            f'<td class="n">{v:,}</td>' if i >= numeric_from and isinstance(v, int) else f"<td>{e(v)}</td>"
            for i, v in enumerate(r)
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def _decision(d: Mapping[str, Any]) -> str:
    reasons = "".join(
        f"<li><code>{e(f.get('rule'))}</code>{(': ' + e(f['reason'])) if f.get('reason') else ''}</li>"
        for f in d.get("fired", [])
    )
    return f'<span class="{e(d["decision"])}">{e(d["decision"])}</span><ul>{reasons}</ul>'


def render(doc: Mapping[str, Any]) -> str:
    flips = doc["flips"]
    bad = doc["reproducible"] is False
    if bad:
        headline = "NOT REPRODUCIBLE: the logged history is not reproduced by the enforcers that made it"
    else:
        headline = (
            f"{doc['rows']:,} rows, every one decided: {flips[AR]:,} {AR}, {flips[RA]:,} {RA} "
            f"(amount {doc['amount_flipped']}), {doc['changed_fired']:,} with other rules firing"
        )
    new = doc["new"]
    facts = [("O_new", new["ontology_hash"]), ("A_new", new["enforcer_hash"]), ("language", new["language"])]
    if doc["mode"] == "file":
        facts += [("O_old", doc["old"]["ontology_hash"]), ("A_old", doc["old"]["enforcer_hash"])]
        facts += [("data", f"{doc['data']['file']} ({doc['data']['format']}, {doc['data']['sha256']})")]
    else:
        data = doc["data"]
        facts += [
            ("data", f"the {data['env']} decision log, decisions {data['first_id']}–{data['last_id']}"),
            ("log", data["log"]["summary"]),
        ]
        facts += [(f"A ({x['rows']:,} decisions)", x["enforcer_hash"]) for x in doc["old"]["enforcers"]]
    facts += [
        ("unreadable rows", f"{doc['unreadable_count']:,}"),
        ("receipt", doc.get("receipt_hash") or "none"),
    ]
    checked = doc["checked_by"]
    facts.append(
        (
            "checked",
            f"{checked['rows_rechecked']:,} rows re-decided by the generated enforcers "
            f"({checked['near_threshold']:,} within {checked['within']} of a threshold), no disagreement",
        )
    )
    body = [
        f'<h1>Back-test</h1><div class="summary{" bad" if bad else ""}" id="headline">{e(headline)}</div>',
        "<dl>" + "".join(f"<dt>{e(k)}</dt><dd><code>{e(v)}</code></dd>" for k, v in facts) + "</dl>",
        '<h2>Flips per day</h2><figure><div class="legend">'
        f'<i style="background:{RED}"></i>{AR}<i style="background:{GREEN}"></i>{RA}</div>'
        f"{day_chart(doc['per_day'])}"
        f"<figcaption>{doc['rows_without_day']:,} rows without a timestamp</figcaption>"
        "</figure>",
        "<h2>Rules: fires gained and lost</h2><figure>"
        f"{rule_bars(doc['by_rule'])}<figcaption>right (red): fires more often under O_new; left (green): "
        "fewer</figcaption></figure>",
        "<h2>By type and level</h2>"
        + _table(
            ["type", "actor level", AR, RA, "other rules fired"],
            [[r["type"], r["actor_level"], r[AR], r[RA], r["changed_fired"]] for r in doc["by_type_level"]],
            numeric_from=2,
        ),
        "<h2>Notifications and audit entries</h2>"
        + _table(
            ["recipient / ledger", "gained", "lost"],
            [[f"notify {k}", v["gained"], v["lost"]] for k, v in doc["notifications"].items()]
            + [[f"audit {k}", v["gained"], v["lost"]] for k, v in doc["audit"].items()],
        ),
    ]
    regions = doc["regions"]
    if regions["available"]:
        body.append(
            "<h2>Impact regions</h2>"
            + _table(["region", "rows"], [[r["summary"], r["rows"]] for r in regions["regions"]])
        )
    if doc["mode"] == "history" and doc["fidelity"]["mismatch_examples"]:
        body.append(
            "<h2>Decisions not reproduced</h2>"
            + _table(
                ["id", "logged", "replayed"],
                [[m["id"], m["logged"], m["replayed"]] for m in doc["fidelity"]["mismatch_examples"]],
            )
        )
    ex_rows = [
        f"<tr><td>{e(x['group'])}</td><td>{e(x['row'])}</td>"
        f"<td><code>{e(json.dumps(x['transaction'], sort_keys=True, ensure_ascii=False))}</code></td>"
        f"<td>{_decision(x['old'])}</td><td>{_decision(x['new'])}</td></tr>"
        for x in doc["examples"]
    ]
    body.append(
        '<h2>Examples</h2><table id="examples"><tr><th>group</th><th>row</th><th>transaction</th>'
        "<th>old</th><th>new</th></tr>" + "".join(ex_rows) + "</table>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Back-test</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
        f"<body>{''.join(body)}</body></html>\n"
    )


def write_report(path: Path, doc: Mapping[str, Any]) -> None:
    try:
        write_bytes_atomic(path, render(doc).encode("utf-8"))
    except OSError as exc:
        raise InputError(
            f"cannot write the report {path}: {exc.strerror}",
            code="fabric.file_unwritable",
            location=Location(file=str(path)),
        ) from exc
