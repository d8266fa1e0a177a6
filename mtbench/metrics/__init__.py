"""Metrics: pure maths functions plus classes that only accumulate (torchmetrics style).

Every metric declares a direction (``HIGHER_IS_BETTER``); fractions stay in [0, 1].
"""

HIGHER_IS_BETTER = {
    "det/mAP": True, "det/AP50": True, "seg/mIoU": True, "cls/Top-1": True,
    "forgetting": False, "forgetting_rel": False, "BWT": True, "delta_m": True, "params": False, "params_m": False, "flops_g": False,
    "latency_ms": False, "latency_p90_ms": False, "fps": True, "peak_mem_mib": False, "train_s": False,
    "points/Pd": True, "points/FA_per_image": False, "points/precision": True, "points/F1": True,
    "points/Pd_FA_AUC": True,
    "points_mask/Pd": True, "points_mask/Fa": False, "points_mask/IoU": True, "points_mask/nIoU": True,
}

#: The headline metric of each task, used for per-stage scores and forgetting.
#: points: point-level F1 of Pd and precision (decoded points matched to target centroids,
#: :mod:`mtbench.metrics.point_level`; Pd alone rewards predicting everywhere).
PRIMARY = {"det": "det/mAP", "seg": "seg/mIoU", "cls": "cls/Top-1", "points": "points/F1"}

#: metrics a sequential cell also reports per task: ``forgetting/<task>`` ... (mtbench.metrics.forgetting)
PER_TASK = ("forgetting", "forgetting_rel", "BWT")


def metric_names(tasks) -> list[str]:
    """Every metric name a cell of a suite with ``tasks`` can report, sorted: the registered
    metrics of those tasks (``points_mask/*`` belongs to ``points``), the task-free ones
    (profile figures, forgetting, BWT, delta-m) and ``forgetting/<task>``, ``BWT/<task>`` ...
    Suite gates may name only these (checked when the suite is loaded)."""
    own = [m for m in HIGHER_IS_BETTER if "/" not in m or m.split("/")[0].split("_")[0] in tasks]
    return sorted(own + [f"{m}/{t}" for m in PER_TASK for t in tasks])
