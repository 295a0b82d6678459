"""README.html: the index a person reads first.

What each file holds and where it came from, plus the Art. 15(1) context (purposes,
recipients, retention, sources, rights, how to complain) from the processing register.
It holds no personal data values: only descriptions and counts.
"""

from __future__ import annotations

from html import escape
from typing import Any

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1a1a1a}table{border-collapse:collapse;width:100%}"
    "td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2rem}"
)


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def render_readme(
    manifest: dict[str, Any],
    register: dict[str, Any],
    titles: dict[str, tuple[str, str]],
    sources: dict[str, str],
) -> str:
    """``titles``: dataset -> (title, description); ``sources``: system -> source note."""
    m = manifest
    ctrl = register.get("controller", {})
    req = m["request"]
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f"<title>Your data from {escape(ctrl.get('name', 'us'))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Your data from {escape(ctrl.get('name', 'us'))}</h1>",
        f"<p>Request <code>{escape(req['id'])}</code>, {escape(req['legal_basis'])}, "
        f"data as of {escape(m['as_of'])}.</p>",
        f"<p><strong>{escape(m['statement'])}</strong></p>",
        "<h2>What is in this archive</h2><table><tr><th>File</th><th>What it holds</th>"
        "<th>Records</th><th>Where it came from</th></tr>",
    ]
    ds_sources: dict[str, list[str]] = {}
    for s in m["sources"]:
        if s["records"]:
            ds_sources.setdefault(s["dataset"], []).append(f"{s['system']}.{s['entity']}")
    for d in m["datasets"]:
        title, desc = titles.get(d["name"], (d["name"], ""))
        for f in d["files"]:
            parts.append(
                f"<tr><td><code>{escape(f)}</code></td><td><strong>{escape(title)}"
                f"</strong>: {escape(desc)}</td><td>{d['records']}</td>"
                f"<td>{escape(', '.join(ds_sources.get(d['name'], [])))}</td></tr>"
            )
    cf = m["customer_files"]
    if cf["count"]:
        parts.append(
            f"<tr><td><code>files/</code></td><td>Your files, as stored; listed with "
            f"their SHA-256 in <code>data/customer_object.*</code></td>"
            f"<td>{cf['count']} files, {cf['bytes']} bytes</td><td></td></tr>"
        )
    parts.append(
        "<tr><td><code>schemas/</code></td><td>The JSON Schemas each data file was checked "
        "against</td><td></td><td></td></tr><tr><td><code>datapackage.json</code></td><td>"
        "Machine-readable index (Frictionless Data Package) with each file's size and SHA-256"
        "</td><td></td><td></td></tr><tr><td><code>manifest.json</code></td><td>What was "
        "searched and found, what was withheld and why</td><td></td><td></td></tr></table>"
    )
    parts.append(
        "<p>Every data file comes in the formats you asked for (JSON, CSV, Parquet): "
        "the same records in each.</p>"
    )
    parts.append(
        "<h2>Systems we searched</h2><table><tr><th>System</th><th>Dataset</th><th>Result</th></tr>"
    )
    for s in m["sources"]:
        result = f"{s['records']} records" if s["status"] == "found" else "nothing held"
        parts.append(
            f"<tr><td>{escape(s['system'])}.{escape(s['entity'])}</td>"
            f"<td>{escape(s['dataset'])}</td><td>{escape(result)}</td></tr>"
        )
    parts.append("</table>")
    notes = {k: v for k, v in sources.items() if v}
    if notes:
        parts.append(
            "<h3>Data we did not collect from you</h3>"
            + _list([f"{k}: {v}" for k, v in sorted(notes.items())])
        )
    if m["withheld"]:
        parts.append(
            "<h2>What we withheld, and why</h2>"
            + _list(
                [f"{w['system']}.{w['entity']} {w['column']}: {w['reason']}" for w in m["withheld"]]
            )
        )
    if m["excluded"]:
        parts.append(
            "<h2>Left out of this portability copy</h2>"
            + _list(
                [
                    f"{x['system']}.{x['entity']} {x['field']} ({x['provenance']}): {x['reason']}"
                    for x in m["excluded"]
                ]
            )
        )
    if m["redactions"]["count"]:
        parts.append(
            f"<p>{m['redactions']['count']} mentions of other people were replaced: "
            f"{escape(m['redactions']['reason'])}</p>"
        )
    for n in m["notices"]:
        parts.append(f"<p><strong>Notice:</strong> {escape(n['text'])}</p>")
    parts.append(
        "<h2>How we use this data (GDPR Art. 15(1))</h2><table><tr><th>Data</th>"
        "<th>Purposes</th><th>Legal basis</th><th>Recipients</th><th>Kept for</th>"
        "<th>Source</th></tr>"
    )
    for d in m["datasets"]:
        r = register.get("datasets", {}).get(d["name"])
        if not r:
            continue
        parts.append(
            f"<tr><td>{escape(titles.get(d['name'], (d['name'], ''))[0])}</td>"
            f"<td>{_list(r.get('purposes', []))}</td><td>{escape(r.get('legal_basis', ''))}</td>"
            f"<td>{_list(r.get('recipients', []))}</td><td>{escape(r.get('retention', ''))}</td>"
            f"<td>{escape(r.get('source', ''))}</td></tr>"
        )
    parts.append("</table>")
    for key, heading in (
        ("transfers", "Transfers outside the EEA"),
        ("automated_decisions", "Automated decisions"),
        ("rights", "Your rights"),
        ("complaint", "How to complain"),
    ):
        if register.get(key):
            parts.append(f"<h2>{heading}</h2><p>{escape(' '.join(register[key].split()))}</p>")
    parts.append(f"<p>Contact: {escape(ctrl.get('dpo', ctrl.get('contact', '')))}</p>")
    parts.append(
        f"<footer><small>{escape(m['generated_by'])}, data map "
        f"{escape(m['datamap_version'])}</small></footer></body></html>\n"
    )
    return "\n".join(parts)
