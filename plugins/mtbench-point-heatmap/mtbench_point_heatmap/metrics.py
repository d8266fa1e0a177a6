"""Point-level metrics of a point-target detector: its decoded points, matched to target centroids.

A point model predicts points with scores (``model.decode("points", ...)``: ``points``
float32 ``(K, 2)`` xy input pixels, ``scores`` float32 ``(K,)`` in [0, 1]); these, not a
thresholded heatmap, are what is scored. No blob or mask is involved.

Matching (per image): predictions and target centroids are mapped back to the image's
NATIVE pixels with the target's ``scale`` (``x / sx``, ``y / sy``, as
:class:`~mtbench.metrics.detection.DetectionMAP` does for boxes). Predictions are taken in
descending score order (ties: decode order); each takes the nearest target not yet taken
whose distance is strictly less than ``radius`` (default 3 px, the centroid-distance
criterion of DNANet / BasicIRSTD, Li et al., TIP 2022) and is then a true positive; a
prediction left without a target is a false alarm. This is the greedy one-to-one matching
of PASCAL VOC / COCO detection evaluation (Everingham et al., IJCV 2010; pycocotools
``evaluateImg``) with the IRSTD distance in place of box IoU. Because the matching is
greedy by score, the predictions kept at any score threshold ``t`` are matched exactly as
if only they had been predicted, so the per-image matched / unmatched scores give the
whole curve below.

Values (over the split; per image counts, so a bootstrap can resample images):

- ``points/Pd``: matched targets / targets (recall). NaN when the images hold no target.
- ``points/FA_per_image``: false alarms (unmatched predicted points) / images: a count.
- ``points/precision``: true positives / predicted points; 0 when nothing is predicted
  (torchmetrics' and scikit-learn's ``zero_division=0``), so ``points/F1`` is 0 then too.
- ``points/F1``: harmonic mean of precision and Pd.
- ``points/Pd_FA_AUC``: area under the Pd vs false-alarms-per-image curve swept over score
  thresholds (the free-response ROC, FROC: Bunch et al. 1978; Chakraborty 1989; what IRSTD
  ROC plots show, with false alarms counted as points per image rather than pixels),
  ``(1 / K) * integral_0^K Pd(f) df`` with ``K = FA_MAX_PER_IMAGE`` (1 false alarm per
  image), trapezoidal between the curve's points (as ``sklearn.metrics.auc``), starting at
  (0, 0). Past the lowest decoded score the curve stays at its last Pd: points below the
  decode threshold are not known, so a curve cut short by the threshold is credited no
  more than the Pd it reached. In [0, 1]; 1 = every target found before any false alarm.
- ``points/Pd@0.1FA``: the FROC's sensitivity at ``PD_AT_FA`` (0.1) false alarms per image
  (the read-out of FROC analysis, e.g. LUNA16's sensitivities at 1/8..8 false positives per
  scan, Setio et al., MedIA 2017): the highest Pd of the curve's points (score thresholds)
  whose false alarms per image are <= 0.1, not interpolated between them (each is a threshold a
  user can set). As AP does, it reads the whole curve of the split, so no threshold is tuned
  on it; it is what "Pd >= 0.95 at <= 0.1 false alarms per image" asks of a point model.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import trapezoid
from scipy.spatial.distance import cdist

from mtbench.errors import DataError, PluginError
from mtbench.metrics.base import SampleMetricBase, Samples
from mtbench.plugins import Spec, hookimpl
from mtbench_point_heatmap.mask_metrics import MASK_COLUMNS, PointMaskMetrics, native_pair

#: K of ``points/Pd_FA_AUC``: the curve is integrated over [0, K] false alarms per image.
FA_MAX_PER_IMAGE = 1.0
#: false alarms per image at which ``points/Pd@0.1FA`` reads the curve
PD_AT_FA = 0.1
#: marks "no point" in the padded per-image score columns (scores are in [0, 1])
PAD = -1.0
_MASK_PREFIX = "mask_"


def match_points(pred_xy: np.ndarray, scores: np.ndarray, target_xy: np.ndarray, radius: float = 3.0) -> np.ndarray:
    """Greedy one-to-one matching by descending score (module docstring).

    :param pred_xy: float ``(K, 2)`` predicted points, xy native pixels.
    :param scores: float ``(K,)`` their scores.
    :param target_xy: float ``(N, 2)`` target centroids, xy native pixels.
    :param radius: a prediction matches a target closer than this (pixels, strict).
    :return: bool ``(K,)``: which predictions matched a target (true positives).
    """
    pred_xy = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    target_xy = np.asarray(target_xy, dtype=np.float64).reshape(-1, 2)
    matched = np.zeros(len(pred_xy), dtype=bool)
    if not len(pred_xy) or not len(target_xy):
        return matched
    dist = cdist(pred_xy, target_xy)
    taken = np.zeros(len(target_xy), dtype=bool)
    for k in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        d = np.where(taken | (dist[k] >= radius), np.inf, dist[k])
        j = int(np.argmin(d))
        if np.isfinite(d[j]):
            taken[j] = matched[k] = True
    return matched


def pd_fa_curve(tp_scores: np.ndarray, fp_scores: np.ndarray, num_targets: int, num_images: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Pd vs false-alarms-per-image curve over score thresholds.

    :param tp_scores: float ``(P,)`` scores of the matched predictions of the images.
    :param fp_scores: float ``(Q,)`` scores of their false alarms.
    :param num_targets: targets in those images (> 0).
    :param num_images: images (> 0).
    :return: ``thresholds`` float64 ``(T,)`` (distinct scores, descending), ``fa_per_image``
        and ``pd`` float64 ``(T + 1,)``: the point before any threshold (0, 0), then the values
        when every prediction with score >= ``thresholds[i]`` is kept.
    """
    tp, fp = np.sort(np.asarray(tp_scores, np.float64)), np.sort(np.asarray(fp_scores, np.float64))
    thresholds = np.unique(np.concatenate([tp, fp]))[::-1]
    tp_kept = len(tp) - np.searchsorted(tp, thresholds, side="left")
    fp_kept = len(fp) - np.searchsorted(fp, thresholds, side="left")
    fa = np.concatenate([[0.0], fp_kept / num_images])
    pd = np.concatenate([[0.0], tp_kept / num_targets])
    return thresholds, fa, pd


