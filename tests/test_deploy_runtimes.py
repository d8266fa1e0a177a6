"""Deployment runtimes (issue 14): onnx-fp16, onnx-int8, tensorrt; val metrics per runtime."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mtbench.cli import main
from mtbench.data.synthetic import SyntheticTask
from mtbench.evaluation import evaluate, runtime_val
from mtbench.profiling.deploy import calibration_images
from mtbench.profiling.latency import FIXED
from mtbench.profiling.runtimes import flat_tensors, measure_runtimes, structure, unflatten
from tests.conftest import TINY_SUITE

CPU = torch.device("cpu")


class _TwoTasks(nn.Module):
    """A dense map with two levels and pooled logits: the model contract's output shapes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(), nn.Conv2d(8, 6, 3, padding=1))

    def forward(self, x):
        m = self.body(x)
        return {"seg": [m, m[:, :, ::2, ::2]], "cls": m.mean(dim=(2, 3))}


def _measure(names, model, **kw):
    return measure_runtimes(names, model.eval(), 32, 2, CPU, 0, 1, 1, FIXED, **kw)


def test_unflatten_inverts_flat_tensors():
    model = _TwoTasks().eval()
    out = model(torch.rand(2, 3, 32, 32))
    back = unflatten(flat_tensors(out), structure(model, 32, CPU))
    assert set(back) == {"seg", "cls"} and len(back["seg"]) == 2
    assert back["seg"][1] is out["seg"][1] and back["cls"] is out["cls"]


def test_reduced_precision_runtimes_run_on_cpu_and_tensorrt_is_unavailable():
    calls = []
    out = _measure(["onnx", "onnx-fp16", "onnx-int8", "tensorrt", "tensorrt-int8"], _TwoTasks(),
                   calibration=lambda: calls.append(1) or torch.rand(8, 3, 32, 32))
    assert calls == [1]  # drawn once, for the runtimes that declare it
    for name in ("onnx", "onnx-fp16", "onnx-int8"):
        fig = out[name]
        assert "error" not in fig and "unavailable" not in fig, fig
        assert fig["latency_ms"] > 0 and fig["fps"] > 0 and fig["batch_export"] == "dynamic"
        assert fig["parity_ok"] and "predict" not in fig  # never stored
    # float32 < fp16 < int8 in distance from PyTorch's float32 outputs
    assert out["onnx"]["parity_max_abs"] < 1e-5 < out["onnx-fp16"]["parity_max_abs"] < out["onnx-int8"]["parity_max_abs"]
    assert out["onnx-int8"]["calibration_images"] == 8 and out["onnx-fp16"]["precision"] == "fp16"
    for name in ("tensorrt", "tensorrt-int8"):
        assert set(out[name]) == {"unavailable"} and "GPU" in out[name]["unavailable"]


def test_int8_without_calibration_images_is_unavailable_not_failed():
    out = _measure(["onnx-int8"], _TwoTasks())
    assert "calibration" in out["onnx-int8"]["unavailable"]


def test_predict_gives_the_runtime_outputs_in_the_model_structure():
    model, seen = _TwoTasks().eval(), {}
    x = torch.rand(3, 3, 32, 32)

    def grab(name):
        def evaluate(predict):
            seen[name] = predict(x)
            return {"metrics": {}}
        return evaluate

    for name in ("onnx", "onnx-fp16"):
        _measure([name], model, evaluate=grab(name))
    ref = model(x)
    for name, tol in (("onnx", 1e-5), ("onnx-fp16", 1e-2)):
        got = seen[name]
        assert got["cls"].dtype == torch.float32 and got["cls"].shape == ref["cls"].shape
        assert all(torch.allclose(a, b, atol=tol) for a, b in zip(flat_tensors(ref), flat_tensors(got)))


def test_runtime_without_predict_or_failing_val_pass_is_recorded():
    from mtbench.profiling.runtimes import _val

    assert "unavailable" in _val(lambda p: {}, None)
    assert _val(lambda p: 1 / 0, object())["error"].startswith("ZeroDivisionError")


def _cls_sets():
    return {"cls": SyntheticTask("cls", "val", 32, num_images=6)}


