"""``dwa``: Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, "MTAN").

``w_i(e) = T * exp(r_i(e-1) / temp) / sum_j exp(r_j(e-1) / temp)`` with
``r_i(e-1) = Lbar_i(e-1) / Lbar_i(e-2)``, the ratio of the task's mean loss over the two
previous epochs; ``w_i = 1`` for the first two epochs. An epoch is the number of steps
that covers the largest task's train split once. ``extra.task_weights`` holds the ``w_i``
that multiplied the losses at each step.
"""

from __future__ import annotations

import math

import torch

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.weighting import LossWeighting


class DWA(LossWeighting):
    """Dynamic Weight Average (Liu et al., CVPR 2019).

    :param temperature: softmax temperature (default 2, the paper's).
    """

    def __init__(self, temperature: float = 2.0):
        self.temperature = temperature

    def init_state(self, ctx):
        self.epoch_len = max(len(ctx.loaders[t]) for t in self.tasks)
        self.epoch_means: list[list[float]] = []
        self.running = [0.0] * len(self.tasks)
        self.weights = [1.0] * len(self.tasks)

    def scalarize(self, losses, step):
        return (torch.tensor(self.weights, device=losses.device, dtype=losses.dtype) * losses).sum()

    def backward(self, ctx, losses, step):
        super().backward(ctx, losses, step)
        self.running = [r + float(losses[t].detach()) for r, t in zip(self.running, self.tasks)]
        if (step + 1) % self.epoch_len == 0:
            self.epoch_means.append([r / self.epoch_len for r in self.running])
            self.running = [0.0] * len(self.tasks)
            if len(self.epoch_means) >= 2:
                prev, prev2 = self.epoch_means[-1], self.epoch_means[-2]
                ratios = [a / b if b > 0 else 1.0 for a, b in zip(prev, prev2)]
                exps = [math.exp(r / self.temperature) for r in ratios]
                self.weights = [len(self.tasks) * e / sum(exps) for e in exps]


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "dwa", DWA, "Dynamic Weight Average (Liu et al., CVPR 2019)")]
