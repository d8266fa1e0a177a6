"""The worked example of README "Writing a plugin": a new task end to end, with no core edit.

It registers, through mtbench's hooks (one entry point, group ``mtbench``):

- task ``count`` (:class:`Count`, hook ``mtbench_register_tasks``): how many shapes an image
  holds. Target ``int64 ()``, the number of shapes; prediction ``float32 (B,)``, the predicted
  number; its head is image-level (one channel averaged over the map, like cls logits);
  metrics ``count/acc`` (rounded prediction == count, the headline, higher is better) and
  ``count/MAE`` (mean absolute error in shapes, lower is better); chance: the default
  permutation (the model's counts against other images' counts); table columns for both and
  for the chance level of the accuracy;
- metric ``count/acc-mae`` (``mtbench_register_metrics``): :class:`CountMetric`, per-image
  records, so both values get bootstrap CIs and a chance level;
- dataset ``synthetic-count`` (``mtbench_register_datasets``): mtbench's generated shapes
  (:func:`mtbench.data.synthetic.draw_sample`), labelled with their number;
- loss ``count/l1`` (``mtbench_register_losses``): smooth L1 between predicted and true count;
- diagnostic ``count-few-images`` (``mtbench_register_diagnostics``): a count scored on fewer
  than :data:`MIN_COUNT_IMAGES` val images is flagged (a warning invalidating ``count/acc``
  and ``count/MAE``: with so few images one image moves the accuracy by more than 5 points);
- runtime ``channels-last`` (``mtbench_register_runtimes``): PyTorch eager on an NHWC copy of
  the model, timed like eager, with its parity to the NCHW outputs;
- strategy ``heavy-det`` (``mtbench_register_strategies``): equal weights, detection x2.

``suite.yaml`` beside this file runs ``count`` beside ``det`` and ``cls`` in one cell.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtbench.data.base import TaskDataset, TaskInfo
from mtbench.diagnostics.binding import Finding
from mtbench.data.synthetic import draw_sample
from mtbench.metrics.base import SampleMetricBase
from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.equal import Equal
from mtbench.tasks import Task


class CountMetric(SampleMetricBase):
    """Counting accuracy and MAE over a split (per image records: the metric contract of
    :mod:`mtbench.metrics.base`, so every value gets a bootstrap CI and a chance level).

    ``update(preds float32 (B,) counts, targets int64 (B,) counts)``. Per image: ``correct``
    (0/1, ``round(pred) == count``) and ``abs_err`` (``|pred - count|`` in shapes).
    """

    def __init__(self):
        self.correct: list[int] = []
        self.abs_err: list[float] = []

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        p, t = preds.detach().cpu().double().reshape(-1), targets.cpu().double().reshape(-1)
        self.correct += (p.round() == t).int().tolist()
        self.abs_err += (p - t).abs().tolist()

    def samples(self) -> dict[str, list]:
        return {"correct": self.correct, "abs_err": self.abs_err}

    @staticmethod
    def reduce(samples: dict, index: np.ndarray) -> dict[str, float]:
        correct = np.asarray(samples["correct"], dtype=np.float64)[index]
        err = np.asarray(samples["abs_err"], dtype=np.float64)[index]
        return {"count/acc": float(correct.mean()) if len(correct) else 0.0,
                "count/MAE": float(err.mean()) if len(err) else float("nan")}


class Count(Task):
    """Object counting: target ``int64 ()`` shapes in the image; prediction ``float32 (B,)``."""

    name = "count"
    target = "int64 () number of objects in the image"
    prediction = "float32 (B,) predicted number of objects"
    metrics = {"count/acc": True, "count/MAE": False}
    headline = "count/acc"
    scored_by = "acc-mae"  # CountMetric, registered below
    default_loss = "l1"
    columns = (("count acc", "count/acc", 4), ("count MAE", "count/MAE", 3),
               ("count acc chance", ("chance", "count/acc"), 4))
    image_level = True  # one channel, averaged over the map: (B, 1)
    follows = frozenset({"flip"})  # a flip keeps the count; a crop (fixed.augment.scale) would change it

    def decode(self, raw, *, num_classes, stride, image_size, **options):
        return raw[:, 0]


class SyntheticCount(TaskDataset):
    """mtbench's generated shapes (1 to ``max_shapes`` per image), labelled with their number."""

    def __init__(self, split: str, image_size: int, num_images: int, seed: int, max_shapes: int):
        super().__init__("count", image_size, train=split == "train")
        self.split, self.num_images, self.seed, self.max_shapes = split, num_images, seed, max_shapes
        self.info = TaskInfo("count", 1, ("count",))

    def __len__(self) -> int:
        return self.num_images

    def load(self, index: int):
        image, boxes, *_ = draw_sample(self.seed, self.split, index, self.image_size, self.max_shapes)
        return image, torch.tensor(len(boxes), dtype=torch.int64)


