"""The joint-training loop shared by ``equal``, ``gradnorm``, ``uncertainty``, ``dwa``, ``pcgrad``.

Each step draws one batch from every task's data, computes each task's loss only on its
own batch (an image carries labels only for its data set's task), lets the strategy turn
the per-task losses into gradients (:meth:`JointStrategy.backward`), checks the losses
(NaN/inf/divergence fail the cell) and steps the optimiser.
"""

from __future__ import annotations

import torch

from mtbench.strategies.base import StrategyReport, TrainContext


def flat_grad(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Gradient of ``loss`` w.r.t. ``params`` as one ``float32 (P,)`` vector (zeros where unused)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def mean_pairwise_cosine(grads: list[torch.Tensor]) -> float | None:
    """Mean cosine similarity over task pairs of flattened gradients (negative = conflict)."""
    sims = [torch.nn.functional.cosine_similarity(grads[i], grads[j], dim=0)
            for i in range(len(grads)) for j in range(i + 1, len(grads))]
    return float(torch.stack(sims).mean()) if sims else None


class JointStrategy:
    """Base class: subclasses implement :meth:`backward` (and may keep state in :meth:`setup`).

    Every ``conflict_every`` steps the cosine between task gradients on the shared
    parameters is recorded (``extra.grad_cosine``) for the gradient-conflict diagnostic
    (not for a model without shared parameters, e.g. ``dual-backbone``);
    strategies that compute per-task gradients anyway (``needs_per_task_grads``) record it
    themselves at every step.
    """

    needs_per_task_grads = False
    conflict_every = 10

    def setup(self, ctx: TrainContext) -> None:
        """Called once before the first step."""

    def backward(self, ctx: TrainContext, losses: dict[str, torch.Tensor], step: int) -> None:
        """Accumulate gradients into the model's ``.grad`` from per-task scalar ``losses``."""
        raise NotImplementedError

    def extra(self) -> dict:
        """Strategy-specific records stored with the result (e.g. ``task_weights`` per step)."""
        return {}

    def probe_parameters(self, ctx: TrainContext, step: int, num_tasks: int) -> list[torch.nn.Parameter]:
        """The shared parameters to measure gradient conflict on at ``step``; [] = no probe
        (not a probe step, one task, or a model that shares nothing, e.g. dual-backbone)."""
        if step % self.conflict_every or num_tasks < 2:
            return []
        return ctx.model.shared_parameters()

    def train_step(self, ctx: TrainContext, batches: dict, step: int) -> dict[str, dict[str, torch.Tensor]]:
        parts = {t: ctx.task_loss(t, batch) for t, batch in batches.items()}
        shared = [] if self.needs_per_task_grads else self.probe_parameters(ctx, step, len(parts))
        if shared:
            self._log_cosine([flat_grad(p["total"], shared) for p in parts.values()])
        self.backward(ctx, {t: p["total"] for t, p in parts.items()}, step)
        return parts

    def _log_cosine(self, grads: list[torch.Tensor]) -> None:
        cos = mean_pairwise_cosine(grads)
        if cos is not None:
            self.__dict__.setdefault("grad_cosine", []).append(cos)

    def report_extra(self) -> dict:
        out = self.extra()
        if "grad_cosine" not in out and getattr(self, "grad_cosine", None):
            out["grad_cosine"] = self.grad_cosine
        return out

    def fit(self, ctx: TrainContext) -> StrategyReport:
        self.setup(ctx)
        total = ctx.steps(ctx.tasks)
        opt, sched = ctx.make_optimizer(total)
        streams = {t: ctx.batches(t) for t in ctx.tasks}
        ctx.model.train()
        for step in ctx.progress(total, "joint"):
            opt.zero_grad(set_to_none=True)
            parts = self.train_step(ctx, {t: next(streams[t]) for t in ctx.tasks}, step)
            ctx.record(step, "joint", parts, opt)
            ctx.step(opt, sched)
        return StrategyReport(extra=self.report_extra())
