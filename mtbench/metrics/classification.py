"""Top-1 accuracy over a split (micro average: correct images / images)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mtbench.metrics.base import SampleMetricBase
from mtbench.plugins import Spec, hookimpl

if TYPE_CHECKING:  # torch only for annotations: compare / doctor load this class for reduce()
    import torch


class Top1(SampleMetricBase):
    """``update(logits float32 (B, C), target int64 (B,))``; ``compute() -> {"cls/Top-1"}``.

    ``samples()``: ``correct`` (per image 0/1: top logit == label) and ``label``. Values are
    float64 fractions of image counts (6 of 60 is exactly 0.1), equal to torchmetrics'
    ``MulticlassAccuracy(average="micro", top_k=1)`` (tested).
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.correct: list[int] = []
        self.labels: list[int] = []

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        logits, target = logits.detach().cpu(), target.cpu()
        self.correct += (logits.argmax(1) == target).int().tolist()
        self.labels += target.tolist()

    def samples(self) -> dict[str, list]:
        return {"correct": self.correct, "label": self.labels}

    @staticmethod
    def reduce(samples: dict, index: np.ndarray) -> dict[str, float]:
        correct = np.asarray(samples["correct"], dtype=np.float64)[index]
        return {"cls/Top-1": float(correct.mean()) if len(correct) else 0.0}


@hookimpl
def mtbench_register_metrics():
    return [Spec("metric", "top1", lambda dataset: Top1(dataset.info.num_classes), "Top-1 accuracy (micro)",
                 task="cls")]
