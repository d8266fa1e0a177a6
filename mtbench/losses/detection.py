"""Dense detection losses: ``det/fcos``, ``det/focal``, ``det/yolo``, ``det/varifocal``.

All take the dense maps of :mod:`mtbench.models.dense` (one level or a list of levels) and
are called as ``loss(raw, targets, stride=int | list[int])`` with ``targets`` a list (one per
image) of ``{"boxes": float32 (M, 4) xyxy pixels, "labels": int64 (M,)}``. Each returns its
named components, ``total``, and the assigner's counters: ``num_pos`` (positives in the
batch), ``num_pos/P<k>`` and ``num_loc/P<k>`` per level (locations in the batch), so a class
loss that is 0 because nothing was assigned, or a 1:4000 imbalance at P2, is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, complete_box_iou_loss, generalized_box_iou_loss, sigmoid_focal_loss

from mtbench.losses import EpochAware, binary_entropy
from mtbench.losses.assigners import atss, centre_sampling, task_aligned
from mtbench.models.dense import Dense, flatten_levels, level_name, xyxy_to_ltrb
from mtbench.plugins import Spec, hookimpl


@dataclass
class Assigned:
    """Per location of the batch: ``pos (B, N) bool``, ``labels (B, N) int64`` (-1 negative),
    ``boxes (B, N, 4)`` matched ground truth (0 for negatives), ``weight (B, N)`` soft target."""

    pos: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    weight: torch.Tensor
    forced: int = 0


def centreness(ltrb: torch.Tensor) -> torch.Tensor:
    """FCOS centre-ness target ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))`` of ``(K, 4)``."""
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    return ((lr.min(1).values / lr.max(1).values.clamp(min=1e-6))
            * (tb.min(1).values / tb.max(1).values.clamp(min=1e-6))).clamp(min=0).sqrt()


def dfl_loss(reg: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distribution Focal Loss (GFL, Li et al., NeurIPS 2020) of ``(K, 4, nb)`` bin logits for
    ``(K, 4)`` target distances in strides (clamped to ``[0, nb - 1.01]``); returns ``(K,)``."""
    nb = reg.shape[-1]
    t = target.clamp(0, nb - 1.01)
    left = t.long()
    wl = left + 1 - t
    logp = reg.log_softmax(-1)
    ll = logp.gather(-1, left[..., None]).squeeze(-1)
    lr = logp.gather(-1, (left + 1)[..., None]).squeeze(-1)
    return -(ll * wl + lr * (1 - wl)).mean(-1)


