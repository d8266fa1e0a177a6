"""Tables derived from stored results: the console table (tabulate), CSV, JSON and Markdown.

Column names are the field's terms: mAP@[.5:.95], AP50, mIoU, Top-1, forgetting, BWT, delta-m.
Fractions stay in [0, 1]; a missing value is shown as ``-``. A figure with a stored 95 % CI
is shown beside it (``0.412 [0.38, 0.44]``) and kept in ``<column> CI low/high`` columns;
cells that differ only in ``seed`` are aggregated (:mod:`mtbench.aggregate`) unless the
per-seed table is asked for.

Findings bind (:mod:`mtbench.diagnostics.binding`): a number a diagnostic finding
invalidates is printed with ``†`` in the console table, ``results.md`` and ``report.md``,
with a legend under the table naming metric and check; the CSV keeps the numbers and lists
them in its ``flags`` column (``metric:check; ...``); a gate on such a number reads
``not meaningful``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from mtbench.diagnostics.binding import invalidated
from mtbench.aggregate import aggregate_seeds, ci_columns, std_column
from mtbench.atomic import atomic_path
from mtbench.gates import check_gates
from mtbench.metrics import headlines
from mtbench.metrics.delta_m import attach_delta_m, setting_key
from mtbench.results import read_json, read_record, records_of, write_json_atomic
from mtbench.tasks import task_meta

#: task-free columns (column, where in the record, digits (None: a text column)[, scale]); a
#: task's own come first, from its ``columns`` (:class:`mtbench.tasks.Task`): :func:`columns`
TASK_FREE_COLUMNS = [
    ("forgetting", ("metrics", "forgetting"), 3),
    ("forgetting (rel)", ("metrics", "forgetting_rel"), 3),
    ("BWT", ("metrics", "BWT"), 4),
    ("delta-m (%)", ("metrics", "delta_m"), 2),
    ("delta-m convention", ("delta_m_convention",), None),
    ("params (M)", ("profile", "params_m"), 3),
    ("GFLOPs", ("profile", "flops_g"), 2),
    ("latency p50 (ms)", ("profile", "latency_ms"), 1),
    ("FPS", ("profile", "fps"), 1),
    ("ONNX latency p50 (ms)", ("profile", "runtimes", "onnx", "latency_ms"), 1),
    ("ONNX parity", ("profile", "runtimes", "onnx", "parity_max_abs"), 7),
    ("peak mem (MiB)", ("profile", "peak_mem_mib"), 0),
    ("train (s)", ("profile", "train_s"), 0),
    ("step (ms)", ("extra", "step_s"), 1, 1000),
    ("step vs equal (x)", ("step_vs_equal",), 2),
]
MARK = "†"
_RUNTIMES_SEEN: dict[str, bool] = {}  # runtime -> whether a record read in this process has its val pass


def runtime_columns(records: list[dict] = ()) -> list[tuple]:
    """Columns of the runtimes in ``records`` (and in records read before in this process), in
    the order first seen: ``<runtime> latency p50 (ms)`` and ``<runtime> parity`` (ONNX's are
    in :data:`TASK_FREE_COLUMNS`), and where a record holds the runtime's val pass
    (``profile.runtime_metrics``) ``<runtime> Δ <headline>`` per task: the runtime's metric
    minus eager float32's (``profile.runtimes.<runtime>.val.delta``; negative = lost)."""
    for rec in records:
        for name, figures in ((rec.get("profile") or {}).get("runtimes") or {}).items():
            val = isinstance(figures, dict) and isinstance(figures.get("val"), dict) and "delta" in figures["val"]
            _RUNTIMES_SEEN[name] = _RUNTIMES_SEEN.get(name, False) or val
    out = []
    for name, val in _RUNTIMES_SEEN.items():
        where = ("profile", "runtimes", name)
        if name != "onnx":
            out += [(f"{name} latency p50 (ms)", (*where, "latency_ms"), 1), (f"{name} parity", (*where, "parity_max_abs"), 7)]
        if val:
            out += [(f"{name} Δ {metric}", (*where, "val", "delta", metric), 4) for metric in headlines(records).values()]
    return out


