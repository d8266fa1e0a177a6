"""Forgetting and backward transfer of sequential (continual) training, as published.

Notation: stages ``0 .. T-1`` train tasks ``t_0 .. t_{T-1}`` in order; ``a[l][t]`` is the
task's headline score (:func:`mtbench.metrics.headlines`: mAP, mIoU, Top-1, a plugin task's own; a fraction in [0, 1],
higher is better) on its val split after stage ``l``, defined for ``l >= j``, the task's
own stage. Every task but the last (``t_{T-1}``, never followed by another stage) gets:

- ``forgetting/<task>`` = ``max_{j <= l <= T-2} a[l][t] - a[T-1][t]``: Chaudhry et al.,
  "Riemannian Walk for Incremental Learning", ECCV 2018, eq. (4) (reference code:
  facebookresearch/agem ``utils/utils.py::compute_fgt``). The drop from the task's BEST
  earlier score, in metric units; 0 = nothing forgotten; negative = the final score is
  the best yet. It is never below Avalanche's forgetting (the drop from the score right
  after the task's own stage, ``avalanche.evaluation.functional.forgetting``), and equals
  it when the task never improved after its own stage.
- ``forgetting_rel/<task>`` = ``forgetting/<task> / max_{j <= l <= T-2} a[l][t]``: the
  same drop as a fraction of the best earlier score (what a "forgets at most 5 %" gate
  reads). ``None`` when that best score is 0 (a task never learned above 0 has no
  relative drop).
- ``BWT/<task>`` = ``a[T-1][t] - a[j][t]``: backward transfer, Lopez-Paz & Ranzato,
  "Gradient Episodic Memory for Continual Learning", NeurIPS 2017, eq. (3) (reference
  code: facebookresearch/GradientEpisodicMemory ``metrics/metrics.py``); equals minus
  Avalanche's forgetting (``avalanche.evaluation.metrics.BWT``).

The columns are means over the same tasks, every task but the last: ``forgetting`` and
``BWT`` over all ``T-1`` of them; ``forgetting_rel`` over those where it is defined, their
number in ``forgetting_rel_n`` (``forgetting_rel`` is ``None`` when ``forgetting_rel_n``
is 0), so a task is never dropped from one column without the record saying so.
"""

from __future__ import annotations

import numpy as np

from mtbench.errors import MetricError
from mtbench.metrics import higher_is_better
from mtbench.metrics.base import DEFAULT_LEVEL, DEFAULT_RESAMPLES, resampler, split_bootstrap_ci


def _score(stage: dict, k: int, key: str) -> float:
    value = stage["metrics"].get(key)
    if value is None:
        raise MetricError(f"forgetting needs {key} after stage {k} ({stage['task']}), but that stage's "
                          f"evaluation has only {sorted(stage['metrics'])}: a sequential strategy must "
                          f"evaluate every task learned so far after each stage")
    return float(value)


