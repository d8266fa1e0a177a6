"""Profiling: parameter/FLOP counts, latency statistics, ONNX parity, memory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtbench.data.base import TaskInfo
from mtbench.profiling.complexity import count_flops, count_params
from mtbench.profiling.latency import summarise, time_calls
from mtbench.profiling.memory import peak_memory_mib
from mtbench.profiling.runtimes import measure_runtimes

TASKS = {"det": TaskInfo("det", 3, ()), "seg": TaskInfo("seg", 4, ()), "cls": TaskInfo("cls", 3, ())}


def test_flops_of_a_known_conv():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # one 3x3x3 MAC per output element: 8 * 32 * 32 outputs x 27 MACs x 2 FLOPs
    assert count_flops(conv, 32) == pytest.approx(2 * 8 * 32 * 32 * 27 / 1e9)
    conv.weight.requires_grad_(False)
    assert count_params(conv) == {"params": 216, "params_trainable": 0}


def test_summarise_percentiles():
    s = summarise([0.001 * i for i in range(1, 11)])
    assert s["latency_ms"] == pytest.approx(5.5) and s["latency_p90_ms"] == pytest.approx(9.0)
    assert 0 < s["latency_cv"] < 1 and s["latency_repeats"] == 10


def test_time_calls_warms_up_first():
    calls = []
    times = time_calls(lambda: calls.append(1), warmup=3, repeats=4)
    assert len(calls) == 7 and len(times) == 4
    calls.clear()
    assert len(time_calls(lambda: calls.append(1), warmup=0, repeats=4, number=5)) == 4 and len(calls) == 20


@pytest.mark.parametrize("name,params", [
    ("unified-onehead", {"backbone": "mobilenetv3_small_100", "neck_channels": 16}),
    ("dual-backbone", {"backbone": "mobilenetv3_small_100", "neck_channels": 16}),
    ("yolo-mtl", {"backbone": "csp", "size": "n"}),
])
def test_onnx_parity_for_builtin_architectures(registry, name, params):
    model = registry.create_model(name, tasks=TASKS, level="P4", **params)
    out = measure_runtimes(["onnx"], model.eval(), 64, 2, torch.device("cpu"), 1, 3, 1)["onnx"]
    assert "error" not in out, out.get("error")
    assert out["parity_max_abs"] < 1e-4 and out["parity_ok"]
    assert out["provider"] == "CPUExecutionProvider" and out["latency_ms"] > 0 and out["fps"] > 0
    assert not model.training  # export must not flip BatchNorm back to training


def test_failing_runtime_is_recorded_not_raised():
    class Bad(nn.Module):
        def forward(self, x):
            return {"cls": torch.linalg.eigvals(x[0, 0])}  # complex output: not exportable

    out = measure_runtimes(["onnx"], Bad(), 32, 1, torch.device("cpu"), 0, 1, 1)
    assert "error" in out["onnx"]


def test_cpu_peak_memory_sees_an_allocation():
    base = peak_memory_mib(lambda: None, torch.device("cpu"))["peak_mem_mib"]
    got = peak_memory_mib(lambda: torch.ones(64 * 1024 * 1024 // 4).add_(1), torch.device("cpu"))
    assert got["mem_kind"] == "cpu-rss" and got["peak_mem_mib"] >= base
