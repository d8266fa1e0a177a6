"""The task contract: what a task (``det``, ``seg``, ``cls`` or a plugin's) tells the core.

A task is registered through the hook ``mtbench_register_tasks`` (:mod:`mtbench.hookspecs`)
as ``Spec(kind="task", name, factory=<a Task subclass>)``; the core never branches on a
task's name, it asks the task. :class:`Task` names:

- ``target`` / ``prediction``: the schemas, in words (shapes, dtypes, units; DESIGN.md);
- :meth:`Task.to_tv` / :meth:`Task.from_tv`, ``follows``, ``with_boxes``: how the target
  follows a flip, crop or scale of its image (torchvision.transforms.v2 moves its tv_tensors;
  the pipeline and its random draws are :mod:`mtbench.data.augment`'s);
- :meth:`Task.decode`: raw head output -> predictions;
- :meth:`Task.metric`: a fresh metric for a val split, the registered metric it is
  ``scored_by`` (hook ``mtbench_register_metrics``; the per-sample record contract of
  :mod:`mtbench.metrics.base`), ``metrics`` (every metric name it may report -> higher is
  better) and ``headline`` (the one metric per-stage scores, forgetting and delta-m use);
- :meth:`Task.chance_inputs`: the chance predictor (:mod:`mtbench.metrics.chance`);
- ``default_loss``: the loss a suite gets when it names none;
- ``columns``: its columns in the results table ``(title, metric, digits)``;
- :meth:`Task.check_output` / :meth:`Task.check_decoded`: the model contract checked at the
  door (:mod:`mtbench.models.contract`).

Its metadata (metrics and directions, headline, columns: :meth:`Task.meta`) is stored with
every result record (``task_meta``), so ``compare``, ``doctor`` and ``report`` read a plugin
task's records where the plugin is not installed, and without importing torch: a task module
imports torch and its model-side helpers inside the methods that need them.

Built-in tasks: :mod:`mtbench.tasks.detection`, :mod:`~mtbench.tasks.segmentation`,
:mod:`~mtbench.tasks.classification`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterable


class Task:
    """Base class of a task's contract; a subclass sets the class attributes and implements
    :meth:`metric` (and :meth:`to_tv` / :meth:`from_tv` / :meth:`decode` where the defaults do not fit).

    :cvar name: the name suites use (``tasks: {name: ...}``).
    :cvar target: the target schema of one image, in words.
    :cvar prediction: the decoded prediction schema, in words.
    :cvar metrics: every metric name the task may report -> ``True`` when higher is better;
        names are ``<task>/<metric>`` (or ``<task>_<variant>/<metric>``), fractions in [0, 1].
    :cvar headline: the task's headline metric (one of ``metrics``).
    :cvar scored_by: the registered metric (``mtbench_register_metrics``, key
        ``<task>/<scored_by>``) :meth:`metric` builds for a val split.
    :cvar default_loss: registered loss name used when a suite names none.
    :cvar columns: table columns ``(title, metric, digits)``, in display order.
    :cvar class_logits: raw outputs are class logits over dim 1 (distillation uses KL on
        them; otherwise MSE on the raw maps).
    :cvar image_level: a dense head's map for this task is averaged over space to ``(B, ch)``
        (cls logits); otherwise it is kept ``(B, ch, h, w)``.
    :cvar follows: the geometric augmentations (``"flip"``, ``"crop"``: a crop resized back, i.e.
        scale jitter) whose effect the target follows through :meth:`to_tv` / :meth:`from_tv`;
        a suite whose ``fixed.augment`` has one the task leaves out refuses it
        (:func:`mtbench.data.augment.refusals`); e.g. an object count follows a flip, not a crop.
    :cvar with_boxes: None: the target has no boxes; else the target keys whose rows go with the
        rows of its ``"boxes"`` (kept or dropped with them when a crop leaves a box degenerate,
        :class:`torchvision.transforms.v2.SanitizeBoundingBoxes`).
    """

    name: ClassVar[str]
    target: ClassVar[str] = ""
    prediction: ClassVar[str] = ""
    metrics: ClassVar[dict[str, bool]] = {}
    headline: ClassVar[str]
    scored_by: ClassVar[str]
    default_loss: ClassVar[str]
    columns: ClassVar[tuple[tuple[str, str, int], ...]] = ()
    class_logits: ClassVar[bool] = False
    image_level: ClassVar[bool] = False
    follows: ClassVar[frozenset[str]] = frozenset({"flip", "crop"})
    with_boxes: ClassVar[tuple[str, ...] | None] = None

    def head_channels(self, num_classes: int) -> int:
        """Channels the task occupies in a shared dense head's output (``unified-onehead``,
        ``dual-backbone``). Default: one per class."""
        return num_classes

    def meta(self) -> dict:
        """JSON-ready metadata stored with each result: ``{"metrics": {name: higher_is_better},
        "headline": str, "columns": [[title, metric name or record path, digits]]}``."""
        return {"metrics": dict(self.metrics), "headline": self.headline,
                "columns": [[t, w if isinstance(w, str) else list(w), d] for t, w, d in self.columns]}

    def to_tv(self, target: Any, canvas_size: tuple[int, int]) -> Any:
        """``target`` with its geometric parts wrapped as :mod:`torchvision.tv_tensors`
        (``BoundingBoxes``, ``Mask``, ``KeyPoints`` of an image ``canvas_size = (H, W)`` pixels), so
        that a v2 transform of the image moves them with it; other entries pass through unchanged.
        Default: unchanged (image-level labels do not move)."""
        return target

    def from_tv(self, target: Any) -> Any:
        """The inverse of :meth:`to_tv` after the transform: plain tensors in the task's target
        schema (rows whose geometry left the image dropped where the schema needs it). Default:
        unchanged."""
        return target

    def decode(self, raw: Any, *, num_classes: int, stride: int | list[int], image_size: int, **options) -> Any:
        """Predictions from the raw head output (``stride`` in pixels, a list for multi-level
        heads; ``options`` from the loss's ``decode_kwargs``). Default: the raw output."""
        return raw

    def metric(self, dataset) -> Any:
        """A fresh metric for the val split ``dataset`` (:class:`mtbench.metrics.base.SampleMetric`):
        the registered metric ``<name>/<scored_by>`` of the active registry, built for ``dataset``."""
        from mtbench.plugins import active_registry  # here: the registry is built on first use, not at import
        return active_registry().create("metric", f"{self.name}/{self.scored_by}", dataset=dataset)

    def chance_inputs(self, preds: list, targets: list, seed: int) -> tuple[list, list, str]:
        """Per-image ``(predictions, targets)`` of the chance predictor and its method name.
        Default: the model's predictions against a seeded derangement of the targets
        (:func:`mtbench.metrics.chance.permuted_targets`)."""
        from mtbench.metrics.chance import permuted_targets
        return permuted_targets(preds, targets, seed)

    def check_output(self, raw: Any, *, num_classes: int, strides: list[int], batch: int, image_size: int) -> None:
        """Check a raw output of a ``batch`` of ``image_size`` images against what the model
        declares; raise :class:`mtbench.models.contract.ContractError` naming what is wrong.
        Default: no check."""

    def check_decoded(self, pred: Any, *, batch: int, image_size: int) -> None:
        """Check decoded predictions of a ``batch``; raise ``ContractError``. Default: one
        prediction per image (a tensor or list of length ``batch``)."""
        from mtbench.models.contract import check_per_image
        check_per_image(self.name, pred, batch)


_SEEN: dict[str, dict] = {}  # task metadata read from stored records (a task whose plugin is not installed)


def task_meta(records: Iterable[dict] = ()) -> dict[str, dict]:
    """Task name -> :meth:`Task.meta` of every task known here: those of the active registry
    (:func:`mtbench.plugins.use_registry`; outside one, the built-in tasks, imported without
    torch), then those stored in ``records`` (and in records read before in this process).
    What readers of stored results (table columns, headlines, metric directions) go by."""
    from mtbench.plugins import reader_registry
    for rec in records:
        for name, meta in (rec.get("task_meta") or {}).items():
            _SEEN.setdefault(name, meta)
    out = {name: task.meta() for name, task in reader_registry().tasks().items()}
    for name, meta in _SEEN.items():
        out.setdefault(name, meta)
    return out
