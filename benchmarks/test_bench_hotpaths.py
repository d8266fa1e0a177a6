"""pytest-benchmark micro-benchmarks of the hot paths: every registered architecture's
forward, every registered loss, and the COCO mAP evaluation.

Run with the saved baseline (tox -e bench):
    pytest benchmarks --benchmark-storage=file://benchmarks/baselines \
        --benchmark-compare=0001 --benchmark-compare-fail=median:50%
Save a new baseline on a quiet machine: ``--benchmark-save=baseline``.
These print figures; ordinary tests never assert times.
"""

from __future__ import annotations

import pytest
import torch

from mtbench.data.base import TaskInfo
from mtbench.metrics.coco_eval import coco_stats
from mtbench.plugins import get_registry

REG = get_registry(load_entrypoints=False)
TASKS = {"det": TaskInfo("det", 80, ()), "seg": TaskInfo("seg", 21, ()), "cls": TaskInfo("cls", 10, ())}
SIZE = 224


@pytest.mark.parametrize("name", REG.list_models())
@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite0", "mobilenetv3_small_100"])
def test_forward_batch1(benchmark, registry, name, backbone):
    model = registry.create_model(name, tasks=TASKS, level="P3", backbone=backbone).eval()
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.inference_mode():
        benchmark.pedantic(model, args=(x,), warmup_rounds=5, rounds=30, iterations=1)


def _loss_inputs(key: str):
    torch.manual_seed(0)
    if key.startswith("det/"):
        raw = torch.randn(8, 80 + 5, 28, 28)
        targets = [{"boxes": torch.tensor([[20.0, 30, 120, 160], [100, 100, 200, 210], [5, 5, 15, 12]]),
                    "labels": torch.tensor([0, 5, 17])} for _ in range(8)]
        return raw, targets, 8
    if key.startswith("seg/"):
        return torch.randn(8, 21, 28, 28), torch.randint(0, 21, (8, SIZE, SIZE)), 8
    return torch.randn(8, 10), torch.randint(0, 10, (8,)), 32


@pytest.mark.parametrize("key", REG.names("loss"))
def test_loss(benchmark, registry, key):
    loss = registry.create("loss", key, num_classes=TASKS[key.split("/")[0]].num_classes)
    raw, target, stride = _loss_inputs(key)
    benchmark(lambda: loss(raw, target, stride=stride)["total"])


def test_coco_map_evaluation(benchmark, registry):
    ds = registry.create("dataset", "synthetic", task="det", split="val", root=None, image_size=128, num_images=200)
    gt = ds.coco_gt()
    g = torch.Generator().manual_seed(0)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": float(torch.rand((), generator=g)),
             "bbox": [v + float(torch.randn((), generator=g)) for v in a["bbox"]]} for a in gt["annotations"]]
    benchmark(coco_stats, gt, dets)
