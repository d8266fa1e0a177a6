"""Loss weighting: strategies that turn the task losses into one scalar ``S(L_1, ..., L_T)``.

The network gets ``grad S = sum_i (dS/dL_i) grad L_i``: :class:`LossWeighting` evaluates ``S``
on a detached copy of the losses, takes ``w_i = dS/dL_i`` there, and back-propagates
``sum_i w_i L_i`` into the network (the same gradient, by the chain rule). So the weight
that multiplied each loss at that step is known exactly and is what ``extra.task_weights``
stores: DWA's ``w_i``, uncertainty's ``0.5 exp(-s_i)``, GLS's ``S / (T L_i)``, FAMO's
``z_i / (c (L_i - b_i + eps))``, whatever form ``S`` takes. The strategy's own parameters
(log-variances, logits) get ``dS/dtheta`` and their own Adam step after the network's
gradient is formed, so the weights recorded are those applied, never the next step's.
"""

from __future__ import annotations

import torch

from mtbench.strategies.joint import JointStrategy


class LossWeighting(JointStrategy):
    """Base class: subclasses implement :meth:`scalarize` and may own learnable parameters.

    :meth:`setup` calls :meth:`init_state`; parameters listed by :meth:`own_parameters` get an
    Adam optimiser at ``self.weight_lr`` (default: the suite's learning rate).
    """

    grad_scaling = True  # the network's backward through ctx.backward; own parameters from unscaled S
    weight_lr: float | None = None
    weight_decay: float = 0.0

    def setup(self, ctx):
        self.tasks = list(ctx.tasks)
        self.init_state(ctx)
        own = self.own_parameters()
        self.opt = torch.optim.Adam(own, lr=self.weight_lr or ctx.fixed["optimizer"]["lr"],
                                    weight_decay=self.weight_decay) if own else None

    def init_state(self, ctx) -> None:
        """Create the strategy's state on ``ctx.device`` / ``ctx.dtype``."""

    def own_parameters(self) -> list[torch.Tensor]:
        """Learnable tensors of the weighting itself (stepped by their own Adam)."""
        return []

    def scalarize(self, losses: torch.Tensor, step: int) -> torch.Tensor:
        """``S`` of the task losses ``(T,)`` (tasks in suite order) as a scalar tensor."""
        raise NotImplementedError

    def backward(self, ctx, losses, step):
        L = torch.stack([losses[t] for t in self.tasks])
        leaf = L.detach().requires_grad_()
        own = self.own_parameters()
        with torch.enable_grad():
            S = self.scalarize(leaf, step)
        w, *own_grads = torch.autograd.grad(S, [leaf, *own], allow_unused=True)
        ctx.backward((w * L).sum())
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)
            for p, g in zip(own, own_grads):
                p.grad = g
            self.opt.step()
        self.record_weights(self.tasks, w)
