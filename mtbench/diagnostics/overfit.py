"""``overfit-one-batch``: can the cell's model and losses fit one fixed batch at all?

Before the real run, a copy of the freshly built model is trained on one fixed batch per
task (the first ``images`` of each train split, no shuffling) for ``steps`` AdamW steps at
a constant ``lr`` (suite ``checks``: 40 steps at 0.01 by default), the task losses summed
with equal weights (Karpathy, "A Recipe
for Training Neural Networks", 2019). The real run is untouched: the copy is discarded and
the random state is restored afterwards.

A loss with soft targets cannot reach 0, so progress is measured above its ``floor`` (see
:mod:`mtbench.losses`): a task passes when ``total - floor`` fell by at least ``drop``
(90%) of its initial value. The check in :mod:`mtbench.diagnostics.checks` turns the
record into a finding.
"""

from __future__ import annotations

import copy

import torch
from torch.utils.data import DataLoader

from mtbench.data.base import collate, to_device

DROP = 0.9


def _excess(comps: dict) -> float:
    floor = float(comps["floor"]) if "floor" in comps else 0.0
    return max(float(comps["total"]) - floor, 0.0)


def overfit_one_batch(model, losses: dict, train_sets: dict, device: torch.device, lr: float = 0.01,
                      steps: int = 40, images: int = 4) -> dict:
    """Train a copy of ``model`` on one batch per task.

    :return: ``{"steps", "images", "lr", "tasks": {task: {"initial", "final", "floor", "fraction_left"}}}``
        where ``initial``/``final`` are ``total - floor`` (never below 0) and ``fraction_left``
        is ``final / initial``.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        net = copy.deepcopy(model).train()
        batches = {}
        for task, ds in train_sets.items():
            imgs, tgts = next(iter(DataLoader(ds, batch_size=min(images, len(ds)), shuffle=False, collate_fn=collate)))
            batches[task] = (imgs.to(device), to_device(tgts, device))
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr)
        first: dict[str, dict] = {}
        last: dict[str, dict] = {}
        strides = net.strides
        for step in range(steps + 1):
            total = 0.0
            for task, (imgs, tgts) in batches.items():
                comps = losses[task](net(imgs)[task], tgts, stride=strides[task])
                if step == 0:
                    first[task] = {k: float(v.detach()) for k, v in comps.items()}
                last[task] = {k: float(v.detach()) for k, v in comps.items()}
                total = total + comps["total"]
            if step == steps:
                break
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
    tasks = {}
    for task in batches:
        init, fin = _excess(first[task]), _excess(last[task])
        tasks[task] = {"initial": init, "final": fin, "floor": last[task].get("floor", 0.0),
                       "fraction_left": fin / init if init > 0 else 0.0}
    return {"steps": steps, "images": images, "lr": lr, "tasks": tasks}

