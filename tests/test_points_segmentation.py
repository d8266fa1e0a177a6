"""The pixel-segmentation IRSTD baseline ``acm`` and its loss ``points/soft-iou`` against
mtbench's public plugin checks, its decoding into component points, and mask-level scoring at
each image's native resolution on a hand-made case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import POINTS_PLUGIN

pytest.importorskip("mtbench_point_heatmap", reason=POINTS_PLUGIN)
from mtbench.testing import check_loss, check_model  # noqa: E402
from mtbench_point_heatmap.mask_metrics import to_native  # noqa: E402
from mtbench_point_heatmap.masks import decode_mask  # noqa: E402
from mtbench_point_heatmap.metrics import PointLevelMetrics  # noqa: E402

SYNTH = {"dataset": "synthetic-points"}


def test_acm_passes_check_model(points_registry):
    model = check_model(points_registry.get("model", "acm").factory, tasks=("points",), level="multi",
                        losses={"points": "soft-iou"}, **SYNTH)
    assert model.strides == {"points": 1}
    assert sum(p.numel() for p in model.parameters()) < 1_000_000  # ACM is a ~0.4 M-parameter network


def test_point_heatmap_passes_check_model(points_registry):
    check_model(points_registry.get("model", "point-heatmap").factory, tasks=("points",), level="P2",
                backbone="resnet18", neck_channels=16, **SYNTH)


def test_acm_prior_sets_the_initial_probability(points_registry):
    from mtbench.data.base import TaskInfo
    model = points_registry.create_model("acm", tasks={"points": TaskInfo("points", 1, ("Target",))}, prior=1e-3)
    assert torch.sigmoid(model.head[-1].bias).item() == pytest.approx(1e-3)


def test_acm_rejects_another_level(points_registry):
    with pytest.raises(ValueError, match="multi"):
        points_registry.create_model("acm", tasks={"points": None}, level="P2")


def test_soft_iou_passes_check_loss(points_registry):
    parts = check_loss(points_registry.get("loss", "points/soft-iou").factory, "points", **SYNTH)
    assert 0 < float(parts["iou"]) < 1 and float(parts["num_pos"]) > 0


def test_soft_iou_is_the_papers_formula(points_registry):
    loss = points_registry.create("loss", "points/soft-iou", num_classes=1)
    mask = torch.zeros(1, 4, 4, dtype=torch.uint8)
    mask[0, 1:3, 1:3] = 1
    raw = torch.full((1, 1, 4, 4), -20.0)
    raw[0, 0, 1:3, 1:3] = 20.0  # a perfect prediction: 1 - (4 + 1) / (4 + 4 - 4 + 1) = 0
    assert float(loss(raw, [{"mask": mask[0]}], stride=1)["iou"]) == pytest.approx(0.0, abs=1e-6)
    raw = torch.zeros(1, 1, 4, 4)  # p = 0.5 everywhere: 1 - (2 + 1) / (8 + 4 - 2 + 1)
    assert float(loss(raw, [{"mask": mask[0]}], stride=1)["iou"]) == pytest.approx(1 - 3 / 11)
    coarse = loss(torch.zeros(1, 1, 2, 2), [{"mask": mask[0]}], stride=2)  # max-pooled: every cell holds target
    assert float(coarse["num_pos"]) == 4


def test_decode_mask_component_points_and_scores():
    raw = torch.full((1, 1, 8, 8), -5.0)
    raw[0, 0, 1:3, 1:3] = 1.0          # component A, peak probability sigmoid(2)
    raw[0, 0, 1, 1] = 2.0
    raw[0, 0, 6, 4:7] = 3.0            # component B: row 6, cols 4-6, centroid x 5, y 6
    out = decode_mask(raw)[0]
    assert out["seg_mask"].dtype == torch.bool and out["seg_mask"].sum() == 7
    assert out["points"].tolist() == [[5.0, 6.0], [1.5, 1.5]]  # by descending score: B first
    assert out["scores"].tolist() == pytest.approx([torch.sigmoid(torch.tensor(3.0)).item(),
                                                    torch.sigmoid(torch.tensor(2.0)).item()])


def test_to_native_inverts_an_integer_downscale():
    small = np.zeros((20, 20), bool)
    small[5:7, 10:12] = True
    big = to_native(small, (40, 40))
    want = np.zeros((40, 40), bool)
    want[10:14, 20:24] = True
    assert (big == want).all()
    assert to_native(small, (20, 20)) is not None and (to_native(small, (20, 20)) == small).all()


def test_mask_and_point_metrics_at_native_resolution():
    """Native image 40 x 40 with a 4 x 4 target, seen at S = 20 (scale 0.5): the model's 2 x 2 mask
    of it maps back onto the target exactly; a 1-pixel false blob maps to 2 x 2 native pixels."""
    native = np.zeros((40, 40), bool)
    native[10:14, 20:24] = True                                   # centroid (x, y) = (21.5, 11.5)
    raw = torch.full((1, 1, 20, 20), -10.0)
    raw[0, 0, 5:7, 10:12] = 10.0                                  # the target, at input size
    raw[0, 0, 0, 0] = 10.0                                        # a false alarm in the corner
    target = {"points": torch.tensor([[21.5 * 0.5, 11.5 * 0.5]]), "scale": (0.5, 0.5),
              "mask": torch.from_numpy(native[::2, ::2].astype(np.uint8)), "native_mask": torch.from_numpy(native)}
    metric = PointLevelMetrics()
    metric.update(decode_mask(raw), [target])
    r = metric.compute()
    assert metric.mask.rows[0]["pixels"] == 1600                  # scored on the native grid
    assert r["points/Pd"] == 1.0 and r["points/FA_per_image"] == 1.0
    assert r["points_mask/Pd"] == 1.0
    assert r["points_mask/Fa"] == pytest.approx(4 / 1600)
    assert r["points_mask/IoU"] == pytest.approx(16 / 20)         # intersection 16, union 16 + 4 false pixels


def test_sirst_val_targets_carry_the_native_mask(points_registry, data_root):
    val = points_registry.create("dataset", "sirst", task="points", split="val", root=data_root, image_size=256)
    train = points_registry.create("dataset", "sirst", task="points", split="train", root=data_root, image_size=256)
    img, t = val[0]
    from PIL import Image
    w, h = Image.open(val.base / "images" / f"{val.ids[0]}.png").size
    assert t["native_mask"].shape == (h, w) and t["native_mask"].dtype == torch.bool and t["native_mask"].any()
    assert "native_mask" not in train.load(0)[1]
