"""``overfit-one-batch``: can the cell's model and losses fit a few fixed images, using them?

Before the real run, a copy of the freshly built model is trained on one fixed batch per
task (``images`` images with pairwise different targets, the first such of each train
split, no shuffling; default 2) for ``steps`` AdamW steps at a constant ``lr`` (0.01), the
task losses summed with equal weights (Karpathy, "A Recipe for Training Neural Networks",
2019). The tasks' batches go through the model together, one forward pass per step, each
task's loss taken on its own images (a multi-task model computes every head anyway). The
real run is untouched: the copy is discarded and the random state restored.

Two numbers per task come out, both measured above the loss's soft-target ``floor`` (see
:mod:`mtbench.losses`; a loss with soft targets cannot reach 0):

- ``fraction_left`` = final / initial loss on the batch: how much of it the copy fitted (a
  model that cannot learn - frozen, detached, lr 0 - stays at 1);
- ``input_gain`` = 1 - loss on the batch / loss on the *same batch with its images rolled
  by one* (image i paired with the targets of image i+1). Rolling keeps the batch's
  statistics (BatchNorm sees the same set of images; both are scored in one forward pass
  of the batch and its roll) and breaks only the pairing, so the rolled loss is the best an
  input-free fit of these targets does: a model that ignores its input scores exactly 0
  (its outputs do not depend on the image) however well it fits, a model that learned from
  the pixels scores above 0 from the first steps (measured on the healthy cells of
  ``suites/compare.yaml`` and ``suites/regression.yaml``, all tasks in one forward pass per step:
  >= 0.09 after 4 steps, the randomly initialised mobilenetv3_small_100 at P4 lowest; 0.16-0.98
  for the ImageNet-initialised Lite0).

Cost (:func:`budget_steps`): at small batch sizes a step costs about the same whatever the
number of images (per-call overhead dominates on CPU), so the check is bounded in steps:
``share`` (10 %) of the budget's steps per trained task, at least ``MIN_STEPS`` (4, where
the healthy cells above already pass with a margin) and at most the suite's
``overfit_steps``. Its wall time and its share of the cell's training time are stored
(``overfit.seconds``, ``overfit.share_of_train``). The check in
:mod:`mtbench.diagnostics.checks` turns the record into findings.
"""

from __future__ import annotations

import copy
import math
import time

import torch

from mtbench.data.base import collate, to_device
from mtbench.losses import call_loss

MIN_STEPS = 4       # the fewest steps after which healthy cells show both signals with a margin
SHARE = 0.1         # default budget of the check, as a share of the budget's steps per trained task


def budget_steps(steps_per_task: float, share: float = SHARE, max_steps: int = 40) -> int:
    """Steps of the check: ``min(max_steps, max(MIN_STEPS, floor(share * steps_per_task)))``.

    :param steps_per_task: the cell's budget in optimiser steps, averaged over its trained tasks.
    """
    return min(max_steps, max(MIN_STEPS, math.floor(share * steps_per_task)))


def _take(raw, sl: slice):
    """The images ``sl`` of a raw model output (a tensor, or a list/tuple/dict of them)."""
    if isinstance(raw, torch.Tensor):
        return raw[sl]
    if isinstance(raw, dict):
        return {k: _take(v, sl) for k, v in raw.items()}
    return type(raw)(_take(v, sl) for v in raw)


def _spans(sizes: list[int]) -> list[slice]:
    """Consecutive slices of lengths ``sizes`` (each task's images in the concatenated batch)."""
    ends = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    return [slice(e - n, e) for e, n in zip(ends, sizes)]


def _excess(comps: dict) -> float:
    floor = float(comps["floor"]) if "floor" in comps else 0.0
    return max(float(comps["total"]) - floor, 0.0)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def fixed_batch(ds, images: int, scan: int = 64):
    """The first ``images`` samples of ``ds`` whose targets differ pairwise (scanning at most
    ``scan`` samples; fewer when the split has no more distinct targets), collated."""
    chosen = []
    for i in range(min(len(ds), scan)):
        sample = ds[i]
        if all(not _same(sample[1], c[1]) for c in chosen):
            chosen.append(sample)
        if len(chosen) == images:
            break
    return collate(chosen)


def overfit_one_batch(model, losses: dict, train_sets: dict, device: torch.device, lr: float = 0.01,
                      steps: int = 10, images: int = 2) -> dict:
    """Train a copy of ``model`` on one fixed batch per task and measure fit and input use.

    :param losses: task -> loss module (``loss(raw, targets, stride=...)`` -> components).
    :param train_sets: task -> train ``TaskDataset`` (only the tasks the cell trains).
    :return: ``{"steps", "images", "lr", "seconds", "tasks": {task: {"initial", "final",
        "rolled", "floor", "fraction_left", "input_gain", "images"}}}``: ``initial``/``final``/
        ``rolled`` are ``total - floor`` (never below 0) before training, after it, and after it
        on the rolled batch; ``fraction_left = final / initial``; ``input_gain = 1 - final /
        rolled`` (0 when the batch has a single distinct target: nothing to tell apart);
        ``seconds`` is the wall time of the whole check.
    """
    t0 = time.perf_counter()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        net = copy.deepcopy(model).train()
        batches = {}
        for task, ds in train_sets.items():
            imgs, tgts = fixed_batch(ds, images)
            batches[task] = (imgs.to(device), to_device(tgts, device))
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr)
        strides = net.strides
        order = list(batches)
        spans = _spans([len(batches[t][0]) for t in order])
        x = torch.cat([batches[t][0] for t in order])  # one forward per step serves every task
        first: dict[str, dict] = {}
        for step in range(steps):
            out = net(x)
            total = 0.0
            for task, sl in zip(order, spans):
                comps = call_loss(losses[task], _take(out[task], sl), batches[task][1], strides[task], batches[task][0])
                if step == 0:
                    first[task] = {k: float(v.detach()) for k, v in comps.items()}
                total = total + comps["total"]
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
        tasks = {}
        with torch.no_grad():  # the batch and its roll in one pass: the same BatchNorm statistics
            out = net(torch.cat([x] + [batches[t][0].roll(1, 0) for t in order]))
            offset = len(x)
            for task, sl in zip(order, spans):
                tgts, n = batches[task][1], sl.stop - sl.start
                rolled_sl = slice(offset + sl.start, offset + sl.stop)
                imgs = batches[task][0]  # the rolled outputs are scored against the unrolled batch's targets
                last = {k: float(v) for k, v in call_loss(losses[task], _take(out[task], sl), tgts, strides[task],
                                                          imgs).items()}
                rolled = {k: float(v) for k, v in
                          call_loss(losses[task], _take(out[task], rolled_sl), tgts, strides[task], imgs).items()}
                init, fin, rol = _excess(first[task]), _excess(last), _excess(rolled)
                tasks[task] = {"initial": init, "final": fin, "rolled": rol, "floor": last.get("floor", 0.0),
                               "fraction_left": fin / init if init > 0 else 0.0,
                               "input_gain": 1 - fin / rol if rol > 0 and n > 1 else 0.0, "images": n}
    return {"steps": steps, "images": images, "lr": lr, "seconds": time.perf_counter() - t0, "tasks": tasks}
