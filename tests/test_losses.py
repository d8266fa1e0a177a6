"""Every registered loss: finite components, positives on a known target, finite with no targets."""

from __future__ import annotations

import torch

import pytest

from mtbench.losses.assigners import atss, centre_sampling, task_aligned
from mtbench.models.dense import flatten_levels, grid_points

DET_LOSSES = ["det/fcos", "det/focal", "det/yolo", "det/varifocal"]


def _det_inputs(boxes, labels, C=3, sizes=(8,), nb=1, b=1):
    raw = [torch.randn(b, C + 4 * nb + 1, s, s, requires_grad=True) for s in sizes]
    tgt = [{"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)} for _ in range(b)]
    return raw, tgt


@pytest.mark.parametrize("name", DET_LOSSES)
@pytest.mark.parametrize("levels,nb", [((8,), 1), ((8, 4, 2), 1), ((8, 4, 2), 17)])
def test_det_loss_positives_on_known_target(registry, name, levels, nb):
    """64 px image, one 32 px box: every assigner finds positives; components finite with gradients."""
    loss = registry.create("loss", name, num_classes=3)
    strides = [64 // s for s in levels]
    raw, tgt = _det_inputs([[16, 16, 48, 48]], [1], sizes=levels, nb=nb, b=2)
    out = loss(raw if len(raw) > 1 else raw[0], tgt, stride=strides if len(raw) > 1 else strides[0])
    assert out["num_pos"] > 0
    assert sum(float(out[f"num_pos/P{s.bit_length() - 1}"]) for s in strides) == out["num_pos"]
    assert all(torch.isfinite(v) for v in out.values())
    assert ("dfl" in out) == (name == "det/varifocal" and nb > 1)
    out["total"].backward()
    assert all(torch.isfinite(r.grad).all() for r in raw) and sum(r.grad.abs().sum() for r in raw) > 0


@pytest.mark.parametrize("name", DET_LOSSES)
def test_det_loss_no_targets_is_finite(registry, name):
    loss = registry.create("loss", name, num_classes=3)
    raw, tgt = _det_inputs([], [], sizes=(8, 4))
    out = loss(raw, tgt, stride=[8, 16])
    assert out["num_pos"] == 0 and out["box"] == 0 and torch.isfinite(out["total"])
    out["total"].backward()


def test_tiny_box_gets_forced_positive():
    d = flatten_levels(torch.zeros(1, 3 + 5, 2, 2), 16, 3)  # stride-16 centres (8, 8) .. (24, 24)
    gi, forced = centre_sampling(d.points, d.strides, d.level, torch.tensor([[20.0, 20.0, 22.0, 22.0]]), radius=0.01)
    assert forced == 1 and gi.tolist() == [-1, -1, -1, 0]


def test_fcos_level_ranges_send_big_boxes_to_coarse_levels():
    d = flatten_levels([torch.zeros(1, 8, 16, 16), torch.zeros(1, 8, 4, 4)], [8, 32], 3)
    small, big = torch.tensor([[60.0, 60.0, 76.0, 76.0]]), torch.tensor([[0.0, 0.0, 128.0, 128.0]])
    gi_small, _ = centre_sampling(d.points, d.strides, d.level, small)
    gi_big, _ = centre_sampling(d.points, d.strides, d.level, big)
    assert set(d.level[gi_small >= 0].tolist()) == {0} and set(d.level[gi_big >= 0].tolist()) == {1}


def test_atss_and_tal_pick_locations_inside_the_box():
    d = flatten_levels([torch.zeros(1, 8, 8, 8), torch.zeros(1, 8, 4, 4)], [8, 16], 3)
    box = torch.tensor([[16.0, 16.0, 48.0, 40.0]])
    gi = atss(d.points, d.strides, d.level, box)
    inside = (d.points[:, 0] > 16) & (d.points[:, 0] < 48) & (d.points[:, 1] > 16) & (d.points[:, 1] < 40)
    assert (gi >= 0).sum() > 0 and bool(inside[gi >= 0].all())
    pred = torch.cat([d.points - 12, d.points + 12], 1)
    scores = torch.full((d.points.shape[0], 3), 0.5)
    gi_t, w = task_aligned(scores, pred, d.points, box, torch.tensor([2]), topk=5)
    assert 0 < (gi_t >= 0).sum() <= 5 and bool(inside[gi_t >= 0].all())
    assert float(w.max()) <= 1.0 and bool((w[gi_t < 0] == 0).all())


def test_varifocal_switches_from_atss_to_tal(registry):
    loss = registry.create("loss", "det/varifocal", num_classes=3, atss_warmup_epochs=1)
    raw, tgt = _det_inputs([[16, 16, 48, 48]], [1], sizes=(8, 4))
    loss.set_epoch(0)
    a = loss(raw, tgt, stride=[8, 16])
    loss.set_epoch(1)
    b = loss(raw, tgt, stride=[8, 16])
    assert a["num_pos"] > 0 and b["num_pos"] > 0 and torch.isfinite(b["total"])


def test_grid_points_are_cell_centres():
    assert grid_points(1, 2, 8).tolist() == [[4.0, 4.0], [12.0, 4.0]]


def test_seg_and_cls_ce(registry):
    seg = registry.create("loss", "seg/ce", num_classes=4)
    out = seg(torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 32, 32)), stride=4)
    assert torch.isfinite(out["total"]) and out["num_pos"] == 2 * 32 * 32
    ignored = seg(torch.randn(2, 4, 8, 8), torch.full((2, 32, 32), 255), stride=4)
    assert ignored["total"] == 0 and ignored["num_pos"] == 0
    cls = registry.create("loss", "cls/ce", num_classes=3, label_smoothing=0.1)
    assert torch.isfinite(cls(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), stride=32)["total"])