def columns(records: list[dict] = ()) -> list[tuple]:
    """Every table column: each known task's ``columns`` (:func:`mtbench.tasks.task_meta`: the
    active registry's or the built-in tasks, then those stored in ``records``; a metric name
    reads ``record["metrics"][name]``, a list is a path into the record, e.g. ``["chance",
    metric]``), in registration order, then :data:`TASK_FREE_COLUMNS`, then the runtimes'
    (:func:`runtime_columns`)."""
    own = [(title, ("metrics", where) if isinstance(where, str) else tuple(where), digits)
           for meta in task_meta(records).values() for title, where, digits in meta["columns"]]
    return own + TASK_FREE_COLUMNS + runtime_columns(records)


def metric_of(records: list[dict] = ()) -> dict[str, str]:
    """Column -> the metric key findings and gates name (``onnx/latency_ms`` for a runtime's figure)."""
    return {col: path[1] if len(path) == 2 else "/".join(path[2:]) for col, path, *_ in columns(records)}


def digits_of(records: list[dict] = ()) -> dict[str, int | None]:
    """Column -> digits shown (console, Markdown) and kept (CSV); None for a text column."""
    return {col: digits for col, _, digits, *_ in columns(records)}

CI_LEGEND = ("value [95 % CI]: bootstrap over the val images of one cell; mean ±std [95 % t-interval] "
             "across seeds where seeds > 1")


def _dig(rec: dict, path: tuple):
    for key in path:
        if not isinstance(rec, dict):
            return None
        rec = rec.get(key)
    return rec


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def ci_of(rec: dict, path: tuple) -> tuple[float, float] | None:
    """The stored 95 % CI ``(low, high)`` of the figure at ``path`` of a record, or None.

    Metrics (``("metrics", key)``) read ``record["ci"][key]``; other figures read the
    sibling ``<key>_ci`` (``profile.latency_ms_ci``, ``profile.fps_ci``, ...). Units are the
    figure's own (unscaled).
    """
    ci = (rec.get("ci") or {}).get(path[-1]) if path[0] == "metrics" else _dig(rec, (*path[:-1], f"{path[-1]}_ci"))
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_number(v) for v in ci):
        return float(ci[0]), float(ci[1])
    return None


def figure_cells(rec: dict) -> dict:
    """A record's figures as table cells: ``{column: value}`` plus ``<column> CI low/high``
    where the record stores a CI; scaled per :func:`columns`, not rounded (None when absent)."""
    cells = {}
    for col, path, digits, *scale in columns():
        v, k = _dig(rec, path), (scale[0] if scale else 1)
        if digits is None:  # a text column
            cells[col] = v if isinstance(v, str) else None
            continue
        cells[col] = v * k if _number(v) else None
        ci = ci_of(rec, path) if cells[col] is not None else None
        if ci:
            cells.update(zip(ci_columns(col), (ci[0] * k, ci[1] * k)))
    return cells


