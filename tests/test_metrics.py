"""Metrics against independent references: pycocotools, hand computations."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from mtbench.cli import main
from mtbench.metrics.classification import Top1
from mtbench.metrics.coco_eval import COCO_STATS, coco_stats
from mtbench.metrics.forgetting import forgetting
from mtbench.metrics.segmentation import SegmentationMIoU


@pytest.fixture(scope="module")
def coco_fixture(registry):
    """GT of 24 generated images and jittered/false/missed detections (a realistic mix)."""
    ds = registry.create("dataset", "synthetic", task="det", split="val", root=None, image_size=128,
                         num_images=24, max_shapes=4)
    gt = ds.coco_gt()
    rng = random.Random(0)
    dets = []
    for a in gt["annotations"]:
        if rng.random() < 0.15:
            continue  # missed
        x, y, w, h = a["bbox"]
        j = [rng.gauss(0, 0.1 * w), rng.gauss(0, 0.1 * h), rng.gauss(0, 0.1 * w), rng.gauss(0, 0.1 * h)]
        cat = a["category_id"] if rng.random() > 0.1 else rng.randint(1, 3)
        dets.append({"image_id": a["image_id"], "category_id": cat, "score": rng.random(),
                     "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])]})
    for i in range(30):  # false positives
        dets.append({"image_id": rng.randint(1, 24), "category_id": rng.randint(1, 3), "score": rng.random() * 0.5,
                     "bbox": [rng.uniform(0, 100), rng.uniform(0, 100), rng.uniform(3, 40), rng.uniform(3, 40)]})
    return gt, dets


def test_coco_stats_match_pycocotools(coco_fixture):
    gt, dets = coco_fixture
    ours = coco_stats(gt, dets)
    ref = coco_stats(gt, dets, backend="pycocotools")
    assert 0.2 < ref[0] < 0.95  # a non-trivial fixture
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_metrics_coco_cli_matches_pycocotools(coco_fixture, tmp_path, capsys):
    gt, dets = coco_fixture
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    assert main(["--no-entrypoints", "metrics", "coco", "--gt", str(tmp_path / "gt.json"),
                 "--dt", str(tmp_path / "dt.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    printed = {ln.split()[0]: float(ln.split()[1]) for ln in lines}
    ref = coco_stats(gt, dets, backend="pycocotools")
    assert list(printed) == list(COCO_STATS)
    np.testing.assert_allclose(list(printed.values()), ref, atol=1e-6, rtol=0)


def test_no_detections_is_zero_not_error(coco_fixture):
    assert coco_stats(coco_fixture[0], []).tolist() == [0.0] * 12


def test_miou_is_one_confusion_matrix_with_ignore():
    # two "images"; class 2 never appears in either (left out), 255 ignored
    target = torch.tensor([[[0, 0, 1, 255]], [[1, 1, 1, 0]]])
    pred = torch.tensor([[[0, 1, 1, 2]], [[1, 1, 0, 0]]])
    m = SegmentationMIoU(num_classes=3)
    m.update(pred[:1], target[:1])
    m.update(pred[1:], target[1:])
    # split-level counts: class 0: tp 2, fp 1, fn 1 -> 2/4; class 1: tp 3, fp 1, fn 1 -> 3/5
    assert m.compute()["seg/mIoU"] == pytest.approx((2 / 4 + 3 / 5) / 2)


def test_top1():
    m = Top1(3)
    m.update(torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [5.0, 0, 0]]), torch.tensor([0, 1, 0, 0]))
    assert m.compute()["cls/Top-1"] == pytest.approx(0.75)


def test_forgetting_definition():
    primary = {"seg": "seg/mIoU", "det": "det/mAP", "cls": "cls/Top-1"}
    stages = [
        {"task": "seg", "metrics": {"seg/mIoU": 0.5}},
        {"task": "det", "metrics": {"seg/mIoU": 0.4, "det/mAP": 0.2}},
        {"task": "cls", "metrics": {"seg/mIoU": 0.25, "det/mAP": 0.15, "cls/Top-1": 0.9}},
    ]
    f = forgetting(stages, primary)  # Chaudhry et al. 2018: best earlier score - final score
    assert f["forgetting/seg"] == pytest.approx(0.25) and f["forgetting_rel/seg"] == pytest.approx(0.5)
    assert f["forgetting/det"] == pytest.approx(0.05) and f["forgetting_rel/det"] == pytest.approx(0.25)
    assert f["forgetting"] == pytest.approx(0.15)
    assert f["forgetting_rel"] == pytest.approx(0.375) and f["forgetting_rel_n"] == 2
    assert f["BWT"] == pytest.approx(((0.25 - 0.5) + (0.15 - 0.2)) / 2)
    assert forgetting(stages[:1], primary) == {}
