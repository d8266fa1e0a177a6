"""Parameter counts and FLOPs.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one image at the
suite's input size: multiply and add count separately (FLOPs = 2 x MACs for conv/matmul);
only the ops it knows are counted (conv, matmul and friends), so elementwise work is left out.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> dict[str, int]:
    """``{"params": total, "params_trainable": trainable}`` (counts, not millions)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": total, "params_trainable": trainable}


@torch.no_grad()
def count_flops(model: nn.Module, image_size: int) -> float:
    """GFLOPs (10^9 FLOPs) of one forward pass on ``float32 (1, 3, S, S)``."""
    was_training = model.training
    model.eval()
    x = torch.rand(1, 3, image_size, image_size, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def matmul_peak_gflops(device: torch.device, n: int = 1024, repeats: int = 10) -> float:
    """Achievable dense float32 GFLOP/s of ``device``: best of ``repeats`` ``n x n`` matmuls.

    The reference the ``implausible-speed`` diagnostic compares a model's FLOPs x FPS with.
    Measured once per device, thread count and size in a process (cells of a run share it).
    """
    return _matmul_peak(str(device), torch.get_num_threads(), n, repeats)


@functools.lru_cache(maxsize=None)
@torch.no_grad()
def _matmul_peak(device_name: str, threads: int, n: int, repeats: int) -> float:
    device = torch.device(device_name)
    import time

    a = torch.rand(n, n, device=device)
    b = torch.rand(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9
