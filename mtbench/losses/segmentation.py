"""``seg/ce``: per-pixel cross-entropy for semantic segmentation.

Logits ``(B, C, h, w)`` at the head's stride are bilinearly upsampled to the target's
``(B, H, W)``; pixels labelled 255 are ignored. The mean is over non-ignored pixels of
the batch; a batch whose pixels are all ignored gives 0 (with a graph), not NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtbench.data.transforms import upsample_logits
from mtbench.plugins import Spec, hookimpl

IGNORE = 255


class SegCE(nn.Module):
    """Cross-entropy with ``ignore_index = 255``.

    :param num_classes: classes ``C`` (background included).
    Called as ``loss(raw float32 (B, C, h, w), target int64 (B, H, W), stride=int)``.
    """

    def __init__(self, num_classes: int, class_weights: list[float] | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)

    def forward(self, raw: torch.Tensor, target: torch.Tensor, stride: int) -> dict[str, torch.Tensor]:
        logits = upsample_logits(raw, tuple(target.shape[-2:]))
        valid = int((target != IGNORE).sum())
        if valid == 0:
            ce = logits.sum() * 0.0
        else:
            ce = F.cross_entropy(logits, target, weight=self.weight, ignore_index=IGNORE)
        return {"ce": ce, "total": ce, "num_pos": torch.tensor(float(valid))}


@hookimpl
def mtbench_register_losses():
    return [Spec("loss", "ce", SegCE, "per-pixel cross-entropy, 255 ignored", task="seg")]
