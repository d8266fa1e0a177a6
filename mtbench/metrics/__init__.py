"""Metrics: pure maths functions plus classes that only accumulate (torchmetrics style).

Every metric declares a direction (higher is better or not); fractions stay in [0, 1]. A
task's own metrics, their directions and its headline metric are declared by the task
(:class:`mtbench.tasks.Task`, registered through ``mtbench_register_tasks``); the task-free
ones (profile figures, forgetting, BWT, delta-m) are declared here.
"""

from __future__ import annotations

from typing import Iterable

#: task-free metrics -> higher is better (a task's own: :func:`higher_is_better`)
HIGHER_IS_BETTER = {
    "forgetting": False, "forgetting_rel": False, "BWT": True, "delta_m": True, "params": False, "params_m": False,
    "flops_g": False, "latency_ms": False, "latency_p90_ms": False, "fps": True, "peak_mem_mib": False,
    "train_s": False,
}

#: metrics a sequential cell also reports per task: ``forgetting/<task>`` ... (mtbench.metrics.forgetting)
PER_TASK = ("forgetting", "forgetting_rel", "BWT")


def higher_is_better(records: Iterable[dict] = ()) -> dict[str, bool]:
    """Every declared metric -> higher is better: the task-free ones and every known task's
    (:func:`mtbench.tasks.task_meta`: the active registry's or the built-in tasks, and those
    stored in ``records``)."""
    from mtbench.tasks import task_meta
    out = dict(HIGHER_IS_BETTER)
    for meta in task_meta(records).values():
        out.update(meta["metrics"])
    return out


def headlines(records: Iterable[dict] = ()) -> dict[str, str]:
    """Task name -> its headline metric (per-stage scores, forgetting, delta-m, plots), for
    every known task (as :func:`higher_is_better`), e.g. ``{"det": "det/mAP", "seg": "seg/mIoU",
    "cls": "cls/Top-1"}``."""
    from mtbench.tasks import task_meta
    return {name: meta["headline"] for name, meta in task_meta(records).items()}


def metric_names(tasks, registry=None) -> list[str]:
    """Every metric name a cell of a suite with ``tasks`` can report, sorted: the metrics those
    tasks declare (``registry``, default :func:`mtbench.plugins.active_registry`), the
    task-free ones (profile figures, forgetting, BWT, delta-m) and ``forgetting/<task>``,
    ``BWT/<task>`` ... Suite gates may name only these (checked when the suite is loaded); a
    task that is not registered contributes none."""
    from mtbench.plugins import active_registry  # here: the registry is built on first use, not at import
    known = (registry or active_registry()).tasks()
    own = [m for t in tasks if t in known for m in known[t].metrics]
    return sorted(set(HIGHER_IS_BETTER) | set(own) | {f"{m}/{t}" for m in PER_TASK for t in tasks})