class DenseDetectionLoss(EpochAware, nn.Module):
    """Shared skeleton: flatten levels, assign per image, compute components, count positives.

    Subclasses implement ``assign(d, i, boxes, labels, pred_boxes)`` and ``components(d, a, pred_boxes)``.
    ``uses_quality`` tells decoding whether the quality logit is trained (see ``postprocess``).
    """

    uses_quality = True

    def __init__(self, num_classes: int, weights: dict[str, float]):
        super().__init__()
        self.num_classes = num_classes
        self.w = weights

    @property
    def decode_kwargs(self) -> dict:
        return {"use_quality": self.uses_quality}

    @property
    def declared_components(self) -> tuple[str, ...]:
        """The components every call reports (those ``total`` weighs); the dead-loss check
        flags one that never appears in the history."""
        return tuple(self.w)

    def forward(self, raw, targets: list[dict], stride) -> dict[str, torch.Tensor]:
        d = flatten_levels(raw, stride, self.num_classes)
        pred_boxes = d.boxes()
        b, n = d.cls.shape[:2]
        dev = d.cls.device
        a = Assigned(torch.zeros(b, n, dtype=torch.bool, device=dev), torch.full((b, n), -1, device=dev),
                     torch.zeros(b, n, 4, device=dev), torch.zeros(b, n, device=dev))
        for i, tgt in enumerate(targets):
            boxes, labels = tgt["boxes"].to(dev).float(), tgt["labels"].to(dev)
            gi, weight, forced = self.assign(d, i, boxes, labels, pred_boxes[i].detach())
            pos = gi >= 0
            a.pos[i], a.forced = pos, a.forced + forced
            a.labels[i, pos] = labels[gi[pos]]
            a.boxes[i, pos] = boxes[gi[pos]]
            a.weight[i] = weight
        parts = self.components(d, a, pred_boxes)
        floor = parts.pop("floor", None)
        total = sum(self.w[k] * v for k, v in parts.items())
        extra = {"floor": floor.detach()} if floor is not None else {}
        return {**parts, "total": total, **extra, **self.counts(d, a)}

    def counts(self, d: Dense, a: Assigned) -> dict[str, torch.Tensor]:
        out = {"num_pos": torch.tensor(float(a.pos.sum())), "forced_pos": torch.tensor(float(a.forced))}
        b = a.pos.shape[0]
        for lv, s in enumerate(d.level_strides):
            on = d.level == lv
            out[f"num_pos/{level_name(s)}"] = torch.tensor(float(a.pos[:, on].sum()))
            out[f"num_loc/{level_name(s)}"] = torch.tensor(float(b * on.sum()))
        return out

    def one_hot(self, a: Assigned) -> torch.Tensor:
        """``(B, N, C)`` class targets: 1 at the matched class of positives."""
        t = torch.zeros(*a.labels.shape, self.num_classes + 1, device=a.labels.device)
        t.scatter_(-1, a.labels.where(a.pos, self.num_classes)[..., None], 1.0)
        return t[..., :-1]

    @staticmethod
    def zero(d: Dense) -> torch.Tensor:
        """A 0 that keeps the graph (no positives in the batch)."""
        return d.cls.sum() * 0.0


class CentreSampledLoss(DenseDetectionLoss):
    """Assignment by centre sampling (:func:`~mtbench.losses.assigners.centre_sampling`), ``radius`` in strides."""

    radius: float

    def assign(self, d, i, boxes, labels, pred_boxes):
        gi, forced = centre_sampling(d.points, d.strides, d.level, boxes, self.radius)
        return gi, (gi >= 0).float(), forced


class FcosLoss(CentreSampledLoss):
    """``det/fcos``: FCOS (Tian et al., ICCV 2019).

    Centre sampling (``radius`` strides; level ranges with several levels; see
    :func:`~mtbench.losses.assigners.centre_sampling`). ``cls``: sigmoid focal loss (alpha
    0.25, gamma 2; Lin et al., ICCV 2017) over all locations / num_pos; ``box``: GIoU loss
    (Rezatofighi et al., CVPR 2019) weighted by the centre-ness target; ``ctr``: BCE of the
    quality logit to the centre-ness target on positives.
    """

    def __init__(self, num_classes: int, radius: float = 1.5, alpha: float = 0.25, gamma: float = 2.0,
                 cls_weight: float = 1.0, box_weight: float = 1.0, ctr_weight: float = 1.0):
        super().__init__(num_classes, {"cls": cls_weight, "box": box_weight, "ctr": ctr_weight})
        self.radius, self.alpha, self.gamma = radius, alpha, gamma

    def components(self, d, a, pred_boxes):
        num_pos = int(a.pos.sum())
        cls = sigmoid_focal_loss(d.cls, self.one_hot(a), self.alpha, self.gamma, reduction="sum") / max(num_pos, 1)
        if not num_pos:
            return {"cls": cls, "box": self.zero(d), "ctr": self.zero(d)}
        pts = d.points[None].expand(a.pos.shape[0], -1, -1)[a.pos]
        gt = a.boxes[a.pos]
        ctr_t = centreness(xyxy_to_ltrb(pts, gt))
        giou = generalized_box_iou_loss(pred_boxes[a.pos], gt, reduction="none")
        box = (giou * ctr_t).sum() / ctr_t.sum().clamp(min=1e-6)
        ctr = F.binary_cross_entropy_with_logits(d.quality[a.pos], ctr_t)
        return {"cls": cls, "box": box, "ctr": ctr, "floor": self.w["ctr"] * binary_entropy(ctr_t).mean()}


