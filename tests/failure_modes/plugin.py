"""Deliberately broken pieces that reproduce the failure modes of the seed reports (issue 10).

Registered only by ``tests/test_failure_modes.py`` (``get_registry(extra_plugins=[this])``);
never shipped. Each piece is the smallest thing that shows one failure:

- ``blank-cls10``: a 10-class classification set whose images are all the same grey (6 val
  images per class), so any model scores Top-1 = 6/60 exactly, the chance level, stored as
  the float32 0.10000000149 (the seed's "lr 1e-9, nothing learned" run);
- ``unlabelled-det``: generated shapes whose *train* boxes are dropped on 3 of 4 images (a
  label pipeline that loses boxes: the assigner finds no positives in most steps);
- ``blob-points``: dark images with one bright 3x3 target (task ``points``);
- ``blind-onehead``: ``unified-onehead`` that never looks at its input (zeros it first);
- ``scripted-weights``: joint training whose task weights follow a script, as a GradNorm run
  that drove one weight to 0 or held it at 1:80 (``extra.task_weights``).
"""

from __future__ import annotations

import torch

from mtbench.data.base import TaskDataset, TaskInfo
from mtbench.data.synthetic import SyntheticTask
from mtbench.models.unified_onehead import UnifiedOneHead
from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.equal import Equal


class BlankCls10(TaskDataset):
    def __init__(self, split: str, image_size: int):
        super().__init__("cls", image_size, train=False)
        self.n = 60 if split == "val" else 40
        self.info = TaskInfo("cls", 10, tuple(f"c{i}" for i in range(10)))

    def __len__(self) -> int:
        return self.n

    def load(self, index: int):
        return torch.full((3, self.image_size, self.image_size), 128, dtype=torch.uint8), \
            torch.tensor(index % 10, dtype=torch.int64)


class UnlabelledDet(SyntheticTask):
    def load(self, index: int):
        image, target = super().load(index)
        if self.train and index % 4:
            target = {**target, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
        return image, target


class BlobPoints(TaskDataset):
    def __init__(self, split: str, image_size: int, num_images: int = 8):
        super().__init__("points", image_size, train=split == "train")
        self.n, self.seed = num_images, 0 if split == "train" else 1
        self.info = TaskInfo("points", 1, ("target",))

    def __len__(self) -> int:
        return self.n

    def load(self, index: int):
        s = self.image_size
        gen = torch.Generator().manual_seed(1000 * self.seed + index)
        x, y = (int(v) for v in torch.randint(4, s - 4, (2,), generator=gen))
        image = torch.full((3, s, s), 20, dtype=torch.uint8)
        image[:, y - 1:y + 2, x - 1:x + 2] = 255
        mask = torch.zeros(s, s, dtype=torch.uint8)
        mask[y - 1:y + 2, x - 1:x + 2] = 1
        target = {"points": torch.tensor([[x + 0.5, y + 0.5]]), "boxes": torch.tensor([[x - 1.0, y - 1.0, x + 2.0, y + 2.0]]),
                  "mask": mask, "image_id": index + 1, "scale": (1.0, 1.0)}
        return image, target


class BlindOneHead(UnifiedOneHead):
    def forward(self, x):
        return super().forward(torch.zeros_like(x))


class ScriptedWeights(Equal):
    """``low``'s weight is ``1 / ratio`` of the others'; 0 from ``zero_from`` (share of the steps) on."""

    def __init__(self, low: str = "cls", ratio: float = 80.0, zero_from: float | None = None):
        super().__init__()
        self.low, self.ratio, self.zero_from = low, ratio, zero_from
        self.trajectory: list[dict[str, float]] = []

    def setup(self, ctx):
        self.total = ctx.steps(ctx.tasks)

    def train_step(self, ctx, batches, step):
        off = self.zero_from is not None and step >= self.zero_from * self.total
        self.weights = {t: (0.0 if off else 1.0 / self.ratio) if t == self.low else 1.0 for t in batches}
        self.trajectory.append(dict(self.weights))
        return super().train_step(ctx, batches, step)

    def extra(self):
        return {"task_weights": self.trajectory}


@hookimpl
def mtbench_register_datasets():
    return [
        Spec("dataset", "blank-cls10", lambda task, split, root, image_size: BlankCls10(split, image_size),
             "10 classes, identical grey images", task="cls"),
        Spec("dataset", "unlabelled-det", lambda task, split, root, image_size: UnlabelledDet(
            "det", split, image_size, 8 if split == "train" else 4), "train boxes lost on 3 of 4 images", task="det"),
        Spec("dataset", "blob-points", lambda task, split, root, image_size: BlobPoints(split, image_size),
             "one bright 3x3 target per dark image", task="points"),
    ]


@hookimpl
def mtbench_register_models():
    return [Spec("model", "blind-onehead", BlindOneHead, "unified-onehead that zeros its input")]


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", "scripted-weights", ScriptedWeights, "joint, task weights from a script")]
