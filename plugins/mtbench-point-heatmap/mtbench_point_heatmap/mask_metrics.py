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
Pixels are NATIVE pixels: a target that carries its native-resolution ground truth
(``native_mask``, as the SIRST val split does) is scored against it, the predicted mask
(``seg_mask``, at the input size ``S x S`` the model saw) mapped back by :func:`to_native`
first, as BasicIRSTD scores un-resized images; otherwise both are the input-size masks.

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
import torch
import torch.nn.functional as F
from scipy import ndimage

from mtbench.errors import DataError
from mtbench.metrics.base import SampleMetricBase, Samples

EIGHT = np.ones((3, 3), dtype=bool)

#: per-image columns of :class:`PointMaskMetrics`
MASK_COLUMNS = ("targets", "detected", "fa_pixels", "pixels", "inter", "union")


def components(mask: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """8-connected components of a binary ``(H, W)`` mask: ``[(centroid float64 (2,) (row, col), area px)]``
    in label order (raster order of each component's first pixel)."""
    labels, n = ndimage.label(np.asarray(mask).astype(bool), structure=EIGHT)
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    ones = np.ones_like(labels)
    centroids = ndimage.center_of_mass(ones, labels, idx)
    areas = ndimage.sum_labels(ones, labels, idx)
    return [(np.asarray(c, dtype=np.float64), int(a)) for c, a in zip(centroids, areas)]


def to_native(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool ``(S, S)`` mask predicted on the resized input, mapped to a native ``(H, W)`` image:
    bilinear interpolation of the 0/1 mask (``align_corners=False``, the inverse of the input's
    bilinear resize), kept where >= 0.5. Unchanged when the shapes agree.

    :return: bool ``(H, W)``.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.shape == tuple(shape):
        return mask
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0] >= 0.5).numpy()


def native_pair(seg_mask, target: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted, ground truth)`` bool masks of one image at native resolution: the target's
    ``native_mask`` (H, W) when it has one, with ``seg_mask`` mapped to it by :func:`to_native`;
    else ``seg_mask`` and the input-size ``mask``."""
    gt = target.get("native_mask", target["mask"])
    gt = (gt.detach().cpu().numpy() if isinstance(gt, torch.Tensor) else np.asarray(gt)).astype(bool)
    pred = seg_mask.detach().cpu().numpy() if isinstance(seg_mask, torch.Tensor) else np.asarray(seg_mask)
    return to_native(pred, gt.shape), gt


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
    ``targets`` with ``"mask"``: uint8/bool ``(S, S)`` and optionally ``"native_mask"`` bool
    ``(H, W)`` (then scored at native size, :func:`native_pair`); or one image at a time with
    ``add_image(pred, gt)`` (same shapes). Columns (one entry per image, ints): ``targets``, ``detected``,
    ``fa_pixels``, ``pixels``, ``inter``, ``union``.

    :param dist: matching distance in pixels (strictly less than; BasicIRSTD uses 3).
    """

    def __init__(self, dist: float = 3.0):
        self.dist = dist
        self.rows: list[dict[str, int]] = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        for p, t in zip(preds, targets):
            self.add_image(*native_pair(p["seg_mask"], t))

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