def pd_fa_auc(fa: np.ndarray, pd: np.ndarray, fa_max: float = FA_MAX_PER_IMAGE) -> float:
    """``(1 / fa_max) * integral_0^fa_max Pd d(FA)`` of a curve from :func:`pd_fa_curve`
    (trapezoidal; flat past its last point; cut at ``fa_max`` by linear interpolation)."""
    fa, pd = np.asarray(fa, np.float64), np.asarray(pd, np.float64)
    inside = fa <= fa_max
    x, y = list(fa[inside]), list(pd[inside])
    if inside.all():
        x.append(fa_max)
        y.append(pd[-1])
    else:
        i = int(np.argmax(~inside))  # first point past fa_max; fa is non-decreasing
        f = (fa_max - fa[i - 1]) / (fa[i] - fa[i - 1])
        x.append(fa_max)
        y.append(pd[i - 1] + f * (pd[i] - pd[i - 1]))
    return float(trapezoid(y, x) / fa_max)


def pd_at_fa(fa: np.ndarray, pd: np.ndarray, fa_max: float = PD_AT_FA) -> float:
    """The highest Pd of a curve from :func:`pd_fa_curve` at a point with ``fa <= fa_max``
    (its first point, (0, 0), always qualifies)."""
    fa, pd = np.asarray(fa, np.float64), np.asarray(pd, np.float64)
    return float(pd[fa <= fa_max].max())


def _native(xy: np.ndarray, target: dict) -> np.ndarray:
    if "scale" not in target:
        raise DataError(f"points target of image {target.get('image_id', '?')} has no 'scale' (sx, sy): point "
                        "metrics match in native pixels; a data set whose inputs are at native size sets (1.0, 1.0)")
    sx, sy = target["scale"]
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2) / np.array([sx, sy], dtype=np.float64)


def _rows(column, index: np.ndarray) -> np.ndarray:
    """The non-padding scores of the rows ``index`` of a padded score column, flattened."""
    arr = np.asarray(column, dtype=np.float64)
    arr = arr[index] if arr.ndim == 2 else np.empty((len(index), 0))  # ndim 1: no images at all
    return arr[arr != PAD]


def _pad(rows: list[list[float]]) -> list[list[float]]:
    width = max((len(r) for r in rows), default=0)
    return [r + [PAD] * (width - len(r)) for r in rows]


