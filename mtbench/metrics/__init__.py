"""Metrics: pure maths functions plus classes that only accumulate (torchmetrics style).

Every metric declares a direction (``HIGHER_IS_BETTER``); fractions stay in [0, 1].
"""

HIGHER_IS_BETTER = {
    "det/mAP": True, "det/AP50": True, "seg/mIoU": True, "cls/Top-1": True,
    "forgetting": False, "forgetting_rel": False, "BWT": True, "delta_m": True, "params": False, "params_m": False, "flops_g": False,
    "latency_ms": False, "latency_p90_ms": False, "fps": True, "peak_mem_mib": False, "train_s": False,
    "points/Pd": True, "points/Fa": False, "points/precision": True, "points/recall": True, "points/F1": True,
    "points/IoU": True, "points/nIoU": True,
}

#: The headline metric of each task, used for per-stage scores and forgetting.
#: points: F1 of target-level Pd and precision (Pd alone rewards predicting everywhere).
PRIMARY = {"det": "det/mAP", "seg": "seg/mIoU", "cls": "cls/Top-1", "points": "points/F1"}