class FocalLoss(CentreSampledLoss):
    """``det/focal``: sigmoid focal loss (RetinaNet, Lin et al., ICCV 2017) + GIoU.

    Centre-sampling assignment as ``det/fcos``; no quality branch (scores are the class
    probabilities). ``cls`` summed over all locations / num_pos; ``box`` mean GIoU loss on positives.
    """

    uses_quality = False

    def __init__(self, num_classes: int, radius: float = 1.5, alpha: float = 0.25, gamma: float = 2.0,
                 cls_weight: float = 1.0, box_weight: float = 2.0):
        super().__init__(num_classes, {"cls": cls_weight, "box": box_weight})
        self.radius, self.alpha, self.gamma = radius, alpha, gamma

    def components(self, d, a, pred_boxes):
        num_pos = int(a.pos.sum())
        cls = sigmoid_focal_loss(d.cls, self.one_hot(a), self.alpha, self.gamma, reduction="sum") / max(num_pos, 1)
        box = generalized_box_iou_loss(pred_boxes[a.pos], a.boxes[a.pos], reduction="mean") if num_pos \
            else self.zero(d)
        return {"cls": cls, "box": box}


class YoloLoss(CentreSampledLoss):
    """``det/yolo``: YOLOv5's loss (Ultralytics, 2020) on an anchor-free head.

    ``obj``: BCE of the quality (objectness) logit at every location, target the detached
    CIoU of the positive's predicted box (clamped at 0), 0 elsewhere, averaged per level and
    weighted by YOLOv5's level balance (4.0, 1.0, 0.4 for P3..P5; 1.0 for one level);
    ``cls``: BCE of the class logits on positives; ``box``: CIoU loss (Zheng et al., AAAI 2020)
    on positives. Gains as YOLOv5's ``hyp.scratch-low``: box 0.05, obj 1.0, cls 0.5.
    Assignment: YOLOX's centre prior (centre sampling with ``radius`` 2.5 strides) with
    FCOS level ranges, since an anchor-free head has no anchor shapes to match.
    """

    BALANCE = {1: [1.0], 2: [4.0, 1.0], 3: [4.0, 1.0, 0.4], 4: [4.0, 1.0, 0.25, 0.06]}

    def __init__(self, num_classes: int, radius: float = 2.5, box_weight: float = 0.05, obj_weight: float = 1.0,
                 cls_weight: float = 0.5):
        super().__init__(num_classes, {"box": box_weight, "obj": obj_weight, "cls": cls_weight})
        self.radius = radius

    def components(self, d, a, pred_boxes):
        num_pos = int(a.pos.sum())
        obj_t = torch.zeros_like(d.quality)
        if num_pos:
            ciou = complete_box_iou_loss(pred_boxes[a.pos], a.boxes[a.pos], reduction="none")
            box = ciou.mean()
            obj_t[a.pos] = (1 - ciou.detach()).clamp(min=0)
            cls = F.binary_cross_entropy_with_logits(d.cls[a.pos], self.one_hot(a)[a.pos])
        else:
            box = cls = self.zero(d)
        bal = self.BALANCE.get(len(d.level_strides), [1.0] * len(d.level_strides))
        obj_all = F.binary_cross_entropy_with_logits(d.quality, obj_t, reduction="none")
        obj = sum(bal[lv] * obj_all[:, d.level == lv].mean() for lv in range(len(d.level_strides)))
        h = binary_entropy(obj_t)
        floor = sum(bal[lv] * h[:, d.level == lv].mean() for lv in range(len(d.level_strides)))
        return {"box": box, "obj": obj, "cls": cls, "floor": self.w["obj"] * floor}


