"""``det/fcos``: anchor-free dense detection loss (FCOS, Tian et al., ICCV 2019).

Assignment (single feature level of stride ``s``): a location is a positive candidate for
a ground-truth box when it lies inside the box **and** within ``radius * s`` pixels of
the box centre (FCOS "centre sampling"); a location claimed by several boxes takes the
smallest. A box with no candidate (smaller than the stride) is given the location
nearest its centre, so no object is silently unlearnable at coarse levels; how many
boxes needed that is reported as ``forced_pos``.

Components: ``cls`` sigmoid focal loss (alpha 0.25, gamma 2; Lin et al., ICCV 2017) summed
over all locations / num_pos; ``box`` GIoU loss (Rezatofighi et al., CVPR 2019) weighted by
the centre-ness target; ``ctr`` BCE on centre-ness. Counters: ``num_pos`` (positives per
batch), ``num_pos/P<k>`` and ``num_loc/P<k>`` (locations) for the level, so a loss of 0
because nothing was assigned, or a 1:4000 imbalance at P2, is visible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from mtbench.models.dense import grid_points, ltrb_from_raw, ltrb_to_xyxy, split_dense
from mtbench.plugins import Spec, hookimpl


def assign_centre_sampling(points: torch.Tensor, boxes: torch.Tensor, stride: int, radius: float = 1.5):
    """Assign locations to boxes by FCOS centre sampling.

    :param points: ``float32 (N, 2)`` location centres, pixels.
    :param boxes: ``float32 (M, 4)`` xyxy, pixels.
    :return: ``(gt_index int64 (N,), -1 = negative; forced int)`` where ``forced`` counts
        boxes assigned their nearest location because no location fell in their centre region.
    """
    n = points.shape[0]
    if boxes.numel() == 0:
        return torch.full((n,), -1, dtype=torch.long, device=points.device), 0
    x, y = points[:, 0:1], points[:, 1:2]
    l, t = x - boxes[:, 0], y - boxes[:, 1]
    r, b = boxes[:, 2] - x, boxes[:, 3] - y
    inside = torch.stack([l, t, r, b], -1).min(-1).values > 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    rad = radius * stride
    near = ((x - cx).abs() < rad) & ((y - cy).abs() < rad)
    cand = inside & near  # (N, M)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).expand(n, -1)
    area = torch.where(cand, area, torch.full_like(area, math.inf))
    best_area, gt_index = area.min(1)
    gt_index[best_area == math.inf] = -1
    orphans = (~cand.any(0)).nonzero().squeeze(1)
    for m in orphans.tolist():
        d = (points[:, 0] - cx[m]) ** 2 + (points[:, 1] - cy[m]) ** 2
        gt_index[d.argmin()] = m
    return gt_index, int(orphans.numel())


def centreness(ltrb: torch.Tensor) -> torch.Tensor:
    """FCOS centre-ness target ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))`` of ``(K, 4)``."""
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    return ((lr.min(1).values / lr.max(1).values.clamp(min=1e-6))
            * (tb.min(1).values / tb.max(1).values.clamp(min=1e-6))).clamp(min=0).sqrt()


class FcosLoss(nn.Module):
    """FCOS-style loss on one level.

    :param num_classes: detection classes ``C``.
    :param radius: centre-sampling radius in strides.
    :param weights: multipliers for ``cls``, ``box``, ``ctr``.
    Called as ``loss(raw (B, C+5, h, w), targets list[dict], stride=int)``.
    """

    def __init__(self, num_classes: int, radius: float = 1.5, alpha: float = 0.25, gamma: float = 2.0,
                 cls_weight: float = 1.0, box_weight: float = 1.0, ctr_weight: float = 1.0):
        super().__init__()
        self.num_classes, self.radius, self.alpha, self.gamma = num_classes, radius, alpha, gamma
        self.w = {"cls": cls_weight, "box": box_weight, "ctr": ctr_weight}

    def forward(self, raw: torch.Tensor, targets: list[dict], stride: int) -> dict[str, torch.Tensor]:
        cls, ltrb_raw, ctr = split_dense(raw, self.num_classes)
        h, w = raw.shape[-2:]
        pts = grid_points(h, w, stride, raw.device)
        cls_t = torch.zeros_like(cls)
        pos_pts, pos_pred, pos_gt, pos_ctr_logit, forced = [], [], [], [], 0
        for i, tgt in enumerate(targets):
            boxes = tgt["boxes"].to(raw.device)
            gi, f = assign_centre_sampling(pts, boxes, stride, self.radius)
            forced += f
            pos = gi >= 0
            if pos.any():
                cls_t[i, pos, tgt["labels"].to(raw.device)[gi[pos]]] = 1.0
                pos_pts.append(pts[pos])
                pos_pred.append(ltrb_to_xyxy(pts[pos], ltrb_from_raw(ltrb_raw[i][pos], stride)))
                pos_gt.append(boxes[gi[pos]])
                pos_ctr_logit.append(ctr[i][pos])
        num_pos = sum(p.shape[0] for p in pos_pred)
        norm = max(num_pos, 1)
        loss_cls = sigmoid_focal_loss(cls, cls_t, self.alpha, self.gamma, reduction="sum") / norm
        if num_pos:
            pred, gt, p = torch.cat(pos_pred), torch.cat(pos_gt), torch.cat(pos_pts)
            ctr_t = centreness(torch.cat([p - gt[:, :2], gt[:, 2:] - p], 1))
            giou = generalized_box_iou_loss(pred, gt, reduction="none")
            loss_box = (giou * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
            loss_ctr = F.binary_cross_entropy_with_logits(torch.cat(pos_ctr_logit), ctr_t, reduction="mean")
        else:
            loss_box = loss_ctr = raw.sum() * 0.0
        parts = {"cls": loss_cls, "box": loss_box, "ctr": loss_ctr}
        total = sum(self.w[k] * v for k, v in parts.items())
        level = f"P{int(math.log2(stride))}"
        counts = {"num_pos": torch.tensor(float(num_pos)), f"num_pos/{level}": torch.tensor(float(num_pos)),
                  f"num_loc/{level}": torch.tensor(float(raw.shape[0] * h * w)),
                  "forced_pos": torch.tensor(float(forced))}
        return {**parts, "total": total, **counts}


@hookimpl
def mtbench_register_losses():
    return [Spec("loss", "fcos", FcosLoss, "FCOS centre sampling + sigmoid focal + GIoU + centre-ness BCE",
                 task="det")]
