"""Task ``det``: object detection with axis-aligned boxes (COCO evaluation).

Target: ``{"boxes": float32 (N, 4) xyxy input pixels, "labels": int64 (N,), "image_id": int,
"scale": (sx, sy)}``; prediction per image ``{"boxes": float32 (K, 4), "scores": (K,),
"labels": int64 (K,)}`` after NMS (dense encoding of :mod:`mtbench.models.dense`); scored
by ``det/coco-map``, :class:`mtbench.metrics.detection.DetectionMAP` (mAP@[.5:.95], AP50; Lin et al., 2014).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtbench.plugins import Spec, hookimpl
from mtbench.tasks import Task

if TYPE_CHECKING:
    import torch


def tv_boxes(boxes: torch.Tensor, canvas_size: tuple[int, int]):
    """``float32 (N, 4)`` xyxy pixel boxes of an image ``canvas_size = (H, W)`` as a
    :class:`torchvision.tv_tensors.BoundingBoxes` (what a v2 transform moves with the image)."""
    from torchvision import tv_tensors
    return tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=canvas_size)


class Detection(Task):
    name = "det"
    target = "boxes float32 (N, 4) xyxy input pixels, labels int64 (N,), image_id, scale (sx, sy)"
    prediction = "per image: boxes float32 (K, 4) xyxy input pixels, scores (K,), labels int64 (K,) after NMS"
    metrics = {"det/mAP": True, "det/AP50": True}
    headline = "det/mAP"
    scored_by = "coco-map"
    default_loss = "fcos"
    columns = (("det mAP@[.5:.95]", "det/mAP", 4), ("det AP50", "det/AP50", 4))
    with_boxes = ("labels",)

    def head_channels(self, num_classes: int) -> int:
        """C class logits + 4 box distances + 1 centre-ness (:mod:`mtbench.models.dense`)."""
        return num_classes + 5

    def to_tv(self, target: dict, canvas_size: tuple[int, int]) -> dict:
        return {**target, "boxes": tv_boxes(target["boxes"], canvas_size)}

    def from_tv(self, target: dict) -> dict:
        import torch
        return {**target, "boxes": target["boxes"].as_subclass(torch.Tensor)}

    def decode(self, raw, *, num_classes, stride, image_size, **options):
        from mtbench.models.dense import postprocess
        return postprocess(raw, num_classes, stride, image_size, **options)

    def check_output(self, raw, *, num_classes, strides, batch, image_size) -> None:
        from mtbench.models.contract import ContractError, check_dense
        for i, m in enumerate(check_dense(self.name, raw, strides, batch, image_size)):
            extra = m.shape[1] - num_classes - 1
            if extra < 4 or extra % 4:
                raise ContractError(f"task det: map {i} has {m.shape[1]} channels, expected {num_classes} classes + "
                                    f"4*nb box + 1 quality (nb >= 1) for the declared {num_classes} classes")


@hookimpl
def mtbench_register_tasks():
    return [Spec("task", "det", Detection, "object detection, boxes xyxy; COCO mAP@[.5:.95], AP50")]
