"""``acm``: a pixel-segmentation IRSTD baseline, ACM-U-Net (Dai et al., "Asymmetric Contextual
Modulation for Infrared Small Target Detection", WACV 2021).

The small full-resolution encoder-decoder of ACM as BasicIRSTD and DNANet's code base ship it
(``ACM`` / ``ASKCResUNet`` with ``AsymBiChaFuse``): an affine-free BatchNorm on the input, a
three-conv stem to stride 4, three stages of residual blocks (strides 4, 8, 16), a U-Net
decoder that upsamples with transposed convolutions and fuses each skip connection with
**asymmetric bi-directional modulation**: the deep feature gates the shallow one channel-wise
through global context (top-down: GAP, 1x1, BN, ReLU, 1x1, BN, sigmoid), the shallow feature
gates the deep one pixel-wise (bottom-up: the same without GAP), ``2 * xl * td(xh) + 2 * xh *
bu(xl)``, then a 3x3 conv; an FCN head at stride 4 and bilinear upsampling to the input size.
Trained with the soft-IoU loss of the paper (``points/soft-iou``, :mod:`.losses`).

Level: the encoder reaches P4 and the decoder fuses it down to P2 before the head, so the
only level is ``multi`` (P4 fused into P2), as ``point-heatmap``'s ``multi``; the prediction
is at stride 1. Output: ``points``: ``float32 (B, 1, S, S)`` target logits; decoded by
:func:`mtbench_point_heatmap.masks.decode_mask` (component centroids plus ``seg_mask``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtbench.models.base import MultiTaskModel
from mtbench.models.blocks import init_det_prior
from mtbench.plugins import Spec, hookimpl
from mtbench_point_heatmap.masks import decode_mask


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if act else nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """ResNet basic block (two 3x3 convs; a 1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, 3, stride), _conv_bn(cout, cout, 3, act=False))
        self.skip = nn.Identity() if stride == 1 and cin == cout else _conv_bn(cin, cout, 1, stride, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(cin, cout, stride), *(ResidualBlock(cout, cout) for _ in range(blocks - 1)))


def _gate(channels: int, reduction: int, global_context: bool) -> nn.Sequential:
    mid = max(channels // reduction, 1)
    pool = [nn.AdaptiveAvgPool2d(1)] if global_context else []
    return nn.Sequential(*pool, nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, channels, 1), nn.BatchNorm2d(channels), nn.Sigmoid())


class AsymBiChaFuse(nn.Module):
    """ACM's asymmetric bi-directional fusion of a deep ``xh`` and a shallow ``xl`` feature,
    both ``float32 (B, C, h, w)``: ``conv3x3(2 xl * topdown(xh) + 2 xh * bottomup(xl))``."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.topdown = _gate(channels, reduction, global_context=True)
        self.bottomup = _gate(channels, reduction, global_context=False)
        self.post = _conv_bn(channels, channels)

    def forward(self, xh: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        return self.post(2 * xl * self.topdown(xh) + 2 * xh * self.bottomup(xl))


class ACM(MultiTaskModel):
    """ACM-U-Net for the ``points`` task (module docstring).

    :param tasks: ``{"points": TaskInfo}`` (the only task it supports).
    :param level: ``multi`` (the only one: P4 fused into P2, predicted at stride 1).
    :param channels: stem width and the widths of the three stages (ACM: 8, 16, 32, 64;
        the first stage is twice the stem width).
    :param blocks: residual blocks per encoder stage (ACM's ``layers``: 3, 3, 3 for SIRST).
    :param reduction: channel reduction inside the modulation gates (ACM: 4).
    :param prior: when given, the head's bias starts at ``logit(prior)``, every pixel's initial
        target probability (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017);
        None keeps ACM's default initialisation (probability about 0.5). Targets cover 6e-4 of
        SIRST's train pixels, and soft-IoU is slow to push 0.5 down on all of them.
    :raises ValueError: a task other than ``points``, a level other than ``multi``, or
        ``channels[1] != 2 * channels[0]``.
    """

    def __init__(self, tasks: dict, level: str = "multi", channels: tuple[int, int, int, int] = (8, 16, 32, 64),
                 blocks: tuple[int, int, int] = (3, 3, 3), reduction: int = 4, prior: float | None = None):
        super().__init__()
        if set(tasks) != {"points"}:
            raise ValueError(f"acm predicts task 'points' only, got {sorted(tasks)}")
        if level != "multi":
            raise ValueError(f"acm fuses P4 into P2 and predicts at stride 1: its level is 'multi', got {level!r}")
        c0, c1, c2, c3 = channels
        if c1 != 2 * c0:
            raise ValueError(f"acm's stem ends at twice its width: channels[1] must be {2 * c0}, got {c1}")
        self.tasks, self.infos, self.level, self.strides = ("points",), dict(tasks), level, {"points": 1}
        self.stem = nn.Sequential(nn.BatchNorm2d(3, affine=False), _conv_bn(3, c0, 3, 2), _conv_bn(c0, c0),
                                  _conv_bn(c0, c1), nn.MaxPool2d(3, 2, 1))
        self.layer1, self.layer2 = _stage(c1, c1, blocks[0], 1), _stage(c1, c2, blocks[1], 2)
        self.layer3 = _stage(c2, c3, blocks[2], 2)
        self.deconv2, self.fuse2 = nn.ConvTranspose2d(c3, c2, 4, 2, 1), AsymBiChaFuse(c2, reduction)
        self.uplayer2 = _stage(c2, c2, blocks[1], 1)
        self.deconv1, self.fuse1 = nn.ConvTranspose2d(c2, c1, 4, 2, 1), AsymBiChaFuse(c1, reduction)
        self.uplayer1 = _stage(c1, c1, blocks[0], 1)
        self.head = nn.Sequential(_conv_bn(c1, max(c1 // 4, 1)), nn.Dropout(0.1), nn.Conv2d(max(c1 // 4, 1), 1, 1))
        if prior is not None:
            init_det_prior(self.head[-1], 0, 1, prior)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        u2 = self.uplayer2(self.fuse2(self.deconv2(c3), c2))
        u1 = self.uplayer1(self.fuse1(self.deconv1(u2), c1))
        return {"points": F.interpolate(self.head(u1), size=x.shape[-2:], mode="bilinear", align_corners=False)}

    def decode(self, task: str, raw: torch.Tensor, image_size: int, threshold: float = 0.5, **_) -> list[dict]:
        """Component points and ``seg_mask`` of ``raw`` (:func:`~mtbench_point_heatmap.masks.decode_mask`)."""
        return decode_mask(raw, threshold)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.head[0].parameters() if p.requires_grad]


@hookimpl
def mtbench_register_models():
    return [Spec("model", "acm", ACM, "ACM-U-Net pixel segmentation of infrared small targets (Dai et al. WACV "
                                      "2021); points = component centroids, scored point- and mask-level")]
