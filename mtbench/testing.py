"""Conformance checks a plugin runs in its own CI (scikit-learn's ``check_estimator``,
torchmetrics' ``MetricTester``): the same checks mtbench's tests run on its built-ins.

Each check raises :class:`mtbench.errors.PluginError` naming the plugin object and what is
wrong, and returns None when it conforms.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mtbench.errors import PluginError

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
        raise PluginError(f"task {_name_of(spec)}: the factory must return a mtbench.tasks.Task, got "
                          f"{type(task).__name__}")
    return task


def check_task(spec: Any, dataset: Any = None) -> None:
    """Check a task against the task contract (:class:`mtbench.tasks.Task`).

    Always: ``name`` is a non-empty string (and the Spec's name, when given a Spec); ``metrics``
    maps metric names to booleans (higher is better); ``headline`` is one of them and higher is
    better (forgetting needs that); ``default_loss`` is a string; every column is ``(title,
    metric name or record path, digits int)`` and a named metric is one of ``metrics``.
    With a ``dataset`` (a split of the task): a flip applied twice gives its first target back.

    :param spec: ``Spec(kind="task", ...)``, a Task subclass or instance.
    :param dataset: optional :class:`mtbench.data.base.TaskDataset` of the task.
    :raises PluginError: naming the task and what is wrong.
    """
    task = _task_of(spec)
    who = f"task {_name_of(spec)}"
    name = getattr(task, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"{who}: 'name' must be a non-empty string, got {name!r}")
    if hasattr(spec, "kind") and spec.name != name:
        raise PluginError(f"{who}: registered as {spec.name!r} but its Task.name is {name!r}")
    metrics = getattr(task, "metrics", None)
    if not isinstance(metrics, dict) or not metrics or not all(
            isinstance(k, str) and isinstance(v, bool) for k, v in metrics.items()):
        raise PluginError(f"{who}: 'metrics' must map metric names to booleans (higher is better), got {metrics!r}")
    headline = getattr(task, "headline", None)
    if headline not in metrics:
        raise PluginError(f"{who}: headline {headline!r} is not one of its metrics ({', '.join(metrics)})")
    if metrics[headline] is not True:
        raise PluginError(f"{who}: headline {headline!r} must be higher-is-better (forgetting and delta-m "
                          f"read it as a score)")
    if not isinstance(getattr(task, "scored_by", None), str):
        raise PluginError(f"{who}: 'scored_by' must name the registered metric it is scored by (task/name)")
    if not isinstance(getattr(task, "default_loss", None), str):
        raise PluginError(f"{who}: 'default_loss' must name a registered loss of the task")
    for col in task.columns:
        ok = isinstance(col, tuple) and len(col) == 3 and isinstance(col[0], str) and isinstance(col[2], int) \
            and (col[1] in metrics or isinstance(col[1], tuple))
        if not ok:
            raise PluginError(f"{who}: column {col!r} is not (title, one of its metrics or a record path, digits)")
    if dataset is not None:
        _check_task_on(task, who, dataset)


def _check_task_on(task, who: str, dataset) -> None:
    """The data-dependent part of :func:`check_task`: flipping twice is the identity."""
    import torch
    image, target = dataset.load(0)
    width = image.shape[-1]
    back = task.flip_target(task.flip_target(target, width), width)

    def equal(a, b) -> bool:  # float coordinates: width - (width - x) is x up to rounding
        return torch.allclose(a.double(), b.double(), atol=1e-4) if isinstance(b, torch.Tensor) else a == b

    same = equal(back, target) if isinstance(target, torch.Tensor) else \
        set(back) == set(target) and all(equal(back[k], v) for k, v in target.items())
    if not same:
        raise PluginError(f"{who}: flip_target applied twice does not give the target back")


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
            raise PluginError(f"{who}: has no {method}() (per-sample record contract, mtbench.metrics.base)")
    if not isinstance(type(metric).__dict__.get("reduce") or _inherited(type(metric), "reduce"), staticmethod):
        raise PluginError(f"{who}: reduce(samples, index) must be a staticmethod (compare and doctor call it on "
                          f"stored records, without an instance)")
    metric.update(preds, targets)
    samples = metric.samples()
    try:
        n = num_samples(samples)
    except ValueError as exc:
        raise PluginError(f"{who}: samples() columns must have one entry per image: {exc}") from None
    try:
        json.dumps(samples)
    except TypeError as exc:
        raise PluginError(f"{who}: samples() must be JSON-ready (lists of numbers): {exc}") from None
    values = metric.compute()
    again = type(metric).reduce(samples, np.arange(n))
    if not isinstance(values, dict) or not all(isinstance(v, float) for v in values.values()):
        raise PluginError(f"{who}: compute() must return {{metric name: float}}, got {values!r}")
    if not set(again) <= set(values) or any(not np.isclose(values[k], again[k], equal_nan=True) for k in again):
        raise PluginError(f"{who}: compute() {values} differs from reduce(samples(), arange(N)) {again}")
    if n:
        type(metric).reduce(samples, np.zeros(n, dtype=np.int64))  # a resample with repeats


def _inherited(cls: type, attr: str):
    for base in cls.__mro__:
        if attr in base.__dict__:
            return base.__dict__[attr]
    return None


def check_runtime(spec: Any, run: bool = True) -> None:
    """Check a runtime against the runtime contract (``mtbench_register_runtimes``).

    Its factory takes the arguments mtbench passes (``model``, ``image_size``, ``batch_size``,
    ``device``, ``warmup``, ``repeats``, ``fps_repeats``, ``rule``); with ``run``, it measures a
    tiny two-task model (a 3x3 conv map and pooled logits, 32 px, batch 2, CPU, the minimum
    samples) and returns a dict with finite ``latency_ms`` and ``fps`` and a ``parity_max_abs``
    below 1e-3 (its outputs are the model's).

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
            raise PluginError(f"{who}: its factory does not take {', '.join(missing)} (hookspecs: "
                              f"mtbench_register_runtimes)")
    if not run:
        return
    import torch

    from mtbench.profiling.latency import StopRule
    out = factory(_tiny_model().eval(), image_size=32, batch_size=2, device=torch.device("cpu"), warmup=1,
                  repeats=6, fps_repeats=6, rule=StopRule(max_s=0.0))
    if not isinstance(out, dict):
        raise PluginError(f"{who}: must return a dict of figures, got {type(out).__name__}")
    for key in ("latency_ms", "fps", "parity_max_abs"):
        v = out.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise PluginError(f"{who}: figure {key!r} must be a finite number, got {v!r}")
    if out["parity_max_abs"] >= 1e-3:
        raise PluginError(f"{who}: outputs differ from PyTorch's by {out['parity_max_abs']:.3g} (parity_max_abs)")


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
