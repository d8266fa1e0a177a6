"""Forgetting in sequential (continual) training.

Definitions (stated in the result's ``metrics_doc`` and the README):

- per-task forgetting = (score right after the task's own stage - final score)
  / score right after its own stage. 0 = nothing forgotten, 1 = everything; negative =
  the task improved later. Undefined (``None``) when the just-learned score is 0.
- ``forgetting`` (table column) = mean per-task forgetting over every task but the last.
- BWT, backward transfer (Lopez-Paz & Ranzato, NeurIPS 2017) = mean over earlier tasks of
  (final score - score right after its own stage), in metric units (negative = forgetting).
"""

from __future__ import annotations


def forgetting(stages: list[dict], primary: dict[str, str]) -> dict[str, float | None]:
    """Forgetting and BWT from per-stage scores.

    :param stages: one dict per stage, in order: ``{"task": t, "metrics": {metric: value}}``;
        the metrics after stage k cover every task learned up to k.
    :param primary: task -> headline metric name (e.g. ``seg -> seg/mIoU``).
    :return: ``{"forgetting/<task>": f, "forgetting": mean, "BWT": bwt}`` (None where undefined).
    """
    if len(stages) < 2:
        return {}
    final = stages[-1]["metrics"]
    out: dict[str, float | None] = {}
    per_task, deltas = [], []
    for stage in stages[:-1]:
        key = primary[stage["task"]]
        just, end = stage["metrics"].get(key), final.get(key)
        if just is None or end is None:
            continue
        deltas.append(end - just)
        value = (just - end) / just if just > 0 else None
        out[f"forgetting/{stage['task']}"] = value
        if value is not None:
            per_task.append(value)
    out["forgetting"] = sum(per_task) / len(per_task) if per_task else None
    out["BWT"] = sum(deltas) / len(deltas) if deltas else None
    return out
