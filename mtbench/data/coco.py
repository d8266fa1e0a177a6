"""COCO instances JSON detection loader (``dataset: coco``).

Layout: ``<root>/<path>/<split>/data/*.jpg`` and ``<root>/<path>/<split>/labels.json``.
Classes are the categories of the *train* split's file, sorted by id and matched by
**name** in other splits: the mini COCO files number the same categories differently in
train and val, so matching by id would silently mislabel every box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from mtbench.data.base import (TaskDataset, TaskInfo, check_files_exist, dropped_record, file_stamp, open_image,
                               resolve_dir)
from mtbench.data.coco_json import box_problems, id_list, read_instances, unknown_references
from mtbench.data.transforms import resize_image
from mtbench.errors import DataError
from mtbench.plugins import Spec, hookimpl


class CocoDetection(TaskDataset):
    """COCO-style detection split; boxes ``[x, y, w, h]`` are converted to xyxy.

    Data policy (:mod:`mtbench.data.coco_json`): a broken file, an annotation naming an image
    or category the file does not list, or a category name that is not a string is refused;
    a box that is not finite, has width or height <= 0 or below ``min_box``, or lies wholly
    outside its image is dropped from the training targets **and** from the evaluation
    ground truth alike (so perfect detections still score 1.0), and recorded in
    :attr:`dropped`. Crowd boxes stay out of training and in the ground truth, where COCO
    evaluation ignores them.

    :param root: data root (``MTBENCH_DATA``); ``path`` is relative to it.
    :param split: ``train`` or ``val``.
    :param min_box: boxes narrower or shorter than this many original pixels are dropped.
    :param invalid_boxes: ``drop`` (default: drop and report) or ``error`` (refuse the file).
    :raises DataError: missing folder or file, or a refused annotation; names the file and
        the annotation id.
    """

    def __init__(self, root: Path | None, path: str, split: str, image_size: int, train: bool,
                 min_box: float = 1.0, invalid_boxes: str = "drop"):
        super().__init__("det", image_size, train)
        if invalid_boxes not in ("drop", "error"):
            raise DataError(f"invalid_boxes must be 'drop' or 'error', not {invalid_boxes!r}")
        base = resolve_dir(root, path, "COCO detection")
        self.image_dir = base / split / "data"
        self.ann_file = base / split / "labels.json"
        self.min_box = min_box
        data = read_instances(self.ann_file, image_keys=("file_name", "width", "height"))
        ref = data if split == "train" else read_instances(base / "train" / "labels.json")
        cats = sorted(ref["categories"], key=lambda c: c["id"])
        names = tuple(c["name"] for c in cats)
        self.info = TaskInfo("det", len(names), names)
        index_of_name = {n: i for i, n in enumerate(names)}
        local_index = {}
        for c in data["categories"]:
            if c["name"] not in index_of_name:
                raise DataError(f"{self.ann_file}: category {c['name']!r} is not in the train split's categories")
            local_index[c["id"]] = index_of_name[c["name"]]
        unknown = unknown_references(data)
        for what, listed in (("image", "images"), ("category", "categories")):
            if unknown[what]:
                raise DataError(f"{self.ann_file}: annotation(s) {id_list(unknown[what])} name {what} ids that "
                                f"are not in its {listed!r} list")
        problems = box_problems(data, min_box)
        if problems and invalid_boxes == "error":
            raise DataError(f"{self.ann_file}: " + "; ".join(f"annotation(s) {id_list(ids)}: box {reason}"
                                                             for reason, ids in problems.items()))
        skip = {i for ids in problems.values() for i in ids}
        self.dropped = dropped_record(self.ann_file, problems)
        self.images = sorted(data["images"], key=lambda im: im["id"])
        check_files_exist([self.image_dir / im["file_name"] for im in self.images], "image")
        self.anns: dict[int, list] = {im["id"]: [] for im in self.images}
        for a in data["annotations"]:
            if a["id"] not in skip:
                self.anns[a["image_id"]].append({**a, "label": local_index[a["category_id"]]})

    def __len__(self) -> int:
        return len(self.images)

    def cache_identity(self) -> dict:
        """The annotation files (this split's and train's, which numbers the classes), the image folder, ``min_box``."""
        train_file = self.ann_file.parent.parent / "train" / "labels.json"
        return self._identity(files=[file_stamp(self.ann_file), file_stamp(train_file)], images=str(self.image_dir),
                              min_box=self.min_box)

    def load(self, index: int):
        meta = self.images[index]
        img = open_image(self.image_dir / meta["file_name"])
        w, h = img.size
        sx, sy = self.image_size / w, self.image_size / h
        boxes, labels = [], []
        for a in self.anns[meta["id"]]:
            x, y, bw, bh = a["bbox"]
            if a.get("iscrowd", 0):
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


def _build(task: str, split: str, root: Path | None, image_size: int, path: str = "mini_coco_det",
           min_box: float = 1.0, invalid_boxes: Literal["drop", "error"] = "drop"):
    return CocoDetection(root, path, split, image_size, train=split == "train", min_box=min_box,
                         invalid_boxes=invalid_boxes)
