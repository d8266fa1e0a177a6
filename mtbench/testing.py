"""Checks a plugin author runs in their own tests: the contract mtbench checks at the door.

As scikit-learn's ``check_estimator`` or torchmetrics' ``MetricTester``: each function builds the
plugin's object the way mtbench does, runs it on a tiny generated batch (the built-in
``synthetic`` data set, no files needed) and raises :class:`PluginContractError` naming what is
wrong, expected vs got. A plugin's test suite calls them directly::

    from mtbench.testing import check_loss, check_model, check_strategy

    def test_model():
        check_model(my_model_factory, tasks=("det", "cls"), level="P4", width=16)

``mtbench new-plugin NAME`` writes a distribution whose tests do exactly that. Everything runs
on the CPU in float32 (strategies are also checked in float64, where a state tensor created in
the wrong dtype shows) and takes seconds.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch

from mtbench.errors import MtbenchError

#: what the checks build a tiny stand-in model with when a loss is checked on its own
TINY_MODEL = ("unified-onehead", {"backbone": "mobilenetv3_small_100", "neck_channels": 16})


class PluginContractError(MtbenchError, AssertionError):
    """A plugin's object does not keep mtbench's contract; the message says what and where.

    An ``AssertionError`` too, so pytest shows it as a failed check, not an error.
    """


def _registry():
    from mtbench.plugins import get_registry
    return get_registry(load_entrypoints=False)


def _default_loss(task: str) -> str:
    from mtbench.suite import DEFAULT_LOSSES
    return DEFAULT_LOSSES[task]


def tiny_batch(tasks: Iterable[str], image_size: int = 64, batch: int = 2, seed: int = 0) -> tuple[dict, dict]:
    """Generated data for ``tasks``: ``(infos, batches)`` with ``infos[task]`` a
    :class:`~mtbench.data.base.TaskInfo` and ``batches[task]`` an ``(images float32 (B, 3, S, S),
    targets)`` pair in the task's collated target format (:func:`mtbench.data.base.collate`)."""
    from mtbench.data.base import collate
    registry = _registry()
    infos, batches = {}, {}
    for task in tasks:
        data = registry.create("dataset", "synthetic", task=task, split="train", root=None, image_size=image_size,
                               num_images={"train": batch, "val": batch}, seed=seed)
        infos[task] = data.info
        batches[task] = collate([data[i] for i in range(batch)])
    return infos, batches


def _fail(what: str, message: str) -> None:
    raise PluginContractError(f"{what}: {message}")


def check_model(factory: Callable[..., Any], tasks: Iterable[str] = ("det", "seg", "cls"), level: str = "P3",
                image_size: int = 64, **params: Any) -> torch.nn.Module:
    """Build a model plugin as mtbench does and check it keeps the model contract.

    ``factory(tasks=dict[str, TaskInfo], level=level, **params)`` must return a
    :class:`~mtbench.models.base.MultiTaskModel` that declares ``tasks``, ``strides`` (pixels)
    and ``infos``; then :func:`mtbench.models.contract.check_model` runs it on
    ``float32 (2, 3, image_size, image_size)`` and compares outputs with the declarations (one
    map per declared stride of the right size, channels for the declared classes, decode
    shapes); last, one training step with each task's default loss must give finite losses
    and a finite gradient that reaches the parameters.

    :param tasks: task names the model is built for (generated data gives their classes).
    :param level: feature level ``P2``..``P5`` of the task heads.
    :param image_size: input side in pixels (a multiple of the largest stride).
    :return: the model built (eval mode off, gradients zeroed).
    :raises PluginContractError: the first contract violation, naming task and expected vs got.
    """
    from mtbench.models.base import MultiTaskModel
    from mtbench.models.contract import ContractError
    from mtbench.models.contract import check_model as contract
    what = f"model {getattr(factory, '__name__', factory)!r}"
    tasks = list(tasks)
    infos, batches = tiny_batch(tasks, image_size)
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
    losses = {t: registry.create("loss", registry.loss_key(t, _default_loss(t)), num_classes=infos[t].num_classes)
              for t in tasks}
    try:
        contract(model, image_size, torch.device("cpu"), {t: getattr(losses[t], "decode_kwargs", {}) for t in tasks})
    except ContractError as exc:
        _fail(what, str(exc))
    model.train()
    total = 0.0
    for t in tasks:
        images, targets = batches[t]
        parts = losses[t](model(images)[t], targets, stride=model.strides[t])
        if not torch.isfinite(parts["total"]):
            _fail(what, f"task {t}: the default loss {_default_loss(t)!r} on its output is {float(parts['total'])}")
        total = total + parts["total"]
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        _fail(what, "no parameter received a gradient from the task losses (is the graph detached?)")
    if not all(torch.isfinite(g).all() for g in grads):
        _fail(what, "a parameter's gradient is not finite after one backward of the task losses")
    model.zero_grad(set_to_none=True)
    return model


def check_loss(factory: Callable[..., Any], task: str, image_size: int = 64, level: str = "P3",
               **params: Any) -> dict[str, torch.Tensor]:
    """Build a loss plugin as mtbench does and check it keeps the loss contract.

    ``factory(num_classes=int, **params)`` must return a module called as
    ``loss(raw, targets, stride=int)`` (``raw``: the task's output of a built-in model,
    :data:`TINY_MODEL`, on generated data) returning ``dict[str, Tensor]`` with a finite scalar
    ``total`` that has a gradient; every name in ``declared_components`` must be present and
    finite; a positive counter ``num_pos`` must be > 0 on a batch that has objects (an
    assigner that finds no positives trains nothing: the "classification loss silently 0"
    failure); one backward must give finite gradients.

    :return: the loss components of the check batch (detached).
    :raises PluginContractError: the first violation, naming the component and what was got.
    """
    what = f"{task} loss {getattr(factory, '__name__', factory)!r}"
    infos, batches = tiny_batch([task], image_size)
    registry = _registry()
    name, model_params = TINY_MODEL
    model = registry.create_model(name, tasks=infos, level=level, **model_params).train()
    loss = factory(num_classes=infos[task].num_classes, **params)
    images, targets = batches[task]
    parts = loss(model(images)[task], targets, stride=model.strides[task])
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
