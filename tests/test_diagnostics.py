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
    dead = {f.evidence.get("component") for f in findings}
    assert {"det/box", "det/ctr"} <= dead and all(f.severity == "error" for f in findings)
    nopos = [f for f in findings if "positives" in f.message]
    assert nopos and nopos[0].evidence["steps_without_positives"] == 20 and "det/mAP" in nopos[0].invalidates
    healthy = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}] * 2
    assert dead_loss({"history": _history_from_loss(loss, healthy)}) == []


def test_dead_loss_windowed_positives_and_missing_components(registry):
    """No positives in 29 of 40 steps (the seed: summed, it read as 1:25) and components that
    go missing are found anywhere in the run, not only in its last 20 steps."""
    loss = registry.create("loss", "det/fcos", num_classes=3)
    box = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}] * 2
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    hist = _history_from_loss(loss, empty, steps=29) + _history_from_loss(loss, box, steps=11)
    for i, r in enumerate(hist):
        r["step"] = i
    found = [f for f in dead_loss({"history": hist}) if "positives" in f.message]
    assert len(found) == 1 and found[0].evidence["steps_without_positives"] == 29
    assert found[0].evidence["per_window"] == [20, 9]
    ratio = positive_ratio({"history": hist})
    assert ratio and ratio[0].severity == "error" and ratio[0].evidence["steps_without_positives"] == 29
    healthy = _history_from_loss(loss, box, steps=40)
    gone = [{k: v for k, v in r.items() if k != "det/ctr"} if r["step"] >= 15 else r for r in healthy]
    found = dead_loss({"history": gone})
    assert [f.evidence["component"] for f in found] == ["det/ctr"] and found[0].evidence["missing_steps"] == 25
    never = dead_loss({"history": healthy, "loss_components": {"det": ["cls", "box", "ctr", "iou"]}})
    assert [f.evidence["component"] for f in never] == ["det/iou"] and "never reported" in never[0].message
    assert list(loss.declared_components) == ["cls", "box", "ctr"]


def test_chance_level_and_not_meaningful_forgetting():
    rec = {"label": "c", "hash": "h", "status": "ok", "chance": {"cls/Top-1": 0.25, "seg/mIoU": 0.1},
           "metrics": {"cls/Top-1": 0.25, "seg/mIoU": 0.05, "forgetting": 0.0},
           "stages": [{"task": "seg", "metrics": {"seg/mIoU": 0.08}},
                      {"task": "cls", "metrics": {"seg/mIoU": 0.05, "cls/Top-1": 0.25}}], "profile": {}}
    findings = chance_level(rec)
    assert {f.evidence.get("metric") for f in findings} == {"cls/Top-1", "seg/mIoU"}
    assert any(f.evidence.get("not_meaningful") == "forgetting/seg" for f in findings)
    assert any(set(f.invalidates) == {"forgetting/seg", "forgetting", "BWT"} for f in findings)
    rec["diagnostics"] = [f.as_dict() for f in findings]
    row = build_frame([rec], ["forgetting <= 0.05"]).iloc[0]
    assert row["gates"] == "not meaningful: forgetting <= 0.05" and "chance-level" in row["diagnostics"]
    moot = build_frame([rec], ["forgetting_rel/seg <= 0.05", "BWT/seg >= -0.01", "params < 1"]).iloc[0]
    assert moot["gates"] == "not meaningful: forgetting_rel/seg <= 0.05; BWT/seg >= -0.01"
    healthy = {**rec, "metrics": {"cls/Top-1": 0.9, "seg/mIoU": 0.5}, "stages": []}
    assert chance_level(healthy) == []


def test_at_chance_with_intervals_and_float32_points():
    import numpy as np

    from mtbench.diagnostics.chance_level import at_chance
    stored = float(np.float32(6 / 60))  # 0.10000000149...
    assert stored > 0.1 + 1e-9 and at_chance("cls/Top-1", stored, 0.1)  # the seed's silent case
    assert not at_chance("cls/Top-1", 0.1002, 0.1)
    # with intervals: overlap decides, no epsilon
    assert at_chance("cls/Top-1", 0.2, 0.1, [0.11, 0.3], [0.08, 0.12])
    assert not at_chance("cls/Top-1", 0.2, 0.1, [0.125, 0.3], [0.08, 0.12])
    assert not at_chance("det/mAP", 0.01, 0.004, [0.006, 0.02], [0.002, 0.0059])
    # lower is better (a false-alarm rate): at chance when its interval reaches the chance level's
    assert at_chance("points/Fa", 1e-4, 2e-4, [5e-5, 3e-4], [1.5e-4, 2.5e-4], higher=False)
    assert not at_chance("points/Fa", 1e-4, 2e-4, [5e-5, 1.2e-4], [1.5e-4, 2.5e-4], higher=False)
    rec = {"chance": {"cls/Top-1": 0.1}, "chance_ci": {"cls/Top-1": [0.08, 0.12]},
           "ci": {"cls/Top-1": [0.1, 0.3]}, "metrics": {"cls/Top-1": 0.2}}
    assert [f.invalidates for f in chance_level(rec)] == [["cls/Top-1"]]


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
    assert not checks & {"divergence", "implausible-speed", "dead-loss", "overfit-one-batch", "reference-figures"}
    assert rec["extra"]["grad_cosine"] and set(rec["chance"]) == {"det/mAP", "det/AP50", "seg/mIoU", "cls/Top-1"}
    assert rec["overfit"]["steps"] == 4 and rec["overfit"]["share_of_train"] > 0  # tiny budget: the minimum
    assert rec["loss_components"] == {"det": ["cls", "box", "ctr"]}
    p = tmp_path / "cell.json"
    p.write_text(json.dumps(rec))
    assert main(["doctor", str(p)]) == 0
    out = capsys.readouterr().out
    assert rec["label"] in out and "finding(s) in 1 cell(s)" in out


