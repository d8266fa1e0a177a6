"""Evaluate a model on the val splits of a set of tasks.

Every task is scored on its whole val split (no sub-sampling): det mAP@[.5:.95]/AP50 via
COCO evaluation in original image pixels, seg mIoU from one confusion matrix, cls Top-1,
points Pd/Fa/F1/IoU (DNANet definitions, input pixels).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from mtbench.data.base import TaskDataset, collate
from mtbench.metrics.classification import Top1
from mtbench.metrics.detection import DetectionMAP
from mtbench.metrics.point_level import PointLevelMetrics
from mtbench.metrics.segmentation import SegmentationMIoU


def _metric_for(task: str, ds: TaskDataset):
    if task == "det":
        return DetectionMAP(ds.coco_gt())
    if task == "seg":
        return SegmentationMIoU(ds.info.num_classes)
    if task == "points":
        return PointLevelMetrics()
    return Top1(ds.info.num_classes)


@torch.no_grad()
def evaluate(model, val_sets: dict[str, TaskDataset], tasks: list[str], batch_size: int,
             device: torch.device, image_size: int, decode_kwargs: dict[str, dict] | None = None) -> dict[str, float]:
    """Metrics of ``tasks`` on their val splits, e.g. ``{"det/mAP": .., "det/AP50": .., "seg/mIoU": ..}``.

    ``decode_kwargs[task]`` is passed to ``model.decode`` (from the task's loss).
    """
    decode_kwargs = decode_kwargs or {}
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    for task in tasks:
        ds = val_sets[task]
        metric = _metric_for(task, ds)
        for images, targets in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate):
            raw = model(images.to(device))[task]
            metric.update(model.decode(task, raw, image_size, **decode_kwargs.get(task, {})), targets)
        out.update(metric.compute())
    model.train(was_training)
    return out
