"""The plugin contract: every hook mtbench calls, documented like an API.

Plugins are ordinary Python modules or objects with functions decorated by
:data:`mtbench.hookimpl`; distributions expose them through the entry-point group
``mtbench`` (see README, "Writing a plugin"). mtbench's own tasks, models, losses,
strategies and datasets register through exactly these hooks.

Hooks are always called with keyword arguments, so a hook may later gain an argument
without breaking existing implementations; an argument is never renamed.
Registration hooks return a list of :class:`mtbench.plugins.Spec`; every result is
collected (no hook stops at the first non-None result). Registering a name twice for
the same kind is a :class:`mtbench.errors.PluginError` naming both sources.

Parameters a suite gives a plugin (``params``) are checked when the suite is validated,
before anything is built (:meth:`mtbench.plugins.Registry.param_errors`): each name against
the factory's signature and each value against its annotation (pydantic; annotate with
constrained types such as ``pydantic.PositiveInt`` to have a bound checked too). A factory
(for a class: the class itself, not inherited) may also offer
``param_problems(tasks: list[str], **params) -> dict[str, str]``, called with the suite's
tasks and every given parameter, returning ``{parameter: problem}`` for values that must
agree with the suite (``sequential``'s ``order`` naming its tasks); each problem is reported
with the parameter's file and line.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mtbench")


@hookspec
def mtbench_register_tasks():
    """Register tasks: what a target is, how it is scored and shown.

    Called once when the registry is built (:func:`mtbench.plugins.get_registry`).

    :return: a list of ``Spec(kind="task", name, factory, summary)``. ``factory()`` returns a
        :class:`mtbench.tasks.Task`: its target and prediction schemas, how a target follows a
        flip or crop of its image (``to_tv`` / ``from_tv``, ``follows``, ``with_boxes``), ``decode`` of raw head outputs, ``metric(dataset)``
        (a metric of the per-sample record contract, :mod:`mtbench.metrics.base`), the metric
        names it reports with their direction (``metrics``), its ``headline`` metric, its
        chance predictor (``chance_inputs``), its ``default_loss`` and its table ``columns``.
        ``name`` is what suites write under ``tasks:``; the suite schema accepts exactly the
        registered names. Built-in example: :mod:`mtbench.tasks.detection`.
    """


@hookspec
def mtbench_register_metrics():
    """Register metrics: how a task's predictions are scored, per image, so every value gets a
    bootstrap CI, a measured chance level and paired comparisons.

    Called once when the registry is built. A task names the metric it is scored by
    (:attr:`mtbench.tasks.Task.scored_by`); the runner builds it for every val split.

    :return: a list of ``Spec(kind="metric", name, factory, summary, task=...)`` (registry key
        ``task/name``). ``factory(dataset=TaskDataset)`` returns a fresh metric of the
        per-sample record contract (:mod:`mtbench.metrics.base`): ``update(preds, targets)``
        per batch (the task's prediction and target schemas), ``samples() -> {column: list}``
        with one JSON-ready entry per val image, a static ``reduce(samples, index) -> {metric:
        float}`` over any resample of the images, and ``compute()`` = ``reduce(samples(),
        arange(N))``. The metric names it returns are the task's ``metrics``. Built-in example:
        :mod:`mtbench.metrics.classification` (``cls/top1``); check yours with
        :func:`mtbench.testing.check_metric`.
    """


@hookspec
def mtbench_register_models():
    """Register model architectures.

    Called once when the registry is built (:func:`mtbench.plugins.get_registry`).

    :return: a list of ``Spec(kind="model", name, factory, summary)``. ``factory`` is
        called as ``factory(tasks=dict[str, TaskInfo], level=str, **params)`` and returns
        an :class:`mtbench.models.base.MultiTaskModel` whose ``strides`` state which
        feature stride feeds each task head (P2 = 4 ... P5 = 32).

    Optional reference figures: a factory (or model class) may offer
    ``reference_figures(**params) -> list[dict]``, the parameter count and FLOPs its paper
    reports for those ``params``: ``{"source", "params_m", "flops_g", "tolerance",
    "conditions": {"image_size", "tasks": {task: num_classes}, "level"?}}`` (``[]`` for
    parameters the paper did not report). When a cell does not match the conditions, the
    model is rebuilt at them and measured there (deployed, ``fuse()``-d); a figure off by
    more than ``tolerance`` (relative) is an error finding (``reference-figures``). See
    :mod:`mtbench.profiling.reference`; ``plugins/mtbench-gold-yolo`` is an example.
    """


@hookspec
def mtbench_register_losses():
    """Register task losses.

    Called once when the registry is built.

    :return: a list of ``Spec(kind="loss", name, factory, summary, task=...)`` where
        ``task`` is a registered task's name (``det``, ``seg``, ``cls``, a plugin's). ``factory(num_classes=int,
        **params)`` (and ``class_names=tuple[str]`` when the factory takes it) returns an
        ``nn.Module`` called as ``loss(raw, targets, stride=int)``, plus ``images=float32 (B, 3,
        H, W)`` in [0, 1] when it sets ``takes_images = True`` (:func:`mtbench.losses.call_loss`);
        it returns ``dict[str, Tensor]``: named scalar components plus ``total``, and
        integer-valued counters such as ``num_pos`` (positives assigned). Optionally the
        loss declares ``declared_components`` (a tuple of component names every call
        reports); the ``dead-loss`` diagnostic flags a declared component that never appears.
    """


@hookspec
def mtbench_register_strategies():
    """Register training strategies.

    Called once when the registry is built.

    :return: a list of ``Spec(kind="strategy", name, factory, summary)``. ``factory(**params)``
        returns an object with ``fit(ctx: TrainContext) -> StrategyReport`` (see
        :mod:`mtbench.strategies.base`).
    """


@hookspec
def mtbench_register_datasets():
    """Register dataset loaders.

    Called once when the registry is built.

    :return: a list of ``Spec(kind="dataset", name, factory, summary, task=None|str)``.
        ``factory(task=str, split="train"|"val", root=Path|None, image_size=int, **params)``
        returns a :class:`mtbench.data.base.TaskDataset`. ``task`` on the spec restricts
        which task the loader can serve (``None``: several, e.g. ``synthetic``). A loader
        that reads files takes them from ``root / path``: its factory has a ``path``
        parameter (relative to the data root, usually with a default), and validation
        checks that the data root (``data_root`` / ``MTBENCH_DATA``) and ``root / path`` are
        folders, naming them; a loader without ``path`` (generated data) needs no root.
        A loader that leaves annotations out leaves them out of training and of its
        evaluation ground truth alike and says so in the dataset's ``dropped``
        (:func:`mtbench.data.base.dropped_record`): the runner stores the counts with the
        cell's result and ``mtbench run`` warns.
    """


@hookspec
def mtbench_register_diagnostics():
    """Register diagnostic checks: functions that flag results that are not what they seem.

    Called once when the registry is built. Every registered check runs on every cell after it
    finishes (:mod:`mtbench.runner`; its findings go into the record's ``diagnostics``) and
    again in ``mtbench doctor`` over stored records.

    :return: a list of ``Spec(kind="diagnostic", name, factory, summary)``. ``factory(record:
        dict) -> list[Finding]`` is a pure function over a stored cell record (read it with
        ``.get``: a failed cell lacks most keys); each
        :class:`mtbench.diagnostics.binding.Finding` names its check (``name``), a
        ``severity`` (``warning``, or ``error``: the run exits 3), a message, its evidence and
        the metric keys it invalidates (the table marks them, gates on them are not
        meaningful). Built-in examples: :mod:`mtbench.diagnostics.checks` (``dead-loss``,
        ``chance-level``, ...).
    """


@hookspec
def mtbench_register_optimizers():
    """Register optimizers (Lion, Muon, SAM ...) a suite names in ``fixed.optimizer.name``.

    Called once when the registry is built; the suite's name is checked against the registered
    ones when it is validated (file, line, "did you mean").

    :return: a list of ``Spec(kind="optimizer", name, factory, summary)``. ``factory(params=list
        of parameter groups, lr=float, weight_decay=float, momentum=float)`` returns a
        ``torch.optim.Optimizer`` over ``params`` (each group may carry its own ``lr``: the
        backbone's is ``lr * backbone_lr_mult``); an argument it has no use for is ignored.
        Built-in examples: :mod:`mtbench.optimizers` (``adamw``, ``sgd``).
    """


@hookspec
def mtbench_register_schedules():
    """Register learning-rate schedules a suite names in ``fixed.optimizer.schedule``.

    Called once when the registry is built; names are checked when the suite is validated.

    :return: a list of ``Spec(kind="schedule", name, factory, summary)``. ``factory(step: int,
        total_steps: int) -> float`` is the factor on each group's learning rate ``step`` steps
        after the linear warm-up (``warmup_steps``), of ``total_steps`` after it. Built-in
        examples: :mod:`mtbench.optimizers` (``cosine``, ``constant``).
    """


@hookspec
def mtbench_register_runtimes():
    """Register deployment runtimes (TensorRT, OpenVINO, a vendor's) a suite names in
    ``profile.runtimes``: export, run, parity, timed like PyTorch eager.

    Called once when the registry is built; names are checked when the suite is validated.

    :return: a list of ``Spec(kind="runtime", name, factory, summary)``. ``factory(model,
        image_size=int, batch_size=int, device=torch.device, warmup=int, repeats=int,
        fps_repeats=int, rule=StopRule | Budget) -> dict`` exports ``model`` (eval mode, input
        ``float32 (B, 3, S, S)`` in [0, 1], output ``dict[task, Tensor | list[Tensor]]``), runs
        it and returns its figures: batch-1 latency and FPS at ``batch_size`` sampled with
        :func:`mtbench.profiling.latency.sample_adaptive` under ``rule``
        (:func:`~mtbench.profiling.latency.latency_figures` /
        :func:`~mtbench.profiling.latency.fps_figures`: ``latency_ms``, ``fps`` with their
        intervals) and ``parity_max_abs``, the largest absolute difference from PyTorch's
        outputs on the same input. The figures may carry ``predict``: a callable ``float32 (B,
        3, S, S)`` images in [0, 1] on ``device`` -> the model's raw outputs ``dict[task, Tensor
        | list[Tensor]]`` (float32, on ``device``) as the runtime computes them; with
        ``profile.runtime_metrics`` the val metrics are re-computed from it with the model's
        own decode and the tasks' metrics (stored as the runtime's ``val``, never the callable;
        without it ``val`` says unavailable). A factory that declares a ``calibration``
        parameter gets ``float32 (N, 3, S, S)`` train images in [0, 1]
        (``profile.calibration_images``; None outside a cell). Raising
        :class:`mtbench.errors.RuntimeUnavailable` records ``{"unavailable": reason}`` (the
        machine cannot run it: no GPU, library missing), any other exception ``{"error":
        reason}``; the cell goes on. Built-in examples: :mod:`mtbench.profiling.runtimes`
        (``onnx``, ``compile``), :mod:`mtbench.profiling.deploy` (``onnx-fp16``, ``onnx-int8``,
        ``tensorrt``, ``tensorrt-int8``).
    """


@hookspec
def mtbench_register_executors():
    """Register executors: where and how a suite's cells run (``mtbench run --executor NAME``;
    a cluster team's scheduler backend).

    Called once when the registry is built; ``--executor`` is checked against the registered
    names before anything runs ("did you mean", exit 2).

    :return: a list of ``Spec(kind="executor", name, factory, summary)``. ``factory(cells=list
        of mtbench.suite.Cell, registry=Registry, store=mtbench.results.ResultStore, force=bool,
        show_progress=bool, options=dict)`` runs every cell with
        :func:`mtbench.runner.run_cell` (wherever it likes), skips cells ``store.resume`` has a
        result for unless ``force``, writes each record with ``store.write`` as it arrives, and
        returns the records in cell order. ``options``: the command line's ``address``,
        ``cpus_per_cell``, ``gpus_per_cell``, ``load_entrypoints``. Built-in examples:
        :mod:`mtbench.executors.local` (``local``), :mod:`mtbench.executors.ray` (``ray``).
    """
