"""Checks a plugin author runs in their own tests: the contract mtbench checks at the door.

As scikit-learn's ``check_estimator`` or torchmetrics' ``MetricTester``: each function builds the
plugin's object the way mtbench does, runs it on a tiny generated batch (the built-in
``synthetic`` data set, no files needed) and raises :class:`PluginContractError` (a
:class:`~mtbench.errors.PluginError` and an ``AssertionError``) naming the plugin object and
what is wrong, expected vs got; a check returns quietly (or the object it built) when it
conforms. mtbench's own tests run the same checks on its built-ins. A plugin's test suite calls
them directly::

    from mtbench.testing import check_loss, check_model, check_strategy

    def test_model():
        check_model(my_model_factory, tasks=("det", "cls"), level="P4", width=16)

``mtbench new-plugin NAME`` writes a distribution whose tests do exactly that. Everything runs
on the CPU in float32 (strategies are also checked in float64, where a state tensor created in
the wrong dtype shows) and takes seconds.

- models, losses, strategies: :func:`check_model`, :func:`check_loss`, :func:`check_strategy`;
- tasks, metrics, runtimes: :func:`check_task`, :func:`check_metric`, :func:`check_runtime`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import numpy as np
import torch

from mtbench.errors import PluginError
from mtbench.losses import call_loss

#: what the checks build a tiny stand-in model with when a loss is checked on its own
TINY_MODEL = ("unified-onehead", {"backbone": "mobilenetv3_small_100", "neck_channels": 16})


class PluginContractError(PluginError, AssertionError):
    """A plugin's object does not keep mtbench's contract; the message says what and where.

    An ``AssertionError`` too, so pytest shows it as a failed check, not an error.
    """


def _registry():
    """The registry the checks build with: the active one (every installed plugin, built once
    per process; :func:`mtbench.plugins.active_registry`), so a plugin task's default loss is found."""
    from mtbench.plugins import active_registry
    return active_registry()


def _default_loss(task: str) -> str:
    return _registry().task(task).default_loss


def tiny_batch(tasks: Iterable[str], image_size: int = 64, batch: int = 2, seed: int = 0,
               dataset: str = "synthetic") -> tuple[dict, dict]:
    """Generated data for ``tasks``: ``(infos, batches)`` with ``infos[task]`` a
    :class:`~mtbench.data.base.TaskInfo` and ``batches[task]`` an ``(images float32 (B, 3, S, S),
    targets)`` pair in the task's collated target format (:func:`mtbench.data.base.collate`).

    :param dataset: the registered generated data set to draw from (``synthetic`` serves det,
        seg and cls; a plugin task brings its own, e.g. ``synthetic-points``); it takes
        ``num_images`` and ``seed`` as ``synthetic`` does."""
    from mtbench.data.base import collate
    registry = _registry()
    infos, batches = {}, {}
    for task in tasks:
        data = registry.create("dataset", dataset, task=task, split="train", root=None, image_size=image_size,
                               num_images={"train": batch, "val": batch}, seed=seed)
        infos[task] = data.info
        batches[task] = collate([data[i] for i in range(batch)])
    return infos, batches


def _fail(what: str, message: str) -> None:
    raise PluginContractError(f"{what}: {message}")


