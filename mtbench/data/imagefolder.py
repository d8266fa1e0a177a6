"""ImageFolder classification loader (``dataset: imagefolder``).

Layout: ``<root>/<path>/<split>/<class>/*.{jpg,jpeg,png}``, hidden folders and files (a name
starting with ``.``) left out (ImageNet's ``train/<wnid>/*.JPEG``
and a ``val`` folder sorted into ``val/<wnid>/``, Imagenette). ``class_index``:

- ``sorted`` (default): classes are the train split's folder names, sorted, so indices agree
  between splits;
- ``imagenet-1k``: the folder names are ImageNet WordNet ids (``n01440764``) and each class
  index is that id's ImageNet-1k index (0..999, the order of timm's
  ``timm.data.ImageNetInfo``: ``n01440764`` tench = 0, ``n03888257`` parachute = 701), 1000
  classes whatever folders a split has, so a model's ImageNet head and labels agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from mtbench.data.base import TaskDataset, TaskInfo, open_image, resolve_dir, visible
from mtbench.data.cache import sha256_of
from mtbench.data.transforms import resize_image
from mtbench.errors import DataError
from mtbench.plugins import Spec, hookimpl

_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}


def _classes(split_dir: Path) -> list[str]:
    return sorted(p.name for p in visible(split_dir.iterdir()) if p.is_dir())


def _class_names(base: Path, split_dir: Path, class_index: str) -> list[str]:
    """Class names in index order (``class_index``: the module's docstring).

    :raises DataError: an unknown ``class_index``.
    """
    if class_index == "imagenet-1k":
        from timm.data import ImageNetInfo

        return list(ImageNetInfo("imagenet-1k").label_names())
    if class_index != "sorted":
        raise DataError(f"class_index must be 'sorted' or 'imagenet-1k', not {class_index!r}")
    return _classes(base / "train") if (base / "train").is_dir() else _classes(split_dir)


class ImageFolderClassification(TaskDataset):
    """One image per file, its class the folder name.

    :param class_index: ``sorted`` | ``imagenet-1k`` (the module's docstring).
    :raises DataError: missing folder, no images, a train class folder without images, a class
        folder absent from train (or not an ImageNet-1k WordNet id).
    """

    def __init__(self, root: Path | None, path: str, split: str, image_size: int, train: bool,
                 class_index: str = "sorted"):
        super().__init__("cls", image_size, train)
        base = resolve_dir(root, path, "ImageFolder classification")
        split_dir = base / split
        if not split_dir.is_dir():
            raise DataError(f"ImageFolder split folder not found: {split_dir}")
        names = _class_names(base, split_dir, class_index)
        index = {n: i for i, n in enumerate(names)}
        self.samples: list[tuple[Path, int]] = []
        for cls_dir in sorted(p for p in visible(split_dir.iterdir()) if p.is_dir()):
            if cls_dir.name not in index:
                among = "ImageNet-1k WordNet ids" if class_index == "imagenet-1k" else "the train split's classes"
                raise DataError(f"class folder {cls_dir} is not among {among}")
            files = [f for f in sorted(visible(cls_dir.iterdir())) if f.suffix.lower() in _EXTS]
            if not files and split == "train":
                raise DataError(f"class folder {cls_dir} has no images ({', '.join(sorted(_EXTS))}): its class "
                                "could not be learnt, yet would count among the classes")
            self.samples += [(f, index[cls_dir.name]) for f in files]
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


def _build(task: str, split: str, root: Path | None, image_size: int, path: str = "imagenette_160",
           class_index: Literal["sorted", "imagenet-1k"] = "sorted"):
    return ImageFolderClassification(root, path, split, image_size, train=split == "train", class_index=class_index)
