"""Task ``cls``: image classification (Top-1).

Target: ``int64 ()`` class index; prediction ``float32 (B, C)`` logits; scored by
``cls/top1``, :class:`mtbench.metrics.classification.Top1`. Its chance predictor is the split's majority
label (a model that ignores its input can always reach it), not a permutation.
"""

from __future__ import annotations

from mtbench.plugins import Spec, hookimpl
from mtbench.tasks import Task


def majority_logits(preds: list, targets: list) -> list:
    """Constant logits ``float32 (C,)`` of the split's most frequent label, one per image."""
    import torch
    labels = torch.stack([torch.as_tensor(t) for t in targets]).long()
    majority = int(torch.bincount(labels).argmax())
    logits = torch.zeros_like(torch.as_tensor(preds[0]), dtype=torch.float32)
    logits[majority] = 1.0
    return [logits] * len(preds)


class Classification(Task):
    name = "cls"
    target = "int64 () class index"
    prediction = "float32 (B, C) logits"
    metrics = {"cls/Top-1": True}
    headline = "cls/Top-1"
    scored_by = "top1"
    default_loss = "ce"
    columns = (("cls Top-1", "cls/Top-1", 4),)
    class_logits = True
    image_level = True

    def chance_inputs(self, preds, targets, seed):
        return majority_logits(preds, targets), targets, "majority"

    def check_output(self, raw, *, num_classes, strides, batch, image_size) -> None:
        from mtbench.models.contract import ContractError
        if raw.dim() != 2 or tuple(raw.shape) != (batch, num_classes):
            raise ContractError(f"task cls: logits of shape {tuple(raw.shape)}, expected ({batch}, {num_classes}) "
                                f"for the declared {num_classes} classes")


@hookimpl
def mtbench_register_tasks():
    return [Spec("task", "cls", Classification, "image classification; Top-1 accuracy")]
