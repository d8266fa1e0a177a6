"""Task ``seg``: semantic segmentation (one confusion matrix over the split).

Target: ``int64 (S, S)`` class indices, 255 = ignore; prediction ``int64 (B, S, S)`` (logits
upsampled bilinearly to the input, argmax); scored by
``seg/miou``, :class:`mtbench.metrics.segmentation.SegmentationMIoU` (MMSegmentation's IoUMetric).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtbench.plugins import Spec, hookimpl
from mtbench.tasks import Task

if TYPE_CHECKING:
    import torch


class Segmentation(Task):
    name = "seg"
    target = "int64 (S, S) class indices, 255 = ignore"
    prediction = "int64 (B, S, S) class indices"
    metrics = {"seg/mIoU": True}
    headline = "seg/mIoU"
    scored_by = "miou"
    default_loss = "ce"
    columns = (("seg mIoU", "seg/mIoU", 4),)
    class_logits = True

    def to_tv(self, target: torch.Tensor, canvas_size: tuple[int, int]):
        from torchvision import tv_tensors
        return tv_tensors.Mask(target)  # moved with nearest-neighbour sampling, 255 (ignore) kept

    def from_tv(self, target) -> torch.Tensor:
        import torch
        return target.as_subclass(torch.Tensor)

    def decode(self, raw, *, num_classes, stride, image_size, **options):
        from mtbench.data.transforms import upsample_logits
        return upsample_logits(raw, (image_size, image_size)).argmax(1)

    def check_output(self, raw, *, num_classes, strides, batch, image_size) -> None:
        from mtbench.models.contract import ContractError
        if raw.dim() != 4 or raw.shape[0] != batch or raw.shape[1] != num_classes:
            raise ContractError(f"task seg: logits of shape {tuple(raw.shape)}, expected ({batch}, {num_classes}, "
                                f"h, w) for the declared {num_classes} classes")

    def check_decoded(self, pred, *, batch, image_size) -> None:
        import torch

        from mtbench.models.contract import ContractError
        if not (isinstance(pred, torch.Tensor) and tuple(pred.shape) == (batch, image_size, image_size)):
            got = f"shape {tuple(pred.shape)}" if isinstance(pred, torch.Tensor) else type(pred).__name__
            raise ContractError(f"task seg: decode returned {got}, expected ({batch}, {image_size}, {image_size}) "
                                f"class indices")


@hookimpl
def mtbench_register_tasks():
    return [Spec("task", "seg", Segmentation, "semantic segmentation, 255 ignored; mIoU over the split")]
