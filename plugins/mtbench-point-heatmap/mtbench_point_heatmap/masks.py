"""Per-pixel target masks of a segmentation model: decoding to points, mapping back to native size.

A segmentation model of the points task (``acm``, :mod:`mtbench_point_heatmap.acm`) returns a
target logit per input pixel, ``float32 (B, 1, S, S)``. Decoding thresholds ``sigmoid`` of it
(0.5, as DNANet and BasicIRSTD do) into a mask and turns each 8-connected component of the
mask into one point at its centroid, so the model is scored point-level like a heatmap
model (:mod:`mtbench_point_heatmap.metrics`) and mask-level (:mod:`.mask_metrics`).
Mask-level values are computed at each image's native resolution: the metrics map the mask
back (:func:`mtbench_point_heatmap.mask_metrics.to_native`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from mtbench_point_heatmap.mask_metrics import EIGHT, components


@torch.no_grad()
def decode_mask(raw: torch.Tensor, threshold: float = 0.5, max_points: int = 50) -> list[dict[str, torch.Tensor]]:
    """Mask and component points of each image.

    :param raw: ``float32 (B, 1, S, S)`` target logits at input resolution.
    :param threshold: probability a pixel must exceed to be a target pixel.
    :param max_points: at most this many points per image, highest scores first.
    :return: per image ``{"points": float32 (K, 2) xy input pixels (component centroids: mean
        pixel index, as the SIRST targets' centroids),
        "scores": float32 (K,) (each component's highest probability), "seg_mask": bool (S, S)}``,
        points by descending score.
    """
    prob = raw[:, 0].float().sigmoid().cpu()
    out = []
    for p in prob:
        mask = (p > threshold).numpy()
        comps = components(mask)
        if comps:
            labels, n = ndimage.label(mask, structure=EIGHT)
            peak = ndimage.maximum(p.numpy(), labels, np.arange(1, n + 1))
            xy = np.array([(c[1], c[0]) for c, _ in comps], dtype=np.float32)  # (row, col) -> (x, y)
            scores = np.asarray(peak, dtype=np.float32)
        else:
            xy, scores = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
        order = np.argsort(-scores, kind="stable")[:max_points]
        out.append({"points": torch.from_numpy(xy[order]).reshape(-1, 2), "scores": torch.from_numpy(scores[order]),
                    "seg_mask": torch.from_numpy(mask)})
    return out
