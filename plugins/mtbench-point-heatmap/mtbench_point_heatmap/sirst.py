"""SIRST single-frame infrared small targets (Dai et al., WACV 2021), ``dataset: sirst``.

Layout: ``<root>/<path>/images/<id>.png``, ``masks/<id>_pixels0.png`` (0/255 target mask),
``masks/<id>.xml`` (PASCAL-VOC boxes, class ``Target``), ``splits/{train,val}.txt``.
Task ``points``. Target per image:

- ``points``: float32 ``(N, 2)`` xy centroids of the mask's 8-connected components, in pixels
  of the resized input (computed at full resolution, then scaled);
- ``boxes``: float32 ``(M, 4)`` xyxy of the XML boxes, resized pixels;
- ``mask``: uint8 ``(S, S)`` 0/1 target mask (nearest resize);
- ``native_mask`` (val split only): bool ``(H, W)`` the mask at the image's native size, so
  mask-level metrics score at native resolution (:mod:`.mask_metrics`); not in the training
  split, where augmentation transforms targets;
- ``image_id`` and ``scale`` (sx, sy) as for detection.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mtbench.data.base import TaskDataset, TaskInfo, check_files_exist, check_same_size, open_image, resolve_dir
from mtbench.data.cache import sha256_of
from mtbench.data.transforms import resize_image, resize_mask
from mtbench.errors import DataError
from mtbench_point_heatmap.mask_metrics import components
from mtbench.plugins import Spec, hookimpl


def read_voc_boxes(path: Path) -> list[list[float]]:
    """``[[xmin, ymin, xmax, ymax], ...]`` of a PASCAL-VOC XML file.

    :raises DataError: missing or malformed file, naming it.
    """
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        root = ET.parse(path).getroot()
        return [[float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
                for o in root.iter("object")]
    except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise DataError(f"cannot parse VOC XML {path}: {exc}") from exc


class SirstPoints(TaskDataset):
    """SIRST split as point targets.

    :raises DataError: missing folder, split list, image, mask or XML, a mask of another
        size than its image; each names the file.
    """

    def __init__(self, root: Path | None, path: str, split: str, image_size: int, train: bool):
        super().__init__("points", image_size, train)
        self.base = resolve_dir(root, path, "SIRST")
        split_file = self.base / "splits" / f"{split}.txt"
        if not split_file.is_file():
            raise DataError(f"split list not found: {split_file}")
        self.ids = [ln.strip() for ln in split_file.read_text().splitlines() if ln.strip()]
        check_files_exist([self.base / "images" / f"{i}.png" for i in self.ids], "image")
        check_files_exist([self.base / "masks" / f"{i}{end}" for i in self.ids for end in ("_pixels0.png", ".xml")],
                          "mask or annotation")
        self.info = TaskInfo("points", 1, ("Target",))

    def __len__(self) -> int:
        return len(self.ids)

    def cache_identity(self) -> dict:
        """The data folder and the split's image ids."""
        return self._identity(folder=str(self.base), ids=sha256_of(self.ids))

    def load(self, index: int):
        stem = self.ids[index]
        img_path, mask_path = self.base / "images" / f"{stem}.png", self.base / "masks" / f"{stem}_pixels0.png"
        img = open_image(img_path)
        mask_img = open_image(mask_path, mode="L")
        check_same_size(mask_img, mask_path, img, img_path)
        w, h = img.size
        sx, sy = self.image_size / w, self.image_size / h
        binary = np.asarray(mask_img) > 127
        cents = [(c[1] * sx, c[0] * sy) for c, _ in components(binary)]  # (row, col) -> (x, y)
        boxes = [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]
                 for b in read_voc_boxes(self.base / "masks" / f"{stem}.xml")]
        mask = resize_mask(Image.fromarray(binary.astype(np.uint8)), self.image_size).to(torch.uint8)
        target = {"points": torch.tensor(cents, dtype=torch.float32).reshape(-1, 2),
                  "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  "mask": mask, "image_id": index + 1, "scale": (sx, sy)}
        if not self.train:
            target["native_mask"] = torch.from_numpy(binary)
        return resize_image(img, self.image_size), target


@hookimpl
def mtbench_register_datasets():
    return [Spec("dataset", "sirst", _build, "SIRST infrared small targets: centroids, boxes, masks", task="points")]


def _build(task: str, split: str, root: Path | None, image_size: int, path: str = "sirst"):
    return SirstPoints(root, path, split, image_size, train=split == "train")
