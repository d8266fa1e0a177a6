"""``single-task``: the reference every multi-task cell is compared with.

Trains one task alone (``task``) under the same budget, data and optimiser as the joint
strategies, and evaluates only that task. A suite lists one ``single-task`` entry per
task; the report then gives every multi-task cell its delta-m against the single-task
cells with the same architecture, loss, level and seed (see :mod:`mtbench.metrics.delta_m`).
"""

from __future__ import annotations

from mtbench.errors import SuiteError
from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.base import StrategyReport, TrainContext


class SingleTask:
    """Train only ``task``.

    :param task: ``det``, ``seg`` or ``cls`` (one of the suite's tasks).
    """

    needs_per_task_grads = False
    grad_scaling = True  # every backward through ctx.backward: fp16 allowed

    def __init__(self, task: str):
        self.task = task

    @staticmethod
    def param_problems(tasks: list[str], task: str, **_) -> dict[str, str]:
        """The suite-time check of ``task`` (:meth:`mtbench.plugins.Registry.param_errors`)."""
        return {} if task in tasks else {"task": f"single-task: task {task!r} is not one of the suite's tasks "
                                                 f"{list(tasks)}"}

    def trained_tasks(self, tasks: list[str]) -> list[str]:
        """The tasks this strategy trains (the overfit-one-batch check looks only at those)."""
        return [self.task]

    def fit(self, ctx: TrainContext) -> StrategyReport:
        problem = self.param_problems(ctx.tasks, self.task).get("task")
        if problem:
            raise SuiteError(problem)
        total = ctx.steps([self.task])
        opt, sched = ctx.make_optimizer(total)
        stream = ctx.batches(self.task)
        ctx.model.train()
        first = ctx.resume(f"single {self.task}", opt, sched, self)
        for step in ctx.progress(total, f"single {self.task}"):
            if step < first:
                continue
            opt.zero_grad(set_to_none=True)
            comps = ctx.task_loss(self.task, next(stream))
            ctx.backward(comps["total"])
            ctx.record(step, self.task, {self.task: comps}, opt)
            ctx.step(opt, sched)
            ctx.checkpoint(f"single {self.task}", step, opt, sched, self, live=[self.task])
        return StrategyReport(eval_tasks=[self.task])


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "single-task", SingleTask, "one task alone under the same budget (delta-m reference)")]
