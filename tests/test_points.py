"""SIRST loader on ../shared/data and Pd/Fa/IoU metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtbench.metrics.points import PointTargetMetrics, components, match_image


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
    assert counts == {"targets": 2, "detected": 1, "pred": 2, "matched_pred": 1, "fa_pixels": 6, "pixels": 400}
    m = PointTargetMetrics()
    m.add_image(pred, gt)
    m.add_image(np.zeros((20, 20), bool), np.zeros((20, 20), bool))  # empty image: 400 more pixels, no target
    r = m.compute()
    assert r["points/Pd"] == pytest.approx(0.5)
    assert r["points/Fa"] == pytest.approx(6 / 800)
    assert r["points/precision"] == pytest.approx(0.5) and r["points/F1"] == pytest.approx(0.5)
    inter, union = 1, 5 + 4 + 6 - 1  # A∩pred = 1 px; union of masks = 5 + 4 + 6 - 1
    assert r["points/IoU"] == pytest.approx(inter / union)
    assert r["points/nIoU"] == pytest.approx(inter / union)  # only the image with a target counts


def test_far_prediction_is_not_a_detection():
    gt = np.zeros((9, 9), bool)
    gt[4, 4] = True
    pred = np.zeros((9, 9), bool)
    pred[4, 7] = True  # exactly 3 px away: not within (< 3)
    assert match_image(pred, gt)["detected"] == 0


def test_sirst_loader(registry, data_root):
    for split, n in (("train", 256), ("val", 85)):
        ds = registry.create("dataset", "sirst", task="points", split=split, root=data_root, image_size=256)
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
    import torch

    from mtbench.models.heatmap import decode_heatmap

    raw = torch.full((1, 3, 8, 8), -10.0)
    raw[0, 0, 2, 5] = 5.0  # cell (col 5, row 2) at stride 4
    raw[0, 1, 2, 5] = 0.0  # offset 0.5 cell
    raw[0, 2, 2, 5] = -10.0  # offset ~0
    pred = decode_heatmap(raw, 4, 32)[0]
    assert pred["points"].shape == (1, 2)
    assert torch.allclose(pred["points"][0], torch.tensor([22.0, 8.0]), atol=1e-3)
    assert pred["mask"].shape == (32, 32) and pred["mask"].any()


def test_refined_components_use_the_decoded_point():
    blob = np.zeros((20, 20), bool)
    blob[4:12, 4:12] = True  # centroid (7.5, 7.5)
    assert components(blob, refine=np.array([[5.0, 5.0]]))[0][0].tolist() == [5.0, 5.0]
    assert components(blob)[0][0].tolist() == [7.5, 7.5]
