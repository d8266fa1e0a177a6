"""Point-target losses: heatmap losses ``points/bce-hard``, ``points/focal-heatmap``,
``points/gaussian-soft``, and the mask loss ``points/soft-iou`` of a segmentation model
(:class:`SoftIoU`, last in this module).

Called as ``loss(raw (B, 3, h, w), targets, stride=int)`` with ``targets`` a list of
``{"points": float32 (N, 2) xy pixels, ...}`` (see :mod:`mtbench_point_heatmap.heatmap`). Each
returns ``heat`` (the heatmap term), ``offset`` (L1 of the sub-pixel offsets at target
cells, CenterNet), ``total``, and counters ``num_pos`` / ``num_pos/P<k>`` (target cells) and
``num_loc/P<k>`` (cells), so the 1:4000 imbalance of a P2 heatmap is in the record.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtbench.losses import EpochAware, binary_entropy
from mtbench.models.dense import level_name
from mtbench_point_heatmap.heatmap import gaussian_heatmap, point_cells
from mtbench.plugins import Spec, hookimpl


class PointHeatmapLoss(EpochAware, nn.Module):
    """Skeleton: build per-image heat targets (``heat_target``), score them (``heat_loss``),
    add the offset L1 at the target cells.

    :param offset_weight: weight of the offset term.
    :param threshold: probability above which decoding keeps a cell (peaks and mask); part
        of the loss because each loss calibrates the heatmap differently (a Gaussian-target
        focal loss peaks lower than hard BCE, CenterNet decodes at 0.1-0.3).
    """

    default_threshold = 0.5

    def __init__(self, num_classes: int = 1, offset_weight: float = 1.0, threshold: float | None = None):
        super().__init__()
        self.offset_weight = offset_weight
        self.threshold = self.default_threshold if threshold is None else threshold

    @property
    def decode_kwargs(self) -> dict:
        return {"threshold": self.threshold}

    def heat_target(self, points: torch.Tensor, stride: int, h: int, w: int) -> torch.Tensor:
        raise NotImplementedError

    def heat_loss(self, logits: torch.Tensor, target: torch.Tensor, num_pos: int) -> torch.Tensor:
        raise NotImplementedError

    def heat_floor(self, target: torch.Tensor, num_pos: int) -> torch.Tensor | None:
        """Smallest ``heat`` possible for soft targets (None: hard targets, floor 0)."""
        return None

    def forward(self, raw: torch.Tensor, targets: list[dict], stride: int) -> dict[str, torch.Tensor]:
        b, _, h, w = raw.shape
        heat_t = torch.stack([self.heat_target(t["points"].to(raw.device), stride, h, w) for t in targets])
        offsets, offset_t = [], []
        for i, t in enumerate(targets):
            cells, off = point_cells(t["points"].to(raw.device), stride, h, w)
            offsets.append(raw[i, 1:3, cells[:, 1], cells[:, 0]].T.sigmoid())
            offset_t.append(off)
        num_pos = int(sum(o.shape[0] for o in offsets))
        heat = self.heat_loss(raw[:, 0], heat_t, num_pos)
        offset = F.l1_loss(torch.cat(offsets), torch.cat(offset_t), reduction="sum") / max(num_pos, 1) \
            if num_pos else raw.sum() * 0.0
        lv = level_name(stride)
        floor = self.heat_floor(heat_t, num_pos)
        return {"heat": heat, "offset": offset, "total": heat + self.offset_weight * offset,
                **({"floor": floor} if floor is not None else {}),
                "num_pos": torch.tensor(float(num_pos)), f"num_pos/{lv}": torch.tensor(float(num_pos)),
                f"num_loc/{lv}": torch.tensor(float(b * h * w))}


class HardBCE(PointHeatmapLoss):
    """``points/bce-hard``: each target's single cell is 1, every other cell 0; BCE averaged
    over all cells (the naive baseline whose small loss can hide an all-background
    prediction at P2); ``pos_weight`` re-weights positive cells (1 = plain BCE)."""

    def __init__(self, num_classes: int = 1, offset_weight: float = 1.0, pos_weight: float = 1.0,
                 threshold: float | None = None):
        super().__init__(num_classes, offset_weight, threshold)
        self.pos_weight = pos_weight

    def heat_target(self, points, stride, h, w):
        t = torch.zeros(h, w, device=points.device)
        cells, _ = point_cells(points, stride, h, w)
        t[cells[:, 1], cells[:, 0]] = 1.0
        return t

    def heat_loss(self, logits, target, num_pos):
        pw = torch.tensor(self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)


class FocalHeatmap(PointHeatmapLoss):
    """``points/focal-heatmap``: CenterNet's penalty-reduced pixel-wise focal loss (Law & Deng,
    CornerNet, ECCV 2018; Zhou et al. 2019) on a Gaussian-splatted target of ``sigma`` cells:
    ``-(1/N) sum (1-p)^a log p`` at target cells, ``(1-Y)^b p^a log(1-p)`` elsewhere; a 2, b 4.
    Decoded at probability 0.3 by default."""

    default_threshold = 0.3

    def __init__(self, num_classes: int = 1, offset_weight: float = 1.0, sigma: float = 1.0, alpha: float = 2.0,
                 beta: float = 4.0, threshold: float | None = None):
        super().__init__(num_classes, offset_weight, threshold)
        self.sigma, self.alpha, self.beta = sigma, alpha, beta

    def heat_target(self, points, stride, h, w):
        return gaussian_heatmap(points, stride, h, w, self.sigma)

    def heat_loss(self, logits, target, num_pos):
        logp, log1mp = F.logsigmoid(logits), F.logsigmoid(-logits)
        p = logits.sigmoid()
        pos = target >= 1.0
        pos_term = ((1 - p) ** self.alpha * logp)[pos].sum()
        neg_term = ((1 - target) ** self.beta * p ** self.alpha * log1mp)[~pos].sum()
        return -(pos_term + neg_term) / max(num_pos, 1)


class GaussianSoft(PointHeatmapLoss):
    """``points/gaussian-soft``: BCE against Gaussian soft labels of ``sigma`` cells inside a
    ``window x window`` square around each target, summed and divided by the number of
    targets. Optional schedule: sigma and window shrink linearly from (``sigma``,
    ``window``) to (``final_sigma``, ``final_window``) over ``schedule_epochs`` epochs (e.g.
    5x5 / 1.2 -> 3x3 / 0.8); the values in force are reported as ``sigma`` and ``window``."""

    def __init__(self, num_classes: int = 1, offset_weight: float = 1.0, sigma: float = 1.2, window: int = 5,
                 final_sigma: float | None = None, final_window: int | None = None, schedule_epochs: int = 0,
                 threshold: float | None = None):
        super().__init__(num_classes, offset_weight, threshold)
        self.sigma0, self.window0 = sigma, window
        self.sigma1 = sigma if final_sigma is None else final_sigma
        self.window1 = window if final_window is None else final_window
        self.schedule_epochs = schedule_epochs

    def current(self) -> tuple[float, int]:
        """(sigma, window) at the current epoch."""
        if not self.schedule_epochs:
            return self.sigma0, self.window0
        f = min(1.0, self.epoch / self.schedule_epochs)
        window = round(self.window0 + f * (self.window1 - self.window0))
        return self.sigma0 + f * (self.sigma1 - self.sigma0), window + (1 - window % 2)

    def heat_target(self, points, stride, h, w):
        sigma, window = self.current()
        return gaussian_heatmap(points, stride, h, w, sigma, window)

    def heat_loss(self, logits, target, num_pos):
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / max(num_pos, 1)

    def heat_floor(self, target, num_pos):
        return binary_entropy(target).sum() / max(num_pos, 1)

    def forward(self, raw, targets, stride):
        sigma, window = self.current()
        return super().forward(raw, targets, stride) | {"sigma": torch.tensor(sigma),
                                                        "window": torch.tensor(float(window))}


class SoftIoU(nn.Module):
    """``points/soft-iou``: the soft-IoU loss of ACM (Dai et al., WACV 2021), as DNANet's and
    BasicIRSTD's ``SoftIoULoss``: ``1 - (sum p*g + 1) / (sum p + sum g - sum p*g + 1)`` with
    ``p = sigmoid(logit)`` and ``g`` the target mask, sums over the whole batch (smooth 1);
    plus ``bce_weight`` x pixel-wise BCE (0 = the paper's loss alone).

    Called as ``loss(raw float32 (B, C, h, w), targets, stride=int)``: channel 0 is the target
    logit of each cell; ``targets`` per image carry ``"mask"`` uint8 ``(S, S)`` 0/1 at input
    size, max-pooled to the map (``h = S / stride``; a cell is a target when any of its pixels
    is; stride 1 for a full-resolution model such as ``acm``).
    Components: ``iou`` (the soft-IoU term), ``bce``, ``total``, ``num_pos`` (target cells).

    :param threshold: probability a pixel must exceed in decoding (0.5, as DNANet / BasicIRSTD).
    """

    declared_components = ("iou", "bce", "num_pos")

    def __init__(self, num_classes: int = 1, bce_weight: float = 0.0, threshold: float = 0.5):
        super().__init__()
        self.bce_weight, self.threshold = bce_weight, threshold

    @property
    def decode_kwargs(self) -> dict:
        return {"threshold": self.threshold}

    def forward(self, raw: torch.Tensor, targets: list[dict], stride: int) -> dict[str, torch.Tensor]:
        logits = raw[:, 0]
        g = torch.stack([t["mask"].to(raw.device, torch.float32) for t in targets])
        if g.shape[-2:] != logits.shape[-2:]:
            g = F.adaptive_max_pool2d(g[:, None], logits.shape[-2:])[:, 0]
        p = logits.sigmoid()
        inter = (p * g).sum()
        iou = 1 - (inter + 1) / (p.sum() + g.sum() - inter + 1)
        bce = F.binary_cross_entropy_with_logits(logits, g)
        return {"iou": iou, "bce": bce, "total": iou + self.bce_weight * bce, "num_pos": g.sum().detach()}


@hookimpl
def mtbench_register_losses():
    return [
        Spec("loss", "bce-hard", HardBCE, "single-cell targets, BCE over all cells (+ offset L1)", task="points"),
        Spec("loss", "focal-heatmap", FocalHeatmap, "CenterNet penalty-reduced focal on a Gaussian target",
             task="points"),
        Spec("loss", "gaussian-soft", GaussianSoft, "BCE to Gaussian soft labels, optional sigma/window schedule",
             task="points"),
        Spec("loss", "soft-iou", SoftIoU, "soft-IoU of a target mask (ACM / DNANet), optional + BCE",
             task="points"),
    ]

