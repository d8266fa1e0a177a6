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

from mtbench.errors import MetricError
from mtbench.metrics import higher_is_better


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
