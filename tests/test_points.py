"""SIRST loader on ../shared/data, heatmap decoding, and the mask-level Pd/Fa/IoU metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import POINTS_PLUGIN

pytest.importorskip("mtbench_point_heatmap", reason=POINTS_PLUGIN)
from mtbench_point_heatmap.mask_metrics import PointMaskMetrics, components, match_image  # noqa: E402


def test_components_centroids_eight_connected():
    m = np.zeros((10, 10), bool)
    m[1, 1] = m[2, 2] = True  # diagonal neighbours: one component under 8-connectivity
    m[7:9, 6:9] = True
    comps = components(m)
    assert len(comps) == 2
    assert np.allclose(comps[0][0], [1.5, 1.5]) and comps[0][1] == 2
    assert np.allclose(comps[1][0], [7.5, 7.0]) and comps[1][1] == 6


def test_pd_fa_hand_computed():
    gt = np.zeros((20, 20), bool)
    gt[2:4, 2:4] = True      # target A, centroid (2.5, 2.5)
    gt[15, 15] = True        # target B, centroid (15, 15)
    pred = np.zeros((20, 20), bool)
    pred[3:5, 3:5] = True    # centroid (3.5, 3.5): 1.41 px from A -> detects A
    pred[10:12, 0:3] = True  # 6 pixels far from everything -> false alarm
    counts = match_image(pred, gt)
    assert counts == {"targets": 2, "detected": 1, "fa_pixels": 6, "pixels": 400, "inter": 1, "union": 14}
    m = PointMaskMetrics()
    m.add_image(pred, gt)
    m.add_image(np.zeros((20, 20), bool), np.zeros((20, 20), bool))  # empty image: 400 more pixels, no target
    r = m.compute()
    assert set(r) == {"points_mask/Pd", "points_mask/Fa", "points_mask/IoU", "points_mask/nIoU"}
    assert r["points_mask/Pd"] == pytest.approx(0.5)
    assert r["points_mask/Fa"] == pytest.approx(6 / 800)
    inter, union = 1, 5 + 4 + 6 - 1  # A∩pred = 1 px; union of masks = 5 + 4 + 6 - 1
    assert r["points_mask/IoU"] == pytest.approx(inter / union)
    # nIoU: mean over all images; the empty image (no target, no prediction) scores 0 as in the reference
    assert r["points_mask/nIoU"] == pytest.approx(inter / union / 2)


def test_mask_metrics_follow_the_sample_contract():
    from mtbench.metrics.base import bootstrap_ci

    rng = np.random.default_rng(0)
    m = PointMaskMetrics()
    images = []
    for _ in range(6):
        gt = np.zeros((16, 16), bool)
        gt[rng.integers(0, 14), rng.integers(0, 14)] = True
        pred = np.roll(gt, int(rng.integers(0, 3)), axis=1) | (rng.random((16, 16)) > 0.97)
        images.append((pred, gt))
        m.add_image(pred, gt)
    s = m.samples()
    assert all(len(v) == 6 for v in s.values())
    assert m.compute() == m.reduce(s, np.arange(6))
    idx = np.array([0, 0, 3, 5])  # a resample with a repeat = a metric fed those images
    m2 = PointMaskMetrics()
    for i in idx:
        m2.add_image(*images[i])
    assert m.reduce(s, idx) == m2.compute()
    ci = bootstrap_ci(m.reduce, s, resamples=50)
    assert ci["points_mask/Pd"][0] <= m.compute()["points_mask/Pd"] <= ci["points_mask/Pd"][1]


def test_far_prediction_is_not_a_detection():
    gt = np.zeros((9, 9), bool)
    gt[4, 4] = True
    pred = np.zeros((9, 9), bool)
    pred[4, 7] = True  # exactly 3 px away: not within (< 3)
    assert match_image(pred, gt)["detected"] == 0


def test_sirst_loader(points_registry, data_root):
    for split, n in (("train", 256), ("val", 85)):
        ds = points_registry.create("dataset", "sirst", task="points", split=split, root=data_root, image_size=256)
        assert len(ds) == n
    img, t = ds[0]
    assert img.shape == (3, 256, 256) and t["points"].dtype == torch.float32 and t["points"].shape[1] == 2
    assert t["mask"].dtype == torch.uint8 and t["mask"].shape == (256, 256)
    assert len(t["points"]) >= 1 and len(t["boxes"]) >= 1
    x, y = t["points"][0].round().long().tolist()
    near = t["mask"][max(0, y - 2):y + 3, max(0, x - 2):x + 3]
    assert near.any()  # a centroid lies on (or beside) its target's pixels
    boxes = t["boxes"]
    inside = ((t["points"][:, None, 0] >= boxes[None, :, 0] - 1) & (t["points"][:, None, 0] <= boxes[None, :, 2] + 1))
    assert inside.any(1).all()  # every centroid falls in some XML box


def test_decode_heatmap_peak_with_subpixel_offset():
    from mtbench_point_heatmap.heatmap import decode_heatmap

    raw = torch.full((1, 3, 8, 8), -10.0)
    raw[0, 0, 2, 5] = 5.0  # cell (col 5, row 2) at stride 4
    raw[0, 1, 2, 5] = 0.0  # offset 0.5 cell
    raw[0, 2, 2, 5] = -10.0  # offset ~0
    pred = decode_heatmap(raw, 4, 32)[0]
    assert pred["points"].shape == (1, 2)
    assert torch.allclose(pred["points"][0], torch.tensor([22.0, 8.0]), atol=1e-3)
    assert pred["scores"].tolist() == pytest.approx([torch.sigmoid(torch.tensor(5.0)).item()])
    assert set(pred) == {"points", "scores"}  # a heatmap is not a segmentation: no mask to score IoU on
