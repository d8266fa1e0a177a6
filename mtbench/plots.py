"""Plots of stored results (matplotlib, Agg backend; PNG for ``report.md``, SVG with text kept
as text for the HTML report, :mod:`mtbench.html_report`).

- ``headline_ci.png``: each task's headline metric per row of the table as a dot with its
  95 % CI as an error bar, the measured chance level as a band.
- ``pareto.png`` / ``pareto_params.png``: each task's headline metric vs batch-1 latency (ms) /
  parameters (M), one panel per task, one point per row of the results table (seeds
  aggregated) with 95 % CI error bars, the measured chance level, the Pareto front and short
  point ids (#1..#n, placed apart from each other and inside the axes by adjustText) mapped to
  cell labels under the panels. The front ignores differences within the CIs
  (:func:`pareto_front`): a cell is off the front only when another is at least as good in
  both figures and better beyond the CIs in one.
- Per-cell small multiples, one panel per cell with shared y axes so cells compare at a
  glance: ``loss_curves.png`` (each task's total loss over logged steps), ``task_weights.png``
  (weight trajectories of strategies that store them, ``extra.task_weights``),
  ``grad_cosine.png`` (mean pairwise cosine of the task gradients, ``extra.grad_cosine``) and
  ``stages.png`` (per-stage scores of sequential cells, what forgetting is computed from).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from adjustText import adjust_text  # noqa: E402

from mtbench.aggregate import ci_columns  # noqa: E402
from mtbench.metrics import headlines  # noqa: E402
from mtbench.report import aggregate_table, build_frame, columns  # noqa: E402


def pareto_front(points: list[tuple[float, float]],
                 cis: list[tuple[tuple[float, float], tuple[float, float]] | None] | None = None
                 ) -> list[tuple[float, float]]:
    """The points ``(cost, score)`` no other point dominates, sorted by cost (lower cost and
    higher score are better).

    :param cis: per point ``((cost_low, cost_high), (score_low, score_high))``, its 95 % CIs
        (None, or a None entry: the point itself, no uncertainty). A point dominates another
        when it is not worse in either figure, a difference within the CIs (overlapping
        intervals) counting as a tie, and better beyond the CIs (disjoint intervals) in at
        least one; without CIs this is the usual Pareto dominance.
    """
    cis = cis or [None] * len(points)
    box = [ci or ((c, c), (s, s)) for (c, s), ci in zip(points, cis)]

    def dominates(a: int, b: int) -> bool:
        (ac, as_), (bc, bs) = box[a], box[b]
        cheaper, dearer = ac[1] < bc[0], ac[0] > bc[1]
        better, worse = as_[0] > bs[1], as_[1] < bs[0]
        return not dearer and not worse and (cheaper or better)

    keep = [i for i in range(len(points)) if not any(dominates(j, i) for j in range(len(points)) if j != i)]
    return sorted(dict.fromkeys(points[i] for i in keep), key=lambda p: (p[0], -p[1]))


def save_figure(fig, path: Path, rect: tuple | None = None) -> Path:
    """Lay out, write (PNG at 110 dpi, or SVG whose text stays text: searchable) and close."""
    fig.tight_layout(rect=rect)
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _small_multiples(panels: list[tuple[str, list[tuple[str, list, list]]]], xlabel: str, ylabel: str,
                     path: Path, log: bool = False, ylim: tuple[float, float] | None = None,
                     zero_line: bool = False) -> Path:
    """One panel per cell (``(title, [(series name, xs, ys), ...])``), up to 4 per row, y axes
    shared so panels compare; a series name keeps its colour in every panel; one legend."""
    ncol = min(len(panels), 4)
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol + 0.6, 2.5 * nrow + 0.7), sharey=True, squeeze=False)
    names = list(dict.fromkeys(name for _, series in panels for name, *_ in series))
    colour = {name: f"C{i % 10}" for i, name in enumerate(names)}
    for ax, (title, series) in zip(axes.flat, panels):
        for name, xs, ys in series:
            ax.plot(xs, ys, lw=0.9, marker="o" if len(ys) <= 8 else None, ms=3, color=colour[name], label=name)
        if zero_line:
            ax.axhline(0, color="0.5", lw=0.6, ls=":")
        ax.set_title(title, fontsize=7)
        ax.tick_params(labelsize=6)
        if log:
            ax.set_yscale("log")
        if ylim:
            ax.set_ylim(*ylim)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colour[n], lw=1.2) for n in names]
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 6), fontsize=7, frameon=False)
    fig.supxlabel(xlabel, fontsize=8)
    fig.supylabel(ylabel, fontsize=8)
    return save_figure(fig, path, rect=(0, 0, 1, 1 - 0.35 / (2.5 * nrow + 0.7)))


def _ok(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "ok"]


def _column(path: tuple) -> str:
    """The table column (:func:`mtbench.report.columns`) of a record path."""
    return next(col for col, p, *_ in columns() if p == path)


#: cost figures a Pareto plot can put on its x axis: record path, axis label
COSTS = {"latency": (("profile", "latency_ms"), "latency p50, batch 1 (ms)"),
         "params": (("profile", "params_m"), "parameters (M)")}


def pareto_table(records: list[dict], cost: str = "latency") -> pd.DataFrame:
    """The points of the Pareto plot: rows of the results table (seeds aggregated) with the
    ``cost`` figure (:data:`COSTS`) and a headline metric, each with a short ``id`` (``#1``
    ... ``#n``) in table order; figures with their ``CI low``/``CI high`` columns (see
    ``mtbench.report``)."""
    frame = aggregate_table(build_frame(records, []), records)
    x = _column(COSTS[cost][0])
    heads = [c for c in (_column(("metrics", k)) for k in headlines(records).values()) if c in frame.columns]
    if x not in frame.columns or not heads:
        return pd.DataFrame(columns=["id", "cell"])
    table = frame[frame[x].notna() & frame[heads].notna().any(axis=1)].reset_index(drop=True)
    table.insert(0, "id", [f"#{i + 1}" for i in range(len(table))])
    return table


def _errors(table: pd.DataFrame, col: str):
    """``(2, N)`` distances from each value to its CI ends (0 where no CI; a percentile CI
    that excludes its point estimate is drawn up to the point on that side), or None when
    no point has a CI."""
    lo, hi = ci_columns(col)
    if lo not in table.columns or table[lo].isna().all():
        return None
    v = table[col].to_numpy(float)
    low = np.clip(v - table[lo].to_numpy(float), 0, None)
    high = np.clip(table[hi].to_numpy(float) - v, 0, None)
    return np.nan_to_num(np.vstack([low, high]))


def _draw_chance(ax, records: list[dict], key: str, axis: str = "y") -> None:
    """The measured chance level of ``key`` on the panel's ``axis`` (the one the metric is on):
    a dashed line at its mean over cells and a band from the lowest to the highest end of the
    cells' chance CIs (``chance``/``chance_ci``)."""
    ok = _ok(records)
    levels = [r["chance"][key] for r in ok if isinstance((r.get("chance") or {}).get(key), (int, float))]
    if not levels:
        return
    ends = [e for r in ok for e in ((r.get("chance_ci") or {}).get(key) or []) if isinstance(e, (int, float))]
    line, span = (ax.axhline, ax.axhspan) if axis == "y" else (ax.axvline, ax.axvspan)
    line(float(np.mean(levels)), color="0.4", ls="--", lw=1, label="chance (measured)")
    if ends:
        span(min(ends + levels), max(ends + levels), color="0.6", alpha=0.2, lw=0, label="chance 95 % CI")


