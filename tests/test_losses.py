"""Every registered loss: finite components, positives on a known target, finite with no targets."""

from __future__ import annotations

import torch

from mtbench.losses.detection import assign_centre_sampling


def _det_inputs(boxes, labels, C=3, h=8, w=8):
    raw = torch.randn(1, C + 5, h, w, requires_grad=True)
    return raw, [{"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.tensor(labels, dtype=torch.int64)}]


def test_fcos_positives_on_known_target(registry):
    loss = registry.create("loss", "det/fcos", num_classes=3)
    raw, tgt = _det_inputs([[16, 16, 48, 48]], [1])
    out = loss(raw, tgt, stride=8)
    assert out["num_pos"] > 0 and out["num_pos/P3"] == out["num_pos"]
    assert all(torch.isfinite(v) for v in out.values())
    out["total"].backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0


def test_fcos_no_targets_is_finite(registry):
    loss = registry.create("loss", "det/fcos", num_classes=3)
    raw, tgt = _det_inputs([], [])
    out = loss(raw, tgt, stride=8)
    assert out["num_pos"] == 0 and out["box"] == 0 and torch.isfinite(out["total"])
    out["total"].backward()


def test_tiny_box_gets_forced_positive():
    pts = torch.tensor([[8.0, 8.0], [24.0, 8.0], [8.0, 24.0], [24.0, 24.0]])  # stride 16 centres
    gi, forced = assign_centre_sampling(pts, torch.tensor([[20.0, 20.0, 22.0, 22.0]]), stride=16, radius=0.01)
    assert forced == 1 and gi.tolist() == [-1, -1, -1, 0]


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