def forgetting(stages: list[dict], primary: dict[str, str]) -> dict[str, float | int | None]:
    """Forgetting (Chaudhry et al. 2018), relative forgetting and BWT (Lopez-Paz & Ranzato
    2017) from per-stage scores; definitions in the module docstring.

    :param stages: one dict per stage, in training order: ``{"task": t, "metrics":
        {metric: value}}``; the metrics after stage ``k`` cover every task of stages ``0..k``.
    :param primary: task -> headline metric name (e.g. ``seg -> seg/mIoU``), higher is better.
    :return: for each task but the last ``forgetting/<task>``, ``forgetting_rel/<task>``
        (``None`` where the best earlier score is 0) and ``BWT/<task>``, in metric units
        (relative: a fraction); then ``forgetting``, ``forgetting_rel``, ``forgetting_rel_n``
        (tasks in the ``forgetting_rel`` mean) and ``BWT``. Empty with fewer than 2 stages.
    :raises MetricError: a stage lacks the headline score of a task learned by then, or a
        headline metric is not declared higher-is-better (the drop would change sign).
    """
    if len(stages) < 2:
        return {}
    out: dict[str, float | int | None] = {}
    drops, rels, bwts = [], [], []
    directions = higher_is_better()
    last = len(stages) - 1
    for j, stage in enumerate(stages[:-1]):
        task = stage["task"]
        key = primary[task]
        if directions.get(key) is not True:
            raise MetricError(f"forgetting needs a higher-is-better headline metric; {key} (task {task}) is "
                              f"{'lower-is-better' if key in directions else 'not declared'} in "
                              f"its task's metrics (mtbench.tasks.Task.metrics)")
        earlier = [_score(stages[k], k, key) for k in range(j, last)]
        final = _score(stages[last], last, key)
        best = max(earlier)
        drop = best - final
        rel = drop / best if best > 0 else None
        bwt = final - earlier[0]
        out[f"forgetting/{task}"], out[f"forgetting_rel/{task}"], out[f"BWT/{task}"] = drop, rel, bwt
        drops.append(drop)
        bwts.append(bwt)
        if rel is not None:
            rels.append(rel)
    out["forgetting"] = sum(drops) / len(drops)
    out["forgetting_rel"] = sum(rels) / len(rels) if rels else None
    out["forgetting_rel_n"] = len(rels)
    out["BWT"] = sum(bwts) / len(bwts)
    return out


def forgetting_ci(stages: list[dict], primary: dict[str, str], resamples: int = DEFAULT_RESAMPLES,
                  level: float = DEFAULT_LEVEL, seed: int = 0) -> dict[str, list[float]]:
    """Bootstrap CIs over the val images of every figure :func:`forgetting` gives.

    Each task's val split is resampled (images with replacement, percentile interval), and one
    resample of a task's images re-scores that task after every stage from the stage's stored
    per-image records (``stage["samples"][task]``, :func:`mtbench.metrics.base.sample_entry`):
    every stage scores the same images in the same order, so the drop is paired across stages,
    and :func:`forgetting` itself computes the figures of each resample. The tasks' splits are
    resampled independently (the means over tasks: a stratified bootstrap).

    :param stages: as :func:`forgetting`, each stage also holding ``samples`` (task -> entry)
        of every task it scored.
    :param primary: task -> headline metric name.
    :return: ``{metric: [low, high]}`` for ``forgetting/<task>``, ``forgetting_rel/<task>``,
        ``BWT/<task>``, ``forgetting``, ``forgetting_rel``, ``BWT`` (metric units; relative: a
        fraction); a figure undefined on some resample (``forgetting_rel`` when a resampled best
        score is 0) gets none. Empty with fewer than 2 stages, or when a stage lacks the records
        of a task it must score (a strategy that stores no ``samples``, a metric that keeps no
        per-image records) or a task's stages scored different numbers of images.
    :raises MetricError: as :func:`forgetting`.
    """
    point = forgetting(stages, primary)
    if not point:
        return {}
    scorers, ns = [], []
    for j, stage in enumerate(stages[:-1]):
        task = stage["task"]
        entries = [(s.get("samples") or {}).get(task) for s in stages[j:]]
        if any(e is None for e in entries):
            return {}
        made = [resampler(e) for e in entries]
        if len({n for _, n in made}) != 1:
            return {}
        scorers.append((j, task, [score for score, _ in made]))
        ns.append(made[0][1])
    keys = [k for k in point if k != "forgetting_rel_n"]

    def statistic(*indices):
        scored = [{"task": s["task"], "metrics": {}} for s in stages]
        for (j, task, scores), index in zip(scorers, indices):
            for stage, score in zip(scored[j:], scores):
                stage["metrics"][primary[task]] = score(index).get(primary[task], np.nan)
        figures = forgetting(scored, primary)
        return np.array([np.nan if figures[k] is None else float(figures[k]) for k in keys])

    return {k: list(v) for k, v in split_bootstrap_ci(statistic, tuple(ns), keys, resamples, level, seed).items()}
