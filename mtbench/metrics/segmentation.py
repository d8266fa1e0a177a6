"""Benchmark mIoU: one confusion matrix over the whole split (not a mean of per-image IoUs).

torchmetrics ``MulticlassJaccardIndex(average="macro", ignore_index=255)``: pixels whose
target is 255 are ignored; a class absent from both predictions and targets of the split
is left out of the mean (it has no IoU), as in mmsegmentation's nan-mean.
"""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassJaccardIndex


class SegmentationMIoU:
    """``update(pred int64 (B, H, W), target int64 (B, H, W))``; ``compute() -> {"seg/mIoU"}``."""

    def __init__(self, num_classes: int):
        self.metric = MulticlassJaccardIndex(num_classes=num_classes, average="macro", ignore_index=255,
                                             validate_args=False)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.metric.update(pred.cpu(), target.cpu())

    def compute(self) -> dict[str, float]:
        return {"seg/mIoU": float(self.metric.compute())}
