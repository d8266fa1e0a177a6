"""CUDA paths: synchronised latency, allocator and NVML memory, ONNX Runtime CUDA provider.

Marked ``gpu``; skipped cleanly on machines without CUDA (CI has none).
"""

from __future__ import annotations

import pytest
import torch

from mtbench.data.base import TaskInfo

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
TASKS = {"det": TaskInfo("det", 3, ()), "seg": TaskInfo("seg", 4, ()), "cls": TaskInfo("cls", 3, ())}


@pytest.fixture
def cuda_model(registry):
    return registry.create_model("unified-onehead", tasks=TASKS, level="P3", backbone="mobilenetv3_small_100",
                                 neck_channels=16).cuda().eval()


def test_cuda_latency_is_synchronised(cuda_model):
    from mtbench.profiling.latency import measure_fps, measure_latency
    lat = measure_latency(cuda_model, 128, torch.device("cuda"), warmup=5, repeats=20)
    assert lat["latency_ms"] > 0.05  # a synchronised forward is not a bare kernel launch
    assert measure_fps(cuda_model, 128, 8, torch.device("cuda"))["fps"] > 0


def test_cuda_allocator_and_nvml_memory(cuda_model):
    from mtbench.profiling.memory import peak_memory_mib
    x = torch.rand(8, 3, 128, 128, device="cuda")
    out = peak_memory_mib(lambda: cuda_model(x), torch.device("cuda"))
    assert out["mem_kind"] == "cuda-allocator" and out["peak_mem_mib"] > 0
    assert out.get("nvml_peak_mib", 0) >= out["peak_mem_mib"], out.get("nvml_error")


def test_onnxruntime_cuda_provider(cuda_model):
    import onnxruntime as ort

    from mtbench.profiling.runtimes import measure_runtimes
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here")
    out = measure_runtimes(["onnx"], cuda_model, 128, 4, torch.device("cuda"), 3, 10, 2)["onnx"]
    assert out.get("provider") == "CUDAExecutionProvider", out
    assert out["parity_max_abs"] < 1e-3


@pytest.mark.parametrize("fixed", ["  precision: bf16\n  channels_last: true\n", "  precision: fp16\n"])
def test_cuda_cell_in_reduced_precision(write_suite, registry, fixed):
    """A tiny cell trains on CUDA in bf16 (channels-last) / fp16 (GradScaler), with cuDNN benchmark
    recorded as applied while profiling."""
    from mtbench.runner import run_cell
    from mtbench.suite import expand, load_suite
    from tests.conftest import TINY_SUITE

    text = TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [equal]").replace(
        "  threads: 2\n", f"  threads: 2\n  device: cuda\n{fixed}").replace(
        "profile: {", "profile: {runtimes: [], cudnn_benchmark: true, ")
    rec = run_cell(expand(load_suite(write_suite(text)), registry)[0], registry, False)
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["profile"]["cudnn_benchmark"] is True
    assert torch.backends.cudnn.benchmark is False  # restored after profiling
