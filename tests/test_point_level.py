"""Point-level metrics: matching, hand-computed values, the Pd-FA curve vs torchmetrics' ROC,
the sample contract, and the acceptance cases (a perfect point detector at P2/P3/P4 for every
point loss scores Pd 1 with no false alarm; one extra point costs exactly one false alarm)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtbench.errors import DataError, PluginError
from mtbench.metrics.base import bootstrap_ci
from mtbench.plugins import get_registry
from tests.conftest import POINTS_PLUGIN

pytest.importorskip("mtbench_point_heatmap", reason=POINTS_PLUGIN)
from mtbench_point_heatmap.heatmap import decode_heatmap, point_cells  # noqa: E402
from mtbench_point_heatmap.losses import PointHeatmapLoss  # noqa: E402
from mtbench_point_heatmap.metrics import PointLevelMetrics, match_points, pd_at_fa, pd_fa_auc, pd_fa_curve  # noqa: E402

_REGISTRY = get_registry()
#: every registered heatmap point loss (bce-hard, focal-heatmap, gaussian-soft); a mask loss
#: (soft-iou) trains a segmentation model, scored in tests/test_points_segmentation.py
POINT_LOSSES = [n for n in _REGISTRY.names("loss", "points/*")
                if issubclass(_REGISTRY.get("loss", n).factory, PointHeatmapLoss)]


def pred(points, scores, **extra) -> dict:
    return {"points": torch.tensor(points, dtype=torch.float32).reshape(-1, 2),
            "scores": torch.tensor(scores, dtype=torch.float32).reshape(-1), **extra}


def target(points, scale=(1.0, 1.0), **extra) -> dict:
    return {"points": torch.as_tensor(np.asarray(points, dtype=np.float32)).reshape(-1, 2), "scale": scale, **extra}


def test_every_builtin_point_loss_is_covered():
    assert {"points/bce-hard", "points/focal-heatmap", "points/gaussian-soft"} <= set(POINT_LOSSES)


def test_greedy_by_descending_score_each_to_its_nearest_free_target():
    targets = np.array([[0.0, 0.0], [4.0, 0.0]])
    # the best-scored point is nearer B (1.9) than A (2.1): it takes B; the next takes A
    hit = match_points(np.array([[2.1, 0.0], [0.5, 0.0]]), np.array([0.9, 0.8]), targets)
    assert hit.tolist() == [True, True]
    # two points at A: the higher score takes it, however far within the radius; the other is a false alarm
    hit = match_points(np.array([[0.1, 0.0], [2.5, 0.0]]), np.array([0.4, 0.9]), targets[:1])
    assert hit.tolist() == [False, True]
    # strictly within the radius (BasicIRSTD: distance < 3)
    assert match_points(np.array([[3.0, 0.0]]), np.array([1.0]), targets[:1]).tolist() == [False]
    assert match_points(np.zeros((0, 2)), np.zeros(0), targets).tolist() == []


def test_matching_is_in_native_pixels():
    # input = native / (0.5 horizontally, 2 vertically): target native (48, 4)
    m = PointLevelMetrics()
    m.update([pred([[25.0, 8.0], [8.0, 9.0]], [0.9, 0.8])], [target([[24.0, 8.0], [8.0, 8.0]], scale=(0.5, 2.0))])
    # (25, 8) -> native (50, 4): 2 px from (48, 4), a hit; (8, 9) -> native (16, 4.5): 0.5 px from (16, 4), a hit
    assert m.compute()["points/Pd"] == 1.0
    m = PointLevelMetrics()
    m.update([pred([[26.0, 8.0], [8.0, 10.0]], [0.9, 0.8])], [target([[24.0, 8.0], [8.0, 8.0]], scale=(0.5, 2.0))])
    # 2 input px apart but 4 native px (x) and 1 native px (y)
    assert m.samples()["tp_scores"] == [[pytest.approx(0.8)]] and m.compute()["points/Pd"] == 0.5


def test_values_hand_computed():
    m = PointLevelMetrics()
    m.update([pred([[10, 10], [30, 30], [50, 50]], [0.9, 0.7, 0.5]), pred([[5, 5]], [0.6])],
             [target([[11, 10], [50, 51], [70, 70]]), target([])])
    m.update([pred([], [])], [target([[1, 1]])])
    s = m.samples()
    assert s["num_targets"] == [3, 0, 1]
    r = m.compute()
    # tp: 0.9, 0.5; false alarms: 0.7 (image 0), 0.6 (image 1); 4 targets, 3 images
    assert r["points/Pd"] == pytest.approx(2 / 4)
    assert r["points/FA_per_image"] == pytest.approx(2 / 3)
    assert r["points/precision"] == pytest.approx(2 / 4)
    assert r["points/F1"] == pytest.approx(0.5)
    # curve by threshold: 0.9 -> (0, 1/4); 0.7 -> (1/3, 1/4); 0.6 -> (2/3, 1/4); 0.5 -> (2/3, 2/4); then flat to 1
    area = 0 + 1 / 4 * (2 / 3) + 2 / 4 * (1 - 2 / 3)
    assert r["points/Pd_FA_AUC"] == pytest.approx(area)
    assert r["points/Pd@0.1FA"] == pytest.approx(1 / 4)  # only the threshold 0.9 stays under 0.1 FA/img


def test_empty_prediction_and_no_targets():
    m = PointLevelMetrics()
    m.update([pred([], [])], [target([[3, 3]])])
    r = m.compute()
    assert r["points/Pd"] == 0 and r["points/FA_per_image"] == 0 and r["points/precision"] == 0
    assert r["points/F1"] == 0 and r["points/Pd_FA_AUC"] == 0 and r["points/Pd@0.1FA"] == 0
    m = PointLevelMetrics()
    m.update([pred([[1, 1]], [0.5])], [target([])])
    r = m.compute()
    assert np.isnan(r["points/Pd"]) and np.isnan(r["points/Pd_FA_AUC"]) and r["points/FA_per_image"] == 1


def test_curve_is_torchmetrics_roc_rescaled_and_auc_is_its_area():
    """Pd(t) = TPR(t) x matched / targets and FA/img(t) = FPR(t) x false alarms / images, with TPR/FPR
    torchmetrics' binary ROC of the predictions labelled matched / unmatched."""
    from torchmetrics.functional.classification import binary_roc
    from torchmetrics.utilities.compute import auc

    rng = np.random.default_rng(0)
    tp, fp = rng.random(40).round(2), rng.random(90).round(2) * 0.8  # ties on purpose
    n_t, m = 50, 30
    _, fa, pd = pd_fa_curve(tp, fp, n_t, m)
    scores = torch.tensor(np.concatenate([tp, fp]))
    labels = torch.tensor([1] * len(tp) + [0] * len(fp))
    fpr, tpr, _ = binary_roc(scores, labels)
    np.testing.assert_allclose(fa, fpr.double().numpy() * len(fp) / m, atol=1e-6)
    np.testing.assert_allclose(pd, tpr.double().numpy() * len(tp) / n_t, atol=1e-6)
    k = 5.0  # beyond the curve's end (3 false alarms per image): flat at its last Pd up to K
    area = float(auc(fpr.double() * len(fp) / m, tpr.double() * len(tp) / n_t)) + pd[-1] * (k - fa[-1])
    assert pd_fa_auc(fa, pd, k) == pytest.approx(area / k, abs=1e-6)
    # cut at a point of the curve: the area of the curve up to there
    last = int(np.nonzero(fa <= 1.0)[0][-1])
    k1 = fa[last]
    area1 = float(auc(torch.tensor(fa[:last + 1]), torch.tensor(pd[:last + 1])))
    assert pd_fa_auc(fa, pd, k1) == pytest.approx(area1 / k1, abs=1e-9)
    # cut a third of the way to the next point: that part of the next segment, linearly interpolated
    k = k1 + (fa[last + 1] - k1) / 3
    at_k = pd[last] + (pd[last + 1] - pd[last]) / 3
    assert pd_fa_auc(fa, pd, k) == pytest.approx((area1 + (k - k1) * (pd[last] + at_k) / 2) / k, abs=1e-9)
    # Pd at <= 0.1 false alarms per image: the best rescaled TPR among torchmetrics' ROC points there
    for k in (0.0, 0.05, 0.1, 0.5, 10.0):
        ok = torch.round(fpr.double() * len(fp)) <= k * m  # false alarms as counts (fpr is float32)
        assert pd_at_fa(fa, pd, k) == pytest.approx(float((tpr.double()[ok] * len(tp) / n_t).max()), abs=1e-6)


