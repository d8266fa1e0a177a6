"""COCO instances JSON detection loader (``dataset: coco``).

Layouts (``layout`` parameter; ``auto``, the default, takes ``coco2017`` where its train
annotation file exists, else ``mini``):

- ``mini``: ``<root>/<path>/<split>/data/*.jpg`` and ``<root>/<path>/<split>/labels.json``;
- ``coco2017`` (the COCO 2017 download): ``<root>/<path>/annotations/instances_{train,val}2017.json``
  and the images in ``<root>/<path>/{train,val}2017/``.

Classes are the categories of the *train* split's file, sorted by id and matched by
**name** in other splits: the mini COCO files number the same categories differently in
train and val, so matching by id would silently mislabel every box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
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
    :param layout: ``auto`` | ``mini`` | ``coco2017`` (the module's docstring).
    :raises DataError: missing folder or file, a refused annotation, a file that lists no
        images or has no non-crowd annotation left (nothing to train on; in an evaluation split
        AP would be undefined); names the file and the annotation id.
    """

    def __init__(self, root: Path | None, path: str, split: str, image_size: int, train: bool,
                 min_box: float = 1.0, invalid_boxes: str = "drop", layout: str = "auto"):
        super().__init__("det", image_size, train)
        if invalid_boxes not in ("drop", "error"):
            raise DataError(f"invalid_boxes must be 'drop' or 'error', not {invalid_boxes!r}")
        base = resolve_dir(root, path, "COCO detection")
        self.image_dir, self.ann_file = coco_files(base, split, layout)
        self.train_file = coco_files(base, "train", layout)[1]
        self.min_box = min_box
        data = read_instances(self.ann_file, image_keys=("file_name", "width", "height"), lean=True)
        ref = data if split == "train" else read_instances(self.train_file, lean=True)
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
        images = sorted(data["images"], key=lambda im: im["id"])
        if not images:
            raise DataError(f"{self.ann_file}: lists no images: the {split} split would be empty")
        self.file_names = [im["file_name"] for im in images]
        check_files_exist([self.image_dir / f for f in self.file_names], "image")
        self.image_ids = np.array([im["id"] for im in images], dtype=np.int64)
        self.image_wh = np.array([[im["width"], im["height"]] for im in images], dtype=np.float64).reshape(-1, 2)
        self.anns = _index_annotations([a for a in data["annotations"] if a["id"] not in skip], self.image_ids,
                                       local_index)
        if not (~self.anns["iscrowd"]).any():
            kept = f" ({self.dropped['count']} dropped as invalid)" if self.dropped.get("count") else ""
            why = ("nothing to train a detector on" if train else
                   "COCO AP is undefined on a split without ground truth (pycocotools reports -1)")
            raise DataError(f"{self.ann_file}: no non-crowd annotation{kept}: {why}")

    def __len__(self) -> int:
        return len(self.image_ids)

    def cache_identity(self) -> dict:
        """The annotation files (this split's and train's, which numbers the classes), the image folder, ``min_box``."""
        return self._identity(files=[file_stamp(self.ann_file), file_stamp(self.train_file)], images=str(self.image_dir),
                              min_box=self.min_box)

    def load(self, index: int):
        img = open_image(self.image_dir / self.file_names[index])
        w, h = img.size
        sx, sy = self.image_size / w, self.image_size / h
        part = slice(self.anns["start"][index], self.anns["start"][index + 1])
        keep = ~self.anns["iscrowd"][part]
        x, y, bw, bh = self.anns["bbox"][part][keep].T
        boxes = np.stack([x * sx, y * sy, (x + bw) * sx, (y + bh) * sy], axis=1)  # float64, then float32
        target = {
            "boxes": torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4),
            "labels": torch.from_numpy(self.anns["label"][part][keep]),
            "image_id": int(self.image_ids[index]),
            "scale": (sx, sy),
        }
        return resize_image(img, self.image_size), target

    def coco_gt(self) -> dict:
        """The split's ground truth with category ids = contiguous index + 1 (train space)."""
        a, image_of = self.anns, np.repeat(self.image_ids, np.diff(self.anns["start"]))
        anns = [{"id": int(i), "image_id": int(im), "category_id": int(lab) + 1, "bbox": box, "area": float(area),
                 "iscrowd": int(crowd)}
                for i, im, lab, box, area, crowd in zip(a["id"], image_of, a["label"], a["bbox"].tolist(), a["area"],
                                                        a["iscrowd"])]
        images = [{"id": int(i), "width": w, "height": h} for i, (w, h) in zip(self.image_ids, self.image_wh.tolist())]
        cats = [{"id": i + 1, "name": n} for i, n in enumerate(self.info.class_names)]
        return {"images": images, "annotations": anns, "categories": cats}


LAYOUTS = ("auto", "mini", "coco2017")


def coco_files(base: Path, split: str, layout: str = "auto") -> tuple[Path, Path]:
    """``(image folder, annotation file)`` of ``split`` in the data set folder ``base``.

    :param layout: ``mini`` (``<split>/data``, ``<split>/labels.json``), ``coco2017``
        (``<split>2017/``, ``annotations/instances_<split>2017.json``) or ``auto``: ``coco2017``
        where ``annotations/instances_train2017.json`` exists, else ``mini``.
    :raises DataError: an unknown layout.
    """
    if layout not in LAYOUTS:
        raise DataError(f"COCO layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if layout == "auto":
        layout = "coco2017" if (base / "annotations" / "instances_train2017.json").is_file() else "mini"
    if layout == "coco2017":
        return base / f"{split}2017", base / "annotations" / f"instances_{split}2017.json"
    return base / split / "data", base / split / "labels.json"


def _index_annotations(anns: list[dict], image_ids: np.ndarray, local_index: dict[int, int]) -> dict[str, np.ndarray]:
    """Kept annotations as arrays grouped by image (CSR), in file order within each image: ``id``
    int64 ``(A,)``, ``bbox`` float64 ``(A, 4)`` xywh original pixels, ``label`` int64 ``(A,)``
    contiguous class, ``area`` float64 ``(A,)`` (``w * h`` where the file has none), ``iscrowd``
    bool ``(A,)``, ``start`` int64 ``(N + 1,)``: image ``i``'s annotations are
    ``start[i]:start[i + 1]``. About 60 bytes an annotation instead of a Python dict each."""
    n = len(anns)
    bbox = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(n, 4)
    cols = {"id": np.fromiter((a["id"] for a in anns), np.int64, n), "bbox": bbox,
            "label": np.fromiter((local_index[a["category_id"]] for a in anns), np.int64, n),
            "area": np.fromiter((a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns), np.float64, n),
            "iscrowd": np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), bool, n)}
    row = np.searchsorted(image_ids, np.fromiter((a["image_id"] for a in anns), np.int64, n))
    order = np.argsort(row, kind="stable")
    out = {k: v[order] for k, v in cols.items()}
    out["start"] = np.searchsorted(row[order], np.arange(len(image_ids) + 1))
    return out


@hookimpl
def mtbench_register_datasets():
    return [Spec("dataset", "coco", _build, "COCO instances JSON detection (images in <split>/data)", task="det")]


def _build(task: str, split: str, root: Path | None, image_size: int, path: str = "mini_coco_det",
           min_box: float = 1.0, invalid_boxes: Literal["drop", "error"] = "drop",
           layout: Literal["auto", "mini", "coco2017"] = "auto"):
    return CocoDetection(root, path, split, image_size, train=split == "train", min_box=min_box,
                         invalid_boxes=invalid_boxes, layout=layout)