class VarifocalLoss(DenseDetectionLoss):
    """``det/varifocal``: the loss of YOLOv6 / Gold-YOLO (Li et al. 2022; Wang et al., NeurIPS 2023).

    Assignment: ATSS (``atss_warmup_epochs`` epochs) then task-aligned (TOOD). ``cls``:
    Varifocal loss (VarifocalNet, Zhang et al., CVPR 2021; alpha 0.75, gamma 2) of the class
    probabilities against IoU-aware targets (ATSS: IoU of the predicted box with its match;
    TAL: the normalised alignment), normalised by the sum of targets; ``box``: GIoU loss
    weighted by the targets; ``dfl``: Distribution Focal Loss when the head encodes distances
    as bins (absent for ``nb = 1`` heads, such as Gold-YOLO-N/S). Weights as YOLOv6: class
    1.0, iou 2.5, dfl 0.5. No quality branch.
    """

    declared_components = ("cls", "box")  # dfl only with DFL bins (reg_max > 0), which the model decides

    uses_quality = False

    def __init__(self, num_classes: int, atss_warmup_epochs: int = 0, alpha: float = 0.75, gamma: float = 2.0,
                 topk_atss: int = 9, topk_tal: int = 13, cls_weight: float = 1.0, box_weight: float = 2.5,
                 dfl_weight: float = 0.5):
        super().__init__(num_classes, {"cls": cls_weight, "box": box_weight, "dfl": dfl_weight})
        self.atss_warmup_epochs, self.alpha, self.gamma = atss_warmup_epochs, alpha, gamma
        self.topk_atss, self.topk_tal = topk_atss, topk_tal

    def assign(self, d, i, boxes, labels, pred_boxes):
        if self.epoch < self.atss_warmup_epochs:
            gi = atss(d.points, d.strides, d.level, boxes, self.topk_atss)
            iou = box_iou(pred_boxes, boxes).clamp(min=0) if boxes.numel() else None
            w = iou.gather(1, gi.clamp(min=0)[:, None]).squeeze(1) * (gi >= 0) if iou is not None \
                else torch.zeros_like(gi, dtype=torch.float)
            return gi, w, 0
        scores = d.cls[i].detach().sigmoid()
        gi, w = task_aligned(scores, pred_boxes, d.points, boxes, labels, self.topk_tal)
        return gi, w, 0

    def components(self, d, a, pred_boxes):
        target = self.one_hot(a) * a.weight[..., None]
        norm = target.sum().clamp(min=1.0)
        p = d.cls.sigmoid()
        label = (target > 0).float()
        vf_w = self.alpha * p.detach().pow(self.gamma) * (1 - label) + target * label
        cls = (F.binary_cross_entropy_with_logits(d.cls, target, reduction="none") * vf_w).sum() / norm
        parts = {"cls": cls, "floor": self.w["cls"] * (binary_entropy(target) * target).sum() / norm}
        if a.pos.any():
            w = a.weight[a.pos]
            parts["box"] = (generalized_box_iou_loss(pred_boxes[a.pos], a.boxes[a.pos], reduction="none") * w).sum() / norm
            if d.bins > 1:
                pts = d.points[None].expand(a.pos.shape[0], -1, -1)[a.pos]
                st = d.strides[None].expand(a.pos.shape[0], -1)[a.pos]
                t = xyxy_to_ltrb(pts, a.boxes[a.pos]) / st[:, None]
                parts["dfl"] = (dfl_loss(d.reg[a.pos], t) * w).sum() / norm
        else:
            parts["box"] = self.zero(d)
            if d.bins > 1:
                parts["dfl"] = self.zero(d)
        return parts


@hookimpl
def mtbench_register_losses():
    return [
        Spec("loss", "fcos", FcosLoss, "FCOS centre sampling + sigmoid focal + GIoU + centre-ness BCE", task="det"),
        Spec("loss", "focal", FocalLoss, "centre sampling + sigmoid focal + GIoU (RetinaNet-style, no quality)",
             task="det"),
        Spec("loss", "yolo", YoloLoss, "YOLOv5: BCE objectness/class + CIoU, centre-prior assignment", task="det"),
        Spec("loss", "varifocal", VarifocalLoss,
             "YOLOv6/Gold-YOLO: ATSS warm-up then TAL, Varifocal + GIoU + DFL", task="det"),
    ]
