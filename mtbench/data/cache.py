"""Where decoded, resized items live between epochs: ``fixed.cache: none | ram | disk``.

The modes follow Ultralytics' ``cache=False | "ram" | "disk"``; what is cached is a data set's
:meth:`~mtbench.data.base.TaskDataset.load` output (``uint8 (3, S, S)`` image and its target),
so every mode serves the same pixels and targets (tested):

- ``none``: decode and resize on every access; memory does not grow with the data set.
- ``ram`` (default): items kept in the training process up to a byte budget
  (:class:`RamBudget`, default :data:`RAM_FRACTION` of the memory available when the cell
  starts, shared by all of a cell's data sets); items past the budget are decoded every time.
  Only the main process fills it: with DataLoader workers the runner fills it before the
  workers start (:func:`warm`, a thread pool), and the forked workers read the same pages
  (copy-on-write, never written, so not copied per worker).
- ``disk``: each item written once, atomically (a temporary file, then ``os.replace``), as
  ``<cache dir>/<key>/<index>.npy``: the image as a plain ``.npy`` (``np.save``, read back
  memory-mapped by ``np.load(mmap_mode="c", allow_pickle=False)``: no pickle), as Ultralytics'
  ``cache="disk"`` stores its images (``ultralytics/data/base.py``,
  ``BaseDataset.cache_images_to_disk``), and ``<index>.safetensors``: the small target, its
  tensors in a safetensors file, its structure and plain values (dict keys, tuples, ints,
  floats, strings) as JSON in the file's metadata: no pickle either, and a third of
  ``torch.load(weights_only=True)``'s time to read (README). The target is written first, so
  an image file that exists has its target; a write that fails leaves no file under either name.
  ``<key>`` hashes the data set's identity (:meth:`~mtbench.data.base.TaskDataset.cache_identity`:
  its class, task, split, image size and source files' sizes and modification times, mtbench's
  version and :data:`FORMAT`), so a changed annotation file or image size gets a fresh folder. The cache dir is
  ``$MTBENCH_CACHE``, else the user cache folder (``~/.cache/mtbench/items`` on Linux).
  An image file replaced in place without touching what the identity names, or a loader edited
  in a development install, is not noticed: delete the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import platformdirs
import psutil
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch.utils.data import get_worker_info

from mtbench import __version__
from mtbench.atomic import atomic_path
from mtbench.errors import DataError

CacheMode = Literal["none", "ram", "disk"]
#: What a cached item holds; part of a ``disk`` cache's key, so a cache of another format is
#: rebuilt, never misread. 3: image ``.npy`` + target ``.safetensors`` (2: one ``.pt``, seg masks
#: ``uint8``; 1: ``int64``).
FORMAT = 3
#: Default ``ram`` budget: this fraction of ``psutil.virtual_memory().available`` at cell start.
RAM_FRACTION = 0.25


def item_bytes(item) -> int:
    """Bytes held by the tensors of an item (image, target: tensor, dict, tuple or scalar)."""
    if isinstance(item, torch.Tensor):
        return item.untyped_storage().nbytes()
    if isinstance(item, dict):
        return sum(item_bytes(v) for v in item.values())
    if isinstance(item, (tuple, list)):
        return sum(item_bytes(v) for v in item)
    return 0


def sha256_of(value) -> str:
    """Hex SHA-256 of ``value``'s JSON (keys sorted; ``str`` for what JSON cannot hold), for identities."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def cache_dir() -> Path:
    """``$MTBENCH_CACHE`` or the user cache folder's ``mtbench/items``."""
    env = os.environ.get("MTBENCH_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("mtbench")) / "items"


class RamBudget:
    """Bytes the ``ram`` caches of one cell may hold together.

    :param nbytes: the budget; None: :data:`RAM_FRACTION` of the memory available now.
    """

    def __init__(self, nbytes: int | None = None):
        self.nbytes = int(RAM_FRACTION * psutil.virtual_memory().available) if nbytes is None else int(nbytes)
        self.used = 0
        self.full = False  # set by the first item that did not fit
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; False (nothing reserved) when they do not fit."""
        with self._lock:
            if self.used + n > self.nbytes:
                self.full = True
                return False
            self.used += n
            return True



class NoCache:
    """``cache: none``: every access decodes."""

    mode = "none"

    def get(self, index: int, load: Callable[[int], tuple]) -> tuple:
        return load(index)


class RamCache(NoCache):
    """``cache: ram``: items kept in this process while ``budget`` allows (filled only in the
    main process; in a DataLoader worker it is read-only)."""

    mode = "ram"

    def __init__(self, budget: RamBudget):
        self.budget = budget
        self.items: dict[int, tuple] = {}

    def get(self, index: int, load: Callable[[int], tuple]) -> tuple:
        item = self.items.get(index)
        if item is None:
            item = load(index)
            if get_worker_info() is None and self.budget.take(item_bytes(item)):
                self.items[index] = item
        return item


def _split(value, tensors: dict) -> object:
    """``value``'s structure as JSON, its tensors moved into ``tensors`` (named by position)."""
    if isinstance(value, torch.Tensor):
        name = str(len(tensors))
        tensors[name] = value.detach().contiguous().clone()  # own storage: safetensors refuses shared memory
        return {"tensor": name}
    if isinstance(value, dict) and all(type(k) in (int, str) for k in value):
        return {"dict": [[k, _split(v, tensors)] for k, v in value.items()]}
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [_split(v, tensors) for v in value]}
    if value is None or type(value) in (bool, int, float, str):
        return {"value": value}
    raise DataError(f"'cache: disk' cannot store a target holding {type(value).__name__} (tensors, dicts with "
                    "int or str keys, tuples, lists, ints, floats, strings only); use 'cache: ram' or 'none'")


