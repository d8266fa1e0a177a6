"""The dataset contract shared by every loader, and the batch collation.

A :class:`TaskDataset` serves one task (``det``, ``seg`` or ``cls``) of one split. Items:

- image: ``float32 (3, S, S)`` in [0, 1], ``S = image_size`` pixels (plain resize).
- det target: ``{"boxes": float32 (N, 4) xyxy in pixels of the resized input,
  "labels": int64 (N,) contiguous class indices, "image_id": int,
  "scale": (sx, sy) resized / original}``.
- seg target: ``int64 (S, S)`` class indices, 255 = ignore.
- cls target: ``int64 ()`` class index.

That is what ``dataset[i]`` serves. What is loaded, cached and sent from a DataLoader worker is
smaller (:meth:`TaskDataset.item`): the ``uint8`` image, and a tensor target in the narrowest
integer dtype that holds its values (seg masks: ``uint8``, classes < 255 and the ignore index
255); :func:`model_input` makes the served form of either one item or a collated batch, in the
main process (:class:`mtbench.data.loading.CompactLoader`), as timm's ``PrefetchLoader`` sends
``uint8`` batches and converts them after.

A loader that leaves annotations out (a degenerate box, one outside its image) leaves them
out of training **and** of the evaluation ground truth alike, and says so in ``dropped``
(:func:`dropped_record`); the runner stores every split's count with the cell's result
(:func:`dropped_summary`).

Decoded, resized items are kept between epochs as ``fixed.cache`` says (:mod:`mtbench.data.cache`:
``none``, ``ram`` within a byte budget (default), ``disk`` memory-mapped files); every mode
serves the same pixels. Training augmentation (a horizontal flip, p = 0.5) draws from the
global torch RNG for a plain integer index (as before DataLoader workers existed), or from
its own generator when the index comes with a seed (``(index, seed)``, from
:class:`mtbench.data.loading.SeededSampler`), so an item is the same with any worker count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate, get_worker_info
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from mtbench.data.cache import CacheMode, RamBudget, RamCache, make_cache
from mtbench.data.augment import DEFAULT, Augmentation
from mtbench.errors import DataError

TASKS = ("det", "seg", "cls")


@dataclass(frozen=True)
class TaskInfo:
    """What a model and a loss need to know about one task's labels."""

    task: str
    num_classes: int
    class_names: tuple[str, ...]


def open_image(path: Path, mode: str | None = "RGB") -> Image.Image:
    """Open and fully decode an image. An RGB baseline or progressive JPEG asked for as RGB
    is decoded by ``torchvision.io.decode_jpeg`` (libjpeg-turbo, as PIL's; on the CPU about as
    fast, 9.2 vs 9.9 ms a 640 x 480 image measured interleaved), bit-identical to PIL's
    decoding (tested on baseline, progressive and 4:2:0 / 4:2:2 / 4:4:4 files).

    :raises DataError: the file is missing or not a readable image; names the file.
    """
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            if mode == "RGB" and img.format == "JPEG" and img.mode == "RGB":
                return _decode_jpeg(path)
            img.load()
            return img.convert(mode) if mode and mode != img.mode else img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, RuntimeError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


def _decode_jpeg(path: Path) -> Image.Image:
    decoded = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)  # uint8 (3, H, W)
    return Image.fromarray(decoded.permute(1, 2, 0).numpy())


def check_same_size(mask: Image.Image, mask_path: Path, image: Image.Image, image_path: Path) -> None:
    """A mask must cover its image pixel for pixel (resizing both would silently misalign them).

    :raises DataError: the sizes differ; names both files.
    """
    if mask.size != image.size:
        raise DataError(f"mask {mask_path} is {mask.size[0]}x{mask.size[1]} pixels but its image {image_path} "
                        f"is {image.size[0]}x{image.size[1]}")


