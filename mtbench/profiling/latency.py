"""Latency and throughput of a model's forward pass (PyTorch eager).

Method: ``warmup`` untimed runs, then ``repeats`` timed runs with ``time.perf_counter``;
on CUDA every run is bracketed by ``torch.cuda.synchronize()`` so kernel time is counted.
Latency is at batch 1 (median = p50, p90, coefficient of variation); FPS = images per
second at the suite's batch size (batch size / median batch time). Inputs are random
``float32 (B, 3, S, S)``; the model is in eval mode under ``torch.inference_mode``.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def _timings(model: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    cuda = x.is_cuda
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        if cuda:
            torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return times


def measure_latency(model: nn.Module, image_size: int, device: torch.device, warmup: int = 5,
                    repeats: int = 30) -> dict[str, float]:
    """Batch-1 latency: ``latency_ms`` (p50), ``latency_p90_ms``, ``latency_cv`` (std/mean)."""
    model.eval()
    x = torch.rand(1, 3, image_size, image_size, device=device)
    t = sorted(_timings(model, x, warmup, repeats))
    p90 = t[min(len(t) - 1, int(round(0.9 * (len(t) - 1))))]
    mean = statistics.fmean(t)
    return {"latency_ms": statistics.median(t) * 1e3, "latency_p90_ms": p90 * 1e3,
            "latency_cv": statistics.pstdev(t) / mean if mean > 0 else 0.0,
            "latency_repeats": float(repeats), "threads": float(torch.get_num_threads())}


def measure_fps(model: nn.Module, image_size: int, batch_size: int, device: torch.device,
                warmup: int = 2, repeats: int = 5) -> dict[str, float]:
    """Throughput ``fps`` (images/s) at ``batch_size``."""
    model.eval()
    x = torch.rand(batch_size, 3, image_size, image_size, device=device)
    med = statistics.median(_timings(model, x, warmup, repeats))
    return {"fps": batch_size / med if med > 0 else float("nan"), "fps_batch": float(batch_size)}
