"""What the training-step benchmarks share (``strategies_step.py``, ``precision_step.py``): their
timing options, one fixed ``synthetic`` batch per task in a fresh ``TrainContext``, and the
timed loop."""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from torch.utils.data import DataLoader

from mtbench.data.base import collate, to_device
from mtbench.plugins import get_registry
from mtbench.strategies.base import TrainContext

TASKS = ("det", "seg", "cls")


def add_timing_args(ap: argparse.ArgumentParser) -> None:
    """``--steps``, ``--warmup``, ``--rounds``, ``--threads``, ``--device``."""
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")


def start(args):
    """Set the thread count; return ``(device, registry)``."""
    torch.set_num_threads(args.threads)
    return torch.device(args.device), get_registry()


def synthetic_context(args, registry, device, make_model: Callable, losses: dict[str, str], fixed: dict | None = None):
    """A fresh model (seed 0) from ``make_model(infos)``, its ``TrainContext`` (``fixed`` merged
    into a one-step budget) and one ``synthetic`` batch per task of ``args.batch`` images of
    ``args.size`` px, on ``device`` in the memory format the context gives training batches.

    :return: ``(ctx, {task: (images, targets)})``.
    """
    torch.manual_seed(0)
    sets = {t: registry.create("dataset", "synthetic", task=t, split="train", root=None, image_size=args.size,
                               num_images=args.batch) for t in TASKS}
    infos = {t: sets[t].info for t in TASKS}
    model = make_model(infos).to(device)
    if (fixed or {}).get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    loss_fns = {t: registry.create("loss", losses[t], num_classes=infos[t].num_classes) for t in TASKS}
    loaders = {t: DataLoader(sets[t], batch_size=args.batch, collate_fn=collate) for t in TASKS}
    fixed = {"optimizer": {"lr": 0.001}, "budget": {"steps": 1, "epochs": None}, **(fixed or {})}
    ctx = TrainContext(model=model, tasks=list(TASKS), loaders=loaders, losses=loss_fns, fixed=fixed, device=device,
                       evaluate=lambda ts: {}, progress=lambda n, d: range(n), seed=0)
    batches = {t: (lambda b: (ctx._images(b[0]), to_device(b[1], device)))(next(iter(loaders[t]))) for t in TASKS}
    return ctx, batches


def time_steps(step: Callable[[int], None], args, device) -> list[float]:
    """Seconds of each of ``args.steps`` calls of ``step(i)`` after ``args.warmup`` untimed ones
    (CUDA synchronised)."""
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times[args.warmup:]
