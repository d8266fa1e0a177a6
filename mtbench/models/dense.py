"""Geometry of dense (per-location) detection outputs, shared by heads, losses and decoding.

A dense detection head returns one map per level, ``float32 (B, C + 4*nb + 1, h, w)`` with,
per location:

- ``C`` class logits;
- the distances ``(l, t, r, b)`` from the location's centre to the box sides, either as 4
  raw values (``nb = 1``: ``softplus(raw) * stride`` pixels, FCOS, Tian et al., ICCV 2019) or
  as 4 discrete distributions over ``nb = reg_max + 1`` bins (``nb > 1``: distance =
  expectation over bins ``0..reg_max`` times the stride, the Distribution Focal Loss
  encoding of GFL, Li et al., NeurIPS 2020, used by YOLOv6/YOLOv8/Gold-YOLO);
- 1 quality logit (FCOS centre-ness or YOLO objectness; unused by losses that score
  quality through the class logits, e.g. VarifocalNet).

``nb`` is read from the channel count, so a loss or decoder never needs to be told how a
head encodes boxes. A single-level head may return its map directly; a multi-level head
returns a list (finest first) with ``strides`` to match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision


def grid_points(h: int, w: int, stride: int, device=None) -> torch.Tensor:
    """Centres of an ``h x w`` feature map in input pixels: ``float32 (h*w, 2)`` xy."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float().add_(0.5).mul_(stride)


def ltrb_to_xyxy(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` points + ``(N, 4)`` distances -> ``(N, 4)`` xyxy boxes (pixels)."""
    return torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], -1)


def xyxy_to_ltrb(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Distances ``(N, 4)`` from ``(N, 2)`` points to the sides of ``(N, 4)`` xyxy boxes."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], -1)


def level_name(stride: int) -> str:
    """``P3`` for stride 8 (level k has stride 2**k)."""
    return f"P{int(stride).bit_length() - 1}"


def bins_of(channels: int, num_classes: int) -> int:
    """Distance bins per side encoded in a ``C + 4*nb + 1``-channel map.

    :raises ValueError: the channel count fits no encoding.
    """
    nb, rest = divmod(channels - num_classes - 1, 4)
    if rest or nb < 1:
        raise ValueError(f"a dense detection map of {channels} channels does not hold {num_classes} classes "
                         f"+ 4 x bins + 1 quality")
    return nb


@dataclass
class Dense:
    """All levels of a dense head flattened to ``N = sum(h*w)`` locations.

    ``cls (B, N, C)``, ``reg (B, N, 4, nb)``, ``quality (B, N)`` logits; ``points (N, 2)`` xy
    pixels; ``strides (N,)`` pixels; ``level (N,)`` level index; ``level_strides`` per level.
    """

    cls: torch.Tensor
    reg: torch.Tensor
    quality: torch.Tensor
    points: torch.Tensor
    strides: torch.Tensor
    level: torch.Tensor
    level_strides: list[int]

    @property
    def bins(self) -> int:
        return self.reg.shape[-1]

    def distances(self) -> torch.Tensor:
        """Predicted ``(B, N, 4)`` distances in pixels (softplus or DFL expectation, times stride)."""
        if self.bins == 1:
            d = F.softplus(self.reg[..., 0])
        else:
            proj = torch.arange(self.bins, dtype=self.reg.dtype, device=self.reg.device)
            d = (self.reg.softmax(-1) * proj).sum(-1)
        return d * self.strides[None, :, None]

    def boxes(self) -> torch.Tensor:
        """Predicted ``(B, N, 4)`` xyxy boxes in input pixels."""
        return ltrb_to_xyxy(self.points[None], self.distances())


def flatten_levels(raw, strides, num_classes: int) -> Dense:
    """Flatten one map or a list of maps (finest first) into a :class:`Dense`.

    :param raw: ``(B, C+4nb+1, h, w)`` or a list of them, one per stride.
    :param strides: int or list of ints (pixels), as ``model.strides["det"]``.
    """
    maps = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    strides = list(strides) if isinstance(strides, (list, tuple)) else [strides]
    if len(maps) != len(strides):
        raise ValueError(f"{len(maps)} detection maps but {len(strides)} strides")
    nb = bins_of(maps[0].shape[1], num_classes)
    b, dev = maps[0].shape[0], maps[0].device
    flat = torch.cat([m.flatten(2) for m in maps], 2).transpose(1, 2)  # (B, N, ch)
    pts, st, lv = [], [], []
    for i, (m, s) in enumerate(zip(maps, strides)):
        h, w = m.shape[-2:]
        pts.append(grid_points(h, w, s, dev))
        st.append(torch.full((h * w,), float(s), device=dev))
        lv.append(torch.full((h * w,), i, dtype=torch.long, device=dev))
    c = num_classes
    return Dense(cls=flat[..., :c], reg=flat[..., c:c + 4 * nb].reshape(b, -1, 4, nb), quality=flat[..., -1],
                 points=torch.cat(pts), strides=torch.cat(st), level=torch.cat(lv), level_strides=strides)


@torch.no_grad()
def postprocess(raw, num_classes: int, strides, image_size: int, use_quality: bool = True,
                score_thresh: float = 0.05, pre_nms_topk: int = 1000, iou_thresh: float = 0.6,
                max_dets: int = 100) -> list[dict[str, torch.Tensor]]:
    """Decode dense maps to per-image boxes, scores, labels after class-wise NMS.

    Score = ``sqrt(sigmoid(class) * sigmoid(quality))`` as in FCOS inference when the loss
    trains the quality logit (``use_quality``), else ``sigmoid(class)`` (focal, varifocal).

    :return: per image ``{"boxes": float32 (K, 4) xyxy pixels, "scores": (K,), "labels": int64 (K,)}``.
    """
    d = flatten_levels(raw, strides, num_classes)
    all_boxes = d.boxes().clamp_(0, image_size)
    out = []
    for i in range(d.cls.shape[0]):
        scores = d.cls[i].sigmoid()
        if use_quality:
            scores = (scores * d.quality[i].sigmoid()[:, None]).sqrt()
        flat = scores.flatten()
        idx = (flat > score_thresh).nonzero().squeeze(1)
        vals = flat[idx]
        if vals.numel() > pre_nms_topk:
            vals, top = vals.topk(pre_nms_topk)
            idx = idx[top]
        loc, labels = idx // num_classes, idx % num_classes
        boxes = all_boxes[i][loc]
        k = torchvision.ops.batched_nms(boxes, vals, labels, iou_thresh)[:max_dets]
        out.append({"boxes": boxes[k], "scores": vals[k], "labels": labels[k]})
    return out
