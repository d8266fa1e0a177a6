"""``uncertainty``: homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

One learnable ``s_i = log sigma_i^2`` per task (start ``init``, default 0); the loss is
``sum_i 0.5 * exp(-s_i) * L_i + 0.5 * s_i`` (the form LibMTL uses for every task type; LibMTL
1.1.5 starts at ``s_i = -0.5``). The ``s_i`` have their own Adam at the suite's learning rate
(or ``lr``). ``extra.task_weights`` holds, per step, ``0.5 * exp(-s_i)``: the weight that
multiplied ``L_i`` at that step (before the ``s_i`` update).
"""

from __future__ import annotations

import torch

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.weighting import LossWeighting


class Uncertainty(LossWeighting):
    """Uncertainty-weighted joint training (Kendall et al., CVPR 2018).

    :param lr: learning rate of the log-variances (default: the suite's).
    :param init: initial log-variance ``s_i`` of every task (default 0; LibMTL: -0.5).
    """

    def __init__(self, lr: float | None = None, init: float = 0.0):
        self.weight_lr, self.init = lr, init

    def init_state(self, ctx):
        self.log_var = torch.full((len(self.tasks),), float(self.init), device=ctx.device, dtype=ctx.dtype,
                                  requires_grad=True)

    def own_parameters(self):
        return [self.log_var]

    def scalarize(self, losses, step):
        return (0.5 * torch.exp(-self.log_var) * losses + 0.5 * self.log_var).sum()


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "uncertainty", Uncertainty, "uncertainty weighting (Kendall et al., CVPR 2018)")]