def _id_legend(fig, spec, table: pd.DataFrame) -> None:
    """Text panel mapping each point id to its cell label (monospace, in up to 3 columns)."""
    ax = fig.add_subplot(spec)
    ax.axis("off")
    lines = [f"{i:>4s}  {c}" for i, c in zip(table["id"], table["cell"])]
    ncol = 1 if len(lines) <= 8 else 2 if len(lines) <= 24 else 3
    per = math.ceil(len(lines) / ncol)
    for j in range(ncol):
        ax.text(j / ncol, 1.0, "\n".join(lines[j * per:(j + 1) * per]), va="top", ha="left",
                family="monospace", fontsize=7, transform=ax.transAxes)


def _intervals(table: pd.DataFrame, col: str) -> list[tuple[float, float]]:
    """Each row's 95 % CI of ``col`` (the value itself where it has none)."""
    lo, hi = ci_columns(col)
    v = table[col].to_numpy(float)
    low = table[lo].to_numpy(float) if lo in table.columns else v
    high = table[hi].to_numpy(float) if hi in table.columns else v
    return [(a if math.isfinite(a) else x, b if math.isfinite(b) else x) for x, a, b in zip(v, low, high)]


def draw_pareto(records: list[dict], cost: str = "latency"):
    """The Pareto figure (matplotlib ``Figure``), or None when no cell has the ``cost`` figure
    (:data:`COSTS`: batch-1 latency p50 in ms, or parameters in millions) and a headline metric.

    One panel per task: headline metric (:func:`mtbench.metrics.headlines`) vs the cost, each point a row of the
    results table (seeds aggregated) with error bars for its 95 % CIs (bootstrap for one cell,
    t-interval across seeds), the measured chance level (line + band), the CI-aware Pareto
    front (:func:`pareto_front`; its points ringed and joined in cost order), and short ids
    placed by adjustText apart from each other and inside the axes, listed with their cell
    labels below.
    """
    table = pareto_table(records, cost)
    x_col, x_label = _column(COSTS[cost][0]), COSTS[cost][1]
    tasks = [(k, _column(("metrics", k))) for k in headlines(records).values()]
    tasks = [(k, c) for k, c in tasks if c in table.columns and table[c].notna().any()]
    if not tasks:
        return None
    per = math.ceil(len(table) / (1 if len(table) <= 8 else 2 if len(table) <= 24 else 3))
    fig = plt.figure(figsize=(max(5 * len(tasks), 7), 4.2 + 0.14 * per))
    grid = fig.add_gridspec(2, len(tasks), height_ratios=[4.2, 0.14 * per + 0.1])
    for i, (key, col) in enumerate(tasks):
        ax = fig.add_subplot(grid[0, i])
        pts = table[table[col].notna()]
        x, y = pts[x_col].to_numpy(float), pts[col].to_numpy(float)
        xerr, yerr = _errors(pts, x_col), _errors(pts, col)
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=4, lw=0.8, capsize=2, color="C0",
                    label="cell" if xerr is None and yerr is None else "cell (95 % CI)")
        _draw_chance(ax, records, key)
        front = pareto_front(list(zip(x, y)), list(zip(_intervals(pts, x_col), _intervals(pts, col))))
        fx, fy = [p[0] for p in front], [p[1] for p in front]
        ax.plot(fx, fy, color="C3", lw=1, marker="o", ms=9, mfc="none", label="Pareto front (CI-aware)")
        ax.margins(x=0.12, y=0.15)
        if cost == "params":
            ax.set_xlim(left=0)
        texts = [ax.text(xi, yi, pid, fontsize=7) for xi, yi, pid in zip(x, y, pts["id"])]
        ax.set_xlabel(x_label)
        ax.set_ylabel(key)
        ax.legend(fontsize=6, loc="best")
        fig.canvas.draw()  # adjustText needs the final axes limits to keep labels inside them
        adjust_text(texts, x=x, y=y, ax=ax, ensure_inside_axes=True,
                    arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5})
    _id_legend(fig, grid[1, :], table)
    return fig


