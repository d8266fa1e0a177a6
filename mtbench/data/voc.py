"""VOC-style semantic segmentation loader (``dataset: voc``).

Layout: ``<root>/<path>/<split>/<id>.jpg`` + ``<id>.png`` (palette PNG whose pixel values
are class indices in PASCAL VOC order; 255 = void, ignored in loss and mIoU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtbench.data.base import TaskDataset, TaskInfo, check_same_size, open_image, resolve_dir
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

    def __init__(self, root: Path | None, path: str, split: str, image_size: int, train: bool):
        super().__init__("seg", image_size, train)
        self.dir = resolve_dir(root, path, "VOC segmentation") / split
        if not self.dir.is_dir():
            raise DataError(f"VOC split folder not found: {self.dir}")
        self.ids = sorted(p.stem for p in self.dir.glob("*.jpg"))
        if not self.ids:
            raise DataError(f"no .jpg images in {self.dir}")
        for i in self.ids:
            if not (self.dir / f"{i}.png").is_file():
                raise DataError(f"mask file not found: {self.dir / f'{i}.png'} (for image {i}.jpg)")
        self.info = TaskInfo("seg", len(VOC_CLASSES), VOC_CLASSES)

    def __len__(self) -> int:
        return len(self.ids)

    def cache_identity(self) -> dict:
        """The split folder and its image ids."""
        return self._identity(folder=str(self.dir), ids=sha256_of(self.ids))

    def load(self, index: int):
        stem = self.ids[index]
        img_path, mask_path = self.dir / f"{stem}.jpg", self.dir / f"{stem}.png"
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


@hookimpl
def mtbench_register_datasets():
    return [Spec("dataset", "voc", _build, "VOC-style JPEG + palette PNG segmentation (255 ignored)", task="seg")]


def _build(task: str, split: str, root: Path | None, image_size: int, path: str = "mini_voc_seg"):
    return VocSegmentation(root, path, split, image_size, train=split == "train")
