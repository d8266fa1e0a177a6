"""``equal``: joint training with fixed task weights (the standard multi-task baseline).

Each step draws one batch from every task's data in turn, computes that task's loss on
it, and takes one optimiser step on the weighted sum. Gradients are accumulated task by
task, which gives the same update as back-propagating the sum with a third of the memory.
"""

from __future__ import annotations

import math

import torch

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.joint import JointStrategy


class Equal(JointStrategy):
    """Fixed-weight joint training.

    :param weights: task -> loss weight (default 1 for every task).
    """

    grad_scaling = True  # every backward through ctx.backward: fp16 allowed

    def __init__(self, weights: dict[str, float] | None = None):
        self.weights = weights or {}

    @staticmethod
    def param_problems(tasks: list[str], weights: dict[str, float] | None = None, **_) -> dict[str, str]:
        """The suite-time check (:meth:`mtbench.plugins.Registry.param_errors`): ``weights`` name the
        suite's tasks, none is negative (gradient ascent) and not every task's is 0 (nothing trains)."""
        weights = weights or {}
        unknown = sorted(set(weights) - set(tasks))
        if unknown:
            return {"weights": f"weights for {unknown}, which are not tasks of the suite ({', '.join(tasks)})"}
        bad = {t: w for t, w in weights.items() if not math.isfinite(w)}
        if bad:
            return {"weights": f"weights {bad} are not finite numbers"}
        negative = {t: w for t, w in weights.items() if w < 0}
        if negative:
            return {"weights": f"negative weights {negative}: a negative weight trains the task to get worse"}
        if all(weights.get(t, 1.0) == 0 for t in tasks):
            return {"weights": "every task's weight is 0: nothing would train"}
        return {}

    def train_step(self, ctx, batches, step):
        shared = self.probe_parameters(ctx, step, len(batches))
        measure = bool(shared)
        parts, grads, before = {}, [], None
        for t, batch in batches.items():
            comps = ctx.task_loss(t, batch)
            ctx.backward(self.weights.get(t, 1.0) * comps["total"])
            parts[t] = comps
            if measure:  # this task's gradient = accumulated gradient now - before its backward
                now = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in shared])
                grads.append(now - before if before is not None else now.clone())
                before = now
        if measure:
            self._log_cosine(grads)
        return parts


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "equal", Equal, "joint training, fixed task weights, one batch per task per step")]
