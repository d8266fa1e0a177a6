"""``equal``: joint training with fixed task weights (the standard multi-task baseline).

Each step draws one batch from every task's data in turn, computes that task's loss on
it, and takes one optimiser step on the weighted sum. Gradients are accumulated task by
task, which gives the same update as back-propagating the sum with a third of the memory.
"""

from __future__ import annotations

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.joint import JointStrategy


class Equal(JointStrategy):
    """Fixed-weight joint training.

    :param weights: task -> loss weight (default 1 for every task).
    """

    def __init__(self, weights: dict[str, float] | None = None):
        self.weights = weights or {}

    def train_step(self, ctx, batches, step):
        parts = {}
        for t, batch in batches.items():
            comps = ctx.task_loss(t, batch)
            (self.weights.get(t, 1.0) * comps["total"]).backward()
            parts[t] = comps
        return parts


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "equal", Equal, "joint training, fixed task weights, one batch per task per step")]
