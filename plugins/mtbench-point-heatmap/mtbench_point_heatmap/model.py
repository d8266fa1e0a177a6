"""``point-heatmap``: a small point-target detector for mtbench (task ``points``, :mod:`.task`).

A timm backbone cut at the output level, a neck and a CenterNet-style head (Zhou et al.,
"Objects as Points", 2019) predicting, at one stride, a target heatmap logit and a
sub-pixel offset (encoding of :mod:`mtbench_point_heatmap.heatmap`); decoding takes the local
maxima of the heatmap. Levels:

- ``P2``/``P3``/``P4``: the backbone is truncated at that stride (a P2 model is shallow but
  sees every pixel, a P4 model deep but coarse); the neck is a 1x1 + 3x3 conv on that map.
- ``multi``: fused multi-scale: the backbone runs to the coarsest of ``fuse`` (default
  P4, for coarse location with context), an FPN top-down path (Lin et al., CVPR 2017)
  brings it and every level in between down to the finest (default P2, for precise
  position), where the head predicts.

Outputs: ``points``: ``float32 (B, 3, S/s, S/s)``; ``strides["points"]`` = s.
"""

from __future__ import annotations

import torch
from torch import nn

from mtbench.models.base import MultiTaskModel, level_stride
from mtbench.models.blocks import Backbone, Normalize, SingleLevelFPN, conv_head, init_det_prior
from mtbench.plugins import Spec, hookimpl


class PointHeatmap(MultiTaskModel):
    """Heatmap point detector.

    :param tasks: ``{"points": TaskInfo}`` (the only task it supports).
    :param level: ``P2``, ``P3``, ``P4`` or ``multi``.
    :param backbone: timm model name (default ``resnet18``, which timm truncates at the level).
    :param backbone_weights: ``none`` or ``imagenet`` (offline weights only).
    :param neck_channels: channels of the neck output.
    :param fuse: finest and coarsest level of the ``multi`` variant.
    :param prior: initial target probability of every cell (heat bias, Lin et al. 2017).
    :raises ValueError: a task other than ``points``, or an unknown level.
    """

    def __init__(self, tasks: dict, level: str = "P2", backbone: str = "resnet18",
                 backbone_weights: str | None = None, freeze_at: int = 0, neck_channels: int = 64,
                 fuse: tuple[str, str] = ("P2", "P4"), prior: float = 0.01):
        super().__init__()
        if set(tasks) != {"points"}:
            raise ValueError(f"point-heatmap predicts task 'points' only, got {sorted(tasks)}")
        fine, coarse = (level_stride(fuse[0]), level_stride(fuse[1])) if level == "multi" else (level_stride(level),) * 2
        self.tasks, self.infos, self.level = ("points",), dict(tasks), level
        self.strides = {"points": fine}
        self.backbone = Backbone(backbone, fine, backbone_weights, freeze_at, max_stride=coarse)
        if self.backbone.strides[0] != fine or self.backbone.strides[-1] != coarse:
            raise ValueError(f"backbone {backbone} gives strides {self.backbone.strides}, need {fine}..{coarse}")
        self.normalize = Normalize(self.backbone.mean, self.backbone.std)
        self.neck = SingleLevelFPN(self.backbone.channels, neck_channels)
        self.head = conv_head(neck_channels, 2, 3)
        init_det_prior(self.head[-1], 0, 1, prior)  # the heat channel; offsets keep their default init

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"points": self.head(self.neck(self.backbone(self.normalize(x))))}

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.head[0].parameters() if p.requires_grad]


@hookimpl
def mtbench_register_models():
    return [Spec("model", "point-heatmap", PointHeatmap,
                 "point-target heatmap + sub-pixel offsets at P2/P3/P4 or fused multi-scale (P4 -> P2)")]
