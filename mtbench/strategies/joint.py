"""The joint-training loop shared by every joint strategy (``equal``, the loss weightings, the
gradient-combining methods).

Each step draws one batch from every task's data, computes each task's loss only on its
own batch (an image carries labels only for its data set's task), lets the strategy turn
the per-task losses into gradients (:meth:`JointStrategy.backward`), checks the losses
(NaN/inf/divergence fail the cell) and steps the optimiser.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

from mtbench.strategies.base import StrategyReport, TrainContext


def flat_grad(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Gradient of ``loss`` w.r.t. ``params`` as one ``(P,)`` vector in their dtype (zeros where unused)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def mean_pairwise_cosine(grads: list[torch.Tensor]) -> float | None:
    """Mean cosine similarity over task pairs of flattened gradients (negative = conflict)."""
    sims = [torch.nn.functional.cosine_similarity(grads[i], grads[j], dim=0)
            for i in range(len(grads)) for j in range(i + 1, len(grads))]
    return float(torch.stack(sims).mean()) if sims else None


@contextmanager
def drawing_from(cpu: torch.Generator, device: torch.Generator | None = None):
    """Run a block whose random calls use torch's global generators (a library that takes no
    ``generator`` argument) on the streams of ``cpu`` (and ``device``, a CUDA generator) instead,
    then give the global generators back their state: the block's draws depend only on these
    generators (seeded from the cell's seed), and nothing else's draws depend on the block."""
    cuda = [device.device] if device is not None and device.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.set_rng_state(cpu.get_state())
        if cuda:
            torch.cuda.set_rng_state(device.get_state(), cuda[0])
        yield
        cpu.set_state(torch.get_rng_state())
        if cuda:
            device.set_state(torch.cuda.get_rng_state(cuda[0]))


class JointStrategy:
    """Base class: subclasses implement :meth:`backward` (and may keep state in :meth:`setup`).

    Every ``conflict_every`` steps the cosine between task gradients on the shared
    parameters is recorded (``extra.grad_cosine``) for the gradient-conflict diagnostic
    (not for a model without shared parameters, e.g. ``dual-backbone``);
    strategies that compute per-task gradients anyway (``needs_per_task_grads``) record it
    themselves at every step.

    Strategies whose task weights change record, with :meth:`record_weights`, the weight that
    multiplied each task's loss at that step (gradient-combining methods: the effective weight
    of each task's gradient in the combined one); they are stored as ``extra.task_weights``
    (one ``{task: weight}`` per step), read by the task-weight-collapse check and the plots.

    ``extra.step_s``: mean wall seconds per joint step (batches, forward, the strategy's
    backward, optimiser step): a method's cost per step, compared with ``equal``'s on the same
    cell by ``benchmarks/strategies_step.py`` and the strategies suite.
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

    def record_weights(self, tasks: list[str], weights: torch.Tensor) -> None:
        """Append this step's applied weights ``(T,)`` (in ``tasks`` order) to ``extra.task_weights``."""
        self.__dict__.setdefault("task_weights", []).append(dict(zip(tasks, weights.detach().tolist())))

    def after_step(self, ctx: TrainContext, batches: dict, step: int) -> None:
        """Called after the optimiser step with the step's batches (FAMO re-scores them)."""

    def _log_cosine(self, grads: list[torch.Tensor]) -> None:
        cos = mean_pairwise_cosine(grads)
        if cos is not None:
            self.__dict__.setdefault("grad_cosine", []).append(cos)

    def report_extra(self) -> dict:
        out = self.extra()
        for key in ("task_weights", "grad_cosine", "step_s"):
            if key not in out and getattr(self, key, None):
                out[key] = getattr(self, key)
        return out

    def fit(self, ctx: TrainContext) -> StrategyReport:
        self.setup(ctx)
        total = ctx.steps(ctx.tasks)
        opt, sched = ctx.make_optimizer(total)
        streams = {t: ctx.batches(t) for t in ctx.tasks}
        ctx.model.train()
        first = ctx.resume("joint", opt, sched, self)
        started = time.perf_counter()
        for step in ctx.progress(total, "joint"):
            if step < first:
                continue
            opt.zero_grad(set_to_none=True)
            batches = {t: next(streams[t]) for t in ctx.tasks}
            parts = self.train_step(ctx, batches, step)
            ctx.record(step, "joint", parts, opt)
            ctx.step(opt, sched)
            self.after_step(ctx, batches, step)
            ctx.checkpoint("joint", step, opt, sched, self, live=ctx.tasks)
        self.step_s = (time.perf_counter() - started) / max(1, total - first)
        return StrategyReport(extra=self.report_extra())