def _join(skeleton: dict, tensors: Callable[[str], torch.Tensor]):
    """Inverse of :func:`_split`."""
    (kind, body), = skeleton.items()
    if kind == "tensor":
        return tensors(body)
    if kind == "dict":
        return {k: _join(v, tensors) for k, v in body}
    if kind in ("tuple", "list"):
        return {"tuple": tuple, "list": list}[kind](_join(v, tensors) for v in body)
    return body


class DiskCache(NoCache):
    """``cache: disk``: per item a memory-mapped image ``<index>.npy`` and its target
    ``<index>.safetensors`` under ``folder`` (the module's docstring)."""

    mode = "disk"

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the disk cache folder {self.folder}: {exc} (set MTBENCH_CACHE "
                            "to a writable folder)") from exc

    def get(self, index: int, load: Callable[[int], tuple]) -> tuple:
        image_path, target_path = self.folder / f"{index}.npy", self.folder / f"{index}.safetensors"
        try:  # "c": copy-on-write pages, so the tensor is writable and the file never written
            image = np.load(image_path, mmap_mode="c", allow_pickle=False)
        except FileNotFoundError:
            image, target = load(index)
            tensors = {}
            skeleton = json.dumps(_split(target, tensors))
            # the target first: an image file that exists has its target
            self._write(target_path, lambda f: f.write(safetensors_bytes(tensors, {"target": skeleton})))
            self._write(image_path, lambda f: np.save(f, image.numpy(), allow_pickle=False))
            return image, target
        with safe_open(target_path, "pt") as f:
            return torch.from_numpy(image), _join(json.loads(f.metadata()["target"]), f.get_tensor)

    def _write(self, path: Path, save: Callable) -> None:
        """Atomically: ``save`` into a temporary file of the folder, renamed to ``path`` once
        complete (DataLoader workers may write the same item); removed if ``save`` fails."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            save(f)


def make_cache(mode: CacheMode, identity: dict, budget: RamBudget | None = None) -> NoCache:
    """The cache for one data set.

    :param identity: JSON-able description of the data set's items (``disk``: names the folder).
    :param budget: shared ``ram`` budget (a fresh default one when None).
    :raises DataError: an unknown mode, or a disk cache folder that cannot be created.
    """
    if mode == "none":
        return NoCache()
    if mode == "ram":
        return RamCache(budget or RamBudget())
    if mode == "disk":
        return DiskCache(cache_dir() / sha256_of({**identity, "mtbench": __version__, "format": FORMAT})[:16])
    raise DataError(f"cache must be 'none', 'ram' or 'disk', not {mode!r}")


def warm(cache: NoCache, size: int, load: Callable[[int], tuple], threads: int) -> None:
    """Fill a ``ram`` cache in this (main) process with ``threads`` threads until its budget is
    spent, so forked DataLoader workers share the items; other modes are left alone."""
    if not isinstance(cache, RamCache):
        return

    def fill(index: int) -> None:
        if not cache.budget.full:
            cache.get(index, load)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(fill, range(size)))
