"""``sequential``: tasks trained one after another (continual learning without mitigation).

Stages follow ``order`` (default seg -> det -> cls, the Unified-OneHead challenge's order);
each stage trains only its task, with a fresh optimiser, under the budget. After every
stage all tasks learned so far are evaluated on their val splits; forgetting is computed
from those per-stage scores (see :mod:`mtbench.metrics.forgetting`).
"""

from __future__ import annotations

from mtbench.errors import SuiteError
from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.base import StrategyReport, TrainContext

DEFAULT_ORDER = ("seg", "det", "cls")


class Sequential:
    """Task-after-task training.

    :param order: task order; must name every task of the suite exactly once.
    """

    needs_per_task_grads = False

    def __init__(self, order: list[str] | None = None):
        self.order = list(order) if order else None

    def fit(self, ctx: TrainContext) -> StrategyReport:
        order = self.order or [t for t in DEFAULT_ORDER if t in ctx.tasks]
        if sorted(order) != sorted(ctx.tasks):
            raise SuiteError(f"sequential order {order} must list each of the suite's tasks {ctx.tasks} once")
        stages = []
        for k, task in enumerate(order):
            total = ctx.steps([task])
            opt, sched = ctx.make_optimizer(total)
            stream = ctx.batches(task)
            ctx.model.train()
            for step in ctx.progress(total, f"stage {k + 1}/{len(order)} {task}"):
                opt.zero_grad(set_to_none=True)
                comps = ctx.task_loss(task, next(stream))
                comps["total"].backward()
                ctx.record(step, task, {task: comps}, opt)
                ctx.step(opt, sched)
            stages.append({"task": task, "metrics": ctx.evaluate(order[: k + 1])})
        return StrategyReport(stages=stages)


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "sequential", Sequential, "one task after another; per-stage eval gives forgetting")]