def test_dice_perfect_and_wrong(registry):
    target = torch.tensor([[[0, 1], [1, 255]]])
    perfect = torch.zeros(1, 2, 2, 2)
    perfect[0, 0][target[0] == 0] = 20.0
    perfect[0, 1][target[0] == 1] = 20.0
    dice = registry.create("loss", "seg/dice", num_classes=2)
    assert dice(perfect, target, stride=1)["total"] < 1e-3
    assert dice(-perfect, target, stride=1)["total"] > 0.5
    both = registry.create("loss", "seg/ce+dice", num_classes=2)(torch.randn(2, 2, 4, 4), torch.randint(0, 2, (2, 8, 8)),
                                                                  stride=2)
    assert set(both) >= {"ce", "dice", "total"} and torch.isclose(both["total"], both["ce"] + both["dice"])


POINT_LOSSES = ["points/bce-hard", "points/focal-heatmap", "points/gaussian-soft"]


@pytest.mark.parametrize("name", POINT_LOSSES)
def test_point_loss_positives_and_gradients(points_registry, name):
    loss = points_registry.create("loss", name, num_classes=1)
    raw = torch.randn(2, 3, 16, 16, requires_grad=True)
    tgt = [{"points": torch.tensor([[10.0, 21.0]])}, {"points": torch.tensor([[3.0, 3.0], [50.0, 40.0]])}]
    out = loss(raw, tgt, stride=4)
    assert out["num_pos"] == 3 and out["num_pos/P2"] == 3 and out["num_loc/P2"] == 2 * 16 * 16
    assert all(torch.isfinite(v) for v in out.values())
    out["total"].backward()
    assert raw.grad[:, 0].abs().sum() > 0 and raw.grad[:, 1:].abs().sum() > 0


@pytest.mark.parametrize("name", POINT_LOSSES)
def test_point_loss_no_targets_is_finite(points_registry, name):
    out = points_registry.create("loss", name, num_classes=1)(torch.randn(1, 3, 8, 8), [{"points": torch.zeros(0, 2)}],
                                                       stride=8)
    assert out["num_pos"] == 0 and out["offset"] == 0 and torch.isfinite(out["total"])


def test_gaussian_soft_schedule_shrinks(points_registry):
    loss = points_registry.create("loss", "points/gaussian-soft", num_classes=1, sigma=1.2, window=5, final_sigma=0.8,
                           final_window=3, schedule_epochs=4)
    assert loss.current() == (1.2, 5)
    loss.set_epoch(4)
    assert loss.current() == (pytest.approx(0.8), 3)
    heat = loss.heat_target(torch.tensor([[18.0, 18.0]]), 4, 9, 9)
    assert heat[4, 4] == 1 and (heat > 0).sum() == 9  # 3x3 window


def test_bce_hard_small_loss_hides_background_everywhere(points_registry):
    """All-background logits at P2 give a tiny BCE: the imbalance the counters expose."""
    loss = points_registry.create("loss", "points/bce-hard", num_classes=1)
    raw = torch.zeros(1, 3, 64, 64)
    raw[:, 0] = -8.0
    out = loss(raw, [{"points": torch.tensor([[100.0, 100.0]])}], stride=4)
    assert out["heat"] < 0.01 and out["num_pos/P2"] / out["num_loc/P2"] < 1 / 4000


IMAGENETTE = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
              "n03425413", "n03445777", "n03888605")


def _kd(registry, **params):
    from mtbench.data.base import TaskInfo
    return registry.create_loss("cls/kd", TaskInfo("cls", len(IMAGENETTE), IMAGENETTE), **params)


