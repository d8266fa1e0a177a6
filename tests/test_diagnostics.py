"""Each diagnostic fires on a deliberately broken setting and stays quiet on a healthy one."""

from __future__ import annotations

import json

import pytest
import torch

from mtbench.cli import main
from mtbench.diagnostics.checks import (chance_level, dead_loss, divergence, gradient_conflict, implausible_speed,
                                        positive_ratio, task_weight_collapse)
from mtbench.report import build_frame
from mtbench.runner import run_cell
from mtbench.suite import expand, load_suite
from tests.conftest import TINY_SUITE


def _history_from_loss(loss, targets, steps=20, size=8, stride=8):
    rows = []
    for i in range(steps):
        raw = torch.randn(len(targets), 3 + 5, size, size)
        out = loss(raw, targets, stride=stride)
        rows.append({"step": i, "stage": "joint", **{f"det/{k}": float(v) for k, v in out.items()}})
    return rows


def test_dead_loss_on_a_loss_with_no_positives(registry):
    loss = registry.create("loss", "det/fcos", num_classes=3)
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    findings = dead_loss({"history": _history_from_loss(loss, empty)})
    dead = {f.evidence["component"] for f in findings}
    assert {"det/box", "det/ctr"} <= dead
    assert all(f.evidence["num_pos_mean"] == 0 for f in findings)
    healthy = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}] * 2
    assert dead_loss({"history": _history_from_loss(loss, healthy)}) == []


def test_positive_ratio_at_stride_4(registry):
    loss = registry.create("loss", "det/fcos", num_classes=3)
    tiny = [{"boxes": torch.tensor([[100.0, 100.0, 104.0, 104.0]]), "labels": torch.tensor([0])}]
    bad = positive_ratio({"history": _history_from_loss(loss, tiny, steps=3, size=128, stride=4)})
    assert len(bad) == 1 and bad[0].evidence["level"] == "P2" and bad[0].evidence["ratio"] < 1 / 1000
    many = [{"boxes": torch.tensor([[4.0, 4.0, 60.0, 60.0], [0.0, 30, 30, 64]]), "labels": torch.tensor([0, 2])}]
    assert positive_ratio({"history": _history_from_loss(loss, many, steps=3, size=8, stride=8)}) == []


def test_chance_level_and_not_meaningful_forgetting():
    rec = {"label": "c", "hash": "h", "status": "ok", "chance": {"cls/Top-1": 0.25, "seg/mIoU": 0.1},
           "metrics": {"cls/Top-1": 0.25, "seg/mIoU": 0.05, "forgetting": 0.0},
           "stages": [{"task": "seg", "metrics": {"seg/mIoU": 0.08}},
                      {"task": "cls", "metrics": {"seg/mIoU": 0.05, "cls/Top-1": 0.25}}], "profile": {}}
    findings = chance_level(rec)
    assert {f.evidence.get("metric") for f in findings} == {"cls/Top-1", "seg/mIoU"}
    assert any(f.evidence.get("not_meaningful") == "forgetting/seg" for f in findings)
    rec["diagnostics"] = [f.as_dict() for f in findings]
    row = build_frame([rec], ["forgetting <= 0.05"]).iloc[0]
    assert row["gates"] == "not meaningful: forgetting <= 0.05" and "chance-level" in row["diagnostics"]
    moot = build_frame([rec], ["forgetting_rel/seg <= 0.05", "BWT/seg >= -0.01", "params < 1"]).iloc[0]
    assert moot["gates"] == "not meaningful: forgetting_rel/seg <= 0.05; BWT/seg >= -0.01"
    healthy = {**rec, "metrics": {"cls/Top-1": 0.9, "seg/mIoU": 0.5}, "stages": []}
    assert chance_level(healthy) == []


def test_divergence_on_an_exploding_learning_rate(write_suite, registry):
    text = TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [equal]").replace(
        "steps: 2", "steps: 30").replace("budget:", "optimizer: {name: sgd, lr: 1000.0, schedule: constant}\n  budget:")
    text = text.replace("  threads: 2", "  threads: 2\n  grad_clip: null")
    rec = run_cell(expand(load_suite(write_suite(text)), registry)[0], registry, False)
    assert rec["status"] == "failed"
    found = divergence(rec)
    assert found and ("lr 1e+03" in found[0].message or "lr 1000" in found[0].message)
    assert any(d["check"] == "divergence" for d in rec["diagnostics"])
    assert divergence({"status": "ok"}) == []


def test_gradient_conflict():
    assert gradient_conflict({"extra": {"grad_cosine": [-0.3, -0.1, 0.05]}})[0].evidence["mean_cosine"] < 0
    assert gradient_conflict({"extra": {"grad_cosine": [0.2, 0.4]}}) == []


def test_implausible_speed():
    fake = {"profile": {"fps": 6000.0, "flops_g": 5.0, "device_peak_gflops": 100.0,
                        "latency_warmup": 0.0, "latency_synchronised": False}}
    checks = implausible_speed(fake)
    assert {f.severity for f in checks} == {"error", "warning"}
    sane = {"profile": {"fps": 50.0, "flops_g": 0.5, "device_peak_gflops": 100.0,
                        "latency_warmup": 5.0, "latency_synchronised": True}}
    assert implausible_speed(sane) == []


