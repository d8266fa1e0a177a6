"""``task-weight-collapse``: a learned task weight that switched its task off, or starved it.

Every strategy whose weights change (GradNorm, Chen et al. ICML 2018; uncertainty, Kendall
et al. CVPR 2018; DWA, Liu et al. CVPR 2019; the other loss weightings and the
gradient-combining methods, see :mod:`mtbench.strategies.weighting` and
:mod:`mtbench.strategies.aggregation`) stores per step in ``extra.task_weights`` the weight
that multiplied each task's loss at that step (for gradient-combining methods, the effective
weight of each task's gradient in the combined one). Only ratios between a step's weights
are read, so a common scale (uncertainty's 0.5) does not matter; an effective weight at or
below 0 (MGDA's min-norm point dropping a task) counts as collapsed. Two patterns make a
task's metric a measurement of something other than joint training:

- **collapse** (error): the weight below ``COLLAPSE_SHARE`` (0.1 %) of the mean task
  weight at the end, or for at least ``COLLAPSE_STEPS`` (10 %) of the steps: the task was
  switched off.
- **extreme ratio** (warning): the weight at most ``1 / EXTREME_RATIO`` (1:50) of the
  largest task weight for at least ``EXTREME_STEPS`` (25 %) of the steps, without
  collapsing: its loss then moves the shared layers less than 2 % as much as the favoured
  task's for a quarter of the run (a GradNorm weight held at 1:80 is this case). Weights
  that offset very different loss scales (uncertainty weighting) can show it legitimately;
  the evidence gives the ratio and the steps so the reader can tell.

Both invalidate the starved task's metrics (:func:`~mtbench.diagnostics.binding.task_metrics`).
"""

from __future__ import annotations

from statistics import fmean

from mtbench.diagnostics.binding import Finding, task_metrics

COLLAPSE_SHARE = 1e-3
COLLAPSE_STEPS = 0.1
EXTREME_RATIO = 50.0
EXTREME_STEPS = 0.25


def task_weight_collapse(rec: dict) -> list[Finding]:
    """Collapsed (error) or extremely down-weighted (warning) learned task weights."""
    traj = (rec.get("extra") or {}).get("task_weights") or []
    if not traj:
        return []
    out = []
    for task in traj[0]:
        shares = [w[task] / m if (m := fmean(w.values())) > 0 else 0.0 for w in traj]
        low = [i for i, sh in enumerate(shares) if sh < COLLAPSE_SHARE]
        ratios = [max(w.values()) / w[task] if w[task] > 0 else float("inf") for w in traj]
        starved = [i for i, r in enumerate(ratios) if r >= EXTREME_RATIO]
        evidence = {"task": task, "steps": len(traj), "min_weight": min(w[task] for w in traj),
                    "final_weight": traj[-1][task]}
        if shares[-1] < COLLAPSE_SHARE or len(low) >= COLLAPSE_STEPS * len(traj):
            out.append(Finding("task-weight-collapse", "error",
                               f"{task} weight at ~0 (< {COLLAPSE_SHARE:.1%} of the mean task weight) for "
                               f"{len(low)} of {len(traj)} steps, from step {low[0] if low else len(traj) - 1}; "
                               f"ends at {traj[-1][task]:.3g}",
                               {**evidence, "steps_below": len(low), "first_step": low[0] if low else len(traj) - 1},
                               task_metrics(rec, task)))
        elif len(starved) >= EXTREME_STEPS * len(traj):
            worst = max(r for r in ratios if r != float("inf"))
            out.append(Finding("task-weight-collapse", "warning",
                               f"{task} weight at 1:{EXTREME_RATIO:.0f} or less of the largest task weight for "
                               f"{len(starved)} of {len(traj)} steps (from step {starved[0]}, down to 1:{worst:.0f})",
                               {**evidence, "steps_starved": len(starved), "first_step": starved[0],
                                "worst_ratio": worst, "median_ratio": sorted(ratios)[len(ratios) // 2]},
                               task_metrics(rec, task)))
    return out
