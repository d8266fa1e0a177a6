"""The HTML report: one self-contained static folder (``index.html`` + SVG figures) that opens
offline from the file system, no server and no network (no CDN, no web font).

What it shows, all derived from the stored records:

- the run: suite, cells, ``--set`` overrides, mtbench version;
- **findings**: every diagnostic finding of every cell (severity, check, message, the numbers
  it invalidates) and the ``†`` legend of :func:`mtbench.report.legend`;
- **the table** (seeds aggregated, :func:`mtbench.report.aggregate_table`), as the console and
  Markdown show it (each figure with its CI, ``†`` on invalidated numbers, gates), sortable by
  clicking a column header (numbers sort by value, missing values last);
- **figures** (:data:`mtbench.plots.PLOTS`, SVG with text kept as text): headline metrics with
  CI error bars, accuracy vs latency and vs parameters with the CI-aware Pareto front, and
  per-cell small multiples of loss curves, task weights, gradient cosine and per-stage scores;
- **provenance** of each cell: hash, status, every key of ``record["env"]`` (and of
  ``record["provenance"]`` when a record has one; unknown keys are shown, never required), the
  overrides and the resolved config.

Plotting library: matplotlib (a dependency already), not plotly or altair/vega-lite: the same
figures as ``report.md``'s PNGs, a few tens of kB of SVG per figure instead of 3-4 MB of
JavaScript inlined into every page to stay offline, deterministic output that diffs and
archives well as a CI artifact, and nothing to execute for a reader. What it gives up is
hover and zoom; every number a figure shows is in the table.
"""

from __future__ import annotations

import html
import json
import math
import numbers
from pathlib import Path

import pandas as pd

from mtbench import __version__
from mtbench.report import (MARK, aggregate_table, build_frame, digits_of, display_frame, flagged, gates_of,
                            legend, metric_of, overrides_of)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d1d1f;max-width:1800px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0}th.sorted-asc::after{content:" \\25B2"}
