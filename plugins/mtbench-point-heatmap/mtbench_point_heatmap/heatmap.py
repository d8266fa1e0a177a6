"""Point-target heatmaps: the encoding shared by point heads, point losses and decoding.

A point head returns ``float32 (B, 3, h, w)`` at stride ``s`` pixels: channel 0 the target
logit of each cell, channels 1-2 the sub-pixel offset ``(dx, dy)`` of the target inside its
cell as logits (``sigmoid`` gives ``[0, 1)`` cells), as CenterNet's offset head (Zhou et
al., "Objects as Points", 2019). A point ``(x, y)`` in pixels falls in cell
``(floor(x / s), floor(y / s))`` with offset ``(x / s - floor(x / s), y / s - floor(y / s))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def point_cells(points: torch.Tensor, stride: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells ``int64 (N, 2)`` (col, row), clamped to the map, and offsets ``float32 (N, 2)`` of
    ``(N, 2)`` xy pixel points."""
    g = points / stride
    cells = g.floor().long()
    cells[:, 0].clamp_(0, w - 1)
    cells[:, 1].clamp_(0, h - 1)
    return cells, (g - cells.float()).clamp(0, 0.999)


def gaussian_heatmap(points: torch.Tensor, stride: int, h: int, w: int, sigma: float,
                     window: int | None = None) -> torch.Tensor:
    """``float32 (h, w)`` soft target: max over targets of ``exp(-d^2 / (2 sigma^2))`` with ``d``
    the distance in cells between a cell centre and the target's sub-pixel position;
    cells outside the ``window x window`` square around the target's cell are 0 (all cells
    when ``window`` is None). Each target's own cell is set to 1."""
    heat = torch.zeros(h, w, device=points.device)
    if points.numel() == 0:
        return heat
    ys, xs = torch.meshgrid(torch.arange(h, device=points.device), torch.arange(w, device=points.device),
                            indexing="ij")
    cells, _ = point_cells(points, stride, h, w)
    for (cx, cy), (px, py) in zip(cells.tolist(), (points / stride).tolist()):
        d2 = (xs + 0.5 - px) ** 2 + (ys + 0.5 - py) ** 2
        g = torch.exp(-d2 / (2 * sigma**2))
        if window is not None:
            r = window // 2
            g = g * (((xs - cx).abs() <= r) & ((ys - cy).abs() <= r))
        heat = torch.maximum(heat, g)
        heat[cy, cx] = 1.0
    return heat


@torch.no_grad()
def decode_heatmap(raw: torch.Tensor, stride: int, image_size: int, threshold: float = 0.5,
                   max_points: int = 50) -> list[dict[str, torch.Tensor]]:
    """Points by local maxima (3x3 max-pool, as CenterNet) of ``sigmoid(heat)`` above
    ``threshold``, refined by the offsets.

    A heatmap is a point detector's output, not a segmentation: no mask is returned, and
    the points are scored by :mod:`mtbench_point_heatmap.metrics` (a thresholded, upsampled
    heatmap is not the target's shape, so IoU on it would mean nothing).

    :param raw: ``float32 (B, 3, h, w)`` (encoding of this module).
    :param stride: pixels per cell.
    :param image_size: input size ``S`` in pixels (the points are in input pixels).
    :param threshold: probability a local maximum must exceed.
    :param max_points: at most this many points per image, highest scores first.
    :return: per image ``{"points": float32 (K, 2) xy input pixels, "scores": float32 (K,)
        probabilities}``, by descending score.
    """
    prob = raw[:, 0].sigmoid()
    peaks = (prob == F.max_pool2d(prob[:, None], 3, 1, 1)[:, 0]) & (prob > threshold)
    off = raw[:, 1:3].sigmoid()
    out = []
    for i in range(raw.shape[0]):
        rows, cols = peaks[i].nonzero(as_tuple=True)
        scores = prob[i, rows, cols]
        order = scores.argsort(descending=True, stable=True)[:max_points]
        rows, cols, scores = rows[order], cols[order], scores[order]
        xy = torch.stack([cols + off[i, 0, rows, cols], rows + off[i, 1, rows, cols]], 1) * stride
        out.append({"points": xy.float(), "scores": scores})
    return out
