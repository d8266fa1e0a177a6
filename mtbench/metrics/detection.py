"""COCO box mAP: mAP@[.5:.95], AP50 and the other 10 standard stats.

Computed by :func:`mtbench.metrics.coco_eval.coco_stats` (faster-coco-eval; its stats are
identical to pycocotools'; ``backend="pycocotools"`` runs the reference implementation).
Reduction: one evaluation over the whole split, averaged over categories that have
ground truth (COCO convention); predictions are mapped back to original image pixels.
"""

from __future__ import annotations

import numpy as np

from mtbench.metrics.base import SampleMetricBase
from mtbench.metrics.coco_eval import coco_stats
from mtbench.metrics.coco_resample import ap_from_matches, per_image_matches
from mtbench.plugins import Spec, hookimpl


class DetectionMAP(SampleMetricBase):
    """Accumulates decoded detections of a split; ``compute`` evaluates them.

    ``update(preds, targets)``: ``preds`` from ``model.decode("det", ...)`` (input pixels),
    ``targets`` the batch's det targets (their ``scale`` maps boxes back to original pixels).
    ``compute()``: mAP@[.5:.95] and AP50 by faster-coco-eval on the whole split; raises
    ``ValueError`` when the ground truth has no non-crowd box (AP undefined, pycocotools' -1).
    ``samples()``: per-image COCO matches (:mod:`mtbench.metrics.coco_resample`), from which
    ``reduce`` recomputes mAP and AP50 on any resample of the images (equal to pycocotools'
    on the whole split).
    """

    def __init__(self, gt: dict):
        self.gt = gt
        self.dets: list[dict] = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        import torch  # here, not at import: compare / doctor load this class for reduce() only

        for p, t in zip(preds, targets):
            sx, sy = t["scale"]
            b = p["boxes"].detach().cpu().double() / torch.tensor([sx, sy, sx, sy], dtype=torch.float64)
            for box, s, lab in zip(b.tolist(), p["scores"].tolist(), p["labels"].tolist()):
                self.dets.append({"image_id": t["image_id"], "category_id": int(lab) + 1,
                                  "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": float(s)})

    def samples(self) -> dict[str, list]:
        return per_image_matches(self.gt, self.dets)

    @staticmethod
    def reduce(samples: dict, index: np.ndarray) -> dict[str, float]:
        return ap_from_matches(samples, index)

    def compute(self) -> dict[str, float]:
        stats = coco_stats(self.gt, self.dets)
        if stats[0] < 0:  # pycocotools' -1: no category has ground truth; never a score
            raise ValueError("COCO AP is undefined: the split's ground truth has no non-crowd box")
        return {"det/mAP": float(stats[0]), "det/AP50": float(stats[1]), "det/num_dets": float(len(self.dets))}


@hookimpl
def mtbench_register_metrics():
    return [Spec("metric", "coco-map", lambda dataset: DetectionMAP(dataset.coco_gt()),
                 "COCO mAP@[.5:.95] and AP50 (faster-coco-eval = pycocotools), per-image matches", task="det")]
