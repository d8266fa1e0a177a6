"""``pcgrad``: gradient surgery (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020).

Per task ``i``, its gradient ``g_i`` on the shared parameters is projected onto the normal
plane of every other task's gradient ``g_j`` it conflicts with (``g_i . g_j < 0``), the
others visited in random order (drawn from a generator seeded from the cell's seed):
``g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j``. The shared parameters get the sum of projected
gradients; task-specific parameters the plain sum (see :mod:`mtbench.strategies.aggregation`).
``extra.task_weights``: the effective weight of each raw ``g_j`` in that sum
(``1 - sum of the projection coefficients on g_j``, as LibMTL returns).
"""

from __future__ import annotations

import torch

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.aggregation import GradientAggregation


def project_conflicting(grads: list[torch.Tensor] | torch.Tensor,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad's combined gradient ``(P,)`` from per-task flat gradients ``(T, P)``."""
    return _pcgrad(grads, generator)[0]


def _pcgrad(grads, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Combined gradient ``(P,)`` and the effective weight ``(T,)`` of each raw gradient in it."""
    T = len(grads)
    weights = torch.ones(T, dtype=grads[0].dtype, device=grads[0].device)
    projected = []
    for i, g in enumerate(grads):
        g = g.clone()
        for j in torch.randperm(T, generator=generator).tolist():
            if j == i:
                continue
            dot = torch.dot(g, grads[j])
            if dot < 0:
                coef = dot / grads[j].pow(2).sum().clamp(min=1e-20)
                g -= coef * grads[j]
                weights[j] -= coef
        projected.append(g)
    return torch.stack(projected).sum(0), weights


class PCGrad(GradientAggregation):
    """PCGrad (Yu et al., NeurIPS 2020); no parameters. The projection order is drawn from a
    CPU generator seeded from the cell's seed."""

    def combine(self, J, step):
        return _pcgrad(J, self.cpu_gen)


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "pcgrad", PCGrad, "PCGrad gradient surgery (Yu et al., NeurIPS 2020)")]