def test_healthy_tiny_run_and_doctor(write_suite, registry, tmp_path, capsys):
    text = TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [equal]").replace("steps: 2", "steps: 12")
    rec = run_cell(expand(load_suite(write_suite(text)), registry)[0], registry, False)
    assert rec["status"] == "ok"
    checks = {d["check"] for d in rec["diagnostics"]}
    assert not checks & {"divergence", "implausible-speed", "dead-loss"}
    assert rec["extra"]["grad_cosine"] and set(rec["chance"]) == {"det/mAP", "det/AP50", "seg/mIoU", "cls/Top-1"}
    p = tmp_path / "cell.json"
    p.write_text(json.dumps(rec))
    assert main(["doctor", str(p)]) == 0
    out = capsys.readouterr().out
    assert rec["label"] in out and "finding(s) in 1 cell(s)" in out


def _overfit_setup(registry, task="cls"):
    from mtbench.data.base import TaskInfo  # noqa: F401  (infos come from the data set)

    ds = registry.create("dataset", "synthetic", task=task, split="train", root=None, image_size=64,
                         num_images={"train": 8, "val": 4})
    model = registry.create_model("unified-onehead", tasks={task: ds.info}, level="P4",
                                  backbone="mobilenetv3_small_100", neck_channels=16)
    loss = registry.create("loss", {"cls": "cls/ce", "det": "det/fcos"}[task], num_classes=ds.info.num_classes)
    return model, {task: loss}, {task: ds}


@pytest.mark.parametrize("task", ["cls", "det"])
def test_overfit_one_batch_healthy_passes(registry, task):
    """A healthy model fits 4 images (det: FCOS, whose centre-ness BCE has a soft-target floor)."""
    from mtbench.diagnostics.checks import overfit
    from mtbench.diagnostics.overfit import overfit_one_batch

    model, losses, sets = _overfit_setup(registry, task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    run = overfit_one_batch(model, losses, sets, torch.device("cpu"))  # defaults: 40 steps, lr 0.01
    assert run["tasks"][task]["fraction_left"] < 0.1, run
    assert overfit({"overfit": run}) == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the real model is untouched
    assert torch.equal(state, torch.random.get_rng_state())  # and so is the random state


def test_overfit_one_batch_flags_a_model_that_cannot_learn(registry):
    """lr = 0: nothing moves; the finding names the task and the numbers."""
    from mtbench.diagnostics.checks import overfit
    from mtbench.diagnostics.overfit import overfit_one_batch

    model, losses, sets = _overfit_setup(registry, "cls")
    run = overfit_one_batch(model, losses, sets, torch.device("cpu"), lr=0.0, steps=5)
    findings = overfit({"overfit": run})
    assert len(findings) == 1 and "cannot fit one batch" in findings[0].message
    assert findings[0].evidence["task"] == "cls" and findings[0].evidence["fraction_left"] > 0.9


def test_soft_target_floors(registry):
    """Losses with soft targets report the entropy floor; hard-target losses report none."""
    fcos = registry.create("loss", "det/fcos", num_classes=3)
    tgt = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}]
    out = fcos(torch.randn(1, 8, 8, 8), tgt, stride=8)
    assert 0 < out["floor"] < out["total"]
    assert "floor" not in registry.create("loss", "det/focal", num_classes=3)(torch.randn(1, 8, 8, 8), tgt, stride=8)
    smooth = registry.create("loss", "cls/ce", num_classes=4, label_smoothing=0.1)
    perfect = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    assert smooth(perfect, torch.tensor([0]), stride=1)["floor"] > 0


def _gradnorm_toy_weights(sigmas, alpha, lr, steps=60):
    """GradNorm task-weight trajectory on the paper's toy regression (see test_strategies)."""
    from mtbench.strategies.gradnorm import GradNormBalancer
    from tests.test_strategies import _Toy, _toy_data
    gen = torch.Generator().manual_seed(0)
    x, ys = _toy_data(sigmas, 400, gen)
    torch.manual_seed(0)
    model = _Toy()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    balancer = GradNormBalancer(2, alpha=alpha, lr=lr)
    traj = []
    for _ in range(steps):
        idx = torch.randint(0, 400, (100,), generator=gen)
        losses = [torch.nn.functional.mse_loss(p, y[idx]) for p, y in zip(model(x[idx]), ys)]
        opt.zero_grad()
        balancer.backward(losses, list(model.trunk[-2].parameters()))
        opt.step()
        traj.append(dict(zip(("small", "large"), balancer.w.detach().tolist())))
    return {"extra": {"task_weights": traj}}


def test_task_weight_collapse():
    # broken: output scales 1:1000 and a fast weight learning rate drive the large task's weight to the clamp
    found = task_weight_collapse(_gradnorm_toy_weights((1.0, 1000.0), alpha=1.5, lr=0.1))
    assert [f.evidence["task"] for f in found] == ["large"] and found[0].evidence["min_weight"] < 1e-6
    # healthy: tasks of equal scale keep both weights near 1
    assert task_weight_collapse(_gradnorm_toy_weights((1.0, 1.0), alpha=0.12, lr=0.025)) == []
