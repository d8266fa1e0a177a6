"""``gradnorm``: GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018).

Learnable task weights ``w_i`` (start at 1). Each step, with ``G_i = ||grad_W (w_i L_i)||``
on the last shared layer ``W``, ``r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))`` (relative
inverse training rate), the weights minimise ``sum_i |G_i - mean(G) * r_i^alpha|`` (the
target treated as a constant) with their own Adam; then they are renormalised to sum to
the number of tasks. The network is updated with ``sum_i w_i L_i`` using the weights
before their update; those applied weights are stored per step (``extra.task_weights``).
"""

from __future__ import annotations

import torch

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.joint import JointStrategy, flat_grad, mean_pairwise_cosine


class GradNormBalancer:
    """The GradNorm weight update, independent of any model or data pipeline.

    :param num_tasks: number of tasks ``T``.
    :param alpha: asymmetry (paper: 0.12 for its toy, 1.5 on NYUv2).
    :param lr: Adam learning rate of the weights.
    :param device: device of the weights ``w`` (the task losses' device).
    :param dtype: dtype of ``w`` (the model's).
    """

    def __init__(self, num_tasks: int, alpha: float = 1.5, lr: float = 0.025,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        self.alpha = alpha
        self.w = torch.ones(num_tasks, device=device, dtype=dtype, requires_grad=True)
        self.opt = torch.optim.Adam([self.w], lr=lr)
        self.initial: torch.Tensor | None = None
        self.grad_cosine: list[float] = []

    def backward(self, losses: list[torch.Tensor], last_shared: list[torch.nn.Parameter]) -> torch.Tensor:
        """Back-propagate ``sum_i w_i L_i`` into the network and update the weights.

        :return: the weights ``(T,)`` that multiplied the losses in this step (before the update).
        """
        L = torch.stack(losses)
        if self.initial is None:
            self.initial = L.detach().clamp(min=1e-12)
        grads = [flat_grad(li, last_shared) for li in losses]
        cos = mean_pairwise_cosine(grads)
        if cos is not None:
            self.grad_cosine.append(cos)
        gnorm = torch.stack([g.norm() for g in grads]).detach()
        G = self.w * gnorm
        ratio = L.detach() / self.initial
        target = (G.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        self.opt.zero_grad(set_to_none=True)
        (G - target).abs().sum().backward()
        applied = self.w.detach().clone()
        (applied * L).sum().backward()
        self.opt.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-8)
            self.w.mul_(len(losses) / self.w.sum())
        return applied


class GradNorm(JointStrategy):
    """GradNorm joint training (Chen et al., ICML 2018, Algorithm 1; see module docstring).

    :param alpha: GradNorm's asymmetry alpha (default 1.5, the paper's NYUv2 value).
    :param weight_lr: Adam learning rate of the task weights (default 0.025).
    """

    needs_per_task_grads = True

    def __init__(self, alpha: float = 1.5, weight_lr: float = 0.025):
        self.alpha, self.weight_lr = alpha, weight_lr

    def setup(self, ctx):
        self.tasks = list(ctx.tasks)
        self.balancer = GradNormBalancer(len(self.tasks), self.alpha, self.weight_lr, ctx.device, ctx.dtype)
        self.last_shared = ctx.model.last_shared_parameters()

    def backward(self, ctx, losses, step):
        self.record_weights(self.tasks, self.balancer.backward([losses[t] for t in self.tasks], self.last_shared))

    def extra(self):
        return {"grad_cosine": self.balancer.grad_cosine}


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "gradnorm", GradNorm, "GradNorm (Chen et al., ICML 2018): learnable task weights")]