def test_doctor_uses_stored_findings_without_history(tmp_path, capsys):
    """results.json strips the history: doctor shows the stored dead-loss finding and exits 3."""
    stored = {"check": "dead-loss", "severity": "error", "message": "det/box is exactly 0 in 29 of 40 steps",
              "evidence": {"component": "det/box"}, "invalidates": ["det/mAP"]}
    rec = {"label": "c", "hash": "h", "status": "ok", "metrics": {"det/mAP": 0.1}, "profile": {},
           "diagnostics": [stored]}
    (tmp_path / "results.json").write_text(json.dumps({"suite": "s", "cells": [rec]}))
    assert main(["doctor", str(tmp_path / "results.json")]) == 3
    out = capsys.readouterr().out
    assert "det/box is exactly 0" in out and "1 finding(s) in 1 cell(s), 1 error(s)" in out
    assert "invalidates: det/mAP" in out and "stored ones" in out


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
    run = overfit_one_batch(model, losses, sets, torch.device("cpu"))  # defaults: 20 steps, 2 images, lr 0.01
    assert run["tasks"][task]["fraction_left"] < 0.5 and run["tasks"][task]["input_gain"] > 0.3, run
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


def _failed_check_record(value_ci, chance_ci):
    """A points cell whose overfit check failed (the ACM soft-IoU case: the loss barely moved in
    the check's 40 steps) with the trained model's val scores and measured chance levels."""
    run = {"steps": 40, "images": 2, "lr": 0.01, "tasks": {"points": {
        "initial": 0.9936, "final": 0.9832, "rolled": 0.9833, "floor": 0.0, "fraction_left": 0.9895,
        "input_gain": 5.2e-5, "images": 2}}}
    meta = {"points": {"metrics": {"points/F1": True, "points_mask/IoU": True, "points_mask/Fa": False},
                       "headline": "points/F1"}}
    keys = list(meta["points"]["metrics"])
    return {"overfit": run, "task_meta": meta, "metrics": {k: value_ci[k][0] for k in keys},
            "ci": {k: value_ci[k][1] for k in keys}, "chance": {k: chance_ci[k][0] for k in keys},
            "chance_ci": {k: chance_ci[k][1] for k in keys}}


def test_overfit_forecast_refuted_by_the_trained_models_scores(monkeypatch):
    """A failed overfit check whose task beats its measured chance on every score (by both CIs)
    is a warning that invalidates nothing; one score at chance keeps it an error that invalidates
    every metric the task declares, the mask-level ones under another prefix included."""
    from mtbench.diagnostics.checks import overfit
    monkeypatch.setattr("mtbench.tasks._SEEN", {})  # the records' partial task_meta stays in this test
    chance = {"points/F1": (0.0, [0.0, 0.0]), "points_mask/IoU": (0.0, [0.0, 0.0]),
              "points_mask/Fa": (6.5e-4, [5.5e-4, 7.7e-4])}
    trained = {"points/F1": (0.948, [0.908, 0.978]), "points_mask/IoU": (0.67, [0.625, 0.72]),
               "points_mask/Fa": (2.5e-5, [0.0, 5.7e-5])}
    [f] = overfit(_failed_check_record(trained, chance))
    assert f.severity == "warning" and f.invalidates == [] and "refuted by the trained model" in f.message
    assert set(f.evidence["refuted_by"]) == set(trained)

    # the mask's false-alarm rate overlaps its chance (lower is better): no refutation
    at_chance = {**trained, "points_mask/Fa": (5e-4, [2e-4, 6e-4])}
    [f] = overfit(_failed_check_record(at_chance, chance))
    assert f.severity == "error" and "refuted_by" not in f.evidence
    assert {"points/F1", "points_mask/IoU", "points_mask/Fa"} <= set(f.invalidates)

    # no interval (a record from before CIs): the forecast stands
    rec = _failed_check_record(trained, chance)
    del rec["ci"]["points_mask/IoU"]
    assert overfit(rec)[0].severity == "error"


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
    assert found[0].severity == "error"
    # healthy: tasks of equal scale keep both weights near 1
    assert task_weight_collapse(_gradnorm_toy_weights((1.0, 1.0), alpha=0.12, lr=0.025)) == []


