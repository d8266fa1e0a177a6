"""Tiny COCO-format and VOC-style data sets written by tests, and a detector that sees them exactly.

``write_coco`` lays out ``<root>/<path>/{train,val}/data/*.png`` + ``labels.json`` (the
``dataset: coco`` layout): each image is black with ONE white axis-aligned rectangle at
integer pixels, its only ground-truth box (category ``box``). ``BrightBoxOracle`` is
``unified-onehead`` (trained as usual) whose det decode returns the bounding box of the
bright pixels of the last input: on these images its detections are the ground truth
exactly, so a clean ground truth scores mAP 1.0 and anything else is the ground truth's
doing. ``write_voc`` lays out ``<root>/<path>/{train,val}/<id>.jpg`` + palette ``<id>.png``.
``suite_text`` is a one-cell, one-task suite on such data (a tiny, quick budget).
"""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mtbench.models.unified_onehead import UnifiedOneHead
from mtbench.plugins import Spec, hookimpl


def rectangles(split: str, n: int, size: int) -> list[list[int]]:
    """Seeded ``[x, y, w, h]`` integer rectangles, one per image, inside a ``size`` square."""
    rng = random.Random(f"{split}-{n}-{size}")
    out = []
    for _ in range(n):
        w, h = rng.randint(size // 5, size // 2), rng.randint(size // 5, size // 2)
        out.append([rng.randint(0, size - w), rng.randint(0, size - h), w, h])
    return out


def write_coco(root: Path, path: str = "tiny_coco", n: dict | None = None, size: int = 64,
               extra: dict[str, list[dict]] | None = None) -> Path:
    """Write the data set; ``extra[split]`` annotations are appended to that split's file
    (ids continue after the real boxes unless given). Returns ``root / path``."""
    n = n or {"train": 8, "val": 4}
    base = Path(root) / path
    for split, count in n.items():
        (base / split / "data").mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i, (x, y, w, h) in enumerate(rectangles(split, count, size), 1):
            pixels = np.zeros((size, size, 3), dtype=np.uint8)
            pixels[y:y + h, x:x + w] = 255
            Image.fromarray(pixels).save(base / split / "data" / f"{i:06d}.png")
            images.append({"id": i, "file_name": f"{i:06d}.png", "width": size, "height": size})
            anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        for a in (extra or {}).get(split, []):
            anns.append({"id": len(anns) + 1, "category_id": 1, "area": 40.0, "iscrowd": 0, **a})
        (base / split / "labels.json").write_text(json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "box"}]}))
    return base


def write_voc(root: Path, path: str = "tiny_voc", size: int = 32, n: int = 2) -> Path:
    """Two-class masks (background 0, class 1 = a square) for ``n`` images a split."""
    base = Path(root) / path
    for split in ("train", "val"):
        (base / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            mask = np.zeros((size, size), dtype=np.uint8)
            mask[4:12, 4:12] = 1
            Image.fromarray((mask * 200).astype(np.uint8)).convert("RGB").save(base / split / f"{i}.jpg")
            Image.fromarray(mask, mode="L").save(base / split / f"{i}.png")
    return base


SUITE = """\
    name: {name}
    data_root: {root}
    tasks:
      {task}: {{dataset: {dataset}, params: {params}}}
    matrix:
      architecture:
        - name: {model}
          label: {label}
          params: {{backbone: mobilenetv3_small_100, neck_channels: 16}}
      level: [P4]
      strategy: [equal]
    fixed: {{image_size: 64, batch_size: {batch_size}, budget: {{steps: {steps}}}, threads: 2}}
    profile: {{runtimes: [], latency_warmup: 1, latency_repeats: 3, fps_repeats: 1}}
    checks: {{overfit_one_batch: "off"}}
"""


def suite_text(name: str, root: Path, task: str, dataset: str, params: str, model: str = "unified-onehead",
               label: str = "mnv3s", batch_size: int = 2, steps: int = 1) -> str:
    """A one-cell suite training ``model`` (mobilenetv3_small_100 backbone) on one task at 64 px."""
    return textwrap.dedent(SUITE.format(name=name, root=root, task=task, dataset=dataset, params=params, model=model,
                                        label=label, batch_size=batch_size, steps=steps))


class BrightBoxOracle(UnifiedOneHead):
    """``unified-onehead`` whose det predictions are the bright rectangle of each input image
    (score 1, class 0), found from the pixels rather than learned."""

    def forward(self, x: torch.Tensor):
        self._last_input = x.detach()
        return super().forward(x)

    def decode(self, task: str, raw, image_size: int, **options):
        if task != "det":
            return super().decode(task, raw, image_size, **options)
        preds = []
        for img in self._last_input:
            ys, xs = torch.nonzero(img.mean(0) > 0.5, as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            preds.append({"boxes": box, "scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.int64)})
        return preds


@hookimpl
def mtbench_register_models():
    return [Spec("model", "bright-box-oracle", BrightBoxOracle, "unified-onehead decoding bright rectangles exactly")]