def check_model(factory: Callable[..., Any], tasks: Iterable[str] = ("det", "seg", "cls"), level: str = "P3",
                image_size: int = 64, *, dataset: str = "synthetic", losses: dict[str, str] | None = None,
                **params: Any) -> torch.nn.Module:
    """Build a model plugin as mtbench does and check it keeps the model contract.

    ``factory(tasks=dict[str, TaskInfo], level=level, **params)`` must return a
    :class:`~mtbench.models.base.MultiTaskModel` that declares ``tasks``, ``strides`` (pixels)
    and ``infos``; then :func:`mtbench.models.contract.check_model` runs it on
    ``float32 (2, 3, image_size, image_size)`` and compares outputs with the declarations (one
    map per declared stride of the right size, channels for the declared classes, decode
    shapes); last, one training step with each task's default loss (or ``losses[task]``) must
    give finite losses and a finite gradient that reaches the parameters.

    :param tasks: task names the model is built for (generated data gives their classes).
    :param level: feature level ``P2``..``P5`` of the task heads.
    :param image_size: input side in pixels (a multiple of the largest stride).
    :param dataset: generated data set of the tasks (:func:`tiny_batch`).
    :param losses: task -> the loss to train with where the task's default loss does not fit
        the model's outputs (e.g. ``{"points": "soft-iou"}`` for a segmentation model).
    :return: the model built (eval mode off, gradients zeroed).
    :raises PluginContractError: the first contract violation, naming task and expected vs got.
    """
    from mtbench.models.base import MultiTaskModel
    from mtbench.models.contract import ContractError
    from mtbench.models.contract import check_model as contract
    what = f"model {getattr(factory, '__name__', factory)!r}"
    tasks = list(tasks)
    infos, batches = tiny_batch(tasks, image_size, dataset=dataset)
    model = factory(tasks=infos, level=level, **params)
    if not isinstance(model, MultiTaskModel):
        _fail(what, f"the factory returned {type(model).__name__}, expected a mtbench.models.base.MultiTaskModel")
    for attr in ("tasks", "strides", "infos"):
        if not hasattr(model, attr):
            _fail(what, f"does not set {attr!r} (call self.set_tasks(tasks, level) in __init__)")
    if sorted(model.tasks) != sorted(tasks) or sorted(model.infos) != sorted(tasks) or \
            sorted(model.strides) != sorted(tasks):
        _fail(what, f"declares tasks {sorted(model.tasks)}, infos {sorted(model.infos)}, strides "
                    f"{sorted(model.strides)}; expected {sorted(tasks)} in each")
    registry = _registry()
    names = {t: (losses or {}).get(t, _default_loss(t)) for t in tasks}
    losses = {t: registry.create_loss(registry.loss_key(t, names[t]), infos[t]) for t in tasks}
    try:
        contract(model, image_size, torch.device("cpu"), {t: getattr(losses[t], "decode_kwargs", {}) for t in tasks})
    except ContractError as exc:
        _fail(what, str(exc))
    model.train()
    total = 0.0
    for t in tasks:
        images, targets = batches[t]
        parts = call_loss(losses[t], model(images)[t], targets, model.strides[t], images)
        if not torch.isfinite(parts["total"]):
            _fail(what, f"task {t}: the loss {names[t]!r} on its output is {float(parts['total'])}")
        total = total + parts["total"]
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        _fail(what, "no parameter received a gradient from the task losses (is the graph detached?)")
    if not all(torch.isfinite(g).all() for g in grads):
        _fail(what, "a parameter's gradient is not finite after one backward of the task losses")
    model.zero_grad(set_to_none=True)
    return model


