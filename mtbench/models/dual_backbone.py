"""``dual-backbone``: one backbone, neck and head per task, no shared parameters.

The "remove interference by separation" baseline: each task gets the same blocks as
``unified-onehead`` (timm backbone, single-level FPN neck at ``level``, conv head) but its
own copy, so no task's gradient can disturb another's features, at the cost of T times
the parameters and latency (which the table shows). Outputs use the same encodings.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeInt, PositiveInt
from torch import nn

from mtbench.data.base import TaskInfo
from mtbench.models.base import MultiTaskModel
from mtbench.models.blocks import Backbone, Normalize, SingleLevelFPN, conv_head, head_layout, init_det_prior
from mtbench.plugins import Spec, hookimpl


class _Branch(nn.Module):
    def __init__(self, info: TaskInfo, stride: int, backbone: str, weights, freeze_at: int, channels: int,
                 layers: int):
        super().__init__()
        self.backbone = Backbone(backbone, stride, weights, freeze_at)
        if self.backbone.strides[0] != stride:
            raise ValueError(f"backbone {backbone} has no stride-{stride} output; strides {self.backbone.strides}")
        self.normalize = Normalize(self.backbone.mean, self.backbone.std)
        self.neck = SingleLevelFPN(self.backbone.channels, channels)
        width, self.pooled = head_layout(info.task, info.num_classes)
        self.head = conv_head(channels, layers, width)
        if info.task == "det":
            init_det_prior(self.head[-1], 0, info.num_classes)
        self.task = info.task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.neck(self.backbone(self.normalize(x))))
        return out.mean(dim=(2, 3)) if self.pooled else out


class DualBackbone(MultiTaskModel):
    """Separate branch per task.

    Parameters as :class:`mtbench.models.unified_onehead.UnifiedOneHead`.
    :return (forward): ``det (B, C+5, S/s, S/s)``, ``seg (B, C, S/s, S/s)``, ``cls (B, C)``.
    """

    def __init__(self, tasks: dict[str, TaskInfo], level: str = "P3", backbone: str = "tf_efficientnet_lite0",
                 backbone_weights: str | None = None, neck_channels: PositiveInt = 96, head_layers: PositiveInt = 2,
                 freeze_at: NonNegativeInt = 0):
        super().__init__()
        stride = self.set_tasks(tasks, level)
        self.branches = nn.ModuleDict({t: _Branch(info, stride, backbone, backbone_weights, freeze_at,
                                                  neck_channels, head_layers) for t, info in tasks.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: branch(x) for t, branch in self.branches.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def last_shared_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError("dual-backbone shares no layer: GradNorm/PCGrad have nothing to balance")


@hookimpl
def mtbench_register_models():
    return [Spec("model", "dual-backbone", DualBackbone,
                 "one backbone + neck + head per task, nothing shared (separation baseline)")]