def plot_pareto(records: list[dict], path: Path, cost: str = "latency") -> Path | None:
    """Write :func:`draw_pareto` to ``path`` (PNG or SVG by suffix); None when there is nothing to plot."""
    fig = draw_pareto(records, cost)
    return save_figure(fig, path) if fig is not None else None


def plot_headline_ci(records: list[dict], path: Path) -> Path | None:
    """Each task's headline metric per row of the results table (seeds aggregated) as a dot
    with its 95 % CI as an error bar, the measured chance level as a band; one panel per task,
    rows in the ids of :func:`pareto_table`."""
    frame = aggregate_table(build_frame(records, []), records)
    tasks = [(k, _column(("metrics", k))) for k in headlines(records).values()]
    tasks = [(k, c) for k, c in tasks if c in frame.columns and frame[c].notna().any()]
    if not tasks:
        return None
    labels = list(frame["cell"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks) + 2.4, 0.32 * len(labels) + 1.3),
                             sharey=True, squeeze=False)
    for ax, (key, col) in zip(axes[0], tasks):
        pts = frame[frame[col].notna()]
        ys = [labels.index(c) for c in pts["cell"]]
        ax.errorbar(pts[col].to_numpy(float), ys, xerr=_errors(pts, col), fmt="o", ms=4, lw=0.9, capsize=2)
        _draw_chance(ax, records, key, axis="x")
        ax.set_xlabel(key, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=6)
    axes[0][0].invert_yaxis()
    return save_figure(fig, path)


