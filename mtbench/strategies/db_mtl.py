"""``db-mtl``: Dual-Balancing Multi-Task Learning (Lin, Ye, Xu, Shi, Zhang, Kwok et al.,
"Dual-Balancing for Multi-Task Learning", arXiv:2308.12029, 2023).

Loss-scale balance: each task's loss enters as ``log(L_i + 1e-8)``. Gradient-magnitude
balance: per task, an exponential moving average of the gradient of that log-loss on the
shared parameters, ``h_i <- g_i + (beta / t^sigma) (h_i - g_i)`` (``t`` = step, from 1), and
the shared update ``d = sum_i (max_j ||h_j|| / ||h_i||) h_i`` (every task's term at the norm
of the largest). Task heads get the gradient of the sum of the log-losses. As LibMTL's
``DB_MTL`` (current release) with ``rep_grad=False``. ``extra.task_weights``: least-squares
effective weights of the raw task gradients in ``d`` (see :mod:`mtbench.strategies.aggregation`).
"""

from __future__ import annotations

import torch

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.aggregation import GradientAggregation


class DBMTL(GradientAggregation):
    """Dual-Balancing MTL (arXiv:2308.12029).

    :param beta: EMA factor of the task gradients (default 0.9, LibMTL's ``DB_beta``).
    :param beta_sigma: decay exponent of ``beta`` over steps (default 0, LibMTL's ``DB_beta_sigma``).
    """

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0):
        self.beta, self.beta_sigma = beta, beta_sigma

    def init_state(self, ctx):
        P = sum(p.numel() for p in self.shared)
        self.buffer = torch.zeros(len(self.tasks), P, device=ctx.device, dtype=ctx.dtype)

    def transform(self, losses):
        return torch.log(losses + 1e-8)

    def combine(self, J, step):
        self.buffer = J + self.beta / (step + 1) ** self.beta_sigma * (self.buffer - J)
        norms = self.buffer.norm(dim=1)
        return ((norms.max() / (norms + 1e-8)) @ self.buffer), None


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "db-mtl", DBMTL, "Dual-Balancing MTL (Lin et al., arXiv:2308.12029); beta=0.9")]
