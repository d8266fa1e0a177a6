"""Label assignment for dense detection heads: which locations learn which box.

All functions work on one image and the flattened locations of every level (see
:class:`mtbench.models.dense.Dense`): ``points float32 (N, 2)`` xy pixels, ``strides (N,)``
pixels, ``level int64 (N,)``; ground truth ``boxes float32 (M, 4)`` xyxy pixels. Each
returns ``gt_index int64 (N,)`` (``-1`` = negative) and, where the method defines one, a
per-location target weight ``float32 (N,)``.
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import box_iou


def _inside(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``(N, M)``: point strictly inside box."""
    x, y = points[:, 0:1], points[:, 1:2]
    return torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1).min(-1).values > 0


def _negatives(n: int, device) -> torch.Tensor:
    return torch.full((n,), -1, dtype=torch.long, device=device)


def _pick_smallest(cand: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """A location claimed by several boxes takes the smallest (FCOS's ambiguity rule)."""
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).expand(cand.shape[0], -1)
    area = torch.where(cand, area, torch.full_like(area, math.inf))
    best, gi = area.min(1)
    gi[best == math.inf] = -1
    return gi


def centre_sampling(points: torch.Tensor, strides: torch.Tensor, level: torch.Tensor, boxes: torch.Tensor,
                    radius: float = 1.5) -> tuple[torch.Tensor, int]:
    """FCOS centre sampling (Tian et al., ICCV 2019; YOLOX's centre prior with ``radius=2.5``).

    A location is a candidate for a box when it lies inside it, within ``radius * stride``
    pixels of its centre and, with several levels, when the location's largest distance to
    the box sides falls in the level's range: up to ``8 * stride`` pixels, above the previous
    level's bound, unbounded for the coarsest (FCOS's 0/64/128/inf for P3..P5). A box no location claims (smaller than
    the stride) gets the location nearest its centre on the finest level, so no object is
    silently unlearnable; the count of such boxes is returned as ``forced``.
    """
    n = points.shape[0]
    if boxes.numel() == 0:
        return _negatives(n, points.device), 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    rad = (radius * strides)[:, None]
    cand = _inside(points, boxes) & ((points[:, 0:1] - cx).abs() < rad) & ((points[:, 1:2] - cy).abs() < rad)
    nlev = int(level.max()) + 1
    if nlev > 1:
        x, y = points[:, 0:1], points[:, 1:2]
        reach = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1).max(-1).values
        per_level = torch.stack([strides[level == lv][0] for lv in range(nlev)])
        upper = torch.cat([8 * per_level[:-1], per_level.new_full((1,), math.inf)])
        lower = torch.cat([per_level.new_zeros(1), upper[:-1]])
        cand &= (reach > lower[level][:, None]) & (reach <= upper[level][:, None])
    gi = _pick_smallest(cand, boxes)
    orphans = (~cand.any(0)).nonzero().squeeze(1).tolist()
    finest = (level == 0).nonzero().squeeze(1)
    for m in orphans:
        d = (points[finest, 0] - cx[m]) ** 2 + (points[finest, 1] - cy[m]) ** 2
        gi[finest[d.argmin()]] = m
    return gi, len(orphans)


def atss(points: torch.Tensor, strides: torch.Tensor, level: torch.Tensor, boxes: torch.Tensor,
         topk: int = 9, anchor_scale: float = 5.0) -> torch.Tensor:
    """Adaptive Training Sample Selection (Zhang et al., CVPR 2020), anchor-free form of YOLOv6.

    Each location stands for a square anchor of side ``anchor_scale * stride`` (YOLOv6's
    ``grid_cell_size`` 5). Per box: the ``topk`` locations nearest its centre on every level
    are candidates; the IoU threshold is mean + std of the candidates' anchor IoUs; positives
    are candidates at or above it whose centre lies inside the box. Ties go to the highest IoU.
    """
    n = points.shape[0]
    if boxes.numel() == 0:
        return _negatives(n, points.device)
    half = (anchor_scale * strides / 2)[:, None]
    anchors = torch.cat([points - half, points + half], 1)
    ious = box_iou(anchors, boxes)  # (N, M)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    dist = torch.cdist(points, centres)  # (N, M)
    cand = torch.zeros_like(ious, dtype=torch.bool)
    for lv in range(int(level.max()) + 1):
        idx = (level == lv).nonzero().squeeze(1)
        k = min(topk, idx.numel())
        near = dist[idx].topk(k, dim=0, largest=False).indices  # (k, M)
        cand.scatter_(0, idx[near], True)
    cand_iou = torch.where(cand, ious, torch.zeros_like(ious))
    cnt = cand.sum(0).clamp(min=1)
    mean = cand_iou.sum(0) / cnt
    std = (((cand_iou - mean) ** 2) * cand).sum(0).div(cnt).sqrt()
    pos = cand & (ious >= mean + std) & _inside(points, boxes)
    masked = torch.where(pos, ious, torch.full_like(ious, -1.0))
    best, gi = masked.max(1)
    gi[best < 0] = -1
    return gi


def task_aligned(scores: torch.Tensor, pred_boxes: torch.Tensor, points: torch.Tensor, boxes: torch.Tensor,
                 labels: torch.Tensor, topk: int = 13, alpha: float = 1.0, beta: float = 6.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Task-aligned assignment (TOOD, Feng et al., ICCV 2021), as YOLOv6/YOLOv8 use it.

    Alignment ``t = s**alpha * u**beta`` with ``s`` the predicted probability of the box's
    class and ``u`` the IoU of the predicted box with it; per box the ``topk`` locations by
    ``t`` among those whose centre lies inside it are positives; a location claimed by
    several boxes takes the highest IoU. The weight is ``t`` normalised per box to its
    highest IoU (``t / max t * max u``), the soft class target.

    :param scores: ``float32 (N, C)`` predicted probabilities (detached).
    :param pred_boxes: ``float32 (N, 4)`` predicted xyxy (detached).
    :return: ``gt_index (N,)``, ``weight float32 (N,)`` (0 for negatives).
    """
    n = points.shape[0]
    if boxes.numel() == 0:
        return _negatives(n, points.device), torch.zeros(n, device=points.device)
    ious = box_iou(pred_boxes, boxes).clamp(min=0)  # (N, M)
    inside = _inside(points, boxes)
    s = scores[:, labels]  # (N, M)
    metric = (s.pow(alpha) * ious.pow(beta)) * inside
    k = min(topk, n)
    top = metric.topk(k, dim=0).indices  # (k, M)
    pos = torch.zeros_like(inside).scatter_(0, top, True) & inside & (metric > 0)
    masked = torch.where(pos, ious, torch.full_like(ious, -1.0))
    best, gi = masked.max(1)
    gi[best < 0] = -1
    metric = metric * pos
    norm = metric / metric.max(0).values.clamp(min=1e-9) * (ious * pos).max(0).values
    weight = torch.where(gi >= 0, norm.gather(1, gi.clamp(min=0)[:, None]).squeeze(1), torch.zeros(n, device=points.device))
    return gi, weight