def _steps(history: list[dict], key: str) -> tuple[list, list]:
    """``(steps, values)`` of a history key (the row's ``step``, else its index)."""
    rows = [(row.get("step", i), row[key]) for i, row in enumerate(history) if _finite(row.get(key))]
    return [r[0] for r in rows], [r[1] for r in rows]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plot_losses(records: list[dict], path: Path) -> Path | None:
    """Small multiples: per cell, each task's total loss (log scale) over logged steps."""
    panels = []
    for r in (r for r in records if r.get("history")):
        tasks = sorted({k.split("/")[0] for row in r["history"] for k in row if k.endswith("/total")})
        panels.append((r["label"], [(t, *_steps(r["history"], f"{t}/total")) for t in tasks]))
    panels = [(title, series) for title, series in panels if series]
    return _small_multiples(panels, "logged step", "task loss (total)", path, log=True) if panels else None


def plot_task_weights(records: list[dict], path: Path) -> Path | None:
    """Small multiples: per cell whose strategy stores them, each task's weight per step."""
    recs = [r for r in records if (r.get("extra") or {}).get("task_weights")]
    if not recs:
        return None
    panels = []
    for r in recs:
        ws = r["extra"]["task_weights"]
        tasks = list(dict.fromkeys(t for w in ws for t in w))
        panels.append((r["label"], [(t, list(range(len(ws))), [w.get(t, float("nan")) for w in ws]) for t in tasks]))
    return _small_multiples(panels, "step", "task weight", path)


def plot_grad_cosine(records: list[dict], path: Path) -> Path | None:
    """Small multiples: per cell whose strategy stores it, the mean pairwise cosine of the task
    gradients per step (below 0: the tasks' gradients conflict)."""
    recs = [r for r in records if (r.get("extra") or {}).get("grad_cosine")]
    if not recs:
        return None
    panels = [(r["label"], [("mean pairwise cosine", list(range(len(r["extra"]["grad_cosine"]))),
                             r["extra"]["grad_cosine"])]) for r in recs]
    return _small_multiples(panels, "step", "gradient cosine", path, ylim=(-1, 1), zero_line=True)


def plot_stages(records: list[dict], path: Path) -> Path | None:
    """Small multiples: per sequential cell, every task's headline metric after each stage."""
    recs = [r for r in _ok(records) if len(r.get("stages") or []) > 1]
    if not recs:
        return None
    panels = []
    for r in recs:
        names = [f"after {s['task']}" for s in r["stages"]]
        series = [(key, names, [float("nan") if s["metrics"].get(key) is None else s["metrics"][key]
                                for s in r["stages"]])
                  for key in headlines(records).values() if any(s["metrics"].get(key) is not None for s in r["stages"])]
        panels.append((r["label"], series))
    return _small_multiples(panels, "stage", "headline metric", path, ylim=(0, 1))


#: plot name -> (function, caption); the order of report.md and the HTML report
PLOTS = {
    "headline_ci": (plot_headline_ci, "Headline metrics with 95 % CIs (band: measured chance level)"),
    "pareto": (plot_pareto, "Accuracy vs latency (Pareto front)"),
    "pareto_params": (lambda records, path: plot_pareto(records, path, cost="params"),
                      "Accuracy vs parameters (Pareto front)"),
    "loss_curves": (plot_losses, "Loss curves (one panel per cell)"),
    "task_weights": (plot_task_weights, "Task-weight trajectories (one panel per cell)"),
    "grad_cosine": (plot_grad_cosine, "Gradient cosine between tasks (one panel per cell)"),
    "stages": (plot_stages, "Per-stage scores, sequential cells (one panel per cell)"),
}


def plot_all(records: list[dict], out_dir: Path, fmt: str = "png") -> dict[str, Path]:
    """Write every applicable plot of :data:`PLOTS` into ``out_dir`` as ``<name>.<fmt>``
    (``png`` or ``svg``); returns name -> path of those written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, (fn, _) in PLOTS.items():
        p = fn(records, out_dir / f"{name}.{fmt}")
        if p is not None:
            made[name] = p
    return made
