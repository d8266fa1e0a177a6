"""The seed reports' failure modes, reproduced on purpose as tiny suites (issue 10).

Each runs ``mtbench run`` on a one- or two-cell suite built from the deliberately broken
pieces of ``tests/failure_modes/plugin.py`` and asserts the three things a reader sees: the
number marked ``†`` (and listed in the CSV's ``flags``), the gate state, and the exit code
(3 = suspect result; 0 with ``--allow-suspect``).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import mtbench.plugins
from mtbench.cli import EXIT_SUSPECT, main
from tests.failure_modes import plugin as broken

ARCH = """\
    - name: {model}
      label: mnv3s
      params: {{backbone: mobilenetv3_small_100, neck_channels: 16}}{expect}"""
BASE = """\
name: {name}
tasks:
{tasks}
matrix:
  architecture:
{arch}
  level: [{level}]
  strategy: {strategy}
fixed:
  image_size: {size}
  batch_size: {bs}
  optimizer: {{name: adamw, lr: {lr:.1e}}}
  budget: {{steps: {steps}}}
  threads: 2
profile: {{runtimes: [], latency_warmup: 1, latency_repeats: 3, fps_repeats: 1}}
checks: {{overfit_one_batch: {overfit}}}
gates: {gates}
"""
SYN = "{dataset: synthetic, params: {num_images: {train: 8, val: 4}}}"


def _suite(tmp_path, name, tasks: dict, gates: list, *, model="unified-onehead", level="P4", strategy="[equal]",
           size=64, bs=4, lr=0.002, steps=8, overfit="auto", expect="", arch=None) -> str:
    text = BASE.format(name=name, tasks="\n".join(f"  {t}: {d}" for t, d in tasks.items()),
                       arch=arch or ARCH.format(model=model, expect=expect), level=level, strategy=strategy,
                       size=size, bs=bs, lr=lr, steps=steps, overfit=overfit, gates=json.dumps(gates))
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """``run(suite, *flags) -> (exit code, console, csv frame, records)`` with the broken plugin loaded."""
    real = mtbench.plugins.get_registry
    extra = [broken]
    monkeypatch.setattr(mtbench.plugins, "get_registry",
                        lambda load_entrypoints=True, extra_plugins=(), disable=(): real(False, [*extra, *extra_plugins]))

    def _run(suite: str, *flags: str):
        results = tmp_path / "results"
        code = main(["--no-entrypoints", "run", suite, "--results", str(results), "--no-progress", *flags])
        out = capsys.readouterr()
        folder = results / Path(suite).stem
        frame = pd.read_csv(folder / "results.csv")
        records = json.loads((folder / "results.json").read_text())["cells"]
        return code, out.out + out.err, frame, records

    _run.extra = extra
    return _run


def _flags(frame, i=0) -> set[str]:
    text = frame.loc[i, "flags"]
    return set(text.split("; ")) if isinstance(text, str) else set()


def test_forgetting_at_exactly_chance(tmp_path, run):
    """10 classes, nothing learned (lr 1e-9, identical images): Top-1 = 6/60 = chance, stored as the
    float32 0.10000000149; forgetting 0 used to pass `forgetting <= 0.05`."""
    suite = _suite(tmp_path, "fm-chance", {"cls": "{dataset: blank-cls10}", "seg": SYN}, ["forgetting <= 0.05"],
                   strategy="[{name: sequential, params: {order: [cls, seg]}}]", lr=1e-9, steps=4, overfit="off")
    code, out, frame, recs = run(suite)
    just = recs[0]["stages"][0]["metrics"]["cls/Top-1"]
    assert abs(just - 0.1) < 1e-6 and recs[0]["metrics"]["forgetting"] == 0.0
    assert {"forgetting:chance-level", "BWT:chance-level", "forgetting/cls:chance-level"} <= _flags(frame)
    assert frame.loc[0, "gates"] == "not meaningful: forgetting <= 0.05"
    assert code == EXIT_SUSPECT and "0 [0, 0]†" in out and "† invalidated by a diagnostic finding" in out  # CI: nothing moved
    assert run(suite, "--allow-suspect")[0] == 0


def test_det_loss_without_positives(tmp_path, run):
    """Train boxes lost on 3 of 4 images: no positives in most steps; the det metrics are marked."""
    suite = _suite(tmp_path, "fm-nopos", {"det": "{dataset: unlabelled-det}"}, ["det/AP50 >= 0.0"], bs=2, steps=12)
    code, out, frame, recs = run(suite)
    dead = [f for f in recs[0]["diagnostics"] if f["check"] == "dead-loss" and "positives" in f["message"]]
    assert dead and dead[0]["severity"] == "error" and dead[0]["evidence"]["steps_without_positives"] >= 3
    assert {"det/mAP:dead-loss", "det/AP50:dead-loss"} <= _flags(frame)
    assert frame.loc[0, "gates"] == "not meaningful: det/AP50 >= 0.0"
    assert code == EXIT_SUSPECT and "†" in out


def test_task_weight_driven_to_zero_and_held_at_1_to_80(tmp_path, run):
    strategy = ("[{name: scripted-weights, label: held-1-80, params: {ratio: 80.0}}, "
                "{name: scripted-weights, label: zeroed, params: {zero_from: 0.5}}]")
    suite = _suite(tmp_path, "fm-weights", {"det": SYN, "cls": SYN}, ["cls/Top-1 >= 0.0"], strategy=strategy,
                   overfit="off")
    code, out, frame, recs = run(suite)
    by = {r["axes"]["strategy"]: (i, r) for i, r in enumerate(recs)}
    i, held = by["held-1-80"]
    f = [f for f in held["diagnostics"] if f["check"] == "task-weight-collapse"]
    assert len(f) == 1 and f[0]["severity"] == "warning" and f[0]["evidence"]["worst_ratio"] == pytest.approx(80)
    assert "cls/Top-1:task-weight-collapse" in _flags(frame, i) and "det/mAP:task-weight-collapse" not in _flags(frame, i)
    assert frame.loc[i, "gates"] == "not meaningful: cls/Top-1 >= 0.0"
    j, zeroed = by["zeroed"]
    f = [f for f in zeroed["diagnostics"] if f["check"] == "task-weight-collapse"]
    assert len(f) == 1 and f[0]["severity"] == "error" and f[0]["evidence"]["final_weight"] == 0
    assert "cls/Top-1:task-weight-collapse" in _flags(frame, j)
    assert code == EXIT_SUSPECT and out.count("†") >= 2


def test_model_off_its_stated_parameter_count(tmp_path, run, registry):
    """The suite claims a parameter count 1.4 % below the model's (the seeds' Gold-YOLO port)."""
    from mtbench.profiling.complexity import count_params
    syn = registry.create("dataset", "synthetic", task="cls", split="train", root=None, image_size=64,
                          num_images={"train": 8, "val": 4})
    model = registry.create_model("unified-onehead", tasks={"cls": syn.info}, level="P4",
                                  backbone="mobilenetv3_small_100", neck_channels=16)
    claimed = count_params(model)["params"] / 1e6 / 1.014
    expect = f"\n      expect: {{params_m: {claimed:.6f}, tolerance: 0.01}}"
    suite = _suite(tmp_path, "fm-params", {"cls": SYN}, ["params < 8e6"], expect=expect, overfit="off")
    code, out, frame, recs = run(suite)
    f = [f for f in recs[0]["diagnostics"] if f["check"] == "reference-figures"]
    assert len(f) == 1 and f[0]["severity"] == "error" and f[0]["evidence"]["relative"] == pytest.approx(0.014, abs=2e-4)
    assert {"params:reference-figures", "params_m:reference-figures"} <= _flags(frame)
    assert frame.loc[0, "gates"] == "not meaningful: params < 8e6"
    assert code == EXIT_SUSPECT and "†" in out


def test_model_that_ignores_its_input(tmp_path, run):
    suite = _suite(tmp_path, "fm-blind", {"det": SYN, "seg": SYN, "cls": SYN}, ["cls/Top-1 >= 0.0"],
                   model="blind-onehead")
    code, out, frame, recs = run(suite)
    f = {x["evidence"]["task"]: x for x in recs[0]["diagnostics"] if x["check"] == "overfit-one-batch"}
    assert set(f) == {"det", "seg", "cls"} and all(x["evidence"]["input_gain"] == 0 for x in f.values())
    assert all("does not use its input" in x["message"] for x in f.values())
    assert {"det/mAP:overfit-one-batch", "seg/mIoU:overfit-one-batch", "cls/Top-1:overfit-one-batch"} <= _flags(frame)
    assert frame.loc[0, "gates"] == "not meaningful: cls/Top-1 >= 0.0"
    assert code == EXIT_SUSPECT
    assert recs[0]["overfit"]["share_of_train"] > 0


def test_p2_heatmap_collapsed_to_background(tmp_path, run):
    """One 3x3 target in 128 x 128 px at stride 4 (1:1023), nothing learned: the heatmap stays at its
    background prior, no point is detected, Pd = chance."""
    pytest.importorskip("mtbench_point_heatmap")
    from mtbench_point_heatmap import losses, metrics, model, task  # the points task, its metric, losses, model
    run.extra.extend([task, metrics, losses, model])
    arch = "    - name: point-heatmap\n      label: heat-r18\n      params: {neck_channels: 16}"
    suite = _suite(tmp_path, "fm-heat", {"points": "{dataset: blob-points}"}, ["points/Pd >= 0.0"], arch=arch,
                   level="P2", size=128, lr=1e-9, steps=6, overfit="off")
    code, out, frame, recs = run(suite)
    assert recs[0]["metrics"]["points/Pd"] == 0.0
    assert {"points/Pd:chance-level", "points/F1:chance-level"} <= _flags(frame)
    ratio = [f for f in recs[0]["diagnostics"] if f["check"] == "positive-ratio"]
    assert ratio and ratio[0]["evidence"]["level"] == "P2"
    assert frame.loc[0, "gates"] == "not meaningful: points/Pd >= 0.0"
    assert code == EXIT_SUSPECT and re.search(r"\b0( \[0, 0\])?†", out)
