"""Mask-level infrared small-target metrics as DNANet / BasicIRSTD define them (Li et al., TIP 2022).

For models that predict a per-pixel target segmentation (``seg_mask`` in their decoded
points predictions, see :mod:`mtbench_point_heatmap.task`); a point
detector's predictions are scored by :mod:`mtbench_point_heatmap.metrics` instead, and no
heatmap-threshold blob is scored here.

Per image, targets and predictions are the 8-connected components of the binary
ground-truth and predicted masks, each placed at its centroid (mean pixel coordinate). A
target is detected when a predicted component's centroid lies within ``dist`` pixels
(strictly less; default 3) of its centroid; each predicted component matches at most one
target (targets in label order take the first unmatched component in range), as
BasicIRSTD's ``PD_FA`` and pyirstdmetrics' ``ProbabilityDetectionAndFalseAlarmRate`` do.
Pixels are input pixels (the resized masks the model sees), so values stand beside
published tables when the evaluation size is the data set's native size.

- ``points_mask/Pd`` = detected targets / targets (over the split).
- ``points_mask/Fa`` = pixels of predicted components that matched no target / all pixels
  (over the split; published tables print it x1e-6).
- ``points_mask/IoU`` = sum of intersections / sum of unions of the masks over the split
  (BasicIRSTD ``mIoU``, pyirstdmetrics ``IoUHandler(sample_based=False)``).
- ``points_mask/nIoU`` = mean over images of the per-image IoU (Dai et al., ACM, WACV 2021);
  an image with neither target nor predicted pixels scores 0, as in DNANet's
  ``SamplewiseSigmoidMetric`` and pyirstdmetrics (every SIRST image contains a target).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mtbench.errors import DataError
from mtbench.metrics.base import SampleMetricBase, Samples

_EIGHT = np.ones((3, 3), dtype=bool)

#: per-image columns of :class:`PointMaskMetrics`
MASK_COLUMNS = ("targets", "detected", "fa_pixels", "pixels", "inter", "union")


def components(mask: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """8-connected components of a binary ``(H, W)`` mask: ``[(centroid float64 (2,) (row, col), area px)]``
    in label order (raster order of each component's first pixel)."""
    labels, n = ndimage.label(np.asarray(mask).astype(bool), structure=_EIGHT)
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    ones = np.ones_like(labels)
    centroids = ndimage.center_of_mass(ones, labels, idx)
    areas = ndimage.sum_labels(ones, labels, idx)
    return [(np.asarray(c, dtype=np.float64), int(a)) for c, a in zip(centroids, areas)]


def match_image(pred: np.ndarray, gt: np.ndarray, dist: float = 3.0) -> dict[str, int]:
    """Counts of one image (see the module docstring): ``targets``, ``detected``, ``fa_pixels``,
    ``pixels``, ``inter`` and ``union`` (mask pixels).

    :param pred: bool ``(H, W)`` predicted target mask.
    :param gt: bool ``(H, W)`` ground-truth target mask.
    :raises DataError: masks of different shapes.
    """
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise DataError(f"predicted mask {pred.shape} and target mask {gt.shape} differ in shape; "
                        "a model's seg_mask must be at the input size")
    targets, preds = components(gt), components(pred)
    free = list(range(len(preds)))
    detected = 0
    for centre, _ in targets:
        for k in free:
            if np.linalg.norm(preds[k][0] - centre) < dist:
                detected += 1
                free.remove(k)
                break
    return {"targets": len(targets), "detected": detected, "fa_pixels": sum(preds[k][1] for k in free),
            "pixels": int(gt.size), "inter": int((pred & gt).sum()), "union": int((pred | gt).sum())}


class PointMaskMetrics(SampleMetricBase):
    """Mask-level Pd / Fa / IoU / nIoU (module docstring), metric contract of :mod:`mtbench.metrics.base`.

    ``update(preds, targets)``: ``preds`` per image with ``"seg_mask"``: bool ``(S, S)``,
    ``targets`` with ``"mask"``: uint8/bool ``(S, S)``; or one image at a time with
    ``add_image(pred, gt)``. Columns (one entry per image, ints): ``targets``, ``detected``,
    ``fa_pixels``, ``pixels``, ``inter``, ``union``.

    :param dist: matching distance in pixels (strictly less than; BasicIRSTD uses 3).
    """

    def __init__(self, dist: float = 3.0):
        self.dist = dist
        self.rows: list[dict[str, int]] = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        for p, t in zip(preds, targets):
            self.add_image(p["seg_mask"].cpu().numpy(), t["mask"].cpu().numpy())

    def add_image(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: ``pred`` and ``gt`` binary ``(H, W)`` masks (nonzero = target)."""
        self.rows.append(match_image(pred, gt, self.dist))

    def samples(self) -> Samples:
        return {k: [r[k] for r in self.rows] for k in MASK_COLUMNS}

    @staticmethod
    def reduce(samples: Samples, index: np.ndarray) -> dict[str, float]:
        """Split-level values on images ``index`` (ratios of sums; nIoU a mean of per-image IoUs).

        A ratio with a zero denominator (no targets, no pixels) is NaN: undefined, not 0.
        """
        c = {k: np.asarray(samples[k], dtype=np.float64)[index] for k in MASK_COLUMNS}
        per_image_iou = np.divide(c["inter"], c["union"], out=np.zeros_like(c["inter"]), where=c["union"] > 0)

        def ratio(a: str, b: str) -> float:
            den = c[b].sum()
            return float(c[a].sum() / den) if den else float("nan")

        return {"points_mask/Pd": ratio("detected", "targets"), "points_mask/Fa": ratio("fa_pixels", "pixels"),
                "points_mask/IoU": ratio("inter", "union"),
                "points_mask/nIoU": float(per_image_iou.mean()) if len(index) else float("nan")}
