"""SIRST single-frame infrared small targets (Dai et al., WACV 2021), ``dataset: sirst``.

Layouts of the SIRST family (``layout`` parameter, :data:`LAYOUTS`; ``auto``, the default,
takes the first whose train split list exists, in this order), each a folder ``<root>/<path>``
holding images, 0/255 target masks and split lists of image ids, one a line:

| layout | train / val split lists | images | masks | boxes |
|---|---|---|---|---|
| ``mini`` (``../shared/data/sirst``) | ``splits/{train,val}.txt`` | ``images/<id>.png`` | ``masks/<id>_pixels0.png`` | ``masks/<id>.xml`` |
| ``sirst`` (SIRST / NUAA-SIRST as released, Dai et al. WACV 2021) | ``idx_427/trainval.txt`` / ``idx_427/test.txt`` | ``images/<id>.png`` | ``masks/<id>_pixels0.png`` | ``masks/<id>.xml`` |
| ``nudt-sirst`` (NUDT-SIRST, Li et al. TIP 2023, DNANet's release) | ``50_50/train.txt`` / ``50_50/test.txt`` | ``images/<id>.png`` | ``masks/<id>.png`` | the mask's components |
| ``irstd-1k`` (IRSTD-1k, Zhang et al. CVPR 2022, ISNet's release) | ``trainval.txt`` / ``test.txt`` | ``IRSTD1k_Img/<id>.png`` | ``IRSTD1k_Label/<id>.png`` | the mask's components |

The val split is the released test list where a data set has no other (as their papers
evaluate). Task ``points``. Target per image:

- ``points``: float32 ``(N, 2)`` xy centroids of the mask's 8-connected components, in pixels
  of the resized input (computed at full resolution, then scaled);
- ``boxes``: float32 ``(M, 4)`` xyxy of the XML boxes (or, in layouts without them, of the
  mask's 8-connected components, pixel edges), resized pixels;
- ``mask``: uint8 ``(S, S)`` 0/1 target mask (nearest resize);
- ``native_mask`` (val split only): bool ``(H, W)`` the mask at the image's native size, so
  mask-level metrics score at native resolution (:mod:`.mask_metrics`); not in the training
  split, where augmentation transforms targets;
- ``image_id`` and ``scale`` (sx, sy) as for detection.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from mtbench.data.base import (TaskDataset, TaskInfo, check_files_exist, check_same_size, open_image, read_id_list,
                               resolve_dir)
from mtbench.data.cache import sha256_of
from mtbench.data.transforms import resize_image, resize_mask
from mtbench.errors import DataError
from mtbench_point_heatmap.mask_metrics import EIGHT, components
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


@dataclass(frozen=True)
class SirstLayout:
    """Where a SIRST-family data set keeps its files, relative to its folder (``{id}``: an image id)."""

    splits: dict  # split -> split list file
    images: str  # image file
    mask: str  # 0/255 target mask file
    xml: str | None  # PASCAL-VOC box file; None: boxes from the mask's components


LAYOUTS = {
    "mini": SirstLayout({"train": "splits/train.txt", "val": "splits/val.txt"}, "images/{id}.png",
                        "masks/{id}_pixels0.png", "masks/{id}.xml"),
    "sirst": SirstLayout({"train": "idx_427/trainval.txt", "val": "idx_427/test.txt"}, "images/{id}.png",
                         "masks/{id}_pixels0.png", "masks/{id}.xml"),
    "nudt-sirst": SirstLayout({"train": "50_50/train.txt", "val": "50_50/test.txt"}, "images/{id}.png",
                              "masks/{id}.png", None),
    "irstd-1k": SirstLayout({"train": "trainval.txt", "val": "test.txt"}, "IRSTD1k_Img/{id}.png",
                            "IRSTD1k_Label/{id}.png", None),
}


def find_layout(base: Path, layout: str = "auto") -> str:
    """The layout name of the data set folder ``base``: ``layout`` itself, or for ``auto`` the
    first of :data:`LAYOUTS` whose train split list exists.

    :raises DataError: an unknown layout, or none found for ``auto``.
    """
    if layout == "auto":
        found = next((n for n, lay in LAYOUTS.items() if (base / lay.splits["train"]).is_file()), None)
        if found is None:
            raise DataError(f"no SIRST-family layout found in {base}: none of "
                            + ", ".join(str(base / lay.splits["train"]) for lay in LAYOUTS.values()) + " exists")
        return found
    if layout not in LAYOUTS:
        raise DataError(f"SIRST layout must be auto or one of {', '.join(LAYOUTS)}, not {layout!r}")
    return layout


def mask_boxes(binary: np.ndarray) -> list[list[float]]:
    """``[[xmin, ymin, xmax, ymax], ...]`` (pixel edges) of the 8-connected components of a bool
    ``(H, W)`` mask, in the order of :func:`components`."""
    labels, _ = ndimage.label(binary, structure=EIGHT)
    return [[float(c.start), float(r.start), float(c.stop), float(r.stop)] for r, c in ndimage.find_objects(labels)]


class SirstPoints(TaskDataset):
    """A SIRST-family split as point targets.

    :param layout: ``auto`` or a name of :data:`LAYOUTS` (the module's docstring).
    :raises DataError: missing folder, split list, image, mask or XML, a split list that is
        not UTF-8 or lists no id, a mask of another size than its image, no layout found; each
        names the file.
    """

    def __init__(self, root: Path | None, path: str, split: str, image_size: int, train: bool, layout: str = "auto"):
        super().__init__("points", image_size, train)
        self.base = resolve_dir(root, path, "SIRST")
        self.layout_name = find_layout(self.base, layout)
        self.layout = lay = LAYOUTS[self.layout_name]
        self.ids = read_id_list(self.base / lay.splits[split], "split list")
        check_files_exist([self._file(lay.images, i) for i in self.ids], "image")
        check_files_exist([self._file(pattern, i) for i in self.ids for pattern in (lay.mask, lay.xml) if pattern],
                          "mask or annotation")
        self.info = TaskInfo("points", 1, ("Target",))

    def _file(self, pattern: str, stem: str) -> Path:
        return self.base / pattern.format(id=stem)

    def __len__(self) -> int:
        return len(self.ids)

    def cache_identity(self) -> dict:
        """The data folder, the split's image ids and the layout (where not ``mini``)."""
        named = {} if self.layout_name == "mini" else {"layout": self.layout_name}
        return self._identity(folder=str(self.base), ids=sha256_of(self.ids), **named)

    def load(self, index: int):
        stem = self.ids[index]
        img_path, mask_path = self._file(self.layout.images, stem), self._file(self.layout.mask, stem)
        img = open_image(img_path)
        mask_img = open_image(mask_path, mode="L")
        check_same_size(mask_img, mask_path, img, img_path)
        w, h = img.size
        sx, sy = self.image_size / w, self.image_size / h
        binary = np.asarray(mask_img) > 127
        cents = [(c[1] * sx, c[0] * sy) for c, _ in components(binary)]  # (row, col) -> (x, y)
        full = read_voc_boxes(self._file(self.layout.xml, stem)) if self.layout.xml else mask_boxes(binary)
        boxes = [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in full]
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


def _build(task: str, split: str, root: Path | None, image_size: int, path: str = "sirst",
           layout: Literal["auto", "mini", "sirst", "nudt-sirst", "irstd-1k"] = "auto"):
    return SirstPoints(root, path, split, image_size, train=split == "train", layout=layout)
