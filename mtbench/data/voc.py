"""VOC-style semantic segmentation loader (``dataset: voc``).

Masks are palette PNGs whose pixel values are class indices in PASCAL VOC order (255 =
void, ignored in loss and mIoU). Layouts (``layout`` parameter; ``auto``, the default, takes
``voc2012`` where its split lists exist, else ``mini``):

- ``mini``: ``<root>/<path>/<split>/<id>.jpg`` + ``<id>.png``, every image of the folder;
- ``voc2012`` (the VOC 2012 download): ``<path>`` is the ``VOC2012`` folder or a folder
  holding ``VOCdevkit/VOC2012``; the split's ids are the lines of
  ``ImageSets/Segmentation/<split>.txt``, images ``JPEGImages/<id>.jpg``, masks
  ``SegmentationClass/<id>.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from mtbench.data.base import (TaskDataset, TaskInfo, check_files_exist, check_same_size, open_image, read_id_list,
                               resolve_dir, visible)
from mtbench.data.cache import sha256_of
from mtbench.data.transforms import resize_image, resize_mask
from mtbench.errors import DataError
from mtbench.plugins import Spec, hookimpl

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


class VocSegmentation(TaskDataset):
    """VOC-style split: every ``<id>.jpg`` must have its ``<id>.png`` mask.

    :raises DataError: missing folder, an image without a mask, a mask of another size than
        its image, a mask with a class index outside ``[0, num_classes)`` other than 255;
        each names the file.
    """

    target_dtype = torch.int64  # masks are loaded as uint8 (21 classes and 255)

    def __init__(self, root: Path | None, path: str, split: str, image_size: int, train: bool, layout: str = "auto"):
        super().__init__("seg", image_size, train)
        self.image_dir, self.mask_dir, self.ids = voc_split(resolve_dir(root, path, "VOC segmentation"), split, layout)
        if not self.ids:
            raise DataError(f"no .jpg images in {self.image_dir}")
        check_files_exist([self.image_dir / f"{i}.jpg" for i in self.ids], "image")
        check_files_exist([self.mask_dir / f"{i}.png" for i in self.ids], "mask")
        self.info = TaskInfo("seg", len(VOC_CLASSES), VOC_CLASSES)

    def __len__(self) -> int:
        return len(self.ids)

    def cache_identity(self) -> dict:
        """The image (and mask, where another) folder and the split's image ids."""
        masks = {} if self.mask_dir == self.image_dir else {"masks": str(self.mask_dir)}
        return self._identity(folder=str(self.image_dir), ids=sha256_of(self.ids), **masks)

    def load(self, index: int):
        stem = self.ids[index]
        img_path, mask_path = self.image_dir / f"{stem}.jpg", self.mask_dir / f"{stem}.png"
        img = open_image(img_path)
        mask = open_image(mask_path, mode=None)
        check_same_size(mask, mask_path, img, img_path)
        if mask.mode not in ("P", "L"):
            raise DataError(f"mask {mask_path} has mode {mask.mode}; expected a palette (P) or grey (L) PNG")
        values = np.unique(np.asarray(mask))
        bad = [int(v) for v in values if v >= self.info.num_classes and v != 255]
        if bad:
            raise DataError(f"mask {mask_path} holds class indices {bad} outside 0..{self.info.num_classes - 1} and 255")
        return resize_image(img, self.image_size), resize_mask(mask, self.image_size)


LAYOUTS = ("auto", "mini", "voc2012")


def voc_split(base: Path, split: str, layout: str = "auto") -> tuple[Path, Path, list[str]]:
    """``(image folder, mask folder, ids)`` of ``split`` in the data set folder ``base`` (layouts:
    the module's docstring).

    :raises DataError: an unknown layout, a missing split folder, a missing, unreadable or empty split list.
    """
    if layout not in LAYOUTS:
        raise DataError(f"VOC layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    voc = next((d for d in (base, base / "VOCdevkit" / "VOC2012") if (d / "ImageSets" / "Segmentation").is_dir()), None)
    if layout == "voc2012" or (layout == "auto" and voc is not None):
        voc = voc or base
        ids = read_id_list(voc / "ImageSets" / "Segmentation" / f"{split}.txt", "VOC 2012 split list")
        return voc / "JPEGImages", voc / "SegmentationClass", ids
    folder = base / split
    if not folder.is_dir():
        raise DataError(f"VOC split folder not found: {folder}")
    return folder, folder, sorted(p.stem for p in visible(folder.glob("*.jpg")))


@hookimpl
def mtbench_register_datasets():
    return [Spec("dataset", "voc", _build, "VOC-style JPEG + palette PNG segmentation (255 ignored)", task="seg")]


def _build(task: str, split: str, root: Path | None, image_size: int, path: str = "mini_voc_seg",
           layout: Literal["auto", "mini", "voc2012"] = "auto"):
    return VocSegmentation(root, path, split, image_size, train=split == "train", layout=layout)
