"""YOLO building blocks (YOLOv5/YOLOv8, Ultralytics): Conv-BN-SiLU, C3, SPPF, CSP-Darknet, PAN.

Channel and depth scaling follow YOLOv5's ``width_multiple``/``depth_multiple``: a base
width ``w`` becomes ``ceil(w * width / 8) * 8`` and a depth ``n`` becomes ``max(round(n * depth), 1)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtbench.models.blocks import init_det_prior

#: YOLOv5 model sizes: (depth_multiple, width_multiple)
YOLO_SIZES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0)}


def make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm + SiLU; ``padding`` defaults to ``k // 2``."""

    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: bool = True,
                 p: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2 if p is None else p, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool = True):
        super().__init__()
        self.cv1, self.cv2 = Conv(c, c, 1), Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions (YOLOv5)."""

    def __init__(self, cin: int, cout: int, n: int = 1, shortcut: bool = True):
        super().__init__()
        c = cout // 2
        self.cv1, self.cv2, self.cv3 = Conv(cin, c), Conv(cin, c), Conv(2 * c, cout)
        self.m = nn.Sequential(*(Bottleneck(c, shortcut) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast (three chained 5x5 max-pools)."""

    def __init__(self, cin: int, cout: int, k: int = 5):
        super().__init__()
        c = cin // 2
        self.cv1, self.cv2 = Conv(cin, c), Conv(c * 4, cout)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat([x, y1, y2, self.pool(y2)], 1))


class CSPDarknet(nn.Module):
    """YOLOv5 v6.0 backbone: 6x6 stem, then Conv(s2) + C3 stages at strides 4/8/16/32, SPPF.

    :param size: ``n``/``s``/``m``/``l`` (see ``YOLO_SIZES``).
    :param min_stride: finest stride returned (4..32).
    :return (forward): list of maps at strides ``min_stride..32``, finest first.
    """

    def __init__(self, size: str = "n", min_stride: int = 8):
        super().__init__()
        depth, width = YOLO_SIZES[size]
        ch = [make_divisible(c * width) for c in (64, 128, 256, 512, 1024)]
        reps = [max(round(n * depth), 1) for n in (3, 6, 9, 3)]
        self.stem = Conv(3, ch[0], 6, 2, p=2)
        self.stages = nn.ModuleList()
        for i in range(4):
            layers = [Conv(ch[i], ch[i + 1], 3, 2), C3(ch[i + 1], ch[i + 1], reps[i])]
            if i == 3:
                layers.append(SPPF(ch[4], ch[4]))
            self.stages.append(nn.Sequential(*layers))
        all_strides = [4, 8, 16, 32]
        self.keep = [i for i, s in enumerate(all_strides) if s >= min_stride]
        self.channels = [ch[i + 1] for i in self.keep]
        self.strides = [all_strides[i] for i in self.keep]
        self.mean, self.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def forward(self, x):
        x = self.stem(x)
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.keep:
                out.append(x)
        return out


class PAN(nn.Module):
    """YOLOv5 PAN neck over any number of levels: top-down (1x1 reduce, upsample, concat,
    C3) then bottom-up (3x3 stride-2 conv, concat, C3) (Liu et al., CVPR 2018).

    :param in_channels: backbone channels, finest first.
    :param out_channels: output channels per level, finest first.
    :return (forward): one map per level, finest first.
    """

    def __init__(self, in_channels: list[int], out_channels: list[int], depth: int = 1):
        super().__init__()
        n = len(in_channels)
        self.reduce = nn.ModuleList()
        self.td = nn.ModuleList()
        top = in_channels[-1]
        for i in range(n - 2, -1, -1):  # coarse to fine
            self.reduce.append(Conv(top, out_channels[i], 1))
            self.td.append(C3(out_channels[i] + in_channels[i], out_channels[i], depth, shortcut=False))
            top = out_channels[i]
        self.down = nn.ModuleList()
        self.bu = nn.ModuleList()
        for i in range(1, n):
            self.down.append(Conv(out_channels[i - 1], out_channels[i - 1], 3, 2))
            lateral = out_channels[i - 1]  # the 1x1-reduced map made at this level on the way down
            self.bu.append(C3(out_channels[i - 1] + lateral, out_channels[i], depth, shortcut=False))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(feats)
        x = feats[-1]
        laterals = []  # reduced maps, coarse to fine
        for k, i in enumerate(range(n - 2, -1, -1)):
            x = self.reduce[k](x)
            laterals.append(x)
            x = self.td[k](torch.cat([F.interpolate(x, size=feats[i].shape[-2:], mode="nearest"), feats[i]], 1))
        outs = [x]
        for i in range(1, n):
            x = self.bu[i - 1](torch.cat([self.down[i - 1](x), laterals[n - 1 - i]], 1))
            outs.append(x)
        return outs


class DecoupledHead(nn.Module):
    """YOLOv8-style decoupled head for one level: a class branch (width ``cls_width``) and a box
    branch (width ``box_width``), two 3x3 convs each; output ``(B, C + 4*(reg_max+1) + 1, h, w)``
    in the dense encoding of :mod:`mtbench.models.dense` (the extra channel, from the box
    branch, is the quality logit). YOLOv8 sets ``box_width = max(16, ch_P3 // 4, 4 * reg_max)``
    and ``cls_width = max(ch_P3, min(C, 100))`` for every level."""

    def __init__(self, cin: int, num_classes: int, reg_max: int, box_width: int, cls_width: int):
        super().__init__()
        cc, cb = cls_width, box_width
        self.cls = nn.Sequential(Conv(cin, cc, 3), Conv(cc, cc, 3), nn.Conv2d(cc, num_classes, 1))
        self.box = nn.Sequential(Conv(cin, cb, 3), Conv(cb, cb, 3), nn.Conv2d(cb, 4 * (reg_max + 1) + 1, 1))
        init_det_prior(self.cls[-1], 0, num_classes)

    def forward(self, x):
        return torch.cat([self.cls(x), self.box(x)], 1)
