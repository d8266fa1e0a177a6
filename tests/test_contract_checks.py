"""mtbench.testing's task, metric and runtime checks: they pass on built-ins and name what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtbench.errors import PluginError
from mtbench.metrics.base import SampleMetricBase
from mtbench.metrics.classification import Top1
from mtbench.plugins import Spec, get_registry
from mtbench.tasks import Task
from mtbench.tasks.classification import Classification
from mtbench.tasks.detection import Detection
from mtbench.testing import check_metric, check_runtime, check_task

BUILTIN_TASKS = get_registry(load_entrypoints=False).names("task")


@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_every_registered_task_conforms(registry, name):
    spec = registry.get("task", name)
    check_task(spec)
    if name in ("det", "seg", "cls"):  # synthetic data serves the built-in tasks
        ds = registry.create("dataset", "synthetic", task=name, split="val", root=None, image_size=64, num_images=4)
        check_task(spec, ds)


class _NoHeadline(Classification):
    headline = "cls/Top-5"


class _BadColumn(Classification):
    columns = (("cls Top-1", "cls/Top-9", 4),)


@pytest.mark.parametrize("task, says", [
    (_NoHeadline, "headline 'cls/Top-5' is not one of its metrics"),
    (_BadColumn, "column ('cls Top-1', 'cls/Top-9', 4)"),
    (Spec("task", "klass", Classification), "registered as 'klass' but its Task.name is 'cls'"),
    (Spec("task", "nope", lambda: object()), "must return a mtbench.tasks.Task"),
])
def test_a_broken_task_is_named(task, says):
    with pytest.raises(PluginError, match="task '") as err:
        check_task(task)
    assert says in str(err.value)


def test_a_flip_that_does_not_invert_is_caught(registry):
    class Shifted(Task):
        name, metrics, headline, scored_by, default_loss = "det", {"det/mAP": True}, "det/mAP", "coco-map", "fcos"

        def to_tv(self, target, canvas_size):
            return Detection().to_tv({**target, "boxes": target["boxes"] + 1}, canvas_size)

        def from_tv(self, target):
            return Detection().from_tv(target)

    ds = registry.create("dataset", "synthetic", task="det", split="val", root=None, image_size=64, num_images=2)
    with pytest.raises(PluginError, match="flip applied twice"):
        check_task(Shifted, ds)


def test_a_task_with_the_old_flip_rule_is_refused():
    class Old(Classification):
        def flip_target(self, target, width):
            return target

    with pytest.raises(PluginError, match="'flip_target' is no longer read"):
        check_task(Old)

    class Unclear(Classification):
        follows = {"flip", "rotate"}

    with pytest.raises(PluginError, match="'follows' must be a frozenset of 'flip' / 'crop'"):
        check_task(Unclear)


def test_builtin_metric_conforms():
    check_metric(lambda: Top1(3), torch.tensor([[2.0, 1, 0], [0, 0, 1]]), torch.tensor([0, 1]))


class _Drifting(SampleMetricBase):
    """compute() does not go through reduce: CIs would not describe the reported value."""

    def __init__(self):
        self.x: list[float] = []

    def update(self, preds, targets):
        self.x += [float(v) for v in preds]

    def samples(self):
        return {"x": self.x}

    @staticmethod
    def reduce(samples, index):
        return {"t/mean": float(np.mean(np.asarray(samples["x"])[index]))}

    def compute(self):
        return {"t/mean": float(np.mean(self.x)) + 1.0}


class _BoundReduce(_Drifting):
    def reduce(self, samples, index):  # an instance method: compare cannot call it on a stored record
        return {}


@pytest.mark.parametrize("metric, says", [(_Drifting, "differs from reduce"), (_BoundReduce, "staticmethod")])
def test_a_broken_metric_is_named(metric, says):
    with pytest.raises(PluginError, match=f"metric .*{metric.__qualname__}.*{says}"):
        check_metric(metric, [1.0, 2.0], [0, 0])


def test_onnx_runtime_conforms(registry):
    pytest.importorskip("onnxruntime")
    check_runtime(registry.get("runtime", "onnx"))
    check_runtime(registry.get("runtime", "compile"), run=False)  # signature only: compiling takes long


def test_a_broken_runtime_is_named():
    def no_rule(model, image_size, batch_size, device, warmup, repeats, fps_repeats):
        return {}

    def no_figures(model, image_size, batch_size, device, warmup, repeats, fps_repeats, rule):
        return {"latency_ms": 1.0}

    with pytest.raises(PluginError, match="runtime 'no_rule'.*does not take rule"):
        check_runtime(Spec("runtime", "no_rule", no_rule))
    with pytest.raises(PluginError, match="figure 'fps' must be a finite number"):
        check_runtime(no_figures)


def _perfect(task: str, targets: list):
    """Perfect predictions in the task's prediction schema, from its targets."""
    if task == "det":
        return [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in targets]
    if task == "seg":
        return torch.stack(targets)
    return torch.nn.functional.one_hot(torch.stack(targets), 4).float()


@pytest.mark.parametrize("key", get_registry(load_entrypoints=False).names("metric"))
def test_every_builtin_metric_conforms(registry, key):
    task = key.split("/")[0]
    ds = registry.create("dataset", "synthetic", task=task, split="val", root=None, image_size=64, num_images=4)
    targets = [ds.load(i)[1] for i in range(len(ds))]
    batch = targets if task == "det" else torch.stack(targets)
    check_metric(lambda: registry.create("metric", key, dataset=ds), _perfect(task, targets), batch, name=key)