def check_loss(factory: Callable[..., Any], task: str, image_size: int = 64, level: str = "P3", *,
               dataset: str = "synthetic", **params: Any) -> dict[str, torch.Tensor]:
    """Build a loss plugin as mtbench does and check it keeps the loss contract.

    ``factory(num_classes=int, **params)`` (``class_names`` too when it takes them) must return a
    module called as ``loss(raw, targets, stride=int)`` (``images=`` too with ``takes_images``) (``raw``: the task's output of a built-in model,
    :data:`TINY_MODEL`, on generated data) returning ``dict[str, Tensor]`` with a finite scalar
    ``total`` that has a gradient; every name in ``declared_components`` must be present and
    finite; a positive counter ``num_pos`` must be > 0 on a batch that has objects (an
    assigner that finds no positives trains nothing: the "classification loss silently 0"
    failure); one backward must give finite gradients.

    :param dataset: generated data set of ``task`` (:func:`tiny_batch`).
    :return: the loss components of the check batch (detached).
    :raises PluginContractError: the first violation, naming the component and what was got.
    """
    what = f"{task} loss {getattr(factory, '__name__', factory)!r}"
    infos, batches = tiny_batch([task], image_size, dataset=dataset)
    registry = _registry()
    name, model_params = TINY_MODEL
    model = registry.create_model(name, tasks=infos, level=level, **model_params).train()
    from mtbench.plugins import loss_labels
    loss = factory(**loss_labels(factory, infos[task]), **params)
    images, targets = batches[task]
    parts = call_loss(loss, model(images)[task], targets, model.strides[task], images)
    if not isinstance(parts, dict) or "total" not in parts:
        _fail(what, f"returned {type(parts).__name__}{sorted(parts) if isinstance(parts, dict) else ''}, "
                    f"expected a dict of named components with 'total'")
    total = parts["total"]
    if not isinstance(total, torch.Tensor) or total.dim() != 0 or not total.requires_grad:
        _fail(what, "'total' must be a scalar tensor with a gradient (got "
                    f"{type(total).__name__}{tuple(total.shape) if isinstance(total, torch.Tensor) else ''})")
    missing = [c for c in getattr(loss, "declared_components", ()) if c not in parts]
    if missing:
        _fail(what, f"declared components {missing} are not in its output {sorted(parts)}")
    for key, value in parts.items():
        v = float(value.detach().float().sum()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(v):
            _fail(what, f"component {key!r} is {v}")
    if "num_pos" in parts and float(parts["num_pos"]) <= 0:
        _fail(what, "num_pos is 0 on a batch with objects: the assigner found no positives, so the "
                    "classification/box terms train nothing")
    total.backward()
    if not all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
        _fail(what, "a gradient is not finite after one backward of 'total'")
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in parts.items()}


def check_strategy(factory: Callable[..., Any], tasks: Iterable[str] = ("det", "seg", "cls"), steps: int = 4,
                   **params: Any) -> Any:
    """Build a strategy plugin as mtbench does and check it keeps the strategy contract.

    ``factory(**params)`` must return an object with ``fit(ctx) -> StrategyReport``. It is
    trained for ``steps`` steps on :func:`mtbench.strategies.checks.toy_context` (a tiny shared
    trunk with one head per task): the report must be a
    :class:`~mtbench.strategies.base.StrategyReport`; the losses it records finite; the
    parameters changed; every tensor the strategy owns on the context's device and dtype
    (checked in float64, where a state tensor made in float32 shows); ``extra.task_weights``,
    when present, one ``{task: float}`` per step; and two runs with the same seed give the
    same parameters (random draws come from ``ctx.generator()``, not torch's global
    generator, which is re-seeded differently before each run).

    :return: the strategy object of the first run.
    :raises PluginContractError: the first violation.
    """
    from mtbench.strategies.base import StrategyReport
    from mtbench.strategies.checks import state_mismatches, toy_context
    what = f"strategy {getattr(factory, '__name__', factory)!r}"
    tasks = tuple(tasks)
    finals, first = [], None
    for run, noise in enumerate((1, 2)):
        ctx = toy_context(tasks, dtype=torch.float64, steps=steps, seed=0)
        before = [p.detach().clone() for p in ctx.model.parameters()]
        strategy = factory(**params)
        torch.manual_seed(1000 + noise)  # global RNG differs between runs; the cell's seed does not
        report = strategy.fit(ctx)
        if not isinstance(report, StrategyReport):
            _fail(what, f"fit returned {type(report).__name__}, expected mtbench.strategies.base.StrategyReport")
        after = [p.detach().clone() for p in ctx.model.parameters()]
        if all(torch.equal(a, b) for a, b in zip(before, after)):
            _fail(what, f"no parameter changed in {steps} steps")
        bad = state_mismatches(strategy, ctx)
        if bad:
            _fail(what, f"state not on the context's device/dtype: {bad[0]}")
        for h in ctx.history:
            if any(isinstance(v, float) and not math.isfinite(v) for v in h.values()):
                _fail(what, f"a recorded loss is not finite: {h}")
        weights = (report.extra or {}).get("task_weights")
        if weights is not None and not (isinstance(weights, list) and all(
                isinstance(w, dict) and set(w) <= set(tasks) and all(isinstance(x, (int, float)) for x in w.values())
                for w in weights)):
            _fail(what, "extra['task_weights'] must be a list with one {task: float} dict per step")
        finals.append(after)
        first = strategy if run == 0 else first
    if not all(torch.equal(a, b) for a, b in zip(*finals)):
        _fail(what, "two runs with the same seed trained different parameters: draw random numbers from "
                    "ctx.generator() (seeded from the cell's seed), not torch's global generator")
    return first