th.sorted-desc::after{content:" \\25BC"}td.text{text-align:left}td.marked{background:#fff3cd}
td.fail{background:#f8d7da}td.moot{background:#fff3cd}td.pass{background:#d4edda}
.error{color:#a40000;font-weight:600}.warning{color:#8a6d00;font-weight:600}.info{color:#555}
figure{margin:12px 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-weight:600}
details{margin:4px 0}pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:11px}
.wide{overflow-x:auto}.side{display:flex;gap:24px;align-items:flex-start}.side>section{min-width:0}td.text{white-space:nowrap}
"""

#: click a header to sort (numbers by data-sort value, missing values last); a second click reverses
_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var desc = th.classList.contains("sorted-asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
      th.classList.add(desc ? "sorted-desc" : "sorted-asc");
      var body = table.tBodies[0], rows = Array.from(body.rows);
      function key(row) { var c = row.cells[col]; return c.dataset.sort !== undefined ? c.dataset.sort : c.textContent; }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return desc ? -r : r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  document.body.dataset.figuresLoaded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length
    + "/" + imgs.length;
});
"""


def _e(v) -> str:
    return html.escape(str(v))


def _table(frame: pd.DataFrame, records: list[dict]) -> str:
    """The sortable table: displayed text per cell, the raw number in ``data-sort``, marked
    numbers highlighted with their checks in a tooltip, gate cells coloured."""
    shown = display_frame(frame)
    digits, metric = digits_of(records), metric_of(records)
    head = "".join(f"<th>{_e(c)}</th>" for c in shown.columns)
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        flags = flagged(row)
        tds = []
        for col in shown.columns:
            text, raw = shown.iloc[i][col], row.get(col)
            attrs, cls = "", []
            if col in digits and isinstance(raw, numbers.Real) and math.isfinite(raw):
                attrs = f' data-sort="{float(raw)!r}"'
            elif text is None:
                attrs = ' data-sort=""'
            else:
                cls.append("text")
            checks = flags.get(metric.get(col), [])
            if checks and text is not None:
                cls.append("marked")
                attrs += f' title="{_e("invalidated by: " + ", ".join(checks))}"'
            if col == "gates" and text:
                cls.append("fail" if text.startswith("FAIL") else "moot" if "not meaningful" in text else
                           "pass" if text == "pass" else "")
            cls_attr = f' class="{" ".join(c for c in cls if c)}"' if any(cls) else ""
            tds.append(f"<td{cls_attr}{attrs}>{_e(text if text is not None else '-')}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<div class="wide"><table class="sortable" id="results"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _findings(records: list[dict], frame: pd.DataFrame) -> str:
    """A summary line (counts by severity and check), then each cell's findings in a
    collapsible block, open when the cell failed or has an ``error`` finding."""
    blocks, counts = [], {}
    for r in records:
        items = []
        for f in r.get("diagnostics") or []:
            sev = f.get("severity", "info")
            counts.setdefault(sev, {}).setdefault(f.get("check"), 0)
            counts[sev][f.get("check")] += 1
            inv = f" <em>invalidates: {_e(', '.join(f['invalidates']))}</em>" if f.get("invalidates") else ""
            items.append(f'<li><span class="{_e(sev)}">[{_e(sev)}]</span> <b>{_e(f.get("check"))}</b>: '
                         f'{_e(f.get("message", ""))}{inv}</li>')
        if r.get("status") != "ok":
            items.append(f'<li><span class="error">[failed]</span> {_e(r.get("reason"))}</li>')
        if items:
            severe = r.get("status") != "ok" or any(f.get("severity") == "error" for f in r.get("diagnostics") or [])
            blocks.append(f'<details{" open" if severe else ""}><summary><code>{_e(r.get("label"))}</code>: '
                          f'{len(items)}</summary><ul>{"".join(items)}</ul></details>')
    summary = "; ".join(f'<span class="{_e(sev)}">{sum(c.values())} {_e(sev)}</span> ('
                        + ", ".join(f"{_e(k)} &times;{n}" for k, n in c.items()) + ")"
                        for sev, c in sorted(counts.items()))
    text = legend(frame)
    note = f"<p>{_e(text.splitlines()[0])}</p>" if text else ""
    body = f"<p>{summary or 'No findings.'}</p>{note}{''.join(blocks)}"
    return f'<section id="findings"><h2>Findings</h2>{body}</section>'


def _provenance(records: list[dict]) -> str:
    blocks = []
    for r in records:
        facts = {"hash": r.get("hash"), "status": r.get("status"), "schema_version": r.get("schema_version")}
        for section in ("env", "provenance"):
            if isinstance(r.get(section), dict):
                facts.update({f"{section}.{k}": v for k, v in r[section].items()})
        sets = (r.get("config") or {}).get("overrides")
        if sets:
            facts["overrides (--set)"] = ", ".join(sets)
        rows = "".join(f"<tr><th>{_e(k)}</th><td class='text'>{_e(v)}</td></tr>" for k, v in facts.items()
                       if v is not None)
        config = json.dumps(r.get("config") or {}, indent=1, sort_keys=True, default=str)
        blocks.append(f"<details><summary><code>{_e(r.get('label'))}</code></summary><table>{rows}</table>"
                      f"<details><summary>resolved config</summary><pre>{_e(config)}</pre></details></details>")
    return f'<section id="provenance"><h2>Provenance</h2>{"".join(blocks)}</section>'


def write_html(records: list[dict], out_dir: Path, title: str, gates: list[str] | None = None) -> Path:
    """Write the report folder ``out_dir`` (``index.html`` and one SVG per figure) and return the
    page's path. Opens offline; everything it links is in ``out_dir``.

    :param records: cell records of one run (failed cells included: listed under findings).
    :param gates: gates to evaluate in the table's ``gates`` column (default: those the records
        were run under, ``config.gates``).
    """
    from mtbench.plots import PLOTS, plot_all

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = aggregate_table(build_frame(records, gates_of(records) if gates is None else gates), records)
    figures = plot_all(records, out_dir, fmt="svg")
    figs = [f'<figure id="fig-{name}"><figcaption>{_e(PLOTS[name][1])}</figcaption>'
            f'<img src="{_e(path.name)}" alt="{_e(PLOTS[name][1])}"></figure>' for name, path in figures.items()]
    sets = overrides_of(records)
    ok = sum(r.get("status") == "ok" for r in records)
    meta = (f"{len(records)} cells ({ok} ok), {len(frame)} rows with seeds aggregated; mtbench {__version__}"
            + (f"; run with {', '.join(f'--set {o}' for o in sets)}" if sets else ""))
    legend_ci = ("Each figure: value [95 % CI] (bootstrap over the val images of one cell); mean ±std "
                 f"[95 % t-interval] across seeds where seeds &gt; 1. {MARK}: invalidated by a finding "
                 "(hover for the check). Click a header to sort.")
    body = (f'<p id="meta">{_e(meta)}</p>'
            f'<section id="table"><h2>Results</h2><p>{legend_ci}</p>{_table(frame, records)}</section>'
            f'{_findings(records, frame)}'
            f'<section id="figures"><h2>Figures</h2>{"".join(figs)}</section>'
            f'{_provenance(records)}')
    return write_page(out_dir, title, body)


def write_page(out_dir: Path, title: str, body: str) -> Path:
    """Write ``out_dir/index.html``: a complete offline page, ``title`` as heading, ``body``
    (HTML), the style sheet and the table-sorting script inline; returns its path."""
    path = out_dir / "index.html"
    path.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)} - mtbench</title>
<style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
{body}
<script>{_SORT_JS}</script>
</body></html>
""", encoding="utf-8")
    return path


def results_table(records: list[dict]) -> str:
    """The sortable results table of a run's records (seeds aggregated; their own gates)."""
    return _table(aggregate_table(build_frame(records, gates_of(records)), records), records)
