"""Latency and throughput of a forward pass, for any runtime.

Method: ``warmup`` untimed runs, then ``repeats`` timed runs with ``time.perf_counter``;
on CUDA every run is bracketed by ``torch.cuda.synchronize()`` so kernel time is counted,
not just the launch. Python's garbage collector is paused while timing. Latency is at
batch 1: median (p50), p90 and coefficient of variation (population std / mean).
FPS = images per second at the suite's batch size (batch size / median batch time).
The thread count used (``torch.get_num_threads()`` or the ONNX Runtime session's) is
reported with the figures.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Callable

import torch
from torch import nn


def time_calls(fn: Callable[[], object], warmup: int, repeats: int, sync: bool = False,
               number: int = 1) -> list[float]:
    """Seconds per call of ``fn``: ``repeats`` samples after ``warmup`` untimed calls.

    Each sample times ``number`` consecutive calls and is their mean (timeit's ``number``,
    pytest-benchmark's iterations); ``number = 1`` times every call on its own.
    """
    for _ in range(warmup):
        fn()
    if sync:
        torch.cuda.synchronize()
    times = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            if sync:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def summarise(times: list[float]) -> dict[str, float]:
    """``latency_ms`` (p50), ``latency_p90_ms``, ``latency_cv`` of per-call seconds."""
    t = sorted(times)
    p90 = t[min(len(t) - 1, int(round(0.9 * (len(t) - 1))))]
    mean = statistics.fmean(t)
    return {"latency_ms": statistics.median(t) * 1e3, "latency_p90_ms": p90 * 1e3,
            "latency_cv": statistics.pstdev(t) / mean if mean > 0 else 0.0, "latency_repeats": float(len(t))}


def torch_runner(model: nn.Module, batch: int, image_size: int, device: torch.device) -> Callable[[], object]:
    """A no-grad forward of ``model`` on random ``float32 (batch, 3, S, S)`` (eval mode)."""
    model.eval()
    x = torch.rand(batch, 3, image_size, image_size, device=device)

    def run():
        with torch.inference_mode():
            return model(x)

    return run


def measure_latency(model: nn.Module, image_size: int, device: torch.device, warmup: int = 5,
                    repeats: int = 30, number: int = 1) -> dict[str, float]:
    """Batch-1 latency of PyTorch eager: p50, p90 (ms), CV and the torch thread count.

    :param number: calls per timed sample (see :func:`time_calls`); the suites use 1.
    """
    times = time_calls(torch_runner(model, 1, image_size, device), warmup, repeats, device.type == "cuda", number)
    return summarise(times) | {"threads": float(torch.get_num_threads())}


def measure_fps(model: nn.Module, image_size: int, batch_size: int, device: torch.device,
                warmup: int = 2, repeats: int = 5) -> dict[str, float]:
    """Throughput ``fps`` (images/s) of PyTorch eager at ``batch_size``."""
    times = time_calls(torch_runner(model, batch_size, image_size, device), warmup, repeats, device.type == "cuda")
    med = statistics.median(times)
    return {"fps": batch_size / med if med > 0 else float("nan"), "fps_batch": float(batch_size)}
