"""``yolo-mtl``: a YOLOv5/YOLOv8-style detector with extra task heads on shared features.

The "YOLOv5WithClassification" design: a CSP-Darknet backbone (YOLOv5 v6.0, sizes n/s/m/l)
or any timm backbone, a PAN neck over the levels ``level``..P5, a YOLOv8-style decoupled
detection head on every one of those levels (anchor-free, DFL box bins with ``reg_max``),
and on the ``level`` map of the neck, the one the finest detection head also reads, a
classification head (YOLOv5 ``Classify``: 1x1 conv to ``cls_hidden`` channels, global
average pool, linear) and optionally a segmentation head (3x3 conv + 1x1 conv). The tasks
therefore interfere through the shared backbone and neck, which is the point of the design.

Outputs: ``det``: list of ``(B, C + 4*(reg_max+1) + 1, S/s, S/s)`` per level, finest first;
``seg``: ``(B, C, S/s, S/s)`` at ``level``; ``cls``: ``(B, C)`` logits.
``strides``: ``det`` the list of level strides, ``seg``/``cls`` the stride of ``level``.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeInt, PositiveInt
from torch import nn

from mtbench.data.base import TaskInfo
from mtbench.models.base import MultiTaskModel
from mtbench.models.blocks import Backbone, Normalize
from mtbench.models.yolo_blocks import PAN, YOLO_SIZES, Conv, CSPDarknet, DecoupledHead, make_divisible
from mtbench.plugins import Spec, hookimpl


class YoloMTL(MultiTaskModel):
    """Multi-task YOLO.

    :param tasks: task name -> :class:`TaskInfo` (det, and optionally cls and seg).
    :param level: finest level ``P2``..``P4``: detection on ``level``..P5, cls/seg on ``level``.
    :param backbone: ``csp`` (YOLOv5 CSP-Darknet of ``size``) or a timm model name.
    :param size: ``n``, ``s``, ``m`` or ``l`` (depth/width multiples of the CSP backbone and neck).
    :param backbone_weights: ``none`` or ``imagenet`` (timm backbones with offline weights).
    :param freeze_at: freeze a timm backbone up to this stride (see :class:`Backbone`).
    :param reg_max: DFL bins per box side minus one (0 = plain distances).
    :param cls_hidden: channels of the classification head's 1x1 conv (YOLOv5: 1280).
    :raises ValueError: ``level`` P5 (a PAN needs two levels) or a backbone without its strides.
    """

    def __init__(self, tasks: dict[str, TaskInfo], level: str = "P3", backbone: str = "csp", size: str = "n",
                 backbone_weights: str | None = None, freeze_at: NonNegativeInt = 0, reg_max: NonNegativeInt = 16,
                 cls_hidden: PositiveInt = 1280):
        super().__init__()
        stride = self.set_tasks(tasks, level)
        if stride >= 32:
            raise ValueError("yolo-mtl needs at least two levels: level must be P2, P3 or P4")
        if size not in YOLO_SIZES:
            raise ValueError(f"size {size!r}: known {', '.join(YOLO_SIZES)}")
        depth, width = YOLO_SIZES[size]
        if backbone == "csp":
            self.backbone = CSPDarknet(size, stride)
        else:
            self.backbone = Backbone(backbone, stride, backbone_weights, freeze_at)
        levels = [s for s in (4, 8, 16, 32) if s >= stride]
        if list(self.backbone.strides) != levels:
            raise ValueError(f"backbone {backbone} gives strides {self.backbone.strides}, need {levels}")
        self.normalize = Normalize(self.backbone.mean, self.backbone.std)
        neck = [make_divisible(s * 32 * width) for s in levels]  # YOLOv5: 256w at P3, 512w at P4, 1024w at P5
        self.neck = PAN(self.backbone.channels, neck, max(round(3 * depth), 1))
        self.strides["det"] = levels
        self.heads = nn.ModuleDict()
        if "det" in tasks:
            nc = tasks["det"].num_classes
            box_w, cls_w = max(16, neck[0] // 4, 4 * reg_max), max(neck[0], min(nc, 100))
            self.heads["det"] = nn.ModuleList(DecoupledHead(c, nc, reg_max, box_w, cls_w) for c in neck)
        if "cls" in tasks:
            self.heads["cls"] = nn.Sequential(Conv(neck[0], cls_hidden, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                              nn.Linear(cls_hidden, tasks["cls"].num_classes))
        if "seg" in tasks:
            self.heads["seg"] = nn.Sequential(Conv(neck[0], neck[0], 3), nn.Conv2d(neck[0], tasks["seg"].num_classes, 1))

    def forward(self, x: torch.Tensor) -> dict:
        feats = self.neck(self.backbone(self.normalize(x)))
        out = {}
        for task in self.tasks:
            head = self.heads[task]
            out[task] = [h(f) for h, f in zip(head, feats)] if task == "det" else head(feats[0])
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        """Backbone and neck."""
        return [p for m in (self.backbone, self.neck) for p in m.parameters() if p.requires_grad]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The neck's C3 producing the ``level`` map (read by the finest det head and cls/seg)."""
        return [p for p in self.neck.td[-1].parameters() if p.requires_grad]


@hookimpl
def mtbench_register_models():
    return [Spec("model", "yolo-mtl", YoloMTL,
                 "YOLOv5 CSP backbone (or timm) + PAN + YOLOv8 decoupled det heads, cls/seg heads on the finest level")]