def test_runtime_val_is_eager_code_on_the_runtime_outputs(registry):
    from mtbench.plugins import use_registry
    from mtbench.data.base import TaskInfo

    with use_registry(registry):
        model = registry.create_model("unified-onehead", tasks={"cls": TaskInfo("cls", 3, ())}, level="P4",
                                      backbone="mobilenetv3_small_100", neck_channels=16).eval()
        sets = _cls_sets()
        eager = evaluate(model, sets, ["cls"], 4, CPU, 32)
        same = runtime_val(model, model, sets, ["cls"], 4, CPU, 32, None, eager)
        assert same["metrics"] == eager and same["delta"] == {"cls/Top-1": 0.0} and same["seconds"] >= 0

        labels = [int(sets["cls"][i][1]) for i in range(6)]
        rare = min(range(3), key=labels.count)

        def constant(images):  # the runtime "predicts" the rarest class for every image
            return {"cls": torch.nn.functional.one_hot(torch.full((len(images),), rare), 3).float()}

        worse = runtime_val(constant, model, sets, ["cls"], 4, CPU, 32, None, eager)
        assert worse["metrics"]["cls/Top-1"] == pytest.approx(labels.count(rare) / 6)
        assert worse["delta"]["cls/Top-1"] == pytest.approx(labels.count(rare) / 6 - eager["cls/Top-1"])


def test_calibration_images_are_drawn_evenly_and_seeded():
    sets = {"seg": SyntheticTask("seg", "train", 32, num_images=5), "cls": SyntheticTask("cls", "train", 32, num_images=5)}
    a, b = calibration_images(sets, 7, seed=0), calibration_images(sets, 7, seed=0)
    assert a.shape == (7, 3, 32, 32) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, calibration_images(sets, 7, seed=1))
    assert calibration_images(sets, 40, seed=0).shape[0] == 10  # at most every image once


RUNTIME_SUITE = TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [equal]").replace(
    "profile: {latency_warmup: 1, latency_repeats: 3, fps_repeats: 1}",
    "profile: {latency_warmup: 1, latency_repeats: 3, fps_repeats: 1, latency_max_s: 0,\n"
    "          runtimes: [onnx, onnx-int8, tensorrt], runtime_metrics: true, calibration_images: 4}")


def test_cell_records_val_metrics_per_runtime_and_the_table_shows_deltas(write_suite, tmp_path, capsys):
    assert main(["--no-entrypoints", "run", str(write_suite(RUNTIME_SUITE)), "--results", str(tmp_path / "r"),
                 "--no-progress"]) == 0
    rec = json.loads(next((tmp_path / "r").glob("*/cells/*.json")).read_text())
    assert rec["status"] == "ok"
    runtimes = rec["profile"]["runtimes"]
    onnx, int8 = runtimes["onnx"]["val"], runtimes["onnx-int8"]["val"]
    for key in ("det/mAP", "seg/mIoU", "cls/Top-1"):
        assert onnx["metrics"][key] == pytest.approx(rec["metrics"][key], abs=1e-3)  # same function, float32
        assert int8["delta"][key] == pytest.approx(int8["metrics"][key] - rec["metrics"][key])
    assert runtimes["onnx-int8"]["calibration_images"] == 4
    assert set(runtimes["tensorrt"]) == {"unavailable"}
    assert rec["harness"]["runtime_val_s"] == pytest.approx(onnx["seconds"] + int8["seconds"])
    out = capsys.readouterr().out
    assert "onnx Δ det/mAP" in out and "onnx-int8 Δ cls/Top-1" in out and "onnx-int8 latency p50 (ms)" in out


@pytest.mark.parametrize("name,tolerance", [("onnx", 1e-3), ("onnx-fp16", 1e-2), ("onnx-int8", 0.25),
                                            ("tensorrt", 1e-2), ("tensorrt-int8", 0.25)])
def test_deploy_runtimes_pass_the_runtime_contract(registry, name, tolerance):
    from mtbench.testing import check_runtime

    check_runtime(registry.get("runtime", name), tolerance=tolerance)  # tensorrt*: unavailable here, passes


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensorrt_on_a_gpu_runs_or_says_why_not():
    model = _TwoTasks().cuda().eval()
    out = measure_runtimes(["tensorrt", "tensorrt-int8", "onnx-fp16"], model, 32, 2, torch.device("cuda"), 1, 6, 6,
                           FIXED, calibration=lambda: torch.rand(8, 3, 32, 32))
    for name, fig in out.items():
        assert "error" not in fig, (name, fig)
        if "unavailable" not in fig:
            assert fig["latency_ms"] > 0 and fig["parity_ok"], (name, fig)
    assert out["onnx-fp16"]["provider"] == "CUDAExecutionProvider"