def test_sample_contract_json_and_bootstrap():
    rng = np.random.default_rng(1)
    m, images = PointLevelMetrics(), []
    for _ in range(8):
        t = rng.uniform(0, 64, (int(rng.integers(0, 4)), 2))
        p = np.concatenate([t + rng.normal(0, 1.5, t.shape), rng.uniform(0, 64, (int(rng.integers(0, 3)), 2))])
        images.append((pred(p, rng.random(len(p))), target(t)))
        m.update([images[-1][0]], [images[-1][1]])
    s = json.loads(json.dumps(m.samples()))  # JSON-ready
    assert {len(v) for v in s.values()} == {8}
    assert m.compute() == m.reduce(s, np.arange(8))
    idx = np.array([2, 2, 5, 0, 7])
    m2 = PointLevelMetrics()
    for i in idx:
        m2.update([images[i][0]], [images[i][1]])
    assert m.reduce(s, idx) == pytest.approx(m2.compute())
    ci = bootstrap_ci(m.reduce, s, resamples=50)
    assert set(ci) == set(m.compute())
    assert all(lo <= m.compute()[k] + 1e-12 and m.compute()[k] - 1e-12 <= hi for k, (lo, hi) in ci.items())


def test_seg_mask_adds_the_mask_level_metrics():
    gt = torch.zeros(16, 16, dtype=torch.uint8)
    gt[4, 4] = 1
    m = PointLevelMetrics()
    m.update([pred([[4, 4]], [0.9], seg_mask=gt.bool())], [target([[4, 4]], mask=gt)])
    r = m.compute()
    assert r["points/Pd"] == 1 and r["points_mask/Pd"] == 1 and r["points_mask/IoU"] == 1
    assert "mask_targets" in m.samples()
    with pytest.raises(PluginError, match="seg_mask"):
        m.update([pred([[4, 4]], [0.9])], [target([[4, 4]], mask=gt)])
    plain = PointLevelMetrics()
    plain.update([pred([[4, 4]], [0.9])], [target([[4, 4]])])
    assert not any(k.startswith("points_mask/") for k in plain.compute())


