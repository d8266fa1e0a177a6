"""Gradient aggregation: strategies that combine the tasks' gradients on the shared parameters.

Each step the Jacobian ``J`` ``(T, P)`` of the task losses with respect to the model's shared
parameters (:meth:`MultiTaskModel.shared_parameters`) is formed row by row; the strategy's
:meth:`GradientAggregation.combine` turns it into one update ``d`` ``(P,)`` for the shared
parameters. Every other parameter (the task heads) gets the gradient of the sum of the
losses: a head gets the gradient of its own task's loss, as torchjd's ``mtl_backward``
trains heads. (mtbench's tasks see different images in a step, so there is no single
shared feature tensor: the Jacobian is taken on the shared parameters, as LibMTL does with
``rep_grad=False``.)

``extra.task_weights`` stores per step the effective weight of each task's gradient in
``d``: the weights the method applied when it forms ``d = w @ J`` (UPGrad, MGDA, PCGrad...),
else the least-squares ``w`` with ``J^T w ~ d`` (GradDrop, ConFIG; exact whenever ``d`` lies
in the span of the task gradients). The mean pairwise cosine of the raw task gradients is
stored as ``extra.grad_cosine``.
"""

from __future__ import annotations

import torch

from mtbench.strategies.joint import JointStrategy, flat_grad, mean_pairwise_cosine


def effective_weights(J: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Least-squares weights ``w`` ``(T,)`` with ``J^T w ~ d`` (``J``: ``(T, P)``, ``d``: ``(P,)``),
    the minimum-norm solution when the task gradients are linearly dependent."""
    return torch.linalg.pinv(J @ J.T) @ (J @ d)


class GradientAggregation(JointStrategy):
    """Base class: subclasses implement :meth:`combine` (and may keep state in :meth:`init_state`).

    ``self.cpu_gen`` / ``self.device_gen`` are generators seeded from the cell's seed, for
    every random draw the method makes.
    """

    needs_per_task_grads = True

    def setup(self, ctx):
        self.tasks = list(ctx.tasks)
        self.shared = ctx.model.shared_parameters()
        if not self.shared:
            raise ValueError(f"{type(self).__name__} combines gradients of shared parameters; "
                             f"{type(ctx.model).__name__} shares none")
        ids = set(map(id, self.shared))
        self.specific = [p for p in ctx.model.parameters() if p.requires_grad and id(p) not in ids]
        self.cpu_gen = ctx.generator(device=torch.device("cpu"))
        self.device_gen = ctx.generator()
        self.cosines: list[float] = []
        self.init_state(ctx)

    def init_state(self, ctx) -> None:
        """Create the method's state on ``ctx.device`` / ``ctx.dtype``."""

    def transform(self, losses: torch.Tensor) -> torch.Tensor:
        """Element-wise transform of the losses ``(T,)`` before differentiation (DB-MTL: log)."""
        return losses

    def combine(self, J: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The shared update ``d`` ``(P,)`` from ``J`` ``(T, P)``, and the weights ``(T,)`` with
        ``d = w @ J`` when the method forms it so (else ``None``: least squares is recorded)."""
        raise NotImplementedError

    def backward(self, ctx, losses, step):
        leaf = torch.stack([losses[t] for t in self.tasks]).detach().requires_grad_()
        with torch.enable_grad():
            (scale,) = torch.autograd.grad(self.transform(leaf).sum(), leaf)  # d transform / dL
        # one root per task: differentiating an element of a stacked tensor would send zero
        # gradients back through every other task's graph (T times the backward cost)
        Lt = [self.transform(losses[t]) for t in self.tasks]
        J = torch.stack([flat_grad(li, self.shared) for li in Lt])
        cos = mean_pairwise_cosine(list(J))
        if cos is not None:
            self.cosines.append(cos)
        d, w = self.combine(J, step)
        offset = 0
        for p in self.shared:
            n = p.numel()
            p.grad = d[offset:offset + n].view_as(p).clone()
            offset += n
        if self.specific:
            for p, g in zip(self.specific, torch.autograd.grad(sum(Lt), self.specific, allow_unused=True)):
                p.grad = g
        self.record_weights(self.tasks, (effective_weights(J, d) if w is None else w) * scale)

    def extra(self):
        return {"grad_cosine": self.cosines}
