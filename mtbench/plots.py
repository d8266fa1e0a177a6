"""Plots of stored results (matplotlib, Agg backend, PNG files).

- ``pareto.png``: each task's headline metric vs batch-1 latency (ms), one panel per task,
  one point per row of the results table (seeds aggregated) with 95 % CI error bars, the
  measured chance level, the Pareto front (no other cell is both faster and better) as a
  step line, and short point ids (#1..#n) mapped to cell labels under the panels.
- ``loss_curves.png``: every cell's per-task total loss over optimiser steps.
- ``task_weights.png``: task-weight trajectories of strategies that store them
  (``extra.task_weights``, e.g. GradNorm).
- ``stages.png``: per-stage scores of sequential cells (what forgetting is computed from).
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


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points ``(cost, score)`` not dominated by another (lower-or-equal cost and higher score)."""
    front, best = [], float("-inf")
    for cost, score in sorted(points, key=lambda p: (p[0], -p[1])):
        if score > best:
            front.append((cost, score))
            best = score
    return front


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _line_plot(series: list[tuple[str, list[float]]], xlabel: str, ylabel: str, path: Path,
               log: bool = False, legend_size: int = 6) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, ys in series:
        ax.plot(range(len(ys)), ys, lw=0.8, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size, ncol=2)
    return _save(fig, path)


def _ok(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "ok"]


def _column(path: tuple) -> str:
    """The table column (:func:`mtbench.report.columns`) of a record path."""
    return next(col for col, p, *_ in columns() if p == path)


def pareto_table(records: list[dict]) -> pd.DataFrame:
    """The points of the Pareto plot: rows of the results table (seeds aggregated) with a
    batch-1 latency and a headline metric, each with a short ``id`` (``#1`` ... ``#n``) in
    table order; figures with their ``CI low``/``CI high`` columns (see ``mtbench.report``)."""
    frame = aggregate_table(build_frame(records, []), records)
    lat = _column(("profile", "latency_ms"))
    heads = [c for c in (_column(("metrics", k)) for k in headlines(records).values()) if c in frame.columns]
    if lat not in frame.columns or not heads:
        return pd.DataFrame(columns=["id", "cell"])
    table = frame[frame[lat].notna() & frame[heads].notna().any(axis=1)].reset_index(drop=True)
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


def _draw_chance(ax, records: list[dict], key: str) -> None:
    """The measured chance level of ``key``: a dashed line at its mean over cells and a band
    from the lowest to the highest end of the cells' chance CIs (``chance``/``chance_ci``)."""
    ok = _ok(records)
    levels = [r["chance"][key] for r in ok if isinstance((r.get("chance") or {}).get(key), (int, float))]
    if not levels:
        return
    ends = [e for r in ok for e in ((r.get("chance_ci") or {}).get(key) or []) if isinstance(e, (int, float))]
    ax.axhline(float(np.mean(levels)), color="0.4", ls="--", lw=1, label="chance (measured)")
    if ends:
        ax.axhspan(min(ends + levels), max(ends + levels), color="0.6", alpha=0.2, lw=0, label="chance 95 % CI")


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


def draw_pareto(records: list[dict]):
    """The Pareto figure (matplotlib ``Figure``), or None when no cell has a latency and a
    headline metric.

    One panel per task: headline metric (:func:`mtbench.metrics.headlines`) vs batch-1 latency p50 (ms), each
    point a row of the results table (seeds aggregated) with error bars for its 95 % CIs
    (x: latency CI, y: metric CI; bootstrap for one cell, t-interval across seeds), the
    measured chance level (line + band), the Pareto front as a step line, and short ids
    (placed by adjustText so they do not overlap) listed with their cell labels below.
    """
    table = pareto_table(records)
    lat = _column(("profile", "latency_ms"))
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
        x, y = pts[lat].to_numpy(float), pts[col].to_numpy(float)
        xerr, yerr = _errors(pts, lat), _errors(pts, col)
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=4, lw=0.8, capsize=2, color="C0",
                    label="cell" if xerr is None and yerr is None else "cell (95 % CI)")
        _draw_chance(ax, records, key)
        front = pareto_front(list(zip(x, y)))
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="C3", lw=1, label="Pareto front")
        texts = [ax.text(xi, yi, pid, fontsize=7) for xi, yi, pid in zip(x, y, pts["id"])]
        ax.set_xlabel("latency p50, batch 1 (ms)")
        ax.set_ylabel(key)
        ax.legend(fontsize=6, loc="best")
        adjust_text(texts, x=x, y=y, ax=ax, arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5})
    _id_legend(fig, grid[1, :], table)
    return fig


def plot_pareto(records: list[dict], path: Path) -> Path | None:
    """Write :func:`draw_pareto` to ``path`` (PNG); None when there is nothing to plot."""
    fig = draw_pareto(records)
    return _save(fig, path) if fig is not None else None


def plot_losses(records: list[dict], path: Path) -> Path | None:
    recs = [r for r in records if r.get("history")]
    if not recs:
        return None
    series = []
    for r in recs:
        tasks = sorted({k.split("/")[0] for row in r["history"] for k in row if k.endswith("/total")})
        for t in tasks:
            series.append((f"{r['label']} {t}", [row[f"{t}/total"] for row in r["history"] if f"{t}/total" in row]))
    return _line_plot(series, "logged step (per task)", "task loss (total)", path, log=True, legend_size=5)


def plot_task_weights(records: list[dict], path: Path) -> Path | None:
    recs = [r for r in records if (r.get("extra") or {}).get("task_weights")]
    if not recs:
        return None
    series = [(f"{r['label']} {t}", [w[t] for w in r["extra"]["task_weights"]])
              for r in recs for t in r["extra"]["task_weights"][0]]
    return _line_plot(series, "step", "task weight", path)


def plot_stages(records: list[dict], path: Path) -> Path | None:
    recs = [r for r in _ok(records) if len(r.get("stages") or []) > 1]
    if not recs:
        return None
    fig, axes = plt.subplots(1, len(recs), figsize=(4.5 * len(recs), 3.8), squeeze=False)
    for ax, r in zip(axes[0], recs):
        names = [f"after {s['task']}" for s in r["stages"]]
        for task, key in headlines(records).items():
            ys = [s["metrics"].get(key) for s in r["stages"]]
            if any(y is not None for y in ys):
                ax.plot(names, [float("nan") if y is None else y for y in ys], marker="o", label=key)
        ax.set_title(r["label"], fontsize=7)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_all(records: list[dict], out_dir: Path) -> dict[str, Path]:
    """Write every applicable plot into ``out_dir``; returns name -> path of those written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, fn in (("pareto", plot_pareto), ("loss_curves", plot_losses),
                     ("task_weights", plot_task_weights), ("stages", plot_stages)):
        p = fn(records, out_dir / f"{name}.png")
        if p is not None:
            made[name] = p
    return made
