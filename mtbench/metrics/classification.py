"""Top-1 accuracy over a split (micro average: correct images / images)."""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassAccuracy


class Top1:
    """``update(logits float32 (B, C), target int64 (B,))``; ``compute() -> {"cls/Top-1"}``."""

    def __init__(self, num_classes: int):
        self.metric = MulticlassAccuracy(num_classes=num_classes, average="micro", top_k=1)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.metric.update(logits.detach().cpu(), target.cpu())

    def compute(self) -> dict[str, float]:
        return {"cls/Top-1": float(self.metric.compute())}
