"""Generated small-target images for the ``points`` task (``dataset: synthetic-points``).

**This is generated data, not a real data set**: what ``mtbench.testing``'s checks and the
plugin's tests run on without SIRST. Each image is drawn deterministically from ``(seed,
split, index)``: a grey noisy background and 1 to ``max_targets`` bright discs of radius 1-3
pixels (the few-pixel targets of SIRST). Target per image, as :mod:`.sirst` gives it at native
size (``scale`` (1, 1)): ``points`` float32 ``(N, 2)`` xy disc centres (mean pixel index of
each disc), ``boxes`` float32 ``(N, 4)``, ``mask`` uint8 ``(S, S)`` 0/1, ``image_id``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mtbench.data.base import TaskDataset, TaskInfo
from mtbench.data.synthetic import split_counts
from mtbench.plugins import Spec, hookimpl

_SPLIT_OFFSET = {"train": 0, "val": 1_000_003}


def draw_points_sample(seed: int, split: str, index: int, size: int, max_targets: int = 3):
    """``(image uint8 (3, S, S), target dict)`` of one generated image (module docstring)."""
    rng = np.random.default_rng(seed * 7_919 + _SPLIT_OFFSET[split] + index)
    img = np.clip(rng.normal(rng.uniform(40, 120), 10.0, (size, size)), 0, 255)
    mask = np.zeros((size, size), dtype=bool)
    rows, cols = np.mgrid[0:size, 0:size]
    points, boxes = [], []
    for _ in range(int(rng.integers(1, max_targets + 1))):
        r = float(rng.uniform(1.0, 3.0))
        cx, cy = (int(rng.integers(4, size - 4)) for _ in range(2))
        disc = (cols - cx) ** 2 + (rows - cy) ** 2 <= r * r
        if (disc & mask).any():  # keep targets apart: one component each
            continue
        mask |= disc
        img[disc] = rng.uniform(200, 255)
        ys, xs = disc.nonzero()
        points.append([xs.mean(), ys.mean()])
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    image = torch.from_numpy(np.repeat(img.astype(np.uint8)[None], 3, 0))
    target = {"points": torch.tensor(points, dtype=torch.float32).reshape(-1, 2),
              "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
              "mask": torch.from_numpy(mask.astype(np.uint8)), "image_id": index + 1, "scale": (1.0, 1.0)}
    return image, target


class SyntheticPoints(TaskDataset):
    """One split of the generated small-target images.

    :param num_images: images in this split.
    :param seed: generator seed (the data, not the training run).
    """

    def __init__(self, split: str, image_size: int, num_images: int, seed: int = 0, max_targets: int = 3):
        super().__init__("points", image_size, train=split == "train")
        self.split, self.num_images, self.seed, self.max_targets = split, num_images, seed, max_targets
        self.info = TaskInfo("points", 1, ("Target",))

    def __len__(self) -> int:
        return self.num_images

    def cache_identity(self) -> dict:
        """The generator's parameters (the drawing is a pure function of them)."""
        return self._identity(split=self.split, num_images=self.num_images, seed=self.seed,
                              max_targets=self.max_targets)

    def load(self, index: int):
        return draw_points_sample(self.seed, self.split, index, self.image_size, self.max_targets)


@hookimpl
def mtbench_register_datasets():
    return [Spec("dataset", "synthetic-points", _build, "GENERATED small bright discs as point targets (tests)",
                 task="points")]


def _build(task: str, split: str, root: Path | None, image_size: int, num_images: dict | int | None = None,
           seed: int = 0, max_targets: int = 3):
    counts = split_counts(num_images, {"train": 32, "val": 16})
    return SyntheticPoints(split, image_size, counts[split], seed, max_targets)
