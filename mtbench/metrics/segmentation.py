"""Benchmark mIoU: one confusion matrix over the whole split (not a mean of per-image IoUs).

Equal to torchmetrics ``MulticlassJaccardIndex(average="macro", ignore_index=255)`` (tested),
computed in float64 from integer pixel counts: pixels whose target is 255 are ignored; a class absent from both predictions and targets of the split
is left out of the mean (it has no IoU), as in mmsegmentation's nan-mean.

Per-sample records: each image's per-class intersection and union pixel counts. Both are
additive over images, so the split's IoU of class c is ``sum_i I_ic / sum_i U_ic`` and
``reduce`` recomputes mIoU on any resample of images from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mtbench.metrics.base import SampleMetricBase
from mtbench.plugins import Spec, hookimpl

if TYPE_CHECKING:
    import torch

IGNORE = 255


class SegmentationMIoU(SampleMetricBase):
    """``update(pred int64 (B, H, W), target int64 (B, H, W))``; ``compute() -> {"seg/mIoU"}``.

    ``samples()``: ``inter``, ``union``: per image ``int (C,)`` pixel counts per class.
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.inter: list[list[int]] = []
        self.union: list[list[int]] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        import torch  # here, not at import: compare / doctor load this class for reduce() only

        pred, target = pred.cpu(), target.cpu()
        c = self.num_classes
        for p, t in zip(pred, target):
            valid = t != IGNORE
            p, t = p[valid].long(), t[valid].long()
            inter = torch.bincount(t[p == t], minlength=c)[:c]
            area_p = torch.bincount(p.clamp(0, c - 1), minlength=c)[:c]
            area_t = torch.bincount(t, minlength=c)[:c]
            self.inter.append(inter.tolist())
            self.union.append((area_p + area_t - inter).tolist())

    def samples(self) -> dict[str, list]:
        return {"inter": self.inter, "union": self.union}

    @staticmethod
    def reduce(samples: dict, index: np.ndarray) -> dict[str, float]:
        inter = np.asarray(samples["inter"], dtype=np.int64)[index].sum(0)
        union = np.asarray(samples["union"], dtype=np.int64)[index].sum(0)
        present = union > 0
        return {"seg/mIoU": float((inter[present] / union[present]).mean()) if present.any() else 0.0}


@hookimpl
def mtbench_register_metrics():
    return [Spec("metric", "miou", lambda dataset: SegmentationMIoU(dataset.info.num_classes),
                 "mIoU from one confusion matrix over the split, 255 ignored", task="seg")]