class PointLevelMetrics(SampleMetricBase):
    """Point-level Pd / FA per image / precision / F1 / Pd-FA AUC (module docstring), metric
    contract of :mod:`mtbench.metrics.base`; plus the mask-level ``points_mask/*`` of
    :class:`~mtbench_point_heatmap.mask_metrics.PointMaskMetrics` when the model's predictions carry a
    real segmentation (``seg_mask``).

    ``update(preds, targets)``: ``preds`` from ``model.decode("points", ...)``: per image
    ``{"points": float32 (K, 2) xy input pixels, "scores": float32 (K,) in [0, 1]}`` and
    optionally ``"seg_mask": bool (S, S)``; ``targets`` per image ``{"points": float32 (N, 2)
    xy input pixels, "scale": (sx, sy)}`` (+ ``"mask"`` uint8 ``(S, S)`` for ``seg_mask``, and
    ``"native_mask"`` bool ``(H, W)`` to score it at native size).

    Per-image columns: ``num_targets`` int; ``tp_scores`` / ``fp_scores`` float ``(W,)``: the
    scores of the image's matched / unmatched predictions, padded with -1 to the split's
    widest row (JSON-ready, one array shape); with ``seg_mask``, the mask columns prefixed
    ``mask_``.

    :param radius: matching radius in native pixels (strict; default 3).
    :raises PluginError: (in ``update``) predictions without ``scores``, scores outside
        [0, 1], or ``seg_mask`` on some images only.
    :raises DataError: (in ``update``) a target without ``scale``.
    """

    def __init__(self, radius: float = 3.0):
        self.radius = radius
        self.num_targets: list[int] = []
        self.tp: list[list[float]] = []
        self.fp: list[list[float]] = []
        self.mask: PointMaskMetrics | None = None

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        for p, t in zip(preds, targets):
            if "scores" not in p:
                raise PluginError(f"decoded points have keys {sorted(p)}; point metrics need 'points' and 'scores'")
            scores = p["scores"].detach().cpu().double().numpy().reshape(-1)
            if scores.size and not (np.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1):
                raise PluginError(f"decoded point scores must be probabilities in [0, 1], got "
                                  f"[{scores.min():.4g}, {scores.max():.4g}]")
            pred_xy = _native(p["points"].detach().cpu().numpy(), t)
            target_xy = _native(t["points"].detach().cpu().numpy(), t)
            self._update_mask(p, t, first=not self.num_targets)
            hit = match_points(pred_xy, scores, target_xy, self.radius)
            self.num_targets.append(len(target_xy))
            self.tp.append(scores[hit].tolist())
            self.fp.append(scores[~hit].tolist())

    def _update_mask(self, p: dict, t: dict, first: bool) -> None:
        if first and "seg_mask" in p:
            self.mask = PointMaskMetrics(self.radius)
        if ("seg_mask" in p) != (self.mask is not None):
            raise PluginError("decoded points carry 'seg_mask' on some images only; a model that segments "
                              "targets returns it for every image")
        if self.mask is not None:
            self.mask.add_image(*native_pair(p["seg_mask"], t))

    def samples(self) -> Samples:
        out = {"num_targets": list(self.num_targets), "tp_scores": _pad(self.tp), "fp_scores": _pad(self.fp)}
        if self.mask is not None:
            out.update({_MASK_PREFIX + k: v for k, v in self.mask.samples().items()})
        return out

    @staticmethod
    def reduce(samples: Samples, index: np.ndarray) -> dict[str, float]:
        """Values on the images ``index`` (int64 ``(M,)``, repeats allowed); see the module docstring."""
        index = np.asarray(index, dtype=np.int64)
        n_t = int(np.asarray(samples["num_targets"], dtype=np.int64)[index].sum())
        m = len(index)
        tp, fp = (_rows(samples[k], index) for k in ("tp_scores", "fp_scores"))
        pd = len(tp) / n_t if n_t else float("nan")
        precision = len(tp) / (len(tp) + len(fp)) if len(tp) + len(fp) else 0.0
        f1 = 2 * precision * pd / (precision + pd) if precision + pd > 0 else (0.0 if n_t else float("nan"))
        curve = pd_fa_curve(tp, fp, n_t, m)[1:] if n_t and m else None
        auc, at_fa = (pd_fa_auc(*curve), pd_at_fa(*curve)) if curve else (float("nan"), float("nan"))
        out = {"points/Pd": pd, "points/FA_per_image": len(fp) / m if m else float("nan"),
               "points/precision": precision, "points/F1": f1, "points/Pd_FA_AUC": auc, "points/Pd@0.1FA": at_fa}
        if _MASK_PREFIX + MASK_COLUMNS[0] in samples:
            out.update(PointMaskMetrics.reduce({k: samples[_MASK_PREFIX + k] for k in MASK_COLUMNS}, index))
        return out


@hookimpl
def mtbench_register_metrics():
    return [Spec("metric", "point-level", lambda dataset: PointLevelMetrics(),
                 "point-level Pd, FA per image, precision, F1, Pd-FA AUC, Pd@0.1FA (+ mask level with seg_mask)", task="points")]
