"""``equal``: joint training with fixed task weights (the standard multi-task baseline).

Each step draws one batch from every task's data in turn, computes that task's loss on
it (an image carries labels only for the task its data set serves), and takes one
optimiser step on the weighted sum. Gradients are accumulated task by task, which gives
the same update as back-propagating the sum with less memory.
"""

from __future__ import annotations

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.base import StrategyReport, TrainContext


class Equal:
    """Fixed-weight joint training.

    :param weights: task -> loss weight (default 1 for every task).
    """

    needs_per_task_grads = False

    def __init__(self, weights: dict[str, float] | None = None):
        self.weights = weights or {}

    def fit(self, ctx: TrainContext) -> StrategyReport:
        total = ctx.steps(ctx.tasks)
        opt, sched = ctx.make_optimizer(total)
        streams = {t: ctx.batches(t) for t in ctx.tasks}
        ctx.model.train()
        for step in ctx.progress(total, "joint"):
            opt.zero_grad(set_to_none=True)
            parts = {}
            for t in ctx.tasks:
                comps = ctx.task_loss(t, next(streams[t]))
                (self.weights.get(t, 1.0) * comps["total"]).backward()
                parts[t] = comps
            ctx.record(step, "joint", parts, opt)
            ctx.step(opt, sched)
        return StrategyReport()


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "equal", Equal, "joint training, fixed task weights, one batch per task per step")]
