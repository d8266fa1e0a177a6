"""Per-sample records, bootstrap CIs and measured chance levels (mtbench.metrics.base/chance).

Each metric's ``reduce`` on the identity resample is checked against the reference
implementation its name promises (pycocotools, torchmetrics), so a CI is the CI of the
published number.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from mtbench.metrics.base import bootstrap_ci, full_value, paired_bootstrap_ci, reducer_of, sample_entry
from mtbench.metrics.chance import chance_metric, derangement
from mtbench.metrics.classification import Top1
from mtbench.metrics.coco_eval import coco_stats
from mtbench.metrics.coco_resample import ap_from_matches, per_image_matches
from mtbench.metrics.detection import DetectionMAP
from mtbench.metrics.segmentation import SegmentationMIoU


def _coco_case(seed: int, n_images: int = 20, crowd: bool = False):
    rng = random.Random(seed)
    images = [{"id": i + 1, "width": 120, "height": 100} for i in range(n_images)]
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3, 7)]
    anns, dets = [], []
    for img in images:
        for _ in range(rng.randint(0, 4)):
            w, h = rng.uniform(4, 50), rng.uniform(4, 50)
            x, y = rng.uniform(0, 60), rng.uniform(0, 40)
            cat = rng.choice([1, 2, 3])  # category 7 never has ground truth
            iscrowd = int(crowd and rng.random() < 0.15)
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": iscrowd})
            if rng.random() < 0.8:
                j = [rng.gauss(0, 0.15 * w), rng.gauss(0, 0.15 * h)]
                dets.append({"image_id": img["id"], "category_id": cat if rng.random() > 0.1 else 7,
                             "bbox": [x + j[0], y + j[1], w, h], "score": round(rng.random(), 2)})
        for _ in range(rng.randint(0, 3)):
            dets.append({"image_id": img["id"], "category_id": rng.choice([1, 2, 3, 7]),
                         "bbox": [rng.uniform(0, 80), rng.uniform(0, 60), rng.uniform(3, 30), rng.uniform(3, 30)],
                         "score": round(rng.random() * 0.6, 2)})
    return {"images": images, "annotations": anns, "categories": cats}, dets


@pytest.mark.parametrize("seed,crowd", [(0, False), (1, True), (2, False)])
def test_coco_resample_identity_equals_pycocotools(seed, crowd):
    gt, dets = _coco_case(seed, crowd=crowd)
    ref = coco_stats(gt, dets, backend="pycocotools")
    cols = per_image_matches(gt, dets)
    ours = ap_from_matches(cols, np.arange(len(gt["images"])))
    assert 0.05 < ref[0] < 0.95
    assert ours["det/mAP"] == pytest.approx(ref[0], abs=1e-12)
    assert ours["det/AP50"] == pytest.approx(ref[1], abs=1e-12)


def test_coco_resample_subset_equals_pycocotools_on_that_subset():
    gt, dets = _coco_case(3)
    keep = [img["id"] for img in gt["images"][::2]]
    sub_gt = {**gt, "images": [i for i in gt["images"] if i["id"] in keep],
              "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    sub_dets = [d for d in dets if d["image_id"] in keep]
    ref = coco_stats(sub_gt, sub_dets, backend="pycocotools")
    ours = ap_from_matches(per_image_matches(gt, dets), np.arange(0, len(gt["images"]), 2))
    assert ours["det/mAP"] == pytest.approx(ref[0], abs=1e-12)
    assert ours["det/AP50"] == pytest.approx(ref[1], abs=1e-12)


def test_no_detections_and_no_ground_truth():
    gt, dets = _coco_case(4)
    cols = per_image_matches(gt, [])
    assert ap_from_matches(cols, np.arange(len(gt["images"]))) == {"det/mAP": 0.0, "det/AP50": 0.0}
    empty = {**gt, "annotations": []}
    assert ap_from_matches(per_image_matches(empty, dets), np.arange(3)) == {"det/mAP": 0.0, "det/AP50": 0.0}


def test_miou_reduce_equals_torchmetrics():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (6, 16, 16), generator=gen)
    target = torch.randint(0, 4, (6, 16, 16), generator=gen)  # class 4 only predicted
    target[:, :3] = 255
    m = SegmentationMIoU(5)
    m.update(pred[:4], target[:4])
    m.update(pred[4:], target[4:])
    ref = MulticlassJaccardIndex(num_classes=5, average="macro", ignore_index=255)(pred, target)
    assert m.compute()["seg/mIoU"] == pytest.approx(float(ref), abs=1e-6)


def test_top1_is_exact_and_equals_torchmetrics():
    logits = torch.zeros(60, 10)
    labels = torch.arange(60) % 10
    logits[torch.arange(6), labels[:6]] = 1.0  # 6 of 60 right
    logits[6:, 0] = 0.5
    logits[6:, 0][labels[6:] == 0] = -1  # the others wrong
    m = Top1(10)
    m.update(logits, labels)
    assert m.compute()["cls/Top-1"] == 0.1  # exactly, not float32's 0.10000000149
    ref = MulticlassAccuracy(num_classes=10, average="micro")(logits, labels)
    assert m.compute()["cls/Top-1"] == pytest.approx(float(ref), abs=1e-7)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    m = Top1(2)
    rng = np.random.default_rng(0)
    labels = torch.as_tensor(rng.integers(0, 2, 80))
    logits = torch.nn.functional.one_hot(torch.where(torch.as_tensor(rng.random(80)) < 0.7, labels, 1 - labels), 2)
    m.update(logits.float(), labels)
    s = m.samples()
    a = bootstrap_ci(Top1.reduce, s, resamples=300, seed=1)
    b = bootstrap_ci(Top1.reduce, s, resamples=300, seed=1)
    assert a == b
    lo, hi = a["cls/Top-1"]
    p = m.compute()["cls/Top-1"]
    assert lo < p < hi
    # binomial standard error ~ sqrt(p (1-p) / n): the 95 % interval is about +-1.96 of it
    se = (p * (1 - p) / 80) ** 0.5
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.3)
    diff = paired_bootstrap_ci(Top1.reduce, s, s, ["cls/Top-1"])
    assert diff["cls/Top-1"] == (0.0, 0.0)


def test_sample_entry_round_trip():
    m = SegmentationMIoU(3)
    m.update(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 4, dtype=torch.long))
    entry = sample_entry(m)
    assert entry["metric"] == "mtbench.metrics.segmentation:SegmentationMIoU"
    assert reducer_of(entry)(entry["columns"], np.arange(2)) == {"seg/mIoU": 1.0}
    with pytest.raises(ValueError, match="cannot load metric"):
        reducer_of({"metric": "nowhere.module:Metric", "columns": {}})


def test_derangement_has_no_fixed_point():
    for n in (2, 3, 17, 86):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n)) and not (p == np.arange(n)).any()


def test_chance_cls_is_the_majority_share(registry):
    labels = torch.tensor([0] * 7 + [1] * 2 + [2] * 1)
    preds = list(torch.randn(10, 3).unbind(0))
    metric, method = chance_metric(registry.task("cls"), lambda: Top1(3), preds, list(labels.unbind(0)), seed=0)
    assert method == "majority" and metric.compute()["cls/Top-1"] == pytest.approx(0.7)


def test_chance_det_permutation_of_perfect_detections_is_low(registry):
    ds = registry.create("dataset", "synthetic", task="det", split="val", root=None, image_size=128,
                         num_images=24, max_shapes=3)
    targets = [ds[i][1] for i in range(len(ds))]
    preds = [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in targets]
    good = DetectionMAP(ds.coco_gt())
    good.update(preds, targets)
    assert good.compute()["det/mAP"] == pytest.approx(1.0)
    chance, method = chance_metric(registry.task("det"), lambda: DetectionMAP(ds.coco_gt()), preds, targets, seed=0)
    assert method == "permutation"
    assert chance.compute()["det/mAP"] < 0.3


def test_full_value_equals_compute_for_every_builtin_metric(registry):
    """The chance level is read from its records (``full_value``), not a second ``compute()``."""
    gen = torch.Generator().manual_seed(0)
    seg = SegmentationMIoU(5)
    seg.update(torch.randint(0, 5, (6, 16, 16), generator=gen), torch.randint(0, 4, (6, 16, 16), generator=gen))
    cls = Top1(4)
    cls.update(torch.randn(30, 4, generator=gen), torch.randint(0, 4, (30,), generator=gen))
    ds = registry.create("dataset", "synthetic", task="det", split="val", root=None, image_size=128,
                         num_images=12, max_shapes=3)
    targets = [ds[i][1] for i in range(len(ds))]
    noisy = [{"boxes": t["boxes"] + torch.randn(t["boxes"].shape, generator=gen) * 4,
              "scores": torch.rand(len(t["boxes"]), generator=gen), "labels": t["labels"]} for t in targets]
    det = DetectionMAP(ds.coco_gt())
    det.update(noisy, targets)
    for m in (seg, cls, det):
        ours, ref = full_value(type(m).reduce, m.samples()), m.compute()
        for k, v in ours.items():
            assert v == pytest.approx(ref[k], abs=1e-12), k


@pytest.mark.parametrize("seed", [5, 6])
def test_coco_resample_with_repeated_images_equals_pycocotools_on_the_copies(seed):
    """A bootstrap resample (images drawn with repeats) scores what pycocotools scores on a
    split where each drawn image is really there that many times (copies with new ids, kept
    next to each other so score ties break in the same order); tied scores included."""
    gt, dets = _coco_case(seed, crowd=True)
    index = np.sort(np.random.default_rng(seed).integers(0, len(gt["images"]), len(gt["images"])))
    copies = {"images": [], "annotations": [], "categories": gt["categories"]}
    copy_dets = []
    for j, i in enumerate(index):
        old = gt["images"][i]["id"]
        new = old * 1000 + j  # sorted ids keep the copies in draw order
        copies["images"].append({**gt["images"][i], "id": new})
        copies["annotations"] += [{**a, "id": len(copies["annotations"]) + k + 1, "image_id": new}
                                  for k, a in enumerate(a for a in gt["annotations"] if a["image_id"] == old)]
        copy_dets += [{**d, "image_id": new} for d in dets if d["image_id"] == old]
    ref = coco_stats(copies, copy_dets, backend="pycocotools")
    ours = ap_from_matches(per_image_matches(gt, dets), index)
    assert len(set(index.tolist())) < len(index)  # some image really drawn twice
    assert ours["det/mAP"] == pytest.approx(ref[0], abs=1e-12)
    assert ours["det/AP50"] == pytest.approx(ref[1], abs=1e-12)
