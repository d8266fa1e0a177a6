"""``cls/ce``: image classification cross-entropy, optional label smoothing (Szegedy et al., 2016)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtbench.plugins import Spec, hookimpl


class ClsCE(nn.Module):
    """Cross-entropy on ``float32 (B, C)`` logits and ``int64 (B,)`` targets.

    :param label_smoothing: in [0, 1).
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        self.num_classes, self.label_smoothing = num_classes, label_smoothing

    def forward(self, raw: torch.Tensor, target: torch.Tensor, stride: int) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(raw, target, label_smoothing=self.label_smoothing)
        out = {"ce": ce, "total": ce, "num_pos": torch.tensor(float(target.numel()))}
        if self.label_smoothing:  # entropy of the smoothed target distribution
            c, eps = raw.shape[1], self.label_smoothing
            hi, lo = 1 - eps + eps / c, eps / c
            out["floor"] = torch.tensor(-(hi * math.log(hi) + (c - 1) * lo * math.log(lo)))
        return out


@hookimpl
def mtbench_register_losses():
    return [Spec("loss", "ce", ClsCE, "cross-entropy with optional label smoothing", task="cls")]
