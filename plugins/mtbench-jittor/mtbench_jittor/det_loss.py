"""mtbench's ``det/varifocal`` loss (YOLOv6 / Gold-YOLO) in Jittor, task-aligned assignment only.

The same definitions as :mod:`mtbench.losses.detection` (``VarifocalLoss``),
:mod:`mtbench.losses.assigners` (``task_aligned``) and :mod:`mtbench.models.dense`:

- dense maps ``(B, C + 4*nb + 1, h, w)`` per level flattened to ``N`` locations; distances
  ``softplus(raw) * stride`` (``nb = 1``) or the DFL expectation over ``nb`` bins times the stride;
- task-aligned assignment (TOOD, Feng et al., ICCV 2021): alignment ``s**alpha * u**beta``
  (``u`` the IoU of the predicted box with the ground truth, ``s`` the predicted probability
  of its class), the ``topk`` best locations whose centre lies inside each box, a location
  claimed twice taking the higher IoU, weight ``t / max t * max u`` per box;
- ``cls``: Varifocal loss (Zhang et al., CVPR 2021; alpha 0.75, gamma 2) normalised by the
  sum of targets; ``box``: GIoU loss (Rezatofighi et al., CVPR 2019; torchvision's eps 1e-7)
  weighted by the targets; ``dfl``: Distribution Focal Loss (GFL, Li et al., NeurIPS 2020)
  with DFL bins; ``total = 1.0 cls + 2.5 box (+ 0.5 dfl)``; ``floor`` (not trained): the
  entropy part of ``cls`` no model can remove; the counters ``num_pos``, ``forced_pos``,
  ``num_pos/P<k>``, ``num_loc/P<k>``.

Not ported: the ATSS warm-up (``atss_warmup_epochs`` must be 0), the other det losses.
Box and DFL terms are computed densely over all locations with weight 0 at negatives (no
boolean gathers), which changes only the summation order.
"""

from __future__ import annotations

import jittor as jt
import numpy as np
from jittor import nn

from mtbench.models.dense import bins_of, grid_points, level_name

EPS = 1e-7


def _bce_logits(x, t):
    """Elementwise ``BCEWithLogits``: ``max(x, 0) - x t + log(1 + exp(-|x|))``."""
    return jt.maximum(x, 0.0) - x * t + jt.log(1.0 + jt.exp(-jt.abs(x)))


def _xlogx(t):
    return jt.where(t > 0, t * jt.log(jt.maximum(t, 1e-30)), jt.zeros_like(t))