# --- tasks, metrics and runtimes (issue 12: their contracts) ---------------------------------


def _name_of(obj: Any) -> str:
    """``'name' (module.Class)`` for messages, from a Spec, a class or an instance."""
    is_spec = hasattr(obj, "factory") and hasattr(obj, "kind")
    target = obj.factory if is_spec else obj
    where = target if isinstance(target, type) or callable(target) and hasattr(target, "__qualname__") \
        else type(target)
    label = obj.name if is_spec else getattr(target, "name", None)
    label = label if isinstance(label, str) else where.__qualname__
    return f"{label!r} ({where.__module__}.{where.__qualname__})"


def _task_of(spec: Any):
    """A Task instance from a ``Spec(kind="task")``, a Task class or instance."""
    from mtbench.tasks import Task
    factory = spec.factory if hasattr(spec, "factory") else spec
    task = factory if isinstance(factory, Task) else factory()
    if not isinstance(task, Task):
        raise PluginContractError(f"task {_name_of(spec)}: the factory must return a mtbench.tasks.Task, got "
                          f"{type(task).__name__}")
    return task


def check_task(spec: Any, dataset: Any = None) -> None:
    """Check a task against the task contract (:class:`mtbench.tasks.Task`).

    Always: ``name`` is a non-empty string (and the Spec's name, when given a Spec); ``metrics``
    maps metric names to booleans (higher is better); ``headline`` is one of them and higher is
    better (forgetting needs that); ``default_loss`` is a string; every column is ``(title,
    metric name or record path, digits int)`` and a named metric is one of ``metrics``.
    ``follows`` is a frozenset of ``"flip"`` / ``"crop"``; a task that still defines
    ``flip_target`` (replaced by ``to_tv`` / ``from_tv``) is refused.
    With a ``dataset`` (a split of the task): a flip (:mod:`mtbench.data.augment`, through its
    ``to_tv`` / ``from_tv``) applied twice gives its first target back.

    :param spec: ``Spec(kind="task", ...)``, a Task subclass or instance.
    :param dataset: optional :class:`mtbench.data.base.TaskDataset` of the task.
    :raises PluginError: naming the task and what is wrong.
    """
    task = _task_of(spec)
    who = f"task {_name_of(spec)}"
    name = getattr(task, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginContractError(f"{who}: 'name' must be a non-empty string, got {name!r}")
    if hasattr(spec, "kind") and spec.name != name:
        raise PluginContractError(f"{who}: registered as {spec.name!r} but its Task.name is {name!r}")
    metrics = getattr(task, "metrics", None)
    if not isinstance(metrics, dict) or not metrics or not all(
            isinstance(k, str) and isinstance(v, bool) for k, v in metrics.items()):
        raise PluginContractError(f"{who}: 'metrics' must map metric names to booleans (higher is better), got {metrics!r}")
    headline = getattr(task, "headline", None)
    if headline not in metrics:
        raise PluginContractError(f"{who}: headline {headline!r} is not one of its metrics ({', '.join(metrics)})")
    if metrics[headline] is not True:
        raise PluginContractError(f"{who}: headline {headline!r} must be higher-is-better (forgetting and delta-m "
                          f"read it as a score)")
    if not isinstance(getattr(task, "scored_by", None), str):
        raise PluginContractError(f"{who}: 'scored_by' must name the registered metric it is scored by (task/name)")
    if not isinstance(getattr(task, "default_loss", None), str):
        raise PluginContractError(f"{who}: 'default_loss' must name a registered loss of the task")
    for col in task.columns:
        ok = isinstance(col, tuple) and len(col) == 3 and isinstance(col[0], str) and isinstance(col[2], int) \
            and (col[1] in metrics or isinstance(col[1], tuple))
        if not ok:
            raise PluginContractError(f"{who}: column {col!r} is not (title, one of its metrics or a record path, digits)")
    if not (isinstance(getattr(task, "follows", None), frozenset) and task.follows <= {"flip", "crop"}):
        raise PluginContractError(f"{who}: 'follows' must be a frozenset of 'flip' / 'crop' (the geometric "
                                  f"augmentations its target follows), got {getattr(task, 'follows', None)!r}")
    if hasattr(task, "flip_target"):
        raise PluginContractError(f"{who}: 'flip_target' is no longer read; say how the target moves with its image "
                                  f"through to_tv / from_tv (torchvision tv_tensors, mtbench.tasks.Task)")
    if dataset is not None:
        _check_task_on(task, who, dataset)


def _check_task_on(task, who: str, dataset) -> None:
    """The data-dependent part of :func:`check_task`: flipping twice is the identity."""
    import torch

    from mtbench.data.augment import Augmentation, build
    image, target = dataset.load(0)
    flip = build({"hflip": 1.0}, task, image.shape[-1])
    back = target
    for _ in range(2):
        image, back = Augmentation.apply(flip, task, image, back)

    def equal(a, b) -> bool:  # float coordinates: width - (width - x) is x up to rounding
        return torch.allclose(a.double(), b.double(), atol=1e-4) if isinstance(b, torch.Tensor) else a == b

    same = equal(back, target) if isinstance(target, torch.Tensor) else \
        set(back) == set(target) and all(equal(back[k], v) for k, v in target.items())
    if not same:
        raise PluginContractError(f"{who}: a horizontal flip applied twice (to_tv / from_tv) does not give the "
                                  f"target back")


def check_metric(factory: Callable[[], Any], preds: Any, targets: Any, name: str | None = None) -> None:
    """Check a metric against the per-sample record contract (:mod:`mtbench.metrics.base`).

    ``factory()`` builds a fresh metric; it is fed ``preds`` / ``targets`` (one batch, shapes of
    its task). Checked: ``update``, ``samples``, ``compute`` and a static ``reduce`` exist;
    every ``samples()`` column has one entry per image; every value of ``reduce(samples(),
    arange(N))`` equals ``compute()``'s (the point estimate and every bootstrap resample agree;
    ``compute()`` may add counters such as ``det/num_dets``);
    the values are floats; ``reduce`` on a resample with repeats runs; the samples are
    JSON-ready (records are stored as JSON).

    :param name: how messages name the metric (default: its class).
    :raises PluginError: naming the metric and what is wrong.
    """
    import json

    from mtbench.metrics.base import num_samples
    metric = factory()
    who = f"metric {name or _name_of(metric)}"
    for method in ("update", "samples", "compute"):
        if not callable(getattr(metric, method, None)):
            raise PluginContractError(f"{who}: has no {method}() (per-sample record contract, mtbench.metrics.base)")
    if not isinstance(type(metric).__dict__.get("reduce") or _inherited(type(metric), "reduce"), staticmethod):
        raise PluginContractError(f"{who}: reduce(samples, index) must be a staticmethod (compare and doctor call it on "
                          f"stored records, without an instance)")
    metric.update(preds, targets)
    samples = metric.samples()
    try:
        n = num_samples(samples)
    except ValueError as exc:
        raise PluginContractError(f"{who}: samples() columns must have one entry per image: {exc}") from None
    try:
        json.dumps(samples)
    except TypeError as exc:
        raise PluginContractError(f"{who}: samples() must be JSON-ready (lists of numbers): {exc}") from None
    values = metric.compute()
    again = type(metric).reduce(samples, np.arange(n))
    if not isinstance(values, dict) or not all(isinstance(v, float) for v in values.values()):
        raise PluginContractError(f"{who}: compute() must return {{metric name: float}}, got {values!r}")
    if not set(again) <= set(values) or any(not np.isclose(values[k], again[k], equal_nan=True) for k in again):
        raise PluginContractError(f"{who}: compute() {values} differs from reduce(samples(), arange(N)) {again}")
    if n:
        type(metric).reduce(samples, np.zeros(n, dtype=np.int64))  # a resample with repeats


def _inherited(cls: type, attr: str):
    for base in cls.__mro__:
        if attr in base.__dict__:
            return base.__dict__[attr]
    return None


def check_runtime(spec: Any, run: bool = True, tolerance: float = 1e-3) -> None:
    """Check a runtime against the runtime contract (``mtbench_register_runtimes``).

    Its factory takes the arguments mtbench passes (``model``, ``image_size``, ``batch_size``,
    ``device``, ``warmup``, ``repeats``, ``fps_repeats``, ``rule``); with ``run``, it measures a
    tiny two-task model (a 3x3 conv map and pooled logits, 32 px, batch 2, CPU, the minimum
    samples; ``calibration``: 4 random images where the factory declares it) and returns a dict
    with finite ``latency_ms`` and ``fps`` and a ``parity_max_abs`` below ``tolerance`` (its
    outputs are the model's; a reduced-precision runtime passes its own), and a ``predict``
    (when given) that returns float32 outputs of the model's tasks and shapes. A runtime
    raising :class:`~mtbench.errors.RuntimeUnavailable` (no GPU here) passes unchecked.

    :param spec: ``Spec(kind="runtime", ...)`` or the factory itself.
    :raises PluginError: naming the runtime and what is wrong.
    """
    import inspect
    import math

    from mtbench.plugins import RESERVED
    factory = spec.factory if hasattr(spec, "kind") else spec
    who = f"runtime {_name_of(spec)}"
    params = inspect.signature(factory).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        missing = sorted(RESERVED["runtime"] - set(params))
        if missing:
            raise PluginContractError(f"{who}: its factory does not take {', '.join(missing)} (hookspecs: "
                              f"mtbench_register_runtimes)")
    if not run:
        return
    import torch

    from mtbench.profiling.latency import StopRule
    from mtbench.errors import RuntimeUnavailable
    from mtbench.profiling.runtimes import flat_tensors
    model = _tiny_model().eval()
    extra = {"calibration": torch.rand(4, 3, 32, 32)} if "calibration" in params else {}
    try:
        out = factory(model, image_size=32, batch_size=2, device=torch.device("cpu"), warmup=1,
                      repeats=6, fps_repeats=6, rule=StopRule(max_s=0.0), **extra)
    except RuntimeUnavailable:  # cannot run on this machine (a GPU runtime): nothing more to check here
        return
    if not isinstance(out, dict):
        raise PluginContractError(f"{who}: must return a dict of figures, got {type(out).__name__}")
    for key in ("latency_ms", "fps", "parity_max_abs"):
        v = out.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise PluginContractError(f"{who}: figure {key!r} must be a finite number, got {v!r}")
    if out["parity_max_abs"] >= tolerance:
        raise PluginContractError(f"{who}: outputs differ from PyTorch's by {out['parity_max_abs']:.3g} (parity_max_abs)")
    if out.get("predict") is not None:
        x = torch.rand(3, 3, 32, 32)
        with torch.no_grad():
            ref, got = flat_tensors(model(x)), flat_tensors(out["predict"](x))
        if [t.shape for t in ref] != [t.shape for t in got] or any(t.dtype != torch.float32 for t in got):
            raise PluginContractError(f"{who}: predict must return the model's outputs (float32, same tasks and "
                                      f"shapes): {[tuple(t.shape) for t in ref]} vs {[tuple(t.shape) for t in got]}")


def _tiny_model():
    """A two-output model of the model contract's shape: ``dict[task, Tensor]``."""
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            m = self.conv(x)
            return {"map": m, "logits": m.mean(dim=(2, 3))}

    return Tiny()

# --- end of the task, metric and runtime checks ---------------------------------------------
