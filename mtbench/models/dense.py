"""Geometry of dense (per-location) detection outputs, shared by heads, losses and decoding.

Encoding per location (FCOS, Tian et al., ICCV 2019): ``C`` class logits, 4 distances
``(l, t, r, b)`` in pixels from the location's centre to the box sides, and 1
centre-ness logit.
"""

from __future__ import annotations

import torch
import torchvision


def grid_points(h: int, w: int, stride: int, device=None) -> torch.Tensor:
    """Centres of an ``h x w`` feature map in input pixels: ``float32 (h*w, 2)`` xy."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float().add_(0.5).mul_(stride)


def ltrb_to_xyxy(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` points + ``(N, 4)`` distances -> ``(N, 4)`` xyxy boxes (pixels)."""
    return torch.cat([points - ltrb[:, :2], points + ltrb[:, 2:]], 1)


def split_dense(raw: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``(B, C+5, h, w)`` into flattened ``cls (B, hw, C)``, ``ltrb_raw (B, hw, 4)``, ``ctr (B, hw)``."""
    b = raw.shape[0]
    flat = raw.flatten(2).transpose(1, 2)
    return flat[..., :num_classes], flat[..., num_classes:num_classes + 4], flat[..., num_classes + 4]


def ltrb_from_raw(ltrb_raw: torch.Tensor, stride: int) -> torch.Tensor:
    """Positive distances in pixels: ``softplus(raw) * stride``."""
    return torch.nn.functional.softplus(ltrb_raw) * stride


@torch.no_grad()
def postprocess(raw: torch.Tensor, num_classes: int, stride: int, image_size: int,
                score_thresh: float = 0.05, pre_nms_topk: int = 1000, iou_thresh: float = 0.6,
                max_dets: int = 100) -> list[dict[str, torch.Tensor]]:
    """Decode ``(B, C+5, h, w)`` to per-image boxes, scores, labels after class-wise NMS.

    Score = sqrt(sigmoid(class) * sigmoid(centre-ness)) as in FCOS inference.
    """
    cls, ltrb_raw, ctr = split_dense(raw, num_classes)
    h, w = raw.shape[-2:]
    pts = grid_points(h, w, stride, raw.device)
    out = []
    for i in range(raw.shape[0]):
        scores = (cls[i].sigmoid() * ctr[i].sigmoid()[:, None]).sqrt()
        flat = scores.flatten()
        keep = flat > score_thresh
        idx = keep.nonzero().squeeze(1)
        vals = flat[idx]
        if vals.numel() > pre_nms_topk:
            vals, top = vals.topk(pre_nms_topk)
            idx = idx[top]
        loc, labels = idx // num_classes, idx % num_classes
        boxes = ltrb_to_xyxy(pts[loc], ltrb_from_raw(ltrb_raw[i][loc], stride)).clamp_(0, image_size)
        k = torchvision.ops.batched_nms(boxes, vals, labels, iou_thresh)[:max_dets]
        out.append({"boxes": boxes[k], "scores": vals[k], "labels": labels[k]})
    return out
