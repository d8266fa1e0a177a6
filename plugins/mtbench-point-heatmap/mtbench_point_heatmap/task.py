"""Task ``points``: point targets (infrared small targets), scored point-level, registered
through mtbench's task contract (:class:`mtbench.tasks.Task`).

Target: ``{"points": float32 (N, 2) xy input pixels, "boxes": float32 (N, 4), "mask": uint8
(S, S), "image_id": int, "scale": (sx, sy)}`` (+ ``"native_mask"`` bool ``(H, W)`` in a val
split, for mask-level scoring at native size); a flip, crop or scale of a train image moves
points (``KeyPoints``), boxes and mask with it (torchvision.transforms.v2,
:mod:`mtbench.data.augment`); a target whose point or box leaves the image is dropped (point and
box together).

Prediction: list (one per image) of ``{"points": float32 (K, 2) xy input pixels, "scores":
float32 (K,) probabilities in [0, 1]}`` (for the heatmap encoding of
:mod:`mtbench_point_heatmap.heatmap`, by :func:`~mtbench_point_heatmap.heatmap.decode_heatmap`);
scored point-level (:class:`mtbench_point_heatmap.metrics.PointLevelMetrics`). A model that
predicts a real per-pixel target segmentation (``acm``, :mod:`mtbench_point_heatmap.acm`,
whose points are its components' centroids) adds ``"seg_mask": bool (S, S)`` to every image's
dict; only then are the mask-level BasicIRSTD metrics (``points_mask/Pd``, ``Fa``, ``IoU``,
``nIoU``; :mod:`mtbench_point_heatmap.mask_metrics`) reported too. A thresholded point
heatmap is not a segmentation: never return it as ``seg_mask``.

Chance: the default permutation (the model's points against another image's targets).
"""

from __future__ import annotations

from mtbench.plugins import Spec, hookimpl
from mtbench.tasks import Task
from mtbench.tasks.detection import tv_boxes


class Points(Task):
    name = "points"
    target = ("points float32 (N, 2) xy input pixels, boxes float32 (N, 4) xyxy, mask uint8 (S, S), image_id, "
              "scale (sx, sy)")
    prediction = "per image: points float32 (K, 2) xy input pixels, scores float32 (K,) in [0, 1]"
    metrics = {"points/Pd": True, "points/FA_per_image": False, "points/precision": True, "points/F1": True,
               "points/Pd_FA_AUC": True, "points/Pd@0.1FA": True, "points_mask/Pd": True, "points_mask/Fa": False, "points_mask/IoU": True,
               "points_mask/nIoU": True}
    #: point-level F1 of Pd and precision (Pd alone rewards predicting everywhere)
    headline = "points/F1"
    scored_by = "point-level"  # mtbench_point_heatmap.metrics.PointLevelMetrics
    default_loss = "focal-heatmap"
    columns = (("points Pd", "points/Pd", 4), ("points FA/img", "points/FA_per_image", 3),
               ("points F1", "points/F1", 4), ("points Pd-FA AUC", "points/Pd_FA_AUC", 4),
               ("points Pd@0.1FA", "points/Pd@0.1FA", 4),
               ("mask Pd", "points_mask/Pd", 4), ("mask Fa", "points_mask/Fa", 7), ("mask IoU", "points_mask/IoU", 4),
               ("mask nIoU", "points_mask/nIoU", 4))  # the mask columns: models with seg_mask only

    with_boxes = ()  # boxes (the XML's) and points (the mask's components) are not row-aligned

    def to_tv(self, target: dict, canvas_size: tuple[int, int]) -> dict:
        """Points are continuous pixel coordinates (a pixel's centre at +0.5, as the heatmap encoder
        reads them; a flip maps x to W - x); v2's ``KeyPoints`` flip as pixel indices (x to W - 1 - x),
        so they travel shifted by -0.5 and come back +0.5 (exact for the flip; a crop resized by s
        moves them by 0.5 (1 - s) px more than the continuous rule, since v2 resizes key points as
        continuous coordinates)."""
        from torchvision import tv_tensors
        if "native_mask" in target:  # val-only (scored at native size); augmentation runs on train items
            raise ValueError("points: a target with 'native_mask' (a val item) cannot be augmented")
        return {**target, "boxes": tv_boxes(target["boxes"], canvas_size), "mask": tv_tensors.Mask(target["mask"]),
                "points": tv_tensors.KeyPoints(target["points"] - 0.5, canvas_size=canvas_size)}

    def from_tv(self, target: dict) -> dict:
        """Plain tensors again; a point the crop left outside the image is dropped."""
        import torch
        points = target["points"].as_subclass(torch.Tensor) + 0.5
        h, w = target["mask"].shape[-2:]
        inside = (points[:, 0] >= 0) & (points[:, 0] <= w) & (points[:, 1] >= 0) & (points[:, 1] <= h)
        return {**target, "points": points[inside], "boxes": target["boxes"].as_subclass(torch.Tensor),
                "mask": target["mask"].as_subclass(torch.Tensor)}

    def decode(self, raw, *, num_classes, stride, image_size, **options):
        from mtbench_point_heatmap.heatmap import decode_heatmap
        return decode_heatmap(raw, stride, image_size, **options)

    def check_output(self, raw, *, num_classes, strides, batch, image_size) -> None:
        from mtbench.models.contract import check_dense
        check_dense(self.name, raw, strides, batch, image_size)


@hookimpl
def mtbench_register_tasks():
    return [Spec("task", "points", Points, "point targets (centroids); point-level Pd, FA per image, F1")]
