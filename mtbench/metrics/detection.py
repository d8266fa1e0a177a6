"""COCO box mAP: mAP@[.5:.95], AP50 and the other 10 standard stats.

Computed by faster-coco-eval (its stats are identical to pycocotools' and it is several
times faster); ``backend="pycocotools"`` runs the reference implementation (tests).
Reduction: one evaluation over the whole split, averaged over categories that have
ground truth (COCO convention); predictions are mapped back to original image pixels.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from mtbench.metrics.base import SampleMetricBase
from mtbench.metrics.coco_resample import ap_from_matches, per_image_matches

COCO_STATS = ("mAP@[.5:.95]", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


def coco_stats(gt: dict, dets: list[dict], backend: str = "faster-coco-eval") -> np.ndarray:
    """The 12 COCO bbox stats of ``dets`` against ``gt``.

    :param gt: COCO instances dict (``images``, ``annotations``, ``categories``).
    :param dets: ``[{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}]``.
    :return: ``float64 (12,)`` in ``COCO_STATS`` order; with no detections all AP/AR are 0
        (no prediction recalls nothing) rather than an error.
    """
    if not dets:
        return np.zeros(12)
    gt = {"info": {}, "licenses": [], **gt}
    quiet = contextlib.redirect_stdout(io.StringIO())
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        with quiet:
            cg = COCO()
            cg.dataset = json.loads(json.dumps(gt))
            cg.createIndex()
            ev = COCOeval(cg, cg.loadRes(json.loads(json.dumps(dets))), "bbox")
            ev.evaluate(); ev.accumulate(); ev.summarize()
        return np.asarray(ev.stats, dtype=np.float64)
    from faster_coco_eval import COCO, COCOeval_faster
    with quiet:
        cg = COCO(json.loads(json.dumps(gt)))
        ev = COCOeval_faster(cg, cg.loadRes(json.loads(json.dumps(dets))), "bbox", print_function=lambda *a: None)
        ev.evaluate(); ev.accumulate(); ev.summarize()
    return np.asarray(ev.stats[:12], dtype=np.float64)


def coco_stats_files(gt_path: Path, dt_path: Path, backend: str = "faster-coco-eval") -> np.ndarray:
    """:func:`coco_stats` for a GT instances JSON and a detections JSON list on disk."""
    gt = json.loads(Path(gt_path).read_text())
    dets = json.loads(Path(dt_path).read_text())
    return coco_stats(gt, dets, backend)


class DetectionMAP(SampleMetricBase):
    """Accumulates decoded detections of a split; ``compute`` evaluates them.

    ``update(preds, targets)``: ``preds`` from ``model.decode("det", ...)`` (input pixels),
    ``targets`` the batch's det targets (their ``scale`` maps boxes back to original pixels).
    ``compute()``: mAP@[.5:.95] and AP50 by faster-coco-eval on the whole split.
    ``samples()``: per-image COCO matches (:mod:`mtbench.metrics.coco_resample`), from which
    ``reduce`` recomputes mAP and AP50 on any resample of the images (equal to pycocotools'
    on the whole split).
    """

    def __init__(self, gt: dict):
        self.gt = gt
        self.dets: list[dict] = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
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
        return {"det/mAP": float(stats[0]), "det/AP50": float(stats[1]), "det/num_dets": float(len(self.dets))}
