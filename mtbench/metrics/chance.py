"""Measured chance levels: what a model that learned nothing about the images scores on
the same val split, computed with the same metric code, with a bootstrap CI.

Each task names its chance predictor (:meth:`mtbench.tasks.Task.chance_inputs`):

- **majority** (classification, :mod:`mtbench.tasks.classification`): a constant predictor
  of the val split's most frequent label (a model that ignores its input can always reach
  it). Top-1 = that label's share.
- **permutation** (the default, :func:`permuted_targets`): the model's own predictions scored
  against another image's ground truth (a derangement of the val images, seeded). It keeps
  everything about the predictions that does not depend on the image (how many boxes,
  where, which classes, how much of each segmentation class), so a det
  mAP of 0.005 from predicting the split's typical boxes reads as chance, not as learning.
  Predictions are in input pixels and every val image is resized to the same square
  input, so another image's target maps them to its own original pixels unchanged.

A score is **at chance** when its CI overlaps the chance level's CI (the chance-level
diagnostic), not when it is within an epsilon of a number.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

def derangement(n: int, seed: int) -> np.ndarray:
    """``int64 (n,)``: ``perm[i] != i`` for every i (n >= 2), seeded (a random cyclic shift)."""
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)
    return out


def permuted_targets(preds: list, targets: list, seed: int) -> tuple[list, list, str]:
    """The ``permutation`` chance predictor (every task's default,
    :meth:`mtbench.tasks.Task.chance_inputs`): per-image ``(predictions, targets)`` with the
    targets of a seeded derangement of the val images, and the method name.

    :param preds: per-image decoded predictions of the model (one entry per val image).
    :param targets: per-image targets, same order.
    """
    if len(targets) < 2:
        return preds, targets, "none (fewer than 2 images)"
    perm = derangement(len(targets), seed)
    return preds, [targets[j] for j in perm], "permutation"


def batched(items: list, size: int):
    """Re-batch per-image items as :func:`mtbench.data.base.collate` and ``decode`` shape them:
    tensors stacked to ``(B, ...)``, anything else as a list."""
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        yield torch.stack(chunk) if isinstance(chunk[0], torch.Tensor) else list(chunk)


def chance_metric(task, make_metric: Callable[[], object], preds: list, targets: list, seed: int,
                  batch_size: int = 64):
    """A fresh metric (``make_metric()``) fed the chance predictor of ``task`` (a
    :class:`mtbench.tasks.Task`, its ``chance_inputs``); ``(metric, method)``."""
    cp, ct, method = task.chance_inputs(preds, targets, seed)
    metric = make_metric()
    for p, t in zip(batched(cp, batch_size), batched(ct, batch_size)):
        metric.update(p, t)
    return metric, method
