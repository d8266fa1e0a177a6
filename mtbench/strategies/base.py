"""What a strategy gets from the runner (:class:`TrainContext`) and gives back (:class:`StrategyReport`).

A strategy owns the training loop over tasks; the runner never branches on its name.
The context offers the pieces every loop needs: per-task batch streams, the per-task loss
call, an optimiser with its schedule, a checked backward/step (NaN/inf and divergence stop
the cell as failed with the step and learning rate), evaluation of any set of tasks, and
the loss history.

A strategy is any object with ``fit(ctx) -> StrategyReport``; optionally
``trained_tasks(tasks) -> list[str]`` when it trains fewer than all of the suite's tasks
(``single-task``), so that pre-run checks such as overfit-one-batch look only at those.

Mixed precision (``fixed.precision``): the context runs forward passes and losses under
:func:`torch.autocast` (:meth:`TrainContext.forward`, :meth:`TrainContext.task_loss`,
:meth:`TrainContext.autocast`); with fp16 a loop calls :meth:`TrainContext.backward` instead of
``loss.backward()`` (the loss scaled by a :class:`torch.amp.GradScaler`) and
:meth:`TrainContext.step` unscales before clipping and skips a step whose gradients overflowed
(PyTorch AMP recipe, https://pytorch.org/docs/stable/notes/amp_examples.html). A strategy whose
every backward goes through :meth:`TrainContext.backward` declares ``grad_scaling = True``;
the suite refuses fp16 for any other (:func:`mtbench.suite.check_precision`). At fp32 (the
default) every one of these calls is exactly the plain PyTorch one.

EMA of weights (``fixed.ema``): :meth:`TrainContext.step` updates an exponential moving average
of the model after each optimiser step (timm's :class:`~timm.utils.model_ema.ModelEmaV3`, Polyak
averaging as in its EfficientNet recipes); :attr:`TrainContext.deployed` is the model that is
evaluated (per stage too), profiled and saved: the average when there is one, else the model.

A loop that calls :meth:`TrainContext.resume` before its first step and
:meth:`TrainContext.checkpoint` after each step (as the built-in joint, sequential and
single-task loops do) survives interruption: the cell continues from its last checkpoint
(:mod:`mtbench.checkpoint`); a loop that does not simply starts again from step 0.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from mtbench.checkpoint import epoch_iter
from mtbench.data.base import to_device
from mtbench.errors import CellFailure
from mtbench.losses import call_loss
from mtbench.plugins import active_registry

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # fixed.precision -> autocast dtype


@dataclass
class StrategyReport:
    """``stages``: per-stage metrics of sequential strategies (``[{"task", "metrics"}]``);
    ``eval_tasks``: the tasks to evaluate at the end (default: all; ``single-task``: its one);
    ``extra``: strategy-specific records (task-weight trajectories, gradient cosines)."""

    stages: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    eval_tasks: list[str] | None = None


@dataclass
class TrainContext:
    """Everything a strategy's ``fit`` may use.

    :param model: the :class:`MultiTaskModel` being trained (on ``device``).
    :param tasks: the suite's tasks in suite order.
    :param loaders: task -> training ``DataLoader`` (shuffled with the cell's seed).
    :param losses: task -> loss module.
    :param fixed: the suite's ``fixed`` section (dict).
    :param evaluate: ``evaluate(tasks) -> dict[metric, float]`` on the val splits.
    :param evaluation_samples: ``() -> {task: sample entry}``: the per-image records of the
        latest ``evaluate`` call (:func:`mtbench.metrics.base.sample_entry`); a strategy that
        reports ``stages`` stores them as each stage's ``samples``, from which the runner
        bootstraps the CIs of forgetting and BWT (:func:`mtbench.metrics.forgetting.forgetting_ci`).
    :param progress: ``progress(total_steps, description) -> iterable`` (a tqdm bar).
    :param seed: the cell's seed; stochastic strategies draw from :meth:`generator`, never from
        torch's global generator, so their draws do not depend on unrelated random calls.
    :param checkpoints: the cell's :class:`mtbench.checkpoint.Checkpoints` (None: none kept); a
        loop calls :meth:`resume` before its first step and :meth:`checkpoint` after each.

    ``scaler``: the :class:`torch.amp.GradScaler` of an fp16 cell (None otherwise), made from
    ``fixed.precision`` when the context is; saved with the checkpoints. ``ema``: the
    :class:`~timm.utils.model_ema.ModelEmaV3` of ``fixed.ema`` (None when unset), made when the
    context is (a copy of the model as it is then), and ``ema_steps`` the updates it has had;
    both saved with the checkpoints.

    Every tensor a strategy owns (learned task weights, log-variances, gradient buffers) lives
    on ``device`` with ``dtype`` (the model's floating-point dtype); the conformance checks in
    :mod:`mtbench.strategies.checks` verify it for every registered strategy.
    """

    model: nn.Module
    tasks: list[str]
    loaders: dict[str, DataLoader]
    losses: dict[str, nn.Module]
    fixed: dict
    device: torch.device
    evaluate: Callable[[list[str]], dict]
    progress: Callable[[int, str], Iterator[int]]
    seed: int = 0
    evaluation_samples: Callable[[], dict] = dict
    history: list[dict] = field(default_factory=list)
    epochs: dict[str, int] = field(default_factory=dict)
    checkpoints: Any = None
    _first_loss: dict = field(default_factory=dict)
    scaler: Any = None
    ema: Any = None
    ema_steps: int = 0

    def __post_init__(self):
        if self.precision == "fp16" and self.scaler is None:
            self.scaler = torch.amp.GradScaler(self.device.type)
        options = self.fixed.get("ema")
        if options and self.ema is None:
            from timm.utils.model_ema import ModelEmaV3
            self.ema = ModelEmaV3(self.model, decay=options["decay"], use_warmup=options["warmup"])

    @property
    def deployed(self) -> nn.Module:
        """The model evaluated, profiled and saved: the weights' moving average (``fixed.ema``,
        in eval mode), else :attr:`model` itself."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def precision(self) -> str:
        """``fixed.precision``: ``fp32`` (default), ``bf16`` or ``fp16``."""
        return self.fixed.get("precision", "fp32")

    def autocast(self):
        """The context manager training's forward passes and losses run in: :func:`torch.autocast`
        at ``fixed.precision``'s dtype on the device, a no-op at fp32."""
        dtype = AUTOCAST_DTYPES.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def forward(self, images: torch.Tensor) -> dict:
        """``model(images)`` under :meth:`autocast`: ``dict[task, raw outputs]`` (in the autocast
        dtype where autocast chose it)."""
        with self.autocast():
            return self.model(images)

    @property
    def dtype(self) -> torch.dtype:
        """The model's floating-point dtype (default dtype for a model without parameters)."""
        return next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.get_default_dtype())

    def generator(self, device: torch.device | None = None, offset: int = 0) -> torch.Generator:
        """A ``torch.Generator`` on ``device`` (default: the context's) seeded from the cell's
        seed (+ ``offset``); a CPU generator stands in where the device has none (``meta``)."""
        device = device or self.device
        device = device if device.type in ("cpu", "cuda") else torch.device("cpu")
        return torch.Generator(device).manual_seed(self.seed + offset)

    # -- budget -------------------------------------------------------------------------
    def steps(self, tasks: list[str]) -> int:
        """Optimiser steps for ``tasks`` under the budget: ``steps``, or ``epochs`` over the
        largest of those tasks' train splits (batches per epoch x epochs, rounded up)."""
        budget = self.fixed["budget"]
        if budget["steps"]:
            return int(budget["steps"])
        return max(1, math.ceil(budget["epochs"] * max(len(self.loaders[t]) for t in tasks)))

    # -- data ---------------------------------------------------------------------------
    def batches(self, task: str) -> Iterator:
        """Endless stream of ``(images, targets)`` batches of ``task`` on the device;
        ``epochs[task]`` counts the completed passes over its loader."""
        self.epochs.setdefault(task, 0)
        while True:
            for images, targets in epoch_iter(self.loaders[task]):
                yield self._images(images), to_device(targets, self.device)
            self.epochs[task] += 1

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        """A batch on the device, in channels-last memory format when ``fixed.channels_last``."""
        if self.fixed.get("channels_last"):
            return images.to(self.device, memory_format=torch.channels_last)
        return images.to(self.device)

    # -- loss ---------------------------------------------------------------------------
    def task_loss(self, task: str, batch, outputs: dict | None = None) -> dict[str, torch.Tensor]:
        """Forward ``batch`` (unless ``outputs`` are given) and return ``task``'s loss components.

        A loss with ``set_epoch`` (epoch-scheduled assigners, shrinking targets) is told the
        task's current epoch first. Forward and loss run under :meth:`autocast`.
        """
        images, targets = batch
        out = self.forward(images) if outputs is None else outputs
        loss = self.losses[task]
        if hasattr(loss, "set_epoch"):
            loss.set_epoch(self.epochs.get(task, 0))
        with self.autocast():
            return call_loss(loss, out[task], targets, self.model.strides[task], images)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, the loss first multiplied by the fp16 loss scale (:attr:`scaler`)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def grad_scale(self) -> float:
        """The factor :meth:`backward` multiplied the loss by (1.0 without fp16 scaling): a
        gradient taken by :meth:`backward` divided by it is the true gradient."""
        return float(self.scaler.get_scale()) if self.scaler is not None else 1.0

    # -- optimisation -------------------------------------------------------------------
    def make_optimizer(self, total_steps: int, params=None, lr_mult: float = 1.0):
        """The registered optimizer ``fixed.optimizer.name`` (built-ins: :mod:`mtbench.optimizers`)
        with linear warm-up, then the registered ``schedule`` (cosine, constant, a plugin's).

        Backbone parameters get ``lr * backbone_lr_mult``; every group's rate is also multiplied
        by ``lr_mult`` (a strategy's own scaling, e.g. ``sequential``'s per-stage ``stage_lr_mult``).
        """
        cfg = self.fixed["optimizer"]
        lr = cfg["lr"] * lr_mult
        named = list(self.model.named_parameters()) if params is None else params
        bb = [p for n, p in named if n.startswith("backbone.") and p.requires_grad]
        rest = [p for n, p in named if not n.startswith("backbone.") and p.requires_grad]
        groups = [{"params": rest, "lr": lr}]
        if bb:
            groups.append({"params": bb, "lr": lr * cfg["backbone_lr_mult"]})
        registry = active_registry()
        opt = registry.create("optimizer", cfg["name"], params=groups, lr=lr,
                              weight_decay=cfg["weight_decay"], momentum=cfg["momentum"])
        warm = cfg["warmup_steps"]
        schedule = registry.get("schedule", cfg["schedule"]).factory

        def factor(step: int) -> float:
            if warm and step < warm:
                return (step + 1) / warm
            return schedule(step - warm, total_steps - warm)

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    # -- checkpoints ----------------------------------------------------------------------
    def saved_extra(self) -> dict | None:
        """The ``extra`` of the checkpoint this run resumes from (a sequential strategy's finished
        stages), or None."""
        saved = self.checkpoints.saved if self.checkpoints is not None else None
        return saved["extra"] if saved else None

    def resume(self, stage: str, opt, sched, owner) -> int:
        """The first step of ``stage`` to run: 0, or one past the saved checkpoint's step when it
        belongs to ``stage`` (model, ``opt``, ``sched``, ``owner``'s state, RNGs, batch streams and
        history put back as they were saved; :meth:`mtbench.checkpoint.Checkpoints.restore`)."""
        return self.checkpoints.restore(self, stage, opt, sched, owner) if self.checkpoints is not None else 0

    def checkpoint(self, stage: str, step: int, opt, sched, owner, live: list[str], extra: dict | None = None) -> None:
        """After ``step`` of ``stage``: save the training state when ``fixed.checkpoint_every`` says
        so. ``owner``: the strategy (its state is saved, :func:`mtbench.checkpoint.state_of`);
        ``live``: the tasks whose batch streams continue after this step; ``extra``: what the
        strategy needs to find its place again (weights-only loadable values)."""
        if self.checkpoints is not None:
            self.checkpoints.step_done(self, stage, step, opt, sched, owner, live, extra or {})

    def record(self, step: int, stage: str, parts: dict[str, dict[str, torch.Tensor]], opt) -> None:
        """Check every task's loss and append it to the history.

        :raises CellFailure: a non-finite loss, or a total that grew over 100x the largest of its
            first 10 steps (divergence); names the step, task and learning rate.
        """
        lr = opt.param_groups[0]["lr"]
        row = {"step": step, "stage": stage, "lr": lr}
        for task, comps in parts.items():
            total = float(comps["total"].detach())
            if not math.isfinite(total):
                raise CellFailure(f"non-finite {task} loss ({total}) at {stage} step {step}, lr {lr:.3g}")
            if step < 10:  # reference: the largest of the first 10 steps (one batch without labels is ~0)
                self._first_loss[(stage, task)] = max(self._first_loss.get((stage, task), total), total)
            first = self._first_loss.setdefault((stage, task), total)
            if step >= 10 and first > 0 and total > 100 * first:
                raise CellFailure(f"{task} loss diverged: {total:.4g} > 100 x its first steps' {first:.4g} at {stage} "
                                  f"step {step}, lr {lr:.3g}")
            for k, v in comps.items():
                row[f"{task}/{k}"] = float(v.detach())
        self.history.append(row)

    def step(self, opt, sched) -> None:
        """Clip gradients (``fixed.grad_clip``), step the optimiser and the schedule, then update
        the weights' moving average (``fixed.ema``; timm's step-dependent warm-up decay).

        With fp16 the gradients are unscaled first, and the optimiser step is skipped (the loss
        scale halved) when one of them is inf/NaN, as :class:`torch.amp.GradScaler` does."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        if self.fixed.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.fixed["grad_clip"])
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        sched.step()
        if self.ema is not None:
            self.ema.update(self.model, step=self.ema_steps)
            self.ema_steps += 1