def _numeric_min(loss, target, images) -> float:
    """The smallest ``total`` over logits, found by L-BFGS (the loss is convex in the logits)."""
    z = torch.zeros(len(target), len(IMAGENETTE), requires_grad=True)
    opt = torch.optim.LBFGS([z], max_iter=500, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        out = loss(z, target, stride=32, images=images)["total"]
        out.backward()
        return out
    opt.step(closure)
    return float(loss(z.detach(), target, stride=32, images=images)["total"])


def test_kd_is_hintons_loss_on_the_teachers_imagenet_logits(registry):
    """``cls/kd`` = (1 - a) CE + a T^2 KL(teacher || model) at temperature T, the teacher being the
    offline ImageNet Lite0 restricted to the classes' WordNet ids, in the data set's order."""
    from mtbench.models.blocks import imagenet_classifier
    torch.manual_seed(0)
    images, z, y = torch.rand(3, 3, 64, 64), torch.randn(3, 10), torch.tensor([0, 4, 9])
    wnids = __import__("timm").data.ImageNetInfo().label_names()
    with torch.no_grad():
        t = imagenet_classifier("tf_efficientnet_lite0")(images)[:, [wnids.index(n) for n in IMAGENETTE]]
    a, T = 0.3, 2.0
    out = _kd(registry, alpha=a, temperature=T, label_smoothing=0.1)(z, y, stride=32, images=images)
    kl = (torch.softmax(t / T, 1) * (torch.log_softmax(t / T, 1) - torch.log_softmax(z / T, 1))).sum(1).mean()
    ce = torch.nn.functional.cross_entropy(z, y, label_smoothing=0.1)
    assert torch.allclose(out["kd"], kl, atol=1e-5) and torch.allclose(out["ce"], ce)
    assert torch.allclose(out["total"], (1 - a) * ce + a * T**2 * kl, atol=1e-5)


@pytest.mark.parametrize("alpha,temperature,exact", [(0.5, 1.0, True), (1.0, 3.0, True), (0.5, 2.0, False)])
def test_kd_floor(registry, alpha, temperature, exact):
    """``floor`` is the loss's minimum over logits where it has a closed form, a lower bound elsewhere."""
    torch.manual_seed(1)
    loss = _kd(registry, alpha=alpha, temperature=temperature, label_smoothing=0.1)
    images, y = torch.rand(2, 3, 64, 64), torch.tensor([1, 7])
    floor = float(loss(torch.zeros(2, 10), y, stride=32, images=images)["floor"])
    best = _numeric_min(loss, y, images)
    assert floor <= best + 1e-5
    if exact:
        assert best == pytest.approx(floor, abs=1e-4)


def test_kd_needs_imagenet_classes_and_keeps_the_teacher_out_of_the_loss(registry):
    from mtbench.data.base import TaskInfo
    with pytest.raises(ValueError, match=r"ImageNet-1k WordNet id.*\['cat', 'dog'\]"):
        registry.create_loss("cls/kd", TaskInfo("cls", 2, ("cat", "dog")))
    with pytest.raises(ValueError, match="alpha"):
        _kd(registry, alpha=1.5)
    loss = _kd(registry)
    assert list(loss.parameters()) == [] and list(loss.state_dict()) == []
    assert loss.takes_images and "class_names" not in registry.create("loss", "cls/ce", num_classes=3).__dict__


def test_call_loss_passes_images_only_to_a_loss_that_takes_them(registry):
    from mtbench.losses import call_loss
    seen = {}

    class Takes(torch.nn.Module):
        takes_images = True

        def forward(self, raw, targets, stride, images):
            seen["images"] = images
            return {"total": raw.sum()}
    images = torch.rand(2, 3, 8, 8)
    call_loss(Takes(), torch.ones(2, 3), None, 8, images)
    assert seen["images"] is images
    ce = registry.create("loss", "cls/ce", num_classes=3)
    assert torch.isfinite(call_loss(ce, torch.randn(2, 3), torch.tensor([0, 2]), 32, images)["total"])


@pytest.mark.parametrize("alpha,temperature", [(0.5, 1.0), (0.3, 4.0), (0.9, 2.0)])
def test_kd_matches_torchdistill(registry, alpha, temperature):
    """Same logits, same teacher logits: ``cls/kd``'s total equals torchdistill's ``KDLoss``
    (whose ``alpha`` weighs the cross-entropy: ours is its ``beta``, the distillation's weight)."""
    from torchdistill.losses.mid_level import KDLoss
    from mtbench.models.blocks import imagenet_classifier
    torch.manual_seed(2)
    images, z, y = torch.rand(4, 3, 64, 64), torch.randn(4, 10), torch.tensor([0, 3, 5, 9])
    ours = _kd(registry, alpha=alpha, temperature=temperature)(z, y, stride=32, images=images)["total"]
    wnids = __import__("timm").data.ImageNetInfo().label_names()
    with torch.no_grad():
        t = imagenet_classifier("tf_efficientnet_lite0")(images)[:, [wnids.index(n) for n in IMAGENETTE]]
    ref = KDLoss("s", "output", "t", "output", temperature=temperature, alpha=1 - alpha, beta=alpha)
    theirs = ref({"s": {"output": z}}, {"t": {"output": t}}, y)
    assert torch.allclose(ours, theirs, atol=1e-5), (float(ours), float(theirs))
