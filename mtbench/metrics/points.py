"""Infrared small-target metrics as DNANet / BasicIRSTD define them (Li et al., TIP 2022).

Per image, targets and predictions are the 8-connected components of the binary ground-truth
and predicted masks. A target is detected when a predicted component's centroid lies within
``dist`` pixels (default 3) of its centroid; each predicted component matches at most one
target (targets in label order take the first unmatched component in range).

- Pd = detected targets / targets (over the split).
- Fa = pixels of predicted components that matched no target / all pixels (over the split).
- target-level precision = matched predicted components / predicted components; recall = Pd; F1.
- IoU = sum of intersections / sum of unions of the masks over the split;
  nIoU = mean over images that contain a target of their per-image IoU.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


def components(mask: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """8-connected components of a binary ``(H, W)`` mask: ``[(centroid (row, col), area)]``."""
    labels, n = ndimage.label(mask.astype(bool), structure=_EIGHT)
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    centroids = ndimage.center_of_mass(np.ones_like(labels), labels, idx)
    areas = ndimage.sum_labels(np.ones_like(labels), labels, idx)
    return [(np.asarray(c, dtype=np.float64), int(a)) for c, a in zip(centroids, areas)]


def match_image(pred: np.ndarray, gt: np.ndarray, dist: float = 3.0) -> dict[str, float]:
    """Counts of one image: targets, detected, predicted components, false-alarm pixels, pixels."""
    targets, preds = components(gt), components(pred)
    free = list(range(len(preds)))
    detected = 0
    for centre, _ in targets:
        for k in free:
            if np.linalg.norm(preds[k][0] - centre) < dist:
                detected += 1
                free.remove(k)
                break
    return {"targets": len(targets), "detected": detected, "pred": len(preds),
            "matched_pred": len(preds) - len(free), "fa_pixels": sum(preds[k][1] for k in free),
            "pixels": int(gt.size)}


class PointTargetMetrics:
    """Accumulates ``update(pred (H, W) bool, gt (H, W) bool)`` per image; ``compute()`` over the split."""

    def __init__(self, dist: float = 3.0):
        self.dist = dist
        self.counts = {"targets": 0, "detected": 0, "pred": 0, "matched_pred": 0, "fa_pixels": 0, "pixels": 0}
        self.inter = self.union = 0
        self.per_image_iou: list[float] = []

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
        for k, v in match_image(pred, gt, self.dist).items():
            self.counts[k] += v
        inter, union = int((pred & gt).sum()), int((pred | gt).sum())
        self.inter += inter
        self.union += union
        if gt.any():
            self.per_image_iou.append(inter / union)

    def compute(self) -> dict[str, float]:
        c = self.counts
        pd = c["detected"] / c["targets"] if c["targets"] else 0.0
        precision = c["matched_pred"] / c["pred"] if c["pred"] else 0.0
        f1 = 2 * precision * pd / (precision + pd) if precision + pd else 0.0
        return {"points/Pd": pd, "points/Fa": c["fa_pixels"] / c["pixels"] if c["pixels"] else 0.0,
                "points/precision": precision, "points/recall": pd, "points/F1": f1,
                "points/IoU": self.inter / self.union if self.union else 0.0,
                "points/nIoU": float(np.mean(self.per_image_iou)) if self.per_image_iou else 0.0}
