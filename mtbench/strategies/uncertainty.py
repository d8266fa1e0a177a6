"""``uncertainty``: homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

One learnable ``s_i = log sigma_i^2`` per task (start 0); the loss is
``sum_i 0.5 * exp(-s_i) * L_i + 0.5 * s_i`` (the form LibMTL uses for every task type).
The ``s_i`` have their own Adam at the suite's learning rate; ``exp(-s_i)`` per step is
stored as ``extra.task_weights``.
"""

from __future__ import annotations

import torch

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.joint import JointStrategy


class Uncertainty(JointStrategy):
    """Uncertainty-weighted joint training.

    :param lr: learning rate of the log-variances (default: the suite's).
    """

    def __init__(self, lr: float | None = None):
        self.lr = lr
        self.trajectory: list[dict[str, float]] = []

    def setup(self, ctx):
        self.tasks = list(ctx.tasks)
        self.log_var = torch.zeros(len(self.tasks), device=ctx.device, dtype=ctx.dtype, requires_grad=True)
        self.opt = torch.optim.Adam([self.log_var], lr=self.lr or ctx.fixed["optimizer"]["lr"])

    def backward(self, ctx, losses, step):
        L = torch.stack([losses[t] for t in self.tasks])
        self.opt.zero_grad(set_to_none=True)
        (0.5 * torch.exp(-self.log_var) * L + 0.5 * self.log_var).sum().backward()
        self.opt.step()
        self.trajectory.append(dict(zip(self.tasks, torch.exp(-self.log_var.detach()).tolist())))

    def extra(self):
        return {"task_weights": self.trajectory}


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "uncertainty", Uncertainty, "uncertainty weighting (Kendall et al., CVPR 2018)")]
