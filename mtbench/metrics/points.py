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


def components(mask: np.ndarray, refine: np.ndarray | None = None) -> list[tuple[np.ndarray, int]]:
    """8-connected components of a binary ``(H, W)`` mask: ``[(centroid (row, col), area)]``.

    ``refine``: optional ``(K, 2)`` xy points in descending score order (a point detector's
    decoded local maxima with sub-pixel offsets); a component containing one takes the
    first such point as its position instead of its centroid.
    """
    labels, n = ndimage.label(mask.astype(bool), structure=_EIGHT)
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    centroids = [np.asarray(c, dtype=np.float64) for c in ndimage.center_of_mass(np.ones_like(labels), labels, idx)]
    areas = ndimage.sum_labels(np.ones_like(labels), labels, idx)
    if refine is not None:
        done = set()
        for x, y in np.asarray(refine, dtype=np.float64).reshape(-1, 2):
            r = min(max(int(y), 0), labels.shape[0] - 1)
            c = min(max(int(x), 0), labels.shape[1] - 1)
            lab = int(labels[r, c])
            if lab and lab not in done:
                centroids[lab - 1] = np.array([y, x])
                done.add(lab)
    return [(c, int(a)) for c, a in zip(centroids, areas)]


def match_image(pred: np.ndarray, gt: np.ndarray, dist: float = 3.0, pred_points: np.ndarray | None = None
                ) -> dict[str, float]:
    """Counts of one image: targets, detected, predicted components, false-alarm pixels, pixels.

    ``pred_points`` refine the predicted components' positions (see :func:`components`).
    """
    targets, preds = components(gt), components(pred, pred_points)
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
    """Accumulates images with ``add_image(pred (H, W) bool, gt (H, W) bool, pred_points=None)``
    or batches with ``update(preds, targets)`` (``preds`` from ``model.decode("points", ...)``,
    ``targets`` with ``mask``); ``compute()`` over the split. Pixels are input pixels."""

    def __init__(self, dist: float = 3.0):
        self.dist = dist
        self.counts = {"targets": 0, "detected": 0, "pred": 0, "matched_pred": 0, "fa_pixels": 0, "pixels": 0}
        self.inter = self.union = 0
        self.per_image_iou: list[float] = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        for p, t in zip(preds, targets):
            self.add_image(p["mask"].cpu().numpy(), t["mask"].cpu().numpy(), p["points"].cpu().numpy())

    def add_image(self, pred: np.ndarray, gt: np.ndarray, pred_points: np.ndarray | None = None) -> None:
        pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
        for k, v in match_image(pred, gt, self.dist, pred_points).items():
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
