"""``pcgrad``: gradient surgery (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020).

Per task ``i``, its gradient ``g_i`` on the shared parameters is projected onto the normal
plane of every other task's gradient ``g_j`` it conflicts with (``g_i . g_j < 0``), the
others visited in random order: ``g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j``. The shared
parameters get the sum of projected gradients; task-specific parameters the plain sum.
The mean pairwise cosine of the raw task gradients is stored (``extra.grad_cosine``).
"""

from __future__ import annotations

import torch

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.joint import JointStrategy, flat_grad, mean_pairwise_cosine


def project_conflicting(grads: list[torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad's combined gradient from per-task flat gradients ``float32 (P,)``."""
    projected = []
    for i, g in enumerate(grads):
        g = g.clone()
        for j in torch.randperm(len(grads), generator=generator).tolist():
            if j == i:
                continue
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g -= dot / grads[j].pow(2).sum().clamp(min=1e-20) * grads[j]
        projected.append(g)
    return torch.stack(projected).sum(0)


class PCGrad(JointStrategy):
    """PCGrad joint training (see module docstring)."""

    needs_per_task_grads = True

    def __init__(self):
        self.cosines: list[float] = []

    def setup(self, ctx):
        self.tasks = list(ctx.tasks)
        self.shared = ctx.model.shared_parameters()
        if not self.shared:
            raise ValueError(f"pcgrad needs shared parameters to project; {type(ctx.model).__name__} shares none")
        ids = set(map(id, self.shared))
        self.specific = [p for p in ctx.model.parameters() if p.requires_grad and id(p) not in ids]

    def backward(self, ctx, losses, step):
        L = [losses[t] for t in self.tasks]
        grads = [flat_grad(li, self.shared) for li in L]
        cos = mean_pairwise_cosine(grads)
        if cos is not None:
            self.cosines.append(cos)
        combined = project_conflicting(grads)
        offset = 0
        for p in self.shared:
            n = p.numel()
            p.grad = combined[offset:offset + n].view_as(p).clone()
            offset += n
        if self.specific:
            total = sum(L)
            for p, g in zip(self.specific, torch.autograd.grad(total, self.specific, allow_unused=True)):
                p.grad = g

    def extra(self):
        return {"grad_cosine": self.cosines}


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "pcgrad", PCGrad, "PCGrad gradient surgery (Yu et al., NeurIPS 2020)")]
