"""Task losses. Each returns named scalar components plus ``total`` and counters (``num_pos``, ...).

A loss whose targets are soft (centre-ness, IoU-aware scores, Gaussian heatmaps, label
smoothing) cannot reach 0; it also reports ``floor``, the smallest ``total`` possible for
the batch's targets (the entropy of the soft targets), so a check such as
``overfit-one-batch`` can tell "not learning" from "at the floor".
"""

from __future__ import annotations

import torch


def binary_entropy(t: torch.Tensor) -> torch.Tensor:
    """Elementwise ``-(t log t + (1-t) log(1-t))`` (nats), 0 at t = 0 or 1: the minimum of BCE
    against soft target ``t``."""
    t = t.detach().clamp(0, 1)
    return -(torch.xlogy(t, t) + torch.xlogy(1 - t, 1 - t))


def call_loss(loss, raw, targets, stride, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``loss(raw, targets, stride=stride)``, plus ``images=images`` (``float32 (B, 3, H, W)`` in
    [0, 1], the images ``targets`` belong to) for a loss that sets ``takes_images = True`` (a
    distillation loss whose teacher reads them, e.g. ``cls/kd``). Every caller of a task loss goes
    through here, so such a loss sees the same images in training and in the checks."""
    if getattr(loss, "takes_images", False):
        return loss(raw, targets, stride=stride, images=images)
    return loss(raw, targets, stride=stride)


class EpochAware:
    """Mixin for losses with epoch schedules (assigner warm-up, shrinking targets): the
    training loop calls ``set_epoch(epoch)`` (the task's 0-based epoch) before each call."""

    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