def ci_beside(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns reordered so each figure's std/CI columns follow it."""
    digits = digits_of()
    derived = {d: col for col in digits for d in (std_column(col), *ci_columns(col))}
    order = []
    for col in frame.columns:
        if col in derived:
            continue
        order.append(col)
        if col in digits:
            order += [d for d in (std_column(col), *ci_columns(col)) if d in frame.columns]
    return frame[order + [c for c in frame.columns if c not in order]]


def gate_values(rec: dict) -> dict:
    """The values gates may name: every metric and profile figure of a record."""
    values = dict(rec.get("metrics") or {})
    values.update({k: v for k, v in (rec.get("profile") or {}).items() if not isinstance(v, dict)})
    return values


def _flags(records: list[dict]) -> list[dict[str, list[str]]]:
    """Per record ``{metric: [check]}`` of the numbers its findings invalidate, including a
    delta-m computed from a single-task baseline whose headline metric is invalidated."""
    inv = [invalidated(r.get("diagnostics") or []) for r in records]
    heads = set(headlines(records).values())
    by_hash = {r.get("hash"): i for r, i in zip(records, inv)}
    for r, i in zip(records, inv):
        for h in r.get("delta_m_from") or []:
            bad = [c for k, cs in by_hash.get(h, {}).items() if k in heads or k == "delta_m" for c in cs]
            for c in dict.fromkeys(bad):
                i.setdefault("delta_m", [])
                if c not in i["delta_m"]:
                    i["delta_m"].append(c)
    return inv


def attach_step_overhead(records: list[dict]) -> None:
    """Set ``step_vs_equal`` on every ok joint record whose strategy is not ``equal``: its mean
    step time (``extra.step_s``: batches, forward, the strategy's backward, optimiser step) over
    that of the ``equal`` cell of the same setting (:func:`mtbench.metrics.delta_m.setting_key`)
    in ``records``; absent where either time or that cell is missing. A ratio of wall times
    measured in two cells (noisy on a shared machine: ``benchmarks/strategies_step.py``
    interleaves them on one batch)."""
    ok = [r for r in records if r.get("status") == "ok" and "config" in r and (r.get("extra") or {}).get("step_s")]
    equal = {setting_key(r): r["extra"]["step_s"] for r in ok if r["config"]["strategy"]["name"] == "equal"}
    for r in ok:
        base = equal.get(setting_key(r))
        if r["config"]["strategy"]["name"] != "equal" and base:
            r["step_vs_equal"] = r["extra"]["step_s"] / base


def build_frame(records: list[dict], gates: list[str], delta_m: str | None = None) -> pd.DataFrame:
    """One row per cell record, in the given order (delta-m attached where baselines exist).

    :param delta_m: the delta-m convention (``headline``/``all``, the suite's ``delta_m``);
        ``None``: the one stored in each record's config.

    Figures are scaled per :func:`columns` and not rounded (the CSV and the displayed tables
    round them); a figure with a stored CI has ``<column> CI low`` / ``<column> CI high``
    beside it (:func:`figure_cells`). Numbers stay numbers; ``flags`` lists ``metric:check`` for every number of the record a
    finding invalidates, and ``gates`` reads ``FAIL: ...`` / ``not meaningful: ...`` / ``pass``.
    """
    attach_delta_m(records, delta_m)
    attach_step_overhead(records)
    columns(records)  # remember the tasks and runtimes the records hold (a plugin task not installed here)
    rows = []
    for rec, inv in zip(records, _flags(records)):
        row = {"cell": rec["label"], "hash": rec["hash"]}
        row.update(figure_cells(rec))
        findings = rec.get("diagnostics") or []
        values = gate_values(rec)
        gate_res = check_gates(gates, values, set(inv)) if rec["status"] == "ok" else {}
        fails = [g for g, r in gate_res.items() if r == "FAIL"]
        moot = [g for g, r in gate_res.items() if r == "not meaningful"]
        parts = ([f"FAIL: {'; '.join(fails)}"] if fails else []) + ([f"not meaningful: {'; '.join(moot)}"] if moot else [])
        row["gates"] = " | ".join(parts) or ("pass" if gate_res else "-")
        row["diagnostics"] = "; ".join(dict.fromkeys(f["check"] for f in findings)) or "-"
        row["flags"] = "; ".join(f"{m}:{c}" for m in sorted(inv) if values.get(m) is not None for c in inv[m])
        row["status"] = rec["status"] if rec["status"] == "ok" else f"failed: {rec.get('reason')}"[:120]
        rows.append(row)
    return ci_beside(pd.DataFrame(rows))


def flagged(frame_row) -> dict[str, list[str]]:
    """``{metric: [check]}`` parsed from a frame row's ``flags`` (``metric:check; ...``; in a
    row that aggregates seeds, the union over its seeds: a mean over an invalidated number is
    itself invalidated)."""
    out: dict[str, list[str]] = {}
    text = frame_row.get("flags")
    for item in filter(None, text.split("; ") if isinstance(text, str) else []):
        item = re.sub(r"^s-?\d+: ", "", item)
        if ":" not in item:
            continue
        metric, check = item.rsplit(":", 1)
        if check not in out.setdefault(metric, []):
            out[metric].append(check)
    return out


def legend(frame: pd.DataFrame) -> str:
    """The lines under the table explaining each ``†`` (empty when nothing is flagged)."""
    lines = [f"- {row['cell']}: " + ", ".join(f"{m} ({', '.join(cs)})" for m, cs in flagged(row).items())
             for _, row in frame.iterrows() if flagged(row)]
    if not lines:
        return ""
    return (f"{MARK} invalidated by a diagnostic finding (gates on it are not meaningful; "
            "evidence: `mtbench doctor`):\n" + "\n".join(lines))


def aggregate_table(frame: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """The table with seeds aggregated (:func:`mtbench.aggregate.aggregate_seeds`): cells that
    differ only in ``seed`` are one row (mean, std, seeds, 95 % t-interval of every figure)."""
    return ci_beside(aggregate_seeds(frame, records, [c for c, d in digits_of().items() if d is not None]))


def _text(v: float, digits: int) -> str:
    """``v`` rounded to ``digits`` decimals, shown short (``g``): 0.4120 -> 0.412, 12.0 -> 12,
    0.0000362 -> 3.62e-05."""
    text = format(round(float(v), digits), "g")
    return "0" if text == "-0" else text


def _plain(v):
    """A cell as shown: None for a missing value (NaN too), else the value as text."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _cell(row: pd.Series, col: str, digits: int) -> str | None:
    """One figure as shown: ``0.412``, ``0.412 [0.38, 0.44]`` (a cell's CI) or
    ``0.412 ±0.012 [0.398, 0.426]`` (mean ±std [t-interval] across seeds); a figure that is
    the same in every seed (zero spread: params, FLOPs) is shown as a plain number."""
    v = row[col]
    if not _number(v):
        return _plain(v)
    text = _text(v, digits)
    std = row.get(std_column(col))
    if _number(std) and std == 0:
        return text
    if _number(std):
        text += f" ±{_text(std, digits)}"
    lo, hi = (row.get(c) for c in ci_columns(col))
    if _number(lo) and _number(hi):
        text += f" [{_text(lo, digits)}, {_text(hi, digits)}]"
    return text


def _marked(text: str | None, row: pd.Series, col: str) -> str | None:
    """``text`` with ``†`` when a finding invalidates the column's metric in this row."""
    if text is None or metric_of().get(col) not in flagged(row):
        return text
    return f"{text}{MARK}"


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as shown (console, Markdown): each figure one compact text cell with its
    std and CI, derived and empty columns dropped, ``seeds`` dropped when every row is one."""
    digits = digits_of()
    derived = {d for col in digits for d in (std_column(col), *ci_columns(col))}
    drop = {"hash", "flags", "CI method", *derived}
    if "seeds" in frame.columns and (frame["seeds"] == 1).all():
        drop.add("seeds")
    rows = [row for _, row in frame.iterrows()]
    shown = {}
    for col in frame.columns:
        if col in drop:
            continue
        cells = [_marked(_cell(row, col, digits[col]) if col in digits else _plain(row[col]), row, col)
                 for row in rows]
        if any(c is not None for c in cells):
            shown[col] = cells
    return pd.DataFrame(shown, dtype=object)


def escape_pipes(frame: pd.DataFrame) -> pd.DataFrame:
    """``|`` in cells (cell labels ``arch|loss|level|strategy|s0``) escaped, so Markdown
    viewers keep them inside their column."""
    return frame.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)


def _table(frame: pd.DataFrame, markdown: bool = False) -> str:
    shown = display_frame(frame)
    shown = escape_pipes(shown) if markdown else shown
    digits = digits_of()
    align = ["right" if c in digits or c == "seeds" else "left" for c in shown.columns]
    return tabulate(shown, headers="keys", tablefmt="github", showindex=False, missingval="-",
                    disable_numparse=True, colalign=align)


def _has_ci(frame: pd.DataFrame) -> bool:
    return any(ci_columns(col)[0] in frame.columns for col in digits_of())


def _notes(frame: pd.DataFrame, sep: str) -> str:
    notes = ([CI_LEGEND] if _has_ci(frame) else []) + ([legend(frame)] if legend(frame) else [])
    return "".join(sep + n for n in notes)


def render(frame: pd.DataFrame) -> str:
    """The console table (per cell, or seeds aggregated): every figure beside its CI, empty
    columns (a task the suite does not have) dropped, invalidated figures marked ``†``; the
    CI legend and the ``†`` legend under it."""
    return _table(frame) + _notes(frame, "\n")


def _markdown(frame: pd.DataFrame) -> str:
    """The Markdown table of ``results.md``/``report.md``: as the console shows it."""
    return _table(frame, markdown=True) + _notes(frame, "\n\n")


def _tables_md(frame: pd.DataFrame, agg: pd.DataFrame, by_seed: bool = False) -> list[str]:
    """Markdown of the main table (aggregated, or per seed) and, when seeds were merged, the other."""
    merged = len(agg) < len(frame)
    main, other = (frame, agg) if by_seed else (agg, frame)
    lines = [_markdown(main), ""]
    if merged:
        lines += ["## Seeds aggregated" if by_seed else "## Per seed", "", _markdown(other), ""]
    return lines


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Figures (and their std/CI columns) rounded to the digits of :func:`columns`."""
    digits = {c: d for col, d in digits_of().items() if d is not None for c in (col, std_column(col), *ci_columns(col))}
    return frame.round({c: d for c, d in digits.items() if c in frame.columns})


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, mode=0o644) as tmp:
        _rounded(frame).to_csv(tmp, index=False)


def write_outputs(frame: pd.DataFrame, records: list[dict], out_dir: Path, suite: str) -> dict[str, Path]:
    """Write the run's tables to ``out_dir``.

    - ``results.csv``: seeds aggregated (one row per cell apart from its seed: each figure's
      mean, ``std``, ``CI low``/``CI high`` and ``seeds``, ``CI method``);
    - ``results_by_seed.csv``: one row per cell (figures with their bootstrap CI columns);
    - ``results.json``: the full records (``cells``, history dropped) and the aggregated rows
      (``seed_aggregates``);
    - ``results.md``: the aggregated table and, when seeds were merged, the per-seed one.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "results.csv", "csv_by_seed": out_dir / "results_by_seed.csv",
             "json": out_dir / "results.json", "md": out_dir / "results.md"}
    agg = aggregate_table(frame, records)
    _write_csv(agg, paths["csv"])
    _write_csv(frame, paths["csv_by_seed"])
    slim = [{k: v for k, v in r.items() if k != "history"} for r in records]
    write_json_atomic(paths["json"], {"suite": suite, "overrides": overrides_of(records), "cells": slim,
                                      "seed_aggregates": agg.to_dict(orient="records")})
    paths["md"].write_text("\n".join([f"# {suite}", "", *_overrides_md(records), *_tables_md(frame, agg)]))
    return paths


def _config_list(records: list[dict], key: str) -> list[str]:
    return list(dict.fromkeys(o for r in records for o in (r.get("config") or {}).get(key) or []))


def overrides_of(records: list[dict]) -> list[str]:
    """The ``--set KEY=VALUE`` overrides the records were run with (``config.overrides``, in
    order, each once over all records; :mod:`mtbench.overrides`)."""
    return _config_list(records, "overrides")


def gates_of(records: list[dict]) -> list[str]:
    """The suite gates the records were run under (``config.gates``, each once), so a report
    of stored cells judges them as the run did."""
    return _config_list(records, "gates")


def _overrides_md(records: list[dict]) -> list[str]:
    sets = overrides_of(records)
    return [f"Run with suite overrides: {', '.join(f'`--set {o}`' for o in sets)}", ""] if sets else []


def write_report(records: list[dict], out_dir: Path, title: str, gates: list[str] | None = None,
                 by_seed: bool = False, versus: str | None = None) -> Path:
    """``report.md`` in ``out_dir``: the table (seeds aggregated, or per seed with ``by_seed``;
    ``gates``: those the records were run under unless given;
    the other one too when seeds were merged), with ``versus`` (``AXIS=VALUE``) every row
    against its baseline row over seeds (:mod:`mtbench.versus`; also ``versus.csv``), failure
    reasons, and the plots (PNG beside it; the Pareto plot's point ids listed under it).

    :raises UsageError: ``versus`` names no axis or value of the records."""
    from mtbench.plots import PLOTS, pareto_table, plot_all
    from mtbench.provenance import markdown as provenance_markdown

    frame = build_frame(records, gates_of(records) if gates is None else gates)
    agg = aggregate_table(frame, records)
    plots = plot_all(records, out_dir)
    lines = [f"# {title}", "", *_overrides_md(records), *_tables_md(frame, agg, by_seed)]
    if versus:
        from mtbench import versus as vs
        table = vs.versus(frame, records, versus)
        _write_csv(table, out_dir / "versus.csv")
        lines += [f"## Versus {versus}", "", vs.render(table, versus, markdown=True), ""]
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines += ["## Failed cells", ""] + [f"- `{r['label']}`: {r.get('reason')}" for r in failed] + [""]
    for name, path in plots.items():
        lines += [f"## {PLOTS[name][1]}", "", f"![{name}]({path.name})", ""]
        if name == "pareto":  # the params plot numbers the same rows unless a cell lacks a latency
            ids = escape_pipes(pareto_table(records)[["id", "cell"]])
            lines += [tabulate(ids, headers="keys", tablefmt="github", showindex=False), ""]
    lines += provenance_markdown(records)
    out = out_dir / "report.md"
    out.write_text("\n".join(lines))
    return out


def any_gate_failed(frame: pd.DataFrame) -> bool:
    return bool(frame["gates"].astype(str).str.startswith("FAIL").any()) if len(frame) else False


def not_meaningful_gates(frame: pd.DataFrame) -> list[str]:
    """``"cell: gate"`` for every gate that reads ``not meaningful``."""
    out = []
    for _, row in frame.iterrows():
        for part in str(row["gates"]).split(" | "):
            if part.startswith("not meaningful: "):
                out += [f"{row['cell']}: {g}" for g in part.removeprefix("not meaningful: ").split("; ")]
    return out


def load_records(path: Path) -> list[dict]:
    """Records of a run: its ``cells/`` folder, else its ``results.json``, else loose cell JSONs.

    ``path`` may be a run folder (``results/<suite>``), a ``results.json``, a ``cells`` folder or
    one cell JSON.

    :raises ResultFileError: a missing path, or a file that is not JSON or not a cell record /
        ``results.json`` (naming the file and line or key; :mod:`mtbench.results`).
    """
    path = Path(path)
    if path.is_dir():
        if (path / "cells").is_dir() or not (path / "results.json").is_file():
            folder = path / "cells" if (path / "cells").is_dir() else path
            return [read_record(p) for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")]
        path = path / "results.json"
    return records_of(read_json(path), str(path))


def harness_summary(records: list[dict]) -> str:
    """One line: what the harness's own work (overfit-one-batch check, CIs + chance levels,
    profiling) cost beside training, over the run and per cell against its budget (``harness``
    of each record; ``checks.harness_share``); empty when no record has it."""
    costs = [(r.get("label", r.get("hash", "?")), r["harness"]) for r in records
             if r.get("status") == "ok" and (r.get("harness") or {}).get("share_of_train") is not None
             and "train_s" in r["harness"]]
    if not costs:
        return ""
    total = sum(h["total_s"] for _, h in costs)
    train = sum(h["train_s"] for _, h in costs)
    over = [f"{label} {h['share_of_train']:.0%}" for label, h in costs
            if h["share_of_train"] > h.get("budget_share", float("inf"))]
    budget = {h.get("budget_share") for _, h in costs} - {None}
    line = (f"harness (overfit check + CIs/chance + profiling): {total:.1f} s = "
            f"{total / train:.1%} of {train:.0f} s training"
            + (f" (budget {'/'.join(f'{b:.0%}' for b in sorted(budget))} a cell)" if budget else ""))
    return line + (f"; over budget: {', '.join(over)}" if over else "")

