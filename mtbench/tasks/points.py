"""Task ``points``: point targets (infrared small targets), scored point-level.

Target: ``{"points": float32 (N, 2) xy input pixels, "boxes": float32 (N, 4), "mask": uint8
(S, S), "image_id": int, "scale": (sx, sy)}``; prediction per image ``{"points": float32
(K, 2) xy input pixels, "scores": float32 (K,)}`` (heatmap encoding of
:mod:`mtbench.models.heatmap`); scored by :class:`mtbench.metrics.point_level.PointLevelMetrics`.
"""

from __future__ import annotations

from mtbench.metrics.point_level import PointLevelMetrics
from mtbench.models.contract import check_dense
from mtbench.models.heatmap import decode_heatmap
from mtbench.plugins import Spec, hookimpl
from mtbench.tasks import Task
from mtbench.tasks.detection import flip_boxes


class Points(Task):
    name = "points"
    target = ("points float32 (N, 2) xy input pixels, boxes float32 (N, 4) xyxy, mask uint8 (S, S), image_id, "
              "scale (sx, sy)")
    prediction = "per image: points float32 (K, 2) xy input pixels, scores float32 (K,) in [0, 1]"
    metrics = {"points/Pd": True, "points/FA_per_image": False, "points/precision": True, "points/F1": True,
               "points/Pd_FA_AUC": True, "points_mask/Pd": True, "points_mask/Fa": False, "points_mask/IoU": True,
               "points_mask/nIoU": True}
    #: point-level F1 of Pd and precision (Pd alone rewards predicting everywhere)
    headline = "points/F1"
    default_loss = "focal-heatmap"
    columns = (("points Pd", "points/Pd", 4), ("points FA/img", "points/FA_per_image", 3),
               ("points F1", "points/F1", 4), ("points Pd-FA AUC", "points/Pd_FA_AUC", 4))

    def flip_target(self, target: dict, width: int) -> dict:
        pts = target["points"].clone()
        pts[:, 0] = width - pts[:, 0]
        return {**target, "boxes": flip_boxes(target["boxes"], width), "points": pts, "mask": target["mask"].flip(-1)}

    def decode(self, raw, *, num_classes, stride, image_size, **options):
        return decode_heatmap(raw, stride, image_size, **options)

    def metric(self, dataset) -> PointLevelMetrics:
        return PointLevelMetrics()

    def check_output(self, raw, *, num_classes, strides, batch, image_size) -> None:
        check_dense(self.name, raw, strides, batch, image_size)


@hookimpl
def mtbench_register_tasks():
    return [Spec("task", "points", Points, "point targets (centroids); point-level Pd, FA per image, F1")]
