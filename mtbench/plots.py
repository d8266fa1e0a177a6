"""Plots of stored results (matplotlib, Agg backend, PNG files).

- ``pareto.png``: each task's headline metric vs batch-1 latency (ms), one panel per task,
  with the Pareto front (no other cell is both faster and better) drawn as a step line.
- ``loss_curves.png``: every cell's per-task total loss over optimiser steps.
- ``task_weights.png``: task-weight trajectories of strategies that store them
  (``extra.task_weights``, e.g. GradNorm).
- ``stages.png``: per-stage scores of sequential cells (what forgetting is computed from).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mtbench.metrics import PRIMARY  # noqa: E402


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


def plot_pareto(records: list[dict], path: Path) -> Path | None:
    recs = [r for r in _ok(records) if r.get("profile", {}).get("latency_ms")]
    tasks = [t for t, m in PRIMARY.items() if any(m in r["metrics"] for r in recs)]
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        key = PRIMARY[task]
        pts = [(r["profile"]["latency_ms"], r["metrics"][key], r["label"]) for r in recs if key in r["metrics"]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts])
        for x, y, label in pts:
            ax.annotate(label, (x, y), fontsize=6, alpha=0.8)
        front = pareto_front([(p[0], p[1]) for p in pts])
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="C3", label="Pareto front")
        ax.set_xlabel("latency p50, batch 1 (ms)")
        ax.set_ylabel(key)
        ax.legend(fontsize=7)
    return _save(fig, path)


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
        for task, key in PRIMARY.items():
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
