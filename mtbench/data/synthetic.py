"""Generated multi-task data (``dataset: synthetic``): the default for a fresh machine.

**This is generated data, not a real data set.** Each image is drawn deterministically
from ``(seed, split, index)``: a noisy background and 1 to ``max_shapes`` filled shapes
(rectangle, ellipse, triangle) in random colours. From the same drawing:

- det: every shape's bounding box (xyxy pixels) and its shape class (3 classes);
- seg: per-pixel shape class + 1, background 0 (4 classes; later shapes occlude earlier);
- cls: the class of the largest shape by drawn box area (3 classes).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from pydantic import PositiveInt

from mtbench.data.base import TaskDataset, TaskInfo
from mtbench.plugins import Spec, hookimpl

SHAPES = ("rectangle", "ellipse", "triangle")
_SPLIT_OFFSET = {"train": 0, "val": 1_000_003}


def draw_sample(seed: int, split: str, index: int, size: int, max_shapes: int = 3):
    """Draw one sample.

    :return: ``(image uint8 (3, S, S), boxes float32 (N, 4) xyxy, labels int64 (N,),
        mask uint8 (S, S), image_label int)``.
    """
    rng = random.Random(seed * 7_919 + _SPLIT_OFFSET[split] + index)
    nprng = np.random.default_rng(rng.randrange(2**32))
    base = np.array([rng.randrange(40, 200) for _ in range(3)], dtype=np.float32)
    noise = nprng.normal(0.0, 18.0, size=(size, size, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    mask = Image.new("L", (size, size), 0)
    di, dm = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    boxes, labels, areas = [], [], []
    for _ in range(rng.randint(1, max_shapes)):
        cls = rng.randrange(len(SHAPES))
        w = rng.uniform(0.15, 0.45) * size
        h = rng.uniform(0.15, 0.45) * size
        x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        box = (x0, y0, x0 + w, y0 + h)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if cls == 0:
            di.rectangle(box, fill=colour)
            dm.rectangle(box, fill=cls + 1)
        elif cls == 1:
            di.ellipse(box, fill=colour)
            dm.ellipse(box, fill=cls + 1)
        else:
            tri = [(x0 + w / 2, y0), (x0, y0 + h), (x0 + w, y0 + h)]
            di.polygon(tri, fill=colour)
            dm.polygon(tri, fill=cls + 1)
        boxes.append(box)
        labels.append(cls)
        areas.append(w * h)
    image = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()
    return (
        image,
        torch.tensor(boxes, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.int64),
        torch.from_numpy(np.asarray(mask).copy()),
        labels[int(np.argmax(areas))],
    )


class SyntheticTask(TaskDataset):
    """One task's view of the generated data.

    :param num_images: images in this split.
    :param seed: generator seed (the data, not the training run).
    """

    target_dtype = torch.int64  # seg masks are drawn as uint8 (4 classes)

    def __init__(self, task: str, split: str, image_size: int, num_images: int, seed: int = 0,
                 max_shapes: int = 3):
        super().__init__(task, image_size, train=split == "train")
        self.split, self.num_images, self.seed, self.max_shapes = split, num_images, seed, max_shapes
        names = SHAPES if task != "seg" else ("background",) + SHAPES
        self.info = TaskInfo(task, len(names), names)

    def __len__(self) -> int:
        return self.num_images

    def cache_identity(self) -> dict:
        """The generator's parameters (the drawing is a pure function of them)."""
        return self._identity(split=self.split, num_images=self.num_images, seed=self.seed, max_shapes=self.max_shapes)

    def load(self, index: int):
        image, boxes, labels, mask, image_label = draw_sample(
            self.seed, self.split, index, self.image_size, self.max_shapes)
        if self.task == "det":
            return image, {"boxes": boxes, "labels": labels, "image_id": index + 1, "scale": (1.0, 1.0)}
        if self.task == "seg":
            return image, mask
        return image, torch.tensor(image_label, dtype=torch.int64)

    def coco_gt(self) -> dict:
        images, anns = [], []
        for i in range(self.num_images):
            _, boxes, labels, _, _ = draw_sample(self.seed, self.split, i, self.image_size, self.max_shapes)
            images.append({"id": i + 1, "width": self.image_size, "height": self.image_size})
            for b, lab in zip(boxes.tolist(), labels.tolist()):
                w, h = b[2] - b[0], b[3] - b[1]
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": lab + 1,
                             "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(SHAPES)]
        return {"images": images, "annotations": anns, "categories": cats}


@hookimpl
def mtbench_register_datasets():
    return [Spec("dataset", "synthetic", _build, "GENERATED shapes data for det/seg/cls (no download needed)")]


def split_counts(num_images: dict[str, int] | int | None, defaults: dict[str, int]) -> dict[str, int]:
    """Images per split of a generated data set: ``num_images`` for every split (an int), per
    split (a dict; the splits it leaves out keep ``defaults``), or ``defaults`` (None)."""
    if isinstance(num_images, int):
        return {k: num_images for k in defaults}
    return {**defaults, **(num_images or {})}


def _build(task: str, split: str, root: Path | None, image_size: int,
           num_images: dict[Literal["train", "val"], PositiveInt] | PositiveInt | None = None,
           seed: int = 0, max_shapes: PositiveInt = 3):
    counts = split_counts(num_images, {"train": 96, "val": 48})
    return SyntheticTask(task, split, image_size, counts[split], seed, max_shapes)
