"""ImageFolder classification loader (``dataset: imagefolder``).

Layout: ``<root>/<path>/<split>/<class>/*.{jpg,jpeg,png}``; classes are the train split's
folder names, sorted, so indices agree between splits.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mtbench.data.base import TaskDataset, TaskInfo, open_image, resolve_dir
from mtbench.data.cache import sha256_of
from mtbench.data.transforms import resize_image
from mtbench.errors import DataError
from mtbench.plugins import Spec, hookimpl

_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}


def _classes(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir())


class ImageFolderClassification(TaskDataset):
    """One image per file, its class the folder name.

    :raises DataError: missing folder, no images, or a class folder absent from train.
    """

    def __init__(self, root: Path | None, path: str, split: str, image_size: int, train: bool):
        super().__init__("cls", image_size, train)
        base = resolve_dir(root, path, "ImageFolder classification")
        split_dir = base / split
        if not split_dir.is_dir():
            raise DataError(f"ImageFolder split folder not found: {split_dir}")
        names = _classes(base / "train") if (base / "train").is_dir() else _classes(split_dir)
        index = {n: i for i, n in enumerate(names)}
        self.samples: list[tuple[Path, int]] = []
        for cls_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            if cls_dir.name not in index:
                raise DataError(f"class folder {cls_dir} is not among the train split's classes")
            for f in sorted(cls_dir.iterdir()):
                if f.suffix.lower() in _EXTS:
                    self.samples.append((f, index[cls_dir.name]))
        if not self.samples:
            raise DataError(f"no images found under {split_dir}")
        self.info = TaskInfo("cls", len(names), tuple(names))

    def __len__(self) -> int:
        return len(self.samples)

    def cache_identity(self) -> dict:
        """Every sample's path and class index, and the class names."""
        return self._identity(samples=sha256_of([(str(p), c) for p, c in self.samples]), classes=self.info.class_names)

    def load(self, index: int):
        path, label = self.samples[index]
        return resize_image(open_image(path), self.image_size), torch.tensor(label, dtype=torch.int64)


@hookimpl
def mtbench_register_datasets():
    return [Spec("dataset", "imagefolder", _build, "ImageFolder classification (<split>/<class>/*.jpg)", task="cls")]


def _build(task: str, split: str, root: Path | None, image_size: int, path: str = "imagenette_160"):
    return ImageFolderClassification(root, path, split, image_size, train=split == "train")