def synthetic_count(task: str, split: str, root, image_size: int, num_images: int = 32, seed: int = 0,
                    max_shapes: int = 3) -> SyntheticCount:
    """``num_images`` generated images per split (no files: no ``path``, no data root)."""
    return SyntheticCount(split, image_size, num_images, seed, max_shapes)


class CountL1(nn.Module):
    """Smooth L1 (Huber, beta 1) between the predicted ``(B, 1)`` and the true count ``int64 (B,)``."""

    declared_components = ("l1",)

    def __init__(self, num_classes: int = 1):
        super().__init__()

    def forward(self, raw: torch.Tensor, target: torch.Tensor, stride: int) -> dict[str, torch.Tensor]:
        l1 = F.smooth_l1_loss(raw[:, 0], target.float())
        return {"l1": l1, "total": l1}


MIN_COUNT_IMAGES = 20


def count_few_images(record: dict) -> list[Finding]:
    """``count/acc`` and ``count/MAE`` measured on fewer than ``MIN_COUNT_IMAGES`` val images."""
    entry = (record.get("samples") or {}).get("count") or {}
    n = len((entry.get("columns") or {}).get("correct") or [])
    if not entry or n >= MIN_COUNT_IMAGES:
        return []
    return [Finding("count-few-images", "warning", f"count scored on {n} val images (< {MIN_COUNT_IMAGES}): one "
                    f"image moves count/acc by {1 / n:.0%}", {"images": n, "minimum": MIN_COUNT_IMAGES},
                    ["count/acc", "count/MAE"])]


def channels_last(model, image_size: int, batch_size: int, device, warmup: int, repeats: int, fps_repeats: int,
                  rule) -> dict:
    """PyTorch eager on a copy of ``model`` in channels-last memory format (NHWC), input
    ``float32 (B, 3, S, S)`` channels-last too: batch-1 latency, FPS at ``batch_size`` and the
    largest absolute difference from the NCHW model's outputs on the same image."""
    import copy

    from mtbench.profiling.latency import fps_figures, latency_figures, sample_adaptive
    from mtbench.profiling.runtimes import flat_tensors
    nhwc = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)

    def runner(batch: int):
        x = torch.rand(batch, 3, image_size, image_size, device=device).to(memory_format=torch.channels_last)
        return lambda: nhwc(x)

    sync = device.type == "cuda"
    with torch.inference_mode():
        out = latency_figures(sample_adaptive(runner(1), warmup, repeats, rule, sync))
        out |= fps_figures(sample_adaptive(runner(batch_size), 2, fps_repeats, rule, sync), batch_size)
        x = torch.rand(1, 3, image_size, image_size, device=device)
        ref, got = flat_tensors(model.eval()(x)), flat_tensors(nhwc(x.to(memory_format=torch.channels_last)))
    parity = max(float((a - b).abs().max()) for a, b in zip(ref, got))
    return out | {"parity_max_abs": parity}


def heavy_det(det_weight: float = 2.0) -> Equal:
    """Joint training with the detection loss weighted ``det_weight`` (others 1)."""
    return Equal(weights={"det": det_weight})


@hookimpl
def mtbench_register_tasks():
    return [Spec("task", "count", Count, "object counting: accuracy and MAE (example plugin)")]


@hookimpl
def mtbench_register_metrics():
    return [Spec("metric", "acc-mae", lambda dataset: CountMetric(), "counting accuracy and MAE", task="count")]


@hookimpl
def mtbench_register_datasets():
    return [Spec("dataset", "synthetic-count", synthetic_count, "generated shapes, labelled with their number",
                 task="count")]


@hookimpl
def mtbench_register_losses():
    return [Spec("loss", "l1", CountL1, "smooth L1 on the predicted count", task="count")]


@hookimpl
def mtbench_register_diagnostics():
    return [Spec("diagnostic", "count-few-images", count_few_images, "count scored on too few val images")]


@hookimpl
def mtbench_register_runtimes():
    return [Spec("runtime", "channels-last", channels_last, "PyTorch eager in channels-last (NHWC) memory format")]


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "heavy-det", heavy_det, "equal, detection loss x2 (example plugin)")]
