"""Built-in optimizers and learning-rate schedules, registered through the hooks
``mtbench_register_optimizers`` and ``mtbench_register_schedules`` like a plugin's (a suite's
``fixed.optimizer.name`` / ``schedule`` name them; :meth:`mtbench.strategies.base.TrainContext.make_optimizer`
builds them).

- ``adamw``: AdamW (Loshchilov & Hutter, ICLR 2019), ``torch.optim.AdamW``;
- ``sgd``: SGD with momentum, ``torch.optim.SGD``;
- ``cosine``: half-cosine decay to 0 over the steps after warm-up (Loshchilov & Hutter, SGDR,
  ICLR 2017); ``constant``: 1. Warm-up (linear, ``warmup_steps``) is applied by the core
  before any schedule.
"""

from __future__ import annotations

import math

from mtbench.plugins import Spec, hookimpl


def adamw(params, lr: float, weight_decay: float, momentum: float):
    """``torch.optim.AdamW`` over the parameter groups (``momentum`` unused: Adam's betas)."""
    import torch
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def sgd(params, lr: float, weight_decay: float, momentum: float):
    """``torch.optim.SGD`` with ``momentum`` over the parameter groups."""
    import torch
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def cosine(step: int, total_steps: int) -> float:
    """``0.5 (1 + cos(pi t))``, ``t = step / total_steps`` clipped to 1 (steps after warm-up)."""
    return 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))


def constant(step: int, total_steps: int) -> float:
    """1: the learning rate stays where warm-up left it."""
    return 1.0


@hookimpl
def mtbench_register_optimizers():
    return [Spec("optimizer", "adamw", adamw, "AdamW (decoupled weight decay)"),
            Spec("optimizer", "sgd", sgd, "SGD with momentum")]


@hookimpl
def mtbench_register_schedules():
    return [Spec("schedule", "cosine", cosine, "half-cosine decay to 0 after warm-up"),
            Spec("schedule", "constant", constant, "constant after warm-up")]