def test_task_weight_held_at_an_extreme_ratio():
    """1:80 for 30 % of the steps is reported (it never falls below 0.1 % of the mean); 1:20 is not."""
    def traj(ratio, share, steps=100):
        low = int(share * steps)
        return {"extra": {"task_weights": [{"det": 2 * ratio / (ratio + 1), "cls": 2 / (ratio + 1)} if i < low
                                           else {"det": 1.0, "cls": 1.0} for i in range(steps)]},
                "metrics": {"cls/Top-1": 0.5, "det/mAP": 0.2}}
    found = task_weight_collapse(traj(80, 0.3))
    assert [(f.evidence["task"], f.severity) for f in found] == [("cls", "warning")]
    assert found[0].evidence["steps_starved"] == 30 and found[0].evidence["worst_ratio"] == pytest.approx(80)
    assert found[0].invalidates == ["cls/Top-1", "delta_m"]
    assert task_weight_collapse(traj(80, 0.2)) == [] and task_weight_collapse(traj(20, 1.0)) == []


def test_reference_figures_at_the_reference_conditions(registry):
    """A plugin's reference stated at other conditions (96 px, 10 classes) is checked by rebuilding
    the model there; the suite's own ``expect`` is checked on the cell's profile."""
    from mtbench.diagnostics.reference import reference_figures
    from mtbench.profiling.complexity import count_params
    from mtbench.profiling.reference import reference_entries

    onehead = registry.get("model", "unified-onehead").factory
    arch = {"backbone": "mobilenetv3_small_100", "neck_channels": 16}

    def factory(tasks, level, **params):
        return onehead(tasks=tasks, level=level, **params)

    from mtbench.data.base import TaskInfo
    at_ref = count_params(onehead(tasks={"cls": TaskInfo("cls", 10, ())}, level="P4", **arch))["params"] / 1e6
    factory.reference_figures = lambda **p: [{"source": "a paper", "params_m": at_ref, "tolerance": 0.01,
                                              "conditions": {"image_size": 96, "tasks": {"cls": 10}}}]
    cfg = {"architecture": {"name": "x", "params": arch}, "level": "P4", "fixed": {"image_size": 64},
           "expect": {"params_m": 1.0, "flops_g": None, "tolerance": 0.01}}
    refs = reference_entries(cfg, factory, {"cls": 3}, {"params_m": 1.2, "flops_g": 0.1})
    suite_ref, paper = refs
    assert suite_ref["conditions"] == "cell" and suite_ref["expected"] == {"params_m": 1.0}
    assert paper["conditions"]["image_size"] == 96 and paper["measured"]["params_m"] == pytest.approx(at_ref)
    found = reference_figures({"profile": {"reference": refs}})
    assert [(f.evidence["source"], f.evidence["relative"]) for f in found] == [("suite (architecture expect)",
                                                                               pytest.approx(0.2))]
    assert found[0].invalidates == ["params", "params_m"]


def test_expect_is_strict(write_suite):
    from mtbench.errors import SuiteError
    text = TINY_SUITE.replace("params: {backbone: mobilenetv3_small_100, neck_channels: 16}",
                              "params: {backbone: mobilenetv3_small_100, neck_channels: 16}\n"
                              "      expect: {param_m: 1.0}")
    with pytest.raises(SuiteError, match="expect.param_m: unknown field"):
        load_suite(write_suite(text))


def test_headline_without_a_ci_is_a_no_uncertainty_warning():
    from mtbench.diagnostics.uncertainty import no_uncertainty

    rec = {"status": "ok", "uncertainty": {"resamples": 200}, "tasks": {"cls": {}},
           "metrics": {"cls/Top-1": 1.0, "seg/mIoU": 0.5}, "ci": {"seg/mIoU": [0.4, 0.6]},
           "samples": {"cls": {"metric": "x:y", "columns": {"correct": [1]}}}}
    found = no_uncertainty(rec)
    assert [(f.check, f.severity, f.evidence, f.invalidates) for f in found] == \
        [("no-uncertainty", "warning", {"metric": "cls/Top-1", "val_images": 1}, [])]
    assert "has 1 image(s)" in found[0].message
    rec["samples"]["cls"]["columns"]["correct"] = [1, 0, 1]
    assert "undefined on some bootstrap resample of its 3 val images" in no_uncertainty(rec)[0].message
    assert no_uncertainty({**rec, "ci": {**rec["ci"], "cls/Top-1": [0.3, 1.0]}}) == []
    assert no_uncertainty({k: v for k, v in rec.items() if k != "uncertainty"}) == []  # stored before CIs
