"""Forgetting mitigations for ``sequential`` training, each an option of that strategy.

- ``lwf``: Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017). While task k
  trains, the model's outputs for every earlier task on the current images are pulled
  towards those of a frozen copy taken at the end of the previous stage: KL divergence of
  temperature-softened softmaxes for ``cls`` logits ``(B, C)`` and ``seg`` logits
  ``(B, C, h, w)`` (per pixel), scaled by T^2 (Hinton et al., 2015); mean squared error on
  the raw dense outputs for ``det``. Parameters ``temperature`` (2), ``weight`` (1).
- ``ewc``: Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017). After each stage
  the diagonal Fisher information of that task's loss is estimated from ``batches``
  training batches (mean squared gradients) and the parameters are anchored; later stages
  add ``weight / 2 * sum_i F_i (theta_i - theta*_i)^2`` for every earlier task.
- ``replay``: a buffer of ``batches`` training batches per finished task; each later step
  adds the loss of one replayed batch of every earlier task (cycled), times ``weight``.
- ``freeze``: parameter-name prefixes (e.g. ``[backbone]``) frozen after the first stage;
  BatchNorm layers under them are kept in eval mode from then on (running statistics no
  longer follow the later tasks' images), as Detectron2's ``FREEZE_AT`` and
  :class:`mtbench.models.blocks.Backbone` do.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from mtbench.plugins import active_registry


class LwF:
    def __init__(self, temperature: float = 2.0, weight: float = 1.0):
        self.t, self.weight = temperature, weight
        self.teacher = None
        self.old_tasks: list[str] = []

    def after_stage(self, ctx, task: str) -> None:
        self._freeze_teacher(copy.deepcopy(ctx.model))
        self.old_tasks.append(task)

    def _freeze_teacher(self, model) -> None:
        self.teacher = model.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def state_dict(self) -> dict:
        """Checkpoint state (:mod:`mtbench.checkpoint`): the teacher's weights and the old tasks."""
        teacher = None if self.teacher is None else self.teacher.state_dict()
        return {"teacher": teacher, "old_tasks": list(self.old_tasks)}

    def load_state(self, state: dict, ctx) -> None:
        self.old_tasks = list(state["old_tasks"])
        if state["teacher"] is not None:
            self._freeze_teacher(copy.deepcopy(ctx.model))
            self.teacher.load_state_dict(state["teacher"])

    def loss(self, ctx, images: torch.Tensor, outputs: dict) -> torch.Tensor | None:
        if self.teacher is None:
            return None
        with torch.no_grad():
            old = self.teacher(images)
        total = 0.0
        for task in self.old_tasks:
            s, t = outputs[task], old[task]
            if active_registry().task(task).class_logits:
                kl = F.kl_div(F.log_softmax(s / self.t, dim=1), F.softmax(t / self.t, dim=1), reduction="none")
                total = total + kl.sum(1).mean() * self.t**2
            else:  # dense maps: one tensor or one per level
                pairs = zip(s, t) if isinstance(s, (list, tuple)) else [(s, t)]
                total = total + sum(F.mse_loss(a, b) for a, b in pairs)
        return self.weight * total


class EWC:
    def __init__(self, weight: float = 100.0, batches: int = 10):
        self.weight, self.batches = weight, batches
        self.anchors: list[tuple[dict, dict]] = []

    def after_stage(self, ctx, task: str) -> None:
        params = {n: p for n, p in ctx.model.named_parameters() if p.requires_grad}
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        stream = ctx.batches(task)
        was = ctx.model.training
        ctx.model.eval()  # Fisher at the trained point, without moving BatchNorm statistics
        for _ in range(self.batches):
            ctx.model.zero_grad(set_to_none=True)
            ctx.backward(ctx.task_loss(task, next(stream))["total"])
            scale = ctx.grad_scale()  # fp16: the gradients are of the scaled loss
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += (p.grad.detach() / scale) ** 2 / self.batches
        ctx.model.zero_grad(set_to_none=True)
        ctx.model.train(was)
        self.anchors.append((fisher, {n: p.detach().clone() for n, p in params.items()}))

    def loss(self, ctx, images, outputs) -> torch.Tensor | None:
        if not self.anchors:
            return None
        params = dict(ctx.model.named_parameters())
        total = 0.0
        for fisher, anchor in self.anchors:
            total = total + sum((fisher[n] * (params[n] - anchor[n]) ** 2).sum() for n in fisher)
        return self.weight / 2 * total


class Replay:
    def __init__(self, batches: int = 4, weight: float = 1.0):
        self.batches, self.weight = batches, weight
        self.buffers: dict[str, list] = {}  # task -> its stored batches, replayed in turn
        self.turn: dict[str, int] = {}  # task -> replays so far

    def after_stage(self, ctx, task: str) -> None:
        stream = ctx.batches(task)
        self.buffers[task] = [next(stream) for _ in range(self.batches)]
        self.turn[task] = 0

    def _next(self, task: str):
        batch = self.buffers[task][self.turn[task] % len(self.buffers[task])]
        self.turn[task] += 1
        return batch

    def loss(self, ctx, images, outputs) -> torch.Tensor | None:
        if not self.buffers:
            return None
        return self.weight * sum(ctx.task_loss(t, self._next(t))["total"] for t in self.buffers)


def _keep_eval(module: torch.nn.Module, _inputs) -> None:
    module.train(False)


class Freeze:
    def __init__(self, prefixes: list[str]):
        self.prefixes = tuple(prefixes)
        self.done = False

    def after_stage(self, ctx, task: str) -> None:
        if not self.done:
            for n, p in ctx.model.named_parameters():
                if n.startswith(self.prefixes):
                    p.requires_grad_(False)
            for n, m in ctx.model.named_modules():  # frozen BatchNorm: eval mode before every forward
                if n.startswith(self.prefixes) and isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.register_forward_pre_hook(_keep_eval)
            self.done = True

    def loss(self, ctx, images, outputs):
        return None


MITIGATIONS = {"lwf": LwF, "ewc": EWC, "replay": Replay}  # the options given as {parameter: value}


def build_mitigations(lwf: dict | None, ewc: dict | None, replay: dict | None, freeze: list[str] | None) -> dict:
    """Name -> mitigation object for the options given (``{}`` or ``null`` = off)."""
    given = {"lwf": lwf, "ewc": ewc, "replay": replay}
    out = {name: MITIGATIONS[name](**opts) for name, opts in given.items() if opts is not None}
    if freeze:
        out["freeze"] = Freeze(freeze)
    return out
