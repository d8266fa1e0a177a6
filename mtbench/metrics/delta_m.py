"""delta-m: mean relative change of a multi-task model's metrics against single-task baselines.

For tasks ``t = 1..T`` with single-task baselines, metrics ``m = 1..M_t`` of task ``t``:

``delta_m = 100 / T * sum_t 1 / M_t * sum_m (-1)^{l_m} (M_{t,m} - B_{t,m}) / B_{t,m}``

in percent, ``l_m = 1`` when lower is better (:func:`mtbench.metrics.higher_is_better`), ``B`` the single-task
cell's score, ``M`` the multi-task cell's. Positive = the multi-task model beats training
each task alone. Two conventions, named by the suite's ``delta_m`` option and stored with
the result (``delta_m_convention``):

- ``headline`` (default): one metric per task, its headline (:func:`mtbench.metrics.headlines`:
  det mAP, seg mIoU, cls Top-1, a plugin task's own), as Maninis et al., "Attentive Single-Tasking of Multiple Tasks",
  CVPR 2019, define delta-m (one figure per task);
- ``all``: every declared metric a task reports (det mAP and AP50; a plugin task's metrics,
  each with its direction, :attr:`mtbench.tasks.Task.metrics`; counters such as
  ``det/num_dets`` are not scores), averaged within the task first, then over tasks:
  LibMTL's ``count_improvement`` (median-research-group/LibMTL, ``LibMTL/utils.py``; there
  a fraction, here x100).

A metric whose baseline is 0 has no relative change: its term is ``None`` and it is left
out of its task's mean (a task with no term left is left out of the task mean); every
term, ``None`` included, is stored in ``delta_m_terms``, so nothing is dropped unseen.
"""

from __future__ import annotations

import json

from mtbench.errors import MetricError
from mtbench.metrics import headlines, higher_is_better

CONVENTIONS = ("headline", "all")


def _task_metrics(task: str, base: dict[str, float], convention: str, records: list[dict]) -> list[str]:
    if convention == "headline":
        return [headlines(records)[task]]
    if convention == "all":
        # registered metrics only: counters such as det/num_dets are not scores
        declared = higher_is_better(records)
        return sorted(k for k, v in base.items()
                      if k.startswith(f"{task}/") and k in declared and isinstance(v, (int, float)))
    raise MetricError(f"delta-m convention {convention!r} is not one of {', '.join(CONVENTIONS)}")


def delta_m_terms(metrics: dict[str, float], single: dict[str, dict[str, float]],
                  convention: str = "headline", records: list[dict] = ()) -> dict[str, dict[str, float | None]]:
    """Each metric's signed relative change ``(-1)^{l} (M - B) / B`` (a fraction), per task.

    :param metrics: the multi-task cell's metrics (``{"det/mAP": 0.31, ...}``).
    :param single: task -> the metrics of that task's single-task baseline cell.
    :param convention: ``headline`` or ``all`` (module docstring).
    :param records: the stored records, whose ``task_meta`` declares their tasks' metrics
        (:func:`mtbench.tasks.task_meta`).
    :return: ``{task: {metric: change or None}}``; ``None`` where the baseline is 0 or the
        multi-task cell lacks the metric.
    :raises MetricError: an unknown convention, or a metric without a declared direction.
    """
    out: dict[str, dict[str, float | None]] = {}
    directions = higher_is_better(records)
    for task, base in single.items():
        terms: dict[str, float | None] = {}
        for key in _task_metrics(task, base, convention, records):
            if key not in directions:
                raise MetricError(f"delta-m needs the direction of {key} (task {task}); declare it in the "
                                  f"task's metrics (mtbench.tasks.Task.metrics)")
            m, b = metrics.get(key), base.get(key)
            sign = 1 if directions[key] else -1
            terms[key] = sign * (m - b) / b if m is not None and b else None
        out[task] = terms
    return out


def delta_m(metrics: dict[str, float], single: dict[str, dict[str, float]],
            convention: str = "headline") -> float | None:
    """delta-m in percent (module docstring); ``None`` when no task has a defined term.

    :raises MetricError: as :func:`delta_m_terms`.
    """
    return _percent(delta_m_terms(metrics, single, convention))


def _percent(per_task: dict[str, dict[str, float | None]]) -> float | None:
    means = []
    for terms in per_task.values():
        defined = [v for v in terms.values() if v is not None]
        if defined:
            means.append(sum(defined) / len(defined))
    return 100 * sum(means) / len(means) if means else None


def setting_key(record: dict) -> tuple:
    """The cell a record compares with in other strategies: same architecture, losses, level
    and seed (delta-m's single-task baselines, a joint method's ``equal`` step time)."""
    c = record["config"]
    return (json.dumps(c["architecture"], sort_keys=True), json.dumps(c["losses"], sort_keys=True),
            c["level"], c["seed"])


def attach_delta_m(records: list[dict], convention: str | None = None) -> None:
    """Set ``metrics["delta_m"]``, ``delta_m_convention`` and ``delta_m_terms`` on every ok
    multi-task record that has single-task baselines (same architecture, losses, level, seed).

    :param convention: ``headline``/``all``; ``None``: each record's suite option
        (``config["delta_m"]``; records stored before the option existed: ``headline``, the
        convention they were computed with). ``delta_m_from`` lists the baselines' hashes, so
        a finding on a baseline reaches the delta-m.
    """
    key = setting_key
    ok = [r for r in records if r.get("status") == "ok" and "config" in r]
    singles: dict[tuple, dict[str, dict]] = {}
    hashes: dict[tuple, list[str]] = {}
    for r in ok:
        if r["config"]["strategy"]["name"] == "single-task":
            singles.setdefault(key(r), {})[r["config"]["strategy"]["params"]["task"]] = r["metrics"]
            hashes.setdefault(key(r), []).append(r.get("hash"))
    for r in ok:
        if r["config"]["strategy"]["name"] != "single-task" and key(r) in singles:
            conv = convention or r["config"].get("delta_m", "headline")
            r["delta_m_convention"] = conv
            r["delta_m_terms"] = delta_m_terms(r["metrics"], singles[key(r)], conv, records)
            value = _percent(r["delta_m_terms"])
            r["metrics"].pop("delta_m", None)
            if value is not None:
                r["metrics"]["delta_m"] = value
                r["delta_m_from"] = hashes[key(r)]