def file_stamp(path: Path) -> list:
    """``[path, size in bytes, modification time in ns]`` of a file or folder, for
    :meth:`TaskDataset.cache_identity` (``[path, None, None]`` when it is missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def check_files_exist(paths: list[Path], what: str) -> None:
    """Every listed file is there, checked when a split is built (not after training).

    :raises DataError: names the first missing file and how many are missing.
    """
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" ({len(missing)} of {len(paths)} {what} files missing)" if len(missing) > 1 else ""
        raise DataError(f"{what} file not found: {missing[0]}{more}")


def visible(paths) -> list[Path]:
    """``paths`` without hidden entries (a name starting with ``.``: ``.ipynb_checkpoints``,
    macOS ``._x.jpg``), which loaders never read and :func:`mtbench.identity.data_fingerprint`
    leaves out, so what a cell trains on and its identity agree."""
    return [p for p in paths if not p.name.startswith(".")]


def read_id_list(path: Path, what: str) -> list[str]:
    """The ids of a split list file: one a line, blank lines skipped, surrounding spaces stripped.

    :param what: what the list is, for messages (``"VOC 2012 split list"``).
    :raises DataError: the file is missing, not UTF-8 text (names the line), or lists no id.
    """
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{what} {path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    ids = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not ids:
        raise DataError(f"{what} {path} lists no image ids: the split would be empty")
    return ids


def resolve_dir(root: Path | None, path: str, what: str) -> Path:
    """Join a data-set ``path`` to the data ``root`` and check the folder exists.

    :raises DataError: missing folder; says how to point mtbench at the data.
    """
    full = Path(path) if root is None else Path(root) / path
    if not full.is_dir():
        raise DataError(
            f"{what} folder not found: {full} (set MTBENCH_DATA or the suite's data_root "
            f"to the folder holding {path!r})"
        )
    return full


def dropped_record(file: Path, problems: dict[str, list]) -> dict:
    """What a loader dropped from one file: ``{"file": str, "count": int, "reasons": {reason:
    count}, "ids": {reason: [first 20 annotation ids]}}`` (``count`` 0 and empty dicts when
    nothing was dropped). ``problems`` maps each reason to the dropped annotation ids."""
    return {"file": str(file), "count": sum(len(ids) for ids in problems.values()),
            "reasons": {r: len(ids) for r, ids in problems.items()},
            "ids": {r: list(ids[:20]) for r, ids in problems.items()}}


def dropped_summary(splits: dict[str, dict[str, "TaskDataset"]]) -> dict:
    """Per task, what its loaders dropped, for the cell's result record.

    :param splits: ``{"train": {task: dataset}, "val": {task: dataset}}``.
    :return: ``{task: {"train": n, "val": m, "reasons": {split: {reason: count}}, "ids": {split:
        {reason: [annotation ids]}}, "files": {split: path}}}`` for every task with a drop
        (``{}`` when nothing was dropped).
    """
    out: dict[str, dict] = {}
    for split, sets in splits.items():
        for task, ds in sets.items():
            rec = ds.dropped
            if rec.get("count"):
                entry = out.setdefault(task, {"train": 0, "val": 0, "reasons": {}, "ids": {}, "files": {}})
                entry[split] = rec["count"]
                entry["reasons"][split], entry["ids"][split], entry["files"][split] = rec["reasons"], rec["ids"], rec["file"]
    return out


class TaskDataset(Dataset):
    """Base class: subclasses fill ``self.info`` and implement ``__len__`` and ``load``.

    ``dropped``: what the loader left out of training and evaluation (:func:`dropped_record`;
    nothing by default). ``cache``: where loaded items are kept (:meth:`set_cache`; by default
    ``ram`` within :data:`mtbench.data.cache.RAM_FRACTION` of the available memory).

    :param task: the task served.
    :param image_size: square input side in pixels (multiple of 32).
    :param train: apply training augmentation (``augment``: :meth:`set_augment`; by default a
        random horizontal flip, p = 0.5).
    """

    info: TaskInfo
    dropped: dict = {"count": 0}

    def __init__(self, task: str, image_size: int, train: bool):
        self.task = task
        self.image_size = image_size
        self.train = train
        self.cache = RamCache(RamBudget())
        self.augment = Augmentation(DEFAULT, task, image_size) if train else None

    #: The dtype a tensor target is served in (:func:`model_input`) when :meth:`load` keeps it
    #: narrower (seg masks: ``uint8`` loaded, ``int64`` served); None: as loaded.
    target_dtype: torch.dtype | None = None

    def set_augment(self, options: dict) -> None:
        """Augment training items as ``options`` (``fixed.augment``) say (a val split: nothing)."""
        if self.train:
            self.augment = Augmentation(options, self.task, self.image_size)

    def load(self, index: int) -> tuple[torch.Tensor, object]:
        """Return ``(uint8 (3, S, S) image, target)`` for ``index`` (no augmentation); a tensor
        target may be narrower than the task's dtype (then :attr:`target_dtype` names the latter)."""
        raise NotImplementedError

    def cache_identity(self) -> dict:
        """What determines :meth:`load`'s items, JSON-able; it names the ``disk`` cache folder.
        Subclasses extend it with their sources (:func:`file_stamp` of annotation files,
        parameters that change targets).

        :raises DataError: the subclass does not say (a ``disk`` cache needs it).
        """
        raise DataError(f"{type(self).__name__} does not define cache_identity(), which 'cache: disk' needs "
                        "to tell its items from other data sets'; use 'cache: ram' or 'none'")

    def _identity(self, **sources) -> dict:
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", "task": self.task,
                "image_size": self.image_size, **sources}

    def set_cache(self, mode: CacheMode, budget: RamBudget | None = None) -> None:
        """Keep items as ``mode`` says (:func:`mtbench.data.cache.make_cache`); ``budget`` is
        shared by the ``ram`` caches of one cell.

        :raises DataError: ``disk`` for a data set without :meth:`cache_identity`.
        """
        self.cache = make_cache(mode, self.cache_identity() if mode == "disk" else {}, budget)

    def item(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, object]:
        """``(uint8 (3, S, S) image, target as loaded)``, augmented (training): what a DataLoader
        worker sends; ``key`` is an index or ``(index, seed)``."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, target = self.cache.get(index, self.load)
        if self.augment is not None:
            image, target = self.augment(image, target, seed)
        return image, target

    def __getitem__(self, key: int | tuple[int, int]):
        """``(float32 (3, S, S) image in [0, 1], target)`` (:func:`model_input` of :meth:`item`)."""
        return model_input(*self.item(key), self.target_dtype)

    def coco_gt(self) -> dict:
        """COCO-format ground truth in original image pixels (detection datasets only)."""
        raise NotImplementedError(f"{type(self).__name__} has no detection ground truth")


def model_input(images: torch.Tensor, targets, target_dtype: torch.dtype | None = None,
                pin_memory: bool = False, out: torch.Tensor | None = None) -> tuple[torch.Tensor, object]:
    """The served form of one item or a collated batch (:meth:`TaskDataset.item`, :func:`collate`).

    :param images: ``uint8 (..., 3, S, S)``.
    :param targets: left as they are, except a tensor converted to ``target_dtype`` (when not None).
    :param pin_memory: make the images in page-locked memory (a DataLoader's ``pin_memory``).
    :param out: write the images into this ``float32`` tensor of their shape instead of a new one
        (:class:`mtbench.data.loading.CompactLoader`'s reused buffers; ``pin_memory`` is then ignored).
    :return: ``(float32 (..., 3, S, S) images in [0, 1], targets)``; the images are ``x / 255``
        in float32, the same bits the items always had (an element-wise division, so the same
        whether made per item or per batch; not a multiplication by 1 / 255, which rounds 126 of
        the 256 values differently).
    """
    if out is None:
        out = torch.empty(images.shape, dtype=torch.float32, pin_memory=pin_memory)
    floats = out.copy_(images).div_(255.0)
    if target_dtype is not None and isinstance(targets, torch.Tensor):
        targets = targets.to(target_dtype)
    return floats, targets


def to_device(targets, device: torch.device):
    """Move a batch's targets (a tensor, or a list of per-image dicts) to ``device``."""
    if isinstance(targets, torch.Tensor):
        return targets.to(device)
    return [{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in t.items()} for t in targets]


def collate(batch: list) -> tuple[torch.Tensor, object]:
    """Stack images to ``(B, 3, S, S)`` (their dtype); stack seg/cls targets, keep det targets a list.

    In a DataLoader worker the batch is laid out for its trip to the main process, values
    unchanged: stacked tensors are made in shared memory (``default_collate``'s way), and each
    key's per-image target tensors become views of one tensor (:func:`_one_block_per_key`), so a
    batch crosses as a few shared-memory blocks instead of two per image (a 32-image det batch:
    0.5-1.1 ms an image on the main process before, 0.16-0.19 ms after, measured interleaved).
    """
    images = default_collate([b[0] for b in batch])
    targets = [b[1] for b in batch]
    if isinstance(targets[0], torch.Tensor):
        return images, default_collate(targets)
    return images, _one_block_per_key(targets) if get_worker_info() is not None else targets


def _one_block_per_key(targets: list) -> list:
    """Per-image target dicts with each key whose values are all tensors of one dtype and one
    trailing shape (det ``boxes`` ``(N_i, 4)``, ``labels`` ``(N_i,)``) given as views (split along
    dim 0) of one concatenated tensor; other values and non-dict targets are left as they are."""
    if not all(isinstance(t, dict) for t in targets):
        return targets
    out = [dict(t) for t in targets]
    for key, first in targets[0].items():
        parts = [t.get(key) for t in targets]
        if all(isinstance(p, torch.Tensor) and p.dim() and p.dtype == first.dtype and p.shape[1:] == first.shape[1:]
               for p in parts):
            for t, view in zip(out, torch.cat(parts).split([len(p) for p in parts])):
                t[key] = view
    return out
