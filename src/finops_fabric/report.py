"""The audit trail as one self-contained HTML page an auditor can read (or as its JSON).

The page has no external resources and no JavaScript: inline CSS only. It is a list of
sections (:data:`SECTIONS`, each a function of the audit document; a new section is one more
function in the list): the overview (the summary, the receipts counted by what they record, and
what each environment runs, from which O, approved by whom, since when), the gaps (highlighted),
the chain as a timeline of cards (label, time, shortened hashes with the full hash in a
``title`` attribute, verification status; for each change of O the rules added, removed and
changed with old → new values; the environment of each deployment, rollback and attestation;
the roster name of each approver: :data:`CARDS`), the rebuild of O from ΔO when it was asked
for, and the signed Merkle tree head. Every string that comes from a receipt, from O or from the
store is escaped (``html.escape``), so a hostile rule label stays text.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from finops_fabric.canonical import is_sha256, write_bytes_atomic
from finops_fabric.errors import InputError, Location
from finops_fabric.receipts import write_json_atomic

__all__ = ["CARDS", "SECTIONS", "Section", "render_html", "write_report"]

#: One section of the page: the audit document → its HTML ("" to leave it out).
Section = Callable[[dict[str, Any]], str]

CSS = """
:root { --ok: #17663a; --ok-bg: #e6f4ea; --bad: #a50e0e; --bad-bg: #fce8e6; --muted: #5f6368;
        --line: #dadce0; --stop: #8a5a00; --stop-bg: #fef7e0; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #202124;
       max-width: 1100px; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .75rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
h3 { font-size: 1rem; margin: 0; }
code, .hash { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .85em; }
.muted { color: var(--muted); }
.summary { font-size: 1.25rem; font-weight: 600; padding: .9rem 1.1rem; border-radius: 8px; margin: 1rem 0; }
.summary.ok { background: var(--ok-bg); color: var(--ok); border: 1px solid #a8dab5; }
.summary.bad { background: var(--bad-bg); color: var(--bad); border: 1px solid #f4b4ae; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { text-align: left; vertical-align: top; padding: .35rem .5rem; border-bottom: 1px solid var(--line); }
th { font-weight: 600; color: var(--muted); font-size: .85rem; }
.gaps li { background: var(--bad-bg); border-left: 4px solid var(--bad); padding: .5rem .75rem;
           margin: .4rem 0; list-style: none; overflow-wrap: anywhere; }
.gaps { padding: 0; }
.problem { font-weight: 600; color: var(--bad); }
ol.timeline { list-style: none; padding: 0; margin: 0; border-left: 3px solid var(--line); }
ol.timeline > li { position: relative; margin: 0 0 1rem 1.2rem; padding: .75rem 1rem;
                   border: 1px solid var(--line); border-radius: 8px; background: #fff; }
ol.timeline > li::before { content: ""; position: absolute; left: -1.75rem; top: 1.1rem;
                           width: .8rem; height: .8rem; border-radius: 50%; background: var(--ok);
                           border: 2px solid #fff; }
ol.timeline > li.failed { border-color: #f4b4ae; background: var(--bad-bg); }
ol.timeline > li.failed::before { background: var(--bad); }
ol.timeline > li.stop::before { background: var(--stop); }
.head { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: baseline; }
.kind { font-weight: 700; text-transform: uppercase; font-size: .8rem; letter-spacing: .04em;
        padding: .1rem .45rem; border-radius: 4px; background: #e8eaed; }
.kind.generation { background: #e8f0fe; color: #174ea6; }
.kind.rejection { background: var(--stop-bg); color: var(--stop); }
.kind.deployment, .kind.rollback { background: #e6f4ea; color: var(--ok); }
.kind.failed_deployment, .kind.failed_rollback { background: var(--bad-bg); color: var(--bad); }
.kind.attestation { background: #f3e8fd; color: #681da8; }
.kind.approval, .kind.roster { background: #fef7e0; color: #8a5a00; }
ul.envs { list-style: none; padding: 0; margin: .5rem 0 1rem; }
ul.envs li { padding: .5rem .75rem; border-left: 4px solid var(--ok); background: var(--ok-bg);
             margin: .3rem 0; overflow-wrap: anywhere; }
.card { margin: .35rem 0 0; }
.status { font-weight: 600; }
.status.ok { color: var(--ok); }
.status.bad { color: var(--bad); }
.meta { margin: .35rem 0 0; font-size: .9rem; }
.meta span { margin-right: 1.2rem; white-space: nowrap; }
.change { margin-top: .6rem; }
.added { color: var(--ok); }
.removed { color: var(--bad); }
ul.rules { margin: .25rem 0; padding-left: .2rem; list-style: none; }
ol.timeline > li.missing { border: 2px dashed var(--bad); background: var(--bad-bg); color: var(--bad);
                           font-weight: 600; }
ol.timeline > li.missing::before { background: #fff; border: 2px solid var(--bad); }
td.old { color: var(--bad); } td.new { color: var(--ok); }
.note { font-size: .9rem; color: var(--muted); margin: .3rem 0 0; }
.stopnote { background: var(--stop-bg); color: var(--stop); padding: .3rem .6rem; border-radius: 4px;
            margin-top: .4rem; }
footer { margin-top: 3rem; font-size: .8rem; color: var(--muted); }
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def hash_html(digest: object) -> str:
    """A hash shortened for reading, in full in the ``title`` attribute."""
    if digest is None:
        return '<span class="muted">none</span>'
    text = str(digest)
    shown = text[:15] + "…" if is_sha256(text) else text
    return f'<span class="hash" title="{esc(text)}">{esc(shown)}</span>'


def _value(value: object) -> str:
    if value is None:
        return '<span class="muted">(none)</span>'
    if isinstance(value, list | tuple):
        return esc(", ".join(str(v) for v in value)) if value else '<span class="muted">(none)</span>'
    if isinstance(value, dict):
        return esc(json.dumps(value, sort_keys=True, ensure_ascii=False))
    return esc(value)


def _rules_list(iris: Iterable[str], labels: dict[str, Any], cls: str, sign: str) -> str:
    items = []
    for iri in iris:
        label = labels.get(iri)
        extra = f' <span class="muted">— {esc(label)}</span>' if label else ""
        items.append(f'<li class="{cls}">{sign} <code>{esc(iri)}</code>{extra}</li>')
    return f'<ul class="rules">{"".join(items)}</ul>' if items else ""


def _change(t: dict[str, Any]) -> str:
    parts: list[str] = []
    if t.get("status") == "rejected":
        parts.append(
            f'<div class="stopnote">Rejected: {esc(t.get("reason") or "a gate failed")}. '
            f"No enforcer was made; the O in force stays {hash_html(t.get('from'))}."
            + (" Compliance override required." if t.get("compliance_override_required") else "")
            + "</div>"
        )
    else:
        valid = t.get("valid")
        o_line = (
            f"O {hash_html(t.get('from'))} → {hash_html(t.get('to'))}"
            if t.get("changed_o")
            else f"O unchanged ({hash_html(t.get('to'))})"
        )
        check = (
            '<span class="status ok">O ⊨ Σ, snapshot and ΔO present</span>'
            if valid
            else '<span class="status bad">transition NOT valid</span>'
        )
        parts.append(f'<p class="meta">{o_line} · {check}</p>')
        labels = t.get("labels") or {}
        added, removed, changed = t.get("added") or [], t.get("removed") or [], t.get("changed") or []
        if added:
            parts.append(f'<h3 class="added">Rules added ({len(added)})</h3>')
            parts.append(_rules_list(added, labels, "added", "+"))
        if removed:
            parts.append(f'<h3 class="removed">Rules removed ({len(removed)})</h3>')
            parts.append(_rules_list(removed, labels, "removed", "−"))
        if changed:
            rows = []
            for c in changed:
                fields = c.get("fields") or {}
                first = True
                for name, v in fields.items():
                    rule_cell = (
                        f'<td rowspan="{len(fields)}"><code>{esc(c.get("rule"))}</code>'
                        f'<br><span class="muted">{esc(c.get("label"))}</span></td>'
                        if first
                        else ""
                    )
                    first = False
                    rows.append(
                        f"<tr>{rule_cell}<td><code>{esc(name)}</code></td>"
                        f'<td class="old">{_value(v.get("old"))}</td><td>→</td>'
                        f'<td class="new">{_value(v.get("new"))}</td></tr>'
                    )
            parts.append(f"<h3>Rules changed ({len(changed)})</h3>")
            parts.append(
                "<table><thead><tr><th>rule</th><th>field</th><th>old</th><th></th><th>new</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>"
            )
        if t.get("changed_o") and not (added or removed or changed):
            parts.append('<p class="note">O changed, but no rule did (reference data or golden cases).</p>')
        if t.get("impact") is not None:
            from finops_fabric.analysis.html import change_impact_html

            parts.append(change_impact_html(t["impact"]))
    for note in t.get("notes") or []:
        if t.get("status") != "rejected":
            parts.append(f'<p class="note">{esc(note)}</p>')
    return f'<div class="change">{"".join(parts)}</div>'


def _detail(gap: dict[str, Any]) -> str:
    """A gap's message without its ``seq N (hash): `` prefix (the timeline shows where)."""
    message = str(gap.get("message") or "")
    if message.startswith(f"seq {gap.get('seq')} (") and "): " in message:
        return message.split("): ", 1)[1]
    return message


# --- cards: what each kind of receipt says, on its card in the timeline ---------------------------


def _switch_card(entry: dict[str, Any]) -> str:
    env, runs, cls = esc(entry.get("env")), hash_html(entry.get("runs")), str(entry.get("class"))
    if cls.startswith("failed_"):
        return (
            f'<p class="card status bad">Environment <strong>{env}</strong>: not switched '
            f"({esc(entry.get('reason'))}); it kept A {runs}.</p>"
        )
    return f'<p class="card">Environment <strong>{env}</strong> now runs A {runs}.</p>'


def _attestation_card(entry: dict[str, Any]) -> str:
    return (
        f'<p class="card">Attests that environment <strong>{esc(entry.get("env"))}</strong> runs A '
        f"{hash_html(entry.get('runs'))} as of {esc(entry.get('as_of'))} (a query of what runs; "
        "nothing was deployed).</p>"
    )


def _approval_card(entry: dict[str, Any]) -> str:
    a = entry.get("approver") or {}
    what = (
        f"an override of the invariant <code>{esc(a.get('override'))}</code> for O"
        if a.get("override")
        else "O"
    )
    if a.get("verified"):
        who = (
            f"<strong>{esc(a.get('name'))}</strong> "
            f'<span class="muted">(compliance roster v{esc(a.get("roster_version"))}, key '
            f"{hash_html(a.get('keyid'))})</span>"
        )
    else:
        who = (
            f'<span class="status bad">key {hash_html(a.get("keyid"))}, NOT a verified roster member: '
            f"{esc(a.get('problem'))}</span>"
        )
    return f'<p class="card">Approved by {who}: {what} {hash_html(a.get("ontology_hash"))}.</p>'


#: Receipt class → its card's own lines (see :mod:`finops_fabric.audit.overview`).
CARDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "deployment": _switch_card,
    "rollback": _switch_card,
    "failed_deployment": _switch_card,
    "failed_rollback": _switch_card,
    "attestation": _attestation_card,
    "approval": _approval_card,
}


def _entry(entry: dict[str, Any], t: dict[str, Any] | None, gaps: list[dict[str, Any]]) -> str:
    seq, kind, ok = (
        entry.get("seq"),
        str(entry.get("class") or entry.get("kind")),
        bool(entry.get("verified")),
    )
    label = str(entry.get("label") or kind)
    cls = "failed" if not ok else ("stop" if kind == "rejection" else "")
    status = (
        '<span class="status ok">✓ verified</span>'
        if ok
        else '<span class="status bad">✗ ' + esc(", ".join(entry.get("problems") or [])) + "</span>"
    )
    signers = entry.get("signed_by") or []
    signed = ", ".join(hash_html(k) for k in signers) or '<span class="muted">no trusted key</span>'
    meta = [
        f"<span>receipt {hash_html(entry.get('receipt_hash'))}</span>",
        f"<span>previous {hash_html(entry.get('previous_receipt_hash'))}</span>",
    ]
    if entry.get("ontology_hash"):
        meta.append(f"<span>O {hash_html(entry.get('ontology_hash'))}</span>")
    if entry.get("enforcer_hash"):
        meta.append(f"<span>A {hash_html(entry.get('enforcer_hash'))}</span>")
    meta.append(f"<span>signed by {signed}</span>")
    problems = "".join(f'<li class="problem">✗ {esc(_detail(g))}</li>' for g in gaps)
    return (
        f'<li class="{cls}" id="seq-{esc(seq)}"><div class="head"><strong>seq {esc(seq)}</strong>'
        f'<span class="kind {esc(kind)}">{esc(label)}</span><span>{esc(entry.get("time") or "")}</span>'
        f'{status}</div><p class="meta">{"".join(meta)}</p>'
        + (CARDS[kind](entry) if kind in CARDS else "")
        + (f'<ul class="rules">{problems}</ul>' if problems else "")
        + (_change(t) if t else "")
        + "</li>"
    )


def _timeline(doc: dict[str, Any]) -> str:
    by_seq = {t.get("seq"): t for t in doc.get("transitions") or []}
    gaps_by_seq: dict[Any, list[dict[str, Any]]] = {}
    for g in doc.get("gaps") or []:
        gaps_by_seq.setdefault(g.get("seq"), []).append(g)
    items = []
    for entry in doc.get("chain") or []:
        gaps = gaps_by_seq.get(entry.get("seq"), [])
        for g in gaps:
            if g.get("problem") == "deleted":
                items.append(f'<li class="missing">✗ Missing receipt(s) here: {esc(_detail(g))}</li>')
        items.append(_entry(entry, by_seq.get(entry.get("seq")), gaps))
    for g in gaps_by_seq.get(None, []):
        if g.get("problem") == "truncated":
            items.append(f'<li class="missing">✗ Missing receipt(s) at the end: {esc(g.get("message"))}</li>')
    if not items:
        return '<p class="muted">The ledger holds no receipts in this range.</p>'
    return f'<ol class="timeline">{"".join(items)}</ol>'


def _gaps(doc: dict[str, Any]) -> str:
    gaps = doc.get("gaps") or []
    if not gaps:
        return (
            '<p class="status ok">No gaps: every receipt is present, unaltered, '
            "signed by a trusted key and linked.</p>"
        )
    items = "".join(
        f'<li><span class="problem">{esc(g.get("problem"))}</span>'
        + (
            f' at <a href="#seq-{esc(g.get("seq"))}">seq {esc(g.get("seq"))}</a>'
            if g.get("seq") is not None
            else ""
        )
        + (f" {hash_html(g.get('receipt_hash'))}" if g.get("receipt_hash") else "")
        + f"<br>{esc(g.get('message'))}</li>"
        for g in gaps
    )
    return f'<ul class="gaps">{items}</ul>'


def _rebuild(doc: dict[str, Any]) -> str:
    steps = doc.get("rebuild")
    if steps is None:
        return ""
    rows = "".join(
        f"<tr><td>seq {esc(s.get('seq'))}</td><td>{hash_html(s.get('base'))}</td>"
        f"<td>+{esc(s.get('added', '?'))} −{esc(s.get('removed', '?'))}</td>"
        f"<td>{hash_html(s.get('ontology_hash'))}</td>"
        + (
            f'<td class="status ok">✓ reproduced ({esc(s.get("method"))})</td>'
            if s.get("reproduced")
            else f'<td class="status bad">✗ {esc(s.get("message"))}</td>'
        )
        + "</tr>"
        for s in steps
    )
    return (
        "<h2>O rebuilt from ΔO</h2><p>Each generation's ΔO applied to the O it was taken against; the "
        "result must hash to the receipted hash(O).</p><table><thead><tr><th>step</th><th>base O</th>"
        "<th>ΔO lines</th><th>receipted hash(O)</th><th>result</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _tree_head(doc: dict[str, Any]) -> str:
    head = doc.get("tree_head")
    parts = []
    if head:
        sigs = head.get("signatures") or []
        signed = ", ".join(hash_html(s.get("keyid")) for s in sigs) or '<span class="muted">unsigned</span>'
        parts.append(
            '<dl class="facts">'
            f"<dt>tree size</dt><dd>{esc(head.get('tree_size'))} receipts</dd>"
            f"<dt>root hash</dt><dd><code>{esc(head.get('root_hash'))}</code></dd>"
            f"<dt>timestamp</dt><dd>{esc(head.get('timestamp'))}</dd>"
            f"<dt>signed by</dt><dd>{signed}</dd></dl>"
            '<p class="note">RFC 9162 Merkle tree over the ledger\'s receipt hashes in order. Keep this '
            "signed tree head: a later audit given it proves nothing was removed or rewritten since.</p>"
        )
    inc = doc.get("inclusion")
    if inc:
        ok = inc.get("verified")
        parts.append(
            f"<p>Inclusion of {hash_html(inc.get('receipt_hash'))}: "
            + (
                f'<span class="status ok">✓ proven (leaf {esc(inc.get("leaf_index"))} of '
                f"{esc(inc.get('tree_size'))}, path of {len(inc.get('audit_path') or [])} hashes)</span>"
                if ok
                else '<span class="status bad">✗ not in the ledger</span>'
            )
            + "</p>"
        )
    con = doc.get("consistency")
    if con:
        cls = "ok" if con.get("consistent") else "bad"
        parts.append(
            "<p>Consistency with the earlier tree head: "
            f'<span class="status {cls}">{esc(con.get("message"))}</span></p>'
        )
    return "<h2>Tree head</h2>" + "".join(parts) if parts else ""


def _environments(doc: dict[str, Any]) -> str:
    """ "production runs A … (O …, approved by …) since …", for each environment deployed to."""
    items = []
    for e in doc.get("environments") or []:
        names = e.get("approved_by") or []
        approved = (
            "approved by " + esc(", ".join(names))
            if names
            else '<span class="muted">not approved by the compliance roster</span>'
        )
        items.append(
            f"<li><strong>{esc(e.get('env'))}</strong> runs A {hash_html(e.get('enforcer_hash'))} "
            f"(O {hash_html(e.get('ontology_hash'))}, {approved}) since {esc(e.get('since'))} "
            f'<span class="muted">({esc(e.get("by"))} <a href="#seq-{esc(e.get("seq"))}">seq '
            f"{esc(e.get('seq'))}</a>)</span></li>"
        )
    return f'<ul class="envs">{"".join(items)}</ul>' if items else ""


NONE = '<span class="muted">none</span>'


def _overview(doc: dict[str, Any]) -> str:
    ok = bool(doc.get("verified"))
    ledger = doc.get("ledger") or {}
    rng = doc.get("range") or {}
    trust = doc.get("trust") or {}
    keys = ", ".join(hash_html(k.get("keyid")) for k in trust.get("keys") or []) or "none"
    kinds = ", ".join(f"{esc(k.replace('_', ' '))}: {esc(n)}" for k, n in (doc.get("by_kind") or {}).items())
    return (
        "<header><h1>Audit trail</h1>"
        f'<p class="muted">Ledger <code>{esc(ledger.get("path"))}</code></p></header>'
        f'<div class="summary {"ok" if ok else "bad"}">{"✓" if ok else "✗"} {esc(doc.get("summary"))}</div>'
        + _environments(doc)
        + '<dl class="facts">'
        f"<dt>receipts checked</dt><dd>{esc(doc.get('receipts'))} of {esc(ledger.get('size'))} in the ledger"
        f" (seq {esc(rng.get('first_seq'))} to {esc(rng.get('last_seq'))})</dd>"
        f"<dt>policy changes</dt><dd>{esc(doc.get('changes'))} "
        '<span class="muted">(generations that changed hash(O); rejected attempts are not changes)'
        "</span></dd>"
        f"<dt>receipts by kind</dt><dd>{kinds or NONE}</dd>"
        f'<dt>trusted keys</dt><dd>{keys} <span class="muted">({esc(trust.get("source"))})</span></dd>'
        "</dl>"
    )


def _gaps_section(doc: dict[str, Any]) -> str:
    return "<h2>Gaps</h2>" + _gaps(doc)


def _chain_section(doc: dict[str, Any]) -> str:
    return "<h2>The chain</h2>" + _timeline(doc)


#: The page, top to bottom.
SECTIONS: list[Section] = [_overview, _gaps_section, _chain_section, _rebuild, _tree_head]


def render_html(doc: dict[str, Any], sections: Sequence[Section] = SECTIONS) -> str:
    """The audit document (``AuditResult.to_dict()``) as one HTML page, section by section."""
    body = "".join(section(doc) for section in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Audit trail — {esc(doc.get('summary'))}</title><style>{CSS}</style></head>"
        f"<body>{body}<footer>Written by mu audit-trail. Hashes are shortened; hover for the full value. "
        "The JSON form of this report (<code>--report=FILE.json</code>) carries every value in full.</footer>"
        "</body></html>\n"
    )


def write_report(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write the report atomically: HTML for ``.html``/``.htm``, JSON for ``.json``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        return write_json_atomic(p, doc)
    if suffix not in (".html", ".htm"):
        raise InputError(
            f"--report={p}: the file must end in .html or .json",
            code="cli.usage",
            location=Location(file=str(p)),
        )
    try:
        return write_bytes_atomic(p, render_html(doc).encode("utf-8"))
    except OSError as exc:
        raise InputError(
            f"cannot write {p}: {exc.strerror or exc}",
            code="fabric.file_unwritable",
            location=Location(file=str(p)),
        ) from exc
