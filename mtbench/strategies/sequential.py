"""``sequential``: tasks trained one after another (continual learning), with optional
forgetting mitigations (LwF, EWC, replay, freezing; see :mod:`mtbench.strategies.continual`).

Stages follow ``order`` (default seg -> det -> cls, the Unified-OneHead challenge's order);
each stage trains its task, with a fresh optimiser and schedule (its rate ``fixed.optimizer.lr``
times the stage's ``stage_lr_mult``, default 1), under the budget. After every stage
all tasks learned so far are evaluated on their val splits; forgetting and BWT are
computed from those per-stage scores (see :mod:`mtbench.metrics.forgetting`).
"""

from __future__ import annotations

from mtbench.errors import SuiteError, did_you_mean
from mtbench.plugins import Spec, call_problems, hookimpl
from mtbench.strategies.base import StrategyReport, TrainContext
from mtbench.strategies.continual import MITIGATIONS, build_mitigations

DEFAULT_ORDER = ("seg", "det", "cls")


def resolved_order(order: list[str] | None, tasks: list[str]) -> list[str]:
    """``order`` as given, or (None) :data:`DEFAULT_ORDER`'s tasks that the suite has."""
    return list(order) if order else [t for t in DEFAULT_ORDER if t in tasks]


def order_problem(order: list[str] | None, tasks: list[str]) -> str | None:
    """Why ``order`` (None: :data:`DEFAULT_ORDER`'s tasks of the suite) is not an order of
    ``tasks`` (each exactly once), or None."""
    resolved = resolved_order(order, tasks)
    if sorted(resolved) == sorted(tasks):
        return None
    unknown = [t for t in resolved if t not in tasks]
    hint = f" Unknown: {', '.join(map(repr, unknown))}.{did_you_mean(str(unknown[0]), list(tasks))}" if unknown else ""
    return f"sequential order {resolved} must list each of the suite's tasks {list(tasks)} once.{hint}"


class Sequential:
    """Task-after-task training.

    :param order: task order; must name every task of the suite exactly once.
    :param lwf: ``{temperature, weight}`` to distil earlier tasks' outputs (LwF), or null.
    :param ewc: ``{weight, batches}`` for Elastic Weight Consolidation, or null.
    :param replay: ``{batches, weight}`` for a replay buffer of earlier tasks, or null.
    :param freeze: parameter-name prefixes frozen after the first stage (e.g. ``[backbone]``).
    :param stage_lr_mult: one learning-rate multiplier per stage, in ``order`` (e.g. ``[1, 0.3,
        0.3]``: later stages move the shared weights less), or null (1 for every stage).
    :raises SuiteError: (at validation) ``order`` not the suite's tasks, ``stage_lr_mult`` not one
        positive number per stage, a mitigation's options not its parameters.
    """

    needs_per_task_grads = False
    grad_scaling = True  # every backward through ctx.backward (EWC's Fisher unscaled): fp16 allowed

    def __init__(self, order: list[str] | None = None, lwf: dict | None = None, ewc: dict | None = None,
                 replay: dict | None = None, freeze: list[str] | None = None,
                 stage_lr_mult: list[float] | None = None):
        self.order = list(order) if order else None
        self.options = (lwf, ewc, replay, freeze)
        self.stage_lr_mult = list(stage_lr_mult) if stage_lr_mult else None

    @staticmethod
    def param_problems(tasks: list[str], order: list[str] | None = None,
                       stage_lr_mult: list[float] | None = None, **options) -> dict[str, str]:
        """The suite-time check of ``order``, of ``stage_lr_mult`` (one positive multiplier per
        stage) and of each mitigation's options against its class's signature, e.g. ``ewc:
        {weight: 1.0e4}`` (a string in YAML 1.1) (:meth:`mtbench.plugins.Registry.param_errors`)."""
        problem = order_problem(order, tasks)
        problems = {"order": problem} if problem else {}
        if stage_lr_mult and (len(stage_lr_mult) != len(tasks) or min(stage_lr_mult) <= 0):
            problems["stage_lr_mult"] = (f"sequential's stage_lr_mult {list(stage_lr_mult)} must give one positive "
                                         f"multiplier per stage ({len(tasks)} stages: {resolved_order(order, tasks)})")
        for name, cls in MITIGATIONS.items():
            given = options.get(name)
            if isinstance(given, dict):
                problems.update({f"{name}.{k}": msg for k, msg in
                                 call_problems(cls, given, f"sequential's {name}").items()})
        return problems

    def fit(self, ctx: TrainContext) -> StrategyReport:
        problem = order_problem(self.order, ctx.tasks)
        if problem:
            raise SuiteError(problem)
        order = resolved_order(self.order, ctx.tasks)
        lr_mults = self.stage_lr_mult or [1.0] * len(order)
        self.mitigations = mitigations = build_mitigations(*self.options)
        saved = ctx.saved_extra() or {"stages": [], "stage_index": 0}  # a checkpoint mid-stage: go there
        stages = list(saved["stages"])
        if saved["stage_index"] > 0 and "freeze" in mitigations:  # frozen since stage 1: before this stage's optimiser
            mitigations["freeze"].after_stage(ctx, order[0])
        for k, task in enumerate(order):
            if k < saved["stage_index"]:
                continue
            total = ctx.steps([task])
            opt, sched = ctx.make_optimizer(total, lr_mult=lr_mults[k])
            stream = ctx.batches(task)
            ctx.model.train()
            stage = f"stage {k + 1}/{len(order)} {task}"
            first = ctx.resume(stage, opt, sched, self)
            for step in ctx.progress(total, stage):
                if step < first:
                    continue
                opt.zero_grad(set_to_none=True)
                images, targets = next(stream)
                outputs = ctx.forward(images)
                comps = dict(ctx.task_loss(task, (images, targets), outputs))
                for name, m in mitigations.items():
                    with ctx.autocast():
                        extra = m.loss(ctx, images, outputs)
                    if extra is not None:
                        comps[name] = extra
                        comps["total"] = comps["total"] + extra
                ctx.backward(comps["total"])
                ctx.record(step, task, {task: comps}, opt)
                ctx.step(opt, sched)
                ctx.checkpoint(stage, step, opt, sched, self, live=[task], extra={"stages": stages, "stage_index": k})
            stages.append({"task": task, "metrics": ctx.evaluate(order[: k + 1]), "samples": ctx.evaluation_samples()})
            if k < len(order) - 1:
                for m in mitigations.values():
                    m.after_stage(ctx, task)
        return StrategyReport(stages=stages, extra={"mitigations": sorted(mitigations)})


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "sequential", Sequential,
                 "one task after another (+ LwF/EWC/replay/freeze); per-stage eval gives forgetting and BWT")]
