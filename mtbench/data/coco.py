"""COCO instances JSON detection loader (``dataset: coco``).

Layout: ``<root>/<path>/<split>/data/*.jpg`` and ``<root>/<path>/<split>/labels.json``.
Classes are the categories of the *train* split's file, sorted by id and matched by
**name** in other splits: the mini COCO files number the same categories differently in
train and val, so matching by id would silently mislabel every box.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mtbench.data.base import TaskDataset, TaskInfo, open_image, resolve_dir
from mtbench.data.transforms import resize_image
from mtbench.errors import DataError
from mtbench.plugins import Spec, hookimpl


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse annotation file {path}: {exc}") from exc
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(f"annotation file {path} has no {key!r} list (not COCO instances JSON)")
    return data


class CocoDetection(TaskDataset):
    """COCO-style detection split; boxes ``[x, y, w, h]`` are converted to xyxy.

    :param root: data root (``MTBENCH_DATA``); ``path`` is relative to it.
    :param split: ``train`` or ``val``.
    :param min_box: boxes narrower or shorter than this many original pixels are dropped
        from training targets (never from the evaluation ground truth).
    :raises DataError: missing folder, file, or an annotation naming an unknown image or category.
    """

    def __init__(self, root: Path | None, path: str, split: str, image_size: int, train: bool,
                 min_box: float = 1.0):
        super().__init__("det", image_size, train)
        base = resolve_dir(root, path, "COCO detection")
        self.image_dir = base / split / "data"
        self.ann_file = base / split / "labels.json"
        data = _read_json(self.ann_file)
        ref = data if split == "train" else _read_json(base / "train" / "labels.json")
        cats = sorted(ref["categories"], key=lambda c: c["id"])
        names = tuple(c["name"] for c in cats)
        self.info = TaskInfo("det", len(names), names)
        index_of_name = {n: i for i, n in enumerate(names)}
        local_index = {}
        for c in data["categories"]:
            if c["name"] not in index_of_name:
                raise DataError(f"{self.ann_file}: category {c['name']!r} is not in the train split's categories")
            local_index[c["id"]] = index_of_name[c["name"]]
        self.images = sorted(data["images"], key=lambda im: im["id"])
        known = {im["id"] for im in self.images}
        self.anns: dict[int, list] = {im["id"]: [] for im in self.images}
        for a in data["annotations"]:
            if a["image_id"] not in known or a["category_id"] not in local_index:
                raise DataError(
                    f"{self.ann_file}: annotation {a.get('id')} names unknown image {a['image_id']} "
                    f"or category {a['category_id']}"
                )
            self.anns[a["image_id"]].append({**a, "label": local_index[a["category_id"]]})
        self.min_box = min_box

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int):
        meta = self.images[index]
        img = open_image(self.image_dir / meta["file_name"])
        w, h = img.size
        sx, sy = self.image_size / w, self.image_size / h
        boxes, labels = [], []
        for a in self.anns[meta["id"]]:
            x, y, bw, bh = a["bbox"]
            if a.get("iscrowd", 0) or bw < self.min_box or bh < self.min_box:
                continue
            boxes.append([x * sx, y * sy, (x + bw) * sx, (y + bh) * sy])
            labels.append(a["label"])
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": int(meta["id"]),
            "scale": (sx, sy),
        }
        return resize_image(img, self.image_size), target

    def coco_gt(self) -> dict:
        """The split's ground truth with category ids = contiguous index + 1 (train space)."""
        anns = [
            {"id": a["id"], "image_id": a["image_id"], "category_id": a["label"] + 1, "bbox": a["bbox"],
             "area": a.get("area", a["bbox"][2] * a["bbox"][3]), "iscrowd": a.get("iscrowd", 0)}
            for im in self.images for a in self.anns[im["id"]]
        ]
        images = [{"id": im["id"], "width": im["width"], "height": im["height"]} for im in self.images]
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(self.info.class_names)]
        return {"images": images, "annotations": anns, "categories": cats}


@hookimpl
def mtbench_register_datasets():
    return [Spec("dataset", "coco", _build, "COCO instances JSON detection (images in <split>/data)", task="det")]


def _build(task: str, split: str, root: Path | None, image_size: int, path: str = "mini_coco_det", **params):
    return CocoDetection(root, path, split, image_size, train=split == "train", **params)