def test_contract_errors():
    with pytest.raises(DataError, match="scale"):
        PointLevelMetrics().update([pred([[1, 1]], [0.5])], [{"points": torch.zeros(1, 2), "image_id": 3}])
    with pytest.raises(PluginError, match="scores"):
        PointLevelMetrics().update([{"points": torch.zeros(1, 2)}], [target([[1, 1]])])
    with pytest.raises(PluginError, match=r"\[0, 1\]"):
        PointLevelMetrics().update([pred([[1, 1]], [3.0])], [target([[1, 1]])])


def test_evaluation_uses_the_point_level_metric():
    assert isinstance(get_registry().task("points").metric(None), PointLevelMetrics)


# --- acceptance: a perfect point detector, through each loss's own target encoding and decoding ---

SIZE, SCALE = 256, (0.8, 256 / 240)  # a 320 x 240 SIRST-like image resized to 256


def _targets(seed: int) -> list[torch.Tensor]:
    """Per image 0-4 points, no two in one P4 cell (a heatmap holds one point per cell)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (3, 1, 4, 0, 2):
        pts, cells = [], set()
        while len(pts) < n:
            xy = rng.uniform(0, SIZE, 2)
            cell = tuple((xy // 16).astype(int))
            if all(abs(cell[0] - c[0]) + abs(cell[1] - c[1]) > 1 for c in cells):
                cells.add(cell)
                pts.append(xy)
        out.append(torch.tensor(np.array(pts), dtype=torch.float32).reshape(-1, 2))
    return out


def _perfect_raw(loss, points: list[torch.Tensor], stride: int) -> torch.Tensor:
    """Raw head output equal to the loss's own targets: heat logit = logit(target heat),
    offset logits = logit(target offsets) at the target cells."""
    h = w = SIZE // stride
    eps = 1e-6
    heat = torch.stack([loss.heat_target(p, stride, h, w) for p in points]).clamp(eps, 1 - eps)
    raw = torch.zeros(len(points), 3, h, w)
    raw[:, 0] = torch.logit(heat)
    for i, p in enumerate(points):
        cells, off = point_cells(p, stride, h, w)
        raw[i, 1:3, cells[:, 1], cells[:, 0]] = torch.logit(off.clamp(eps, 1 - eps)).T
    return raw


def _score(loss, raw, points, stride) -> dict[str, float]:
    m = PointLevelMetrics()
    m.update(decode_heatmap(raw, stride, SIZE, **loss.decode_kwargs), [target(p, SCALE) for p in points])
    return m.compute()


@pytest.mark.parametrize("stride", [4, 8, 16], ids=["P2", "P3", "P4"])
@pytest.mark.parametrize("loss_name", POINT_LOSSES)
def test_perfect_point_detector_scores_pd_one_without_false_alarms(points_registry, loss_name, stride):
    loss = points_registry.create("loss", loss_name, num_classes=1)
    points = _targets(stride)
    raw = _perfect_raw(loss, points, stride)
    r = _score(loss, raw, points, stride)
    assert r["points/Pd"] == 1.0 and r["points/FA_per_image"] == 0.0
    assert r["points/precision"] == 1.0 and r["points/F1"] == 1.0 and r["points/Pd_FA_AUC"] == 1.0

    # one extra confident peak, far from every target (>= 3 cells from each target's cell)
    h = SIZE // stride
    cells = {tuple(c) for c in point_cells(points[0], stride, h, h)[0].tolist()}
    free = next((x, y) for y in range(1, h - 1) for x in range(1, h - 1)
                if all(max(abs(x - cx), abs(y - cy)) >= 3 for cx, cy in cells))
    raw[0, 0, free[1], free[0]] = 8.0
    r = _score(loss, raw, points, stride)
    assert r["points/Pd"] == 1.0
    assert r["points/FA_per_image"] * len(points) == pytest.approx(1.0)  # exactly one false alarm


def test_a_duplicate_point_at_a_target_is_one_false_alarm():
    m = PointLevelMetrics()
    m.update([pred([[10, 10], [11, 10]], [0.9, 0.8])], [target([[10, 10]])])
    r = m.compute()
    assert r["points/Pd"] == 1.0 and r["points/FA_per_image"] == 1.0


def test_evaluate_scores_points_point_level_on_sirst(points_registry, data_root):
    """evaluate() on SIRST val: a model whose one peak per image sits in the centre cell."""
    from mtbench.evaluation import evaluate
    from mtbench.models.base import MultiTaskModel

    class CentrePeak(MultiTaskModel):
        def __init__(self):
            super().__init__()
            self.tasks, self.strides = ("points",), {"points": 8}

        def forward(self, x):
            raw = torch.full((x.shape[0], 3, 8, 8), -10.0)
            raw[:, 0, 4, 4] = 10.0
            return {"points": raw}

    ds = points_registry.create("dataset", "sirst", task="points", split="val", root=data_root, image_size=64)
    out = evaluate(CentrePeak(), {"points": ds}, ["points"], 32, torch.device("cpu"), 64, {"points": {"threshold": 0.5}})
    assert set(out) == {"points/Pd", "points/FA_per_image", "points/precision", "points/F1", "points/Pd_FA_AUC",
                        "points/Pd@0.1FA"}
    n_targets = sum(len(ds[i][1]["points"]) for i in range(len(ds)))
    tp = out["points/Pd"] * n_targets
    assert tp == pytest.approx(round(tp)) and tp + out["points/FA_per_image"] * len(ds) == pytest.approx(len(ds))