def box_iou(a, b):
    """``(N, M)`` IoU of xyxy ``a (N, 4)`` and ``b (M, 4)`` (torchvision's ``box_iou``)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = jt.maximum(a[:, None, :2], b[None, :, :2])
    rb = jt.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = jt.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def giou_loss(p, g):
    """``1 - GIoU`` of matching xyxy rows ``p``, ``g`` (``(..., 4)``), as torchvision's
    ``generalized_box_iou_loss`` (eps 1e-7)."""
    x1, y1, x2, y2 = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    gx1, gy1, gx2, gy2 = g[..., 0], g[..., 1], g[..., 2], g[..., 3]
    iw, ih = jt.minimum(x2, gx2) - jt.maximum(x1, gx1), jt.minimum(y2, gy2) - jt.maximum(y1, gy1)
    inter = jt.where((iw > 0) & (ih > 0), iw * ih, jt.zeros_like(iw))
    union = (x2 - x1) * (y2 - y1) + (gx2 - gx1) * (gy2 - gy1) - inter
    iou = inter / (union + EPS)
    area_c = (jt.maximum(x2, gx2) - jt.minimum(x1, gx1)) * (jt.maximum(y2, gy2) - jt.minimum(y1, gy1))
    return 1 - (iou - (area_c - union) / (area_c + EPS))


def _sum(x):
    """Sum of all elements, accumulated in float64: Jittor reduces sequentially, and a float32
    sum of the ~4e5 class terms of one COCO batch loses ~2e-4 of it (measured against PyTorch)."""
    return x.float64().sum().float32()


def _one_hot(index, n):
    """``(..., n)`` float one-hot of an int Var (rows of index -1 are all zero)."""
    return (index.unsqueeze(-1) == jt.arange(n).reshape([1] * index.ndim + [n])).float32()


def task_aligned(scores, pred_boxes, points, boxes, labels, topk=13, alpha=1.0, beta=6.0):
    """TOOD assignment of one image (``mtbench.losses.assigners.task_aligned``): ``gt_index
    int32 (N,)`` (-1 negative) and ``weight float32 (N,)``; inputs detached."""
    n, m = points.shape[0], boxes.shape[0]
    if m == 0:
        return jt.full((n,), -1, "int32"), jt.zeros((n,))
    ious = jt.maximum(box_iou(pred_boxes, boxes), 0.0)
    x, y = points[:, 0:1], points[:, 1:2]
    inside = jt.minimum(jt.minimum(x - boxes[:, 0], y - boxes[:, 1]),
                        jt.minimum(boxes[:, 2] - x, boxes[:, 3] - y)) > 0
    s = nn.matmul(scores, _one_hot(labels, scores.shape[1]).transpose())  # (N, M): each box's class column
    metric = s.pow(alpha) * ious.pow(beta) * inside.float32()
    _, top = jt.topk(metric, min(topk, n), dim=0)  # (k, M)
    chosen = jt.zeros((n, m)).scatter_(0, top, jt.ones(top.shape))
    pos = (chosen > 0) & inside & (metric > 0)
    gi, best = jt.argmax(jt.where(pos, ious, jt.full_like(ious, -1.0)), dim=1)
    gi = jt.where(best < 0, jt.full_like(gi, -1), gi)
    metric = metric * pos.float32()
    norm = metric / jt.maximum(metric.max(0), 1e-9) * (ious * pos.float32()).max(0)
    weight = (norm * _one_hot(gi, m)).sum(1)
    return gi, weight


def dfl_loss(reg, target):
    """Distribution Focal Loss of ``(..., 4, nb)`` bin logits for ``(..., 4)`` distances in strides; ``(...,)``."""
    nb = reg.shape[-1]
    t = jt.clamp(target, 0.0, nb - 1.01)
    left = t.int32()
    wl = left.float32() + 1 - t
    logp = nn.log_softmax(reg, dim=-1)
    ll = (logp * _one_hot(left, nb)).sum(-1)
    lr = (logp * _one_hot(left + 1, nb)).sum(-1)
    return -(ll * wl + lr * (1 - wl)).mean(-1)


class VarifocalLoss:
    """``loss(maps, targets, strides)`` for a list of dense maps (finest first); ``targets`` per image
    ``{"boxes": float32 (M, 4) xyxy pixels, "labels": int64 (M,)}`` as numpy. Returns the named
    components (Jittor scalars; ``total`` the one to differentiate) and counters (floats)."""

    def __init__(self, num_classes, atss_warmup_epochs=0, alpha=0.75, gamma=2.0, topk_atss=9, topk_tal=13,
                 cls_weight=1.0, box_weight=2.5, dfl_weight=0.5):
        if atss_warmup_epochs:
            raise ValueError("the Jittor port has task-aligned assignment only: atss_warmup_epochs must be 0, "
                             f"got {atss_warmup_epochs}")
        self.num_classes, self.alpha, self.gamma, self.topk = num_classes, alpha, gamma, topk_tal
        self.w = {"cls": cls_weight, "box": box_weight, "dfl": dfl_weight}

    def assign(self, scores, pred_boxes, points, boxes, labels):
        """One image's ``(gt_index, weight)``; override to port another assigner."""
        return task_aligned(scores, pred_boxes, points, boxes, labels, self.topk)

    def __call__(self, maps, targets, strides):
        c = self.num_classes
        nb = bins_of(int(maps[0].shape[1]), c)
        b = int(maps[0].shape[0])
        flat = jt.concat([mp.reshape(b, mp.shape[1], -1) for mp in maps], 2).permute(0, 2, 1)  # (B, N, ch)
        sizes = [(int(mp.shape[2]), int(mp.shape[3])) for mp in maps]
        pts = np.concatenate([grid_points(h, w, s).numpy() for (h, w), s in zip(sizes, strides)])
        st = np.concatenate([np.full(h * w, float(s), np.float32) for (h, w), s in zip(sizes, strides)])
        lv = np.concatenate([np.full(h * w, i) for i, (h, w) in enumerate(sizes)])
        points, stride = jt.array(pts), jt.array(st)
        cls, reg = flat[..., :c], flat[..., c:c + 4 * nb].reshape(b, -1, 4, nb)
        if nb == 1:
            dist = nn.softplus(reg[..., 0])
        else:
            dist = (nn.softmax(reg, dim=-1) * jt.arange(nb).float32()).sum(-1)
        dist = dist * stride.reshape(1, -1, 1)
        pred = jt.concat([points.unsqueeze(0) - dist[..., :2], points.unsqueeze(0) + dist[..., 2:]], -1)
        gis, weights, gt_boxes, gt_labels = [], [], [], []
        with jt.no_grad():
            for i, tgt in enumerate(targets):
                boxes, labels = jt.array(tgt["boxes"].astype(np.float32)), jt.array(tgt["labels"].astype(np.int32))
                gi, w = self.assign(cls[i].sigmoid().detach(), pred[i].detach(), points, boxes, labels)
                gis.append(gi.numpy())
                weights.append(w.numpy())
                has = gis[-1] >= 0
                gt_boxes.append(np.where(has[:, None], tgt["boxes"][np.maximum(gis[-1], 0)], 0).astype(np.float32)
                                if len(tgt["boxes"]) else np.zeros((len(pts), 4), np.float32))
                gt_labels.append(np.where(has, tgt["labels"][np.maximum(gis[-1], 0)], -1) if len(tgt["boxes"])
                                 else np.full(len(pts), -1))
        pos = np.stack(gis) >= 0
        weight = jt.array(np.stack(weights).astype(np.float32) * pos)
        target = _one_hot(jt.array(np.stack(gt_labels).astype(np.int32)), c) * weight.unsqueeze(-1)
        norm = jt.maximum(_sum(target), 1.0)
        label = (target > 0).float32()
        p = cls.sigmoid().detach()
        vf_w = self.alpha * p.pow(self.gamma) * (1 - label) + target * label
        parts = {"cls": _sum(_bce_logits(cls, target) * vf_w) / norm}
        floor = self.w["cls"] * _sum(-(_xlogx(target) + _xlogx(1 - target)) * target) / norm
        gt = jt.array(np.stack(gt_boxes))
        parts["box"] = _sum(giou_loss(pred, gt) * weight) / norm
        if nb > 1:
            ltrb = jt.concat([points.unsqueeze(0) - gt[..., :2], gt[..., 2:] - points.unsqueeze(0)], -1)
            parts["dfl"] = _sum(dfl_loss(reg, ltrb / stride.reshape(1, -1, 1)) * weight) / norm
        total = sum(self.w[k] * v for k, v in parts.items())
        counts = {"num_pos": float(pos.sum()), "forced_pos": 0.0}
        for i, s in enumerate(strides):
            counts[f"num_pos/{level_name(s)}"] = float(pos[:, lv == i].sum())
            counts[f"num_loc/{level_name(s)}"] = float(b * (lv == i).sum())
        return {**parts, "total": total, "floor": floor.detach()}, counts

