"""Evaluate a model on the val splits of a set of tasks.

Every task is scored on its whole val split (no sub-sampling) by the metric its task names
(:meth:`mtbench.tasks.Task.metric`): det mAP@[.5:.95]/AP50 via COCO evaluation in original
image pixels, seg mIoU from one confusion matrix, cls Top-1, a plugin task's own.
:func:`evaluate_detailed` also keeps each metric's per-image records and the per-image predictions, from which :func:`verdict_inputs`
derives bootstrap CIs and the measured chance level (:mod:`mtbench.metrics.chance`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from mtbench.data.base import TaskDataset, collate
from mtbench.metrics.base import DEFAULT_LEVEL, DEFAULT_RESAMPLES, bootstrap_ci, full_value, sample_entry
from mtbench.metrics.chance import chance_metric
from mtbench.plugins import active_registry


def _per_image(batch) -> list:
    """Split a batch (tensor ``(B, ...)`` or list of B items) into per-image items (CPU)."""
    if isinstance(batch, torch.Tensor):
        return list(batch.detach().cpu().unbind(0))
    return list(batch)


@dataclass
class TaskEvaluation:
    """One task's evaluation: its metric (with per-image records), values, and per-image
    predictions/targets in val order (kept for the chance predictor)."""

    metric: object
    values: dict[str, float]
    preds: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    make_metric: object = None
    task: object = None  # the mtbench.tasks.Task (its chance predictor)
    _entry: dict | None = None

    def sample_entry(self) -> dict | None:
        """The metric's per-image records as a record stores them
        (:func:`mtbench.metrics.base.sample_entry`), computed once (for det, ``samples()`` runs
        pycocotools' matching); None for a metric that keeps none."""
        if self._entry is None and hasattr(self.metric, "samples"):
            self._entry = sample_entry(self.metric)
        return self._entry


@torch.no_grad()
def evaluate_detailed(model, val_sets: dict[str, TaskDataset], tasks: list[str], batch_size: int,
                      device: torch.device, image_size: int, decode_kwargs: dict[str, dict] | None = None
                      ) -> dict[str, TaskEvaluation]:
    """Per task: the metric with its per-image records, its values and the predictions.

    ``decode_kwargs[task]`` is passed to ``model.decode`` (from the task's loss).
    """
    decode_kwargs = decode_kwargs or {}
    was_training = model.training
    model.eval()
    out: dict[str, TaskEvaluation] = {}
    for task in tasks:
        ds, spec = val_sets[task], active_registry().task(task)
        metric = spec.metric(ds)
        ev = TaskEvaluation(metric, {}, make_metric=lambda ds=ds, spec=spec: spec.metric(ds), task=spec)
        for images, targets in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate):
            raw = model(images.to(device))[task]
            preds = model.decode(task, raw, image_size, **decode_kwargs.get(task, {}))
            metric.update(preds, targets)
            ev.preds += _per_image(preds)
            ev.targets += _per_image(targets)
        ev.values = metric.compute()
        out[task] = ev
    model.train(was_training)
    return out


def evaluate(model, val_sets: dict[str, TaskDataset], tasks: list[str], batch_size: int,
             device: torch.device, image_size: int, decode_kwargs: dict[str, dict] | None = None) -> dict[str, float]:
    """Metrics of ``tasks`` on their val splits, e.g. ``{"det/mAP": .., "det/AP50": .., "seg/mIoU": ..}``."""
    detail = evaluate_detailed(model, val_sets, tasks, batch_size, device, image_size, decode_kwargs)
    return {k: v for ev in detail.values() for k, v in ev.values.items()}


def verdict_inputs(detail: dict[str, TaskEvaluation], seed: int, resamples: int = DEFAULT_RESAMPLES,
                   level: float = DEFAULT_LEVEL, method: str = "percentile") -> dict:
    """Per-image records, bootstrap CIs and measured chance levels of an evaluation.

    :return: ``{"samples": {task: sample entry}, "ci": {metric: [lo, hi]}, "chance": {metric:
        value}, "chance_ci": {metric: [lo, hi]}, "uncertainty": {method, resamples, level,
        seed, chance methods, seconds}}``; metric values in their own units (fractions).
    """
    t0 = time.perf_counter()
    out = {"samples": {}, "ci": {}, "chance": {}, "chance_ci": {}}
    chance_methods = {}
    for task, ev in detail.items():
        metric = ev.metric
        if not hasattr(metric, "samples"):  # a metric without per-image records: no CI, no measured chance
            chance_methods[task] = "none (metric keeps no per-image records)"
            continue
        entry = ev.sample_entry()
        out["samples"][task] = entry
        ci = bootstrap_ci(type(metric).reduce, entry["columns"], None, resamples, level, seed, method)
        out["ci"].update({k: list(v) for k, v in ci.items() if k in ev.values})
        cm, how = chance_metric(ev.task, ev.make_metric, ev.preds, ev.targets, seed)
        chance_methods[task] = how
        chance_samples = cm.samples()  # the chance value from its records (= compute(), tested; no second matching)
        values = full_value(type(cm).reduce, chance_samples)
        out["chance"].update({k: float(v) for k, v in values.items() if k in ev.values and k in out["ci"]})
        cci = bootstrap_ci(type(cm).reduce, chance_samples, None, resamples, level, seed, method)
        out["chance_ci"].update({k: list(v) for k, v in cci.items() if k in out["chance"]})
    out["uncertainty"] = {"method": method, "resamples": resamples, "level": level, "seed": seed,
                          "unit": "val images", "chance": chance_methods, "seconds": time.perf_counter() - t0}
    return out


class _RuntimeModel:
    """A runtime's ``predict`` in the model's place for :func:`evaluate_detailed`: its outputs,
    the model's ``decode`` (the same decoding and metric code as eager)."""

    training = False

    def __init__(self, predict, model):
        self.predict, self.model = predict, model

    def __call__(self, images: torch.Tensor) -> dict:
        return self.predict(images)

    def decode(self, *args, **kwargs):
        return self.model.decode(*args, **kwargs)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self


def runtime_val(predict, model, val_sets: dict[str, TaskDataset], tasks: list[str], batch_size: int,
                device: torch.device, image_size: int, decode_kwargs: dict[str, dict] | None,
                eager: dict[str, float]) -> dict:
    """The val metrics of ``tasks`` re-computed from a deployment runtime's outputs.

    :param predict: ``float32 (B, 3, S, S)`` images on ``device`` -> raw outputs
        ``dict[task, Tensor | list[Tensor]]`` as the runtime computes them (hookspecs
        ``mtbench_register_runtimes``); decoded by ``model.decode`` and scored by each task's
        metric over its whole val split, as :func:`evaluate_detailed` scores the eager model.
    :param eager: the eager float32 metrics of the same model (the cell's ``metrics``).
    :return: ``{"metrics": {name: value}, "delta": {name: runtime - eager}, "seconds": wall
        seconds of the pass}``; metrics as fractions, deltas in the same units (negative: the
        runtime loses accuracy on a higher-is-better metric).
    """
    t0 = time.perf_counter()
    values = evaluate(_RuntimeModel(predict, model), val_sets, tasks, batch_size, device, image_size, decode_kwargs)
    return {"metrics": values, "delta": {k: v - eager[k] for k, v in values.items() if eager.get(k) is not None},
            "seconds": time.perf_counter() - t0}
