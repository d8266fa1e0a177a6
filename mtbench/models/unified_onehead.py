"""``unified-onehead``: one backbone, one single-level neck, ONE head for every task.

The "Unified-OneHead" setting (public repository wajason/Unified-OneHead-Multi-Task-Challenge):
a timm backbone (``features_only``), a single-level FPN-style neck at the configured
``level`` (P2..P5), and one 2-3 layer convolutional head whose single output tensor
carries, along channels:

- det: ``C_det`` class logits + 4 ``(l, t, r, b)`` distances + 1 centre-ness (FCOS encoding);
- seg: ``C_seg`` per-pixel logits (bilinearly upsampled to the input by ``decode`` and losses);
- cls: ``C_cls`` logits, global-average-pooled to ``(B, C_cls)``.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeInt, PositiveInt
from torch import nn

from mtbench.data.base import TaskInfo
from mtbench.models.base import MultiTaskModel
from mtbench.models.blocks import Backbone, Normalize, SingleLevelFPN, conv_head, head_layout, init_det_prior
from mtbench.plugins import Spec, hookimpl


class UnifiedOneHead(MultiTaskModel):
    """Unified single-head multi-task model.

    :param tasks: task name -> :class:`TaskInfo` (subset of det, seg, cls).
    :param level: ``P2``..``P5``: stride of the neck output feeding the head.
    :param backbone: timm model name, e.g. ``tf_efficientnet_lite0``, ``mobilenetv3_small_100``.
    :param backbone_weights: ``none`` or ``imagenet`` (offline weights only).
    :param freeze_at: freeze the backbone up to this stride (see :class:`Backbone`).
    :param neck_channels: channels of the neck output.
    :param head_layers: 3x3 conv-BN-ReLU layers before the final 1x1 conv (2 or 3 total layers).
    :return (forward): ``det (B, C+5, S/s, S/s)``, ``seg (B, C, S/s, S/s)``, ``cls (B, C)``.
    """

    def __init__(self, tasks: dict[str, TaskInfo], level: str = "P3", backbone: str = "tf_efficientnet_lite0",
                 backbone_weights: str | None = None, neck_channels: PositiveInt = 96, head_layers: PositiveInt = 2,
                 freeze_at: NonNegativeInt = 0):
        super().__init__()
        stride = self.set_tasks(tasks, level)
        self.backbone = Backbone(backbone, stride, backbone_weights, freeze_at)
        if self.backbone.strides[0] != stride:
            raise ValueError(f"backbone {backbone} has no stride-{stride} output for level {level}; "
                             f"its strides are {self.backbone.strides}")
        self.normalize = Normalize(self.backbone.mean, self.backbone.std)
        self.neck = SingleLevelFPN(self.backbone.channels, neck_channels)
        layout = {t: head_layout(t, tasks[t].num_classes) for t in self.tasks}
        self.splits = [layout[t][0] for t in self.tasks]
        self.pooled = tuple(t for t in self.tasks if layout[t][1])  # image-level outputs (cls logits)
        self.head = conv_head(neck_channels, head_layers, sum(self.splits))
        if "det" in self.tasks:
            offset = sum(self.splits[: self.tasks.index("det")])
            init_det_prior(self.head[-1], offset, tasks["det"].num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(self.normalize(x))
        out = self.head(self.neck(feats))
        raw = dict(zip(self.tasks, out.split(self.splits, dim=1)))
        for t in self.pooled:
            raw[t] = raw[t].mean(dim=(2, 3))
        return raw

    def shared_parameters(self) -> list[nn.Parameter]:
        """Everything except the final 1x1 conv, whose output channels belong to single tasks."""
        final = set(map(id, self.head[-1].parameters()))
        return [p for p in self.parameters() if p.requires_grad and id(p) not in final]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last 3x3 conv of the head (or the neck's when the head has one layer)."""
        layer = self.head[-2] if len(self.head) > 1 else self.neck.smooth
        return [p for p in layer.parameters() if p.requires_grad]


@hookimpl
def mtbench_register_models():
    return [Spec("model", "unified-onehead", UnifiedOneHead,
                 "timm backbone + single-level FPN neck + one head carrying det/seg/cls channels")]
