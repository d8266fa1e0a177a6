"""Segmentation losses: ``seg/ce``, ``seg/dice``, ``seg/ce+dice``.

Logits ``(B, C, h, w)`` at the head's stride are bilinearly upsampled to the target's
``(B, H, W)``; pixels labelled 255 are ignored by every loss. A batch whose pixels are
all ignored gives 0 (with a graph), not NaN.

- ``ce``: per-pixel cross-entropy, mean over non-ignored pixels of the batch.
- ``dice``: soft multi-class Dice loss (Milletari et al., "V-Net", 3DV 2016):
  ``1 - mean_c (2 sum p_c g_c + eps) / (sum p_c + sum g_c + eps)`` over softmax
  probabilities, classes present in the batch's targets or predictions.
- ``ce+dice``: their sum (weights ``ce_weight``, ``dice_weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtbench.data.transforms import upsample_logits
from mtbench.plugins import Spec, hookimpl

IGNORE = 255


def soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of ``(B, C, H, W)`` logits against ``int64 (B, H, W)`` (255 ignored)."""
    valid = (target != IGNORE).unsqueeze(1).float()
    probs = logits.softmax(1) * valid
    onehot = F.one_hot(target.clamp(max=logits.shape[1] - 1) * (target != IGNORE), logits.shape[1])
    onehot = onehot.permute(0, 3, 1, 2).float() * valid
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice[present].mean() if present.any() else logits.sum() * 0.0


class SegLoss(nn.Module):
    """CE and/or Dice with ``ignore_index = 255``.

    :param num_classes: classes ``C`` (background included).
    :param ce_weight: weight of cross-entropy (0 = off).
    :param dice_weight: weight of soft Dice (0 = off).
    Called as ``loss(raw float32 (B, C, h, w), target int64 (B, H, W), stride=int)``.
    """

    def __init__(self, num_classes: int, ce_weight: float = 1.0, dice_weight: float = 0.0,
                 class_weights: list[float] | None = None):
        super().__init__()
        self.num_classes, self.ce_weight, self.dice_weight = num_classes, ce_weight, dice_weight
        self.weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)

    def forward(self, raw: torch.Tensor, target: torch.Tensor, stride: int) -> dict[str, torch.Tensor]:
        logits = upsample_logits(raw, tuple(target.shape[-2:]))
        valid = int((target != IGNORE).sum())
        out: dict[str, torch.Tensor] = {}
        total = logits.sum() * 0.0
        if self.ce_weight:
            ce = F.cross_entropy(logits, target, weight=self.weight, ignore_index=IGNORE) if valid else total
            out["ce"] = ce
            total = total + self.ce_weight * ce
        if self.dice_weight:
            dice = soft_dice(logits, target) if valid else logits.sum() * 0.0
            out["dice"] = dice
            total = total + self.dice_weight * dice
        return {**out, "total": total, "num_pos": torch.tensor(float(valid))}


def _ce(num_classes: int, class_weights: list[float] | None = None):
    return SegLoss(num_classes, 1.0, 0.0, class_weights)


def _dice(num_classes: int):
    return SegLoss(num_classes, 0.0, 1.0)


def _ce_dice(num_classes: int, ce_weight: float = 1.0, dice_weight: float = 1.0,
             class_weights: list[float] | None = None):
    return SegLoss(num_classes, ce_weight, dice_weight, class_weights)


@hookimpl
def mtbench_register_losses():
    return [Spec("loss", "ce", _ce, "per-pixel cross-entropy, 255 ignored", task="seg"),
            Spec("loss", "dice", _dice, "soft Dice (Milletari et al., 2016), 255 ignored", task="seg"),
            Spec("loss", "ce+dice", _ce_dice, "cross-entropy + soft Dice, 255 ignored", task="seg")]
