"""Training DataLoaders: workers, and augmentation that does not depend on how many there are.

``fixed.num_workers`` unset: the loader of earlier versions (items loaded in the training
process, the flip drawn from the global torch RNG), so existing results reproduce.
``fixed.num_workers: n`` (0 included): :class:`SeededSampler` hands every item its own seed,
drawn in the main process in sampling order, and each loader draws its order and item seeds
from generators of its own (seeded from the cell's generator when the loader is built), so
neither workers' prefetching nor other loaders' draws move them: an item (image and target)
at a given step is the same with 0, 1 or 2 workers (tested); ``pin_memory`` / ``persistent_workers`` are passed to
:class:`torch.utils.data.DataLoader`. What workers need is made before they start, so the
forked workers inherit it instead of making it again each epoch: the active plugin registry,
which the flip asks for its task's rule (built in each worker it took 2-5 s per worker and
epoch), and with workers a ``cache: ram``, filled by :func:`mtbench.data.cache.warm`.

With ``num_workers`` set, batches are collated from :meth:`~mtbench.data.base.TaskDataset.item`
(``uint8`` images, seg masks ``uint8``) and made float / ``int64`` in the main process by
:class:`CompactLoader`, as timm's ``PrefetchLoader`` (``timm/data/loader.py``) sends ``uint8``
batches and converts them after: a quarter of the image bytes crosses from the workers (an
eighth of the mask bytes), and the values are those ``dataset[i]`` serves (tested).
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from mtbench.data.base import TaskDataset, collate, model_input
from mtbench.data.cache import warm
from mtbench.plugins import active_registry


class SeededSampler(Sampler):
    """Yield ``(index, seed)``: ``sampler``'s indices, each with a 63-bit seed drawn from a
    generator seeded with ``seed`` (one draw per item, in order)."""

    def __init__(self, sampler: Sampler, seed: int):
        self.sampler = sampler
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.sampler:
            yield index, int(torch.randint(2**63 - 1, (), generator=self.generator))


class _Items(Dataset):
    """``dataset``'s items as loaded and augmented (:meth:`~mtbench.data.base.TaskDataset.item`)."""

    def __init__(self, dataset: TaskDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return self.dataset.item(key)


#: ``torch._C._storage_Use_Count(storage._cdata)``: how many references hold a storage (tensors
#: on it, views included, and its Python object); private, so without it nothing is reused.
_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _holders(tensor: torch.Tensor) -> tuple[int, int]:
    """(references to ``tensor``'s storage, references to that storage's Python object)."""
    storage = tensor.untyped_storage()
    return _use_count(storage._cdata), sys.getrefcount(storage)


class BatchBuffers:
    """``float32`` batch tensors for one epoch, each buffer handed out again once nothing but this
    object holds its memory: no tensor (the one handed out, a view, a ``detach``, what autograd
    saved), no numpy array or DLPack capsule made from one, no Python object of its storage. A
    buffer still held (a replay buffer keeps batches; a loop variable holds the last one) is left
    alone and a new one made, so no holder ever sees its values change (tested). Reusing saves a
    fresh batch's page faults (a 32-image 320 px batch is 39 MB; README "Data at full scale").
    Not for page-locked batches (an asynchronous copy to the device holds their memory unseen).

    :param size: buffers kept (the oldest dropped when a new one is made); 2 covers a loop that
        holds one batch while the next is made.
    """

    def __init__(self, size: int = 2):
        self._kept: deque[torch.Tensor] = deque(maxlen=size)  # never handed out, so no one else holds these
        self._free = _holders(torch.empty(1)) if _use_count else None  # the counts of an unheld buffer

    def empty(self, shape: torch.Size) -> torch.Tensor:
        """An uninitialised ``float32`` tensor of ``shape``: a kept buffer nobody holds, else a new one."""
        for kept in self._kept:
            if kept.shape == shape and _holders(kept) == self._free:
                return kept.detach()
        kept = torch.empty(shape, dtype=torch.float32)
        if self._free is not None:
            self._kept.append(kept)
        return kept.detach()


class CompactLoader:
    """A DataLoader of :class:`_Items` whose batches are given out as ``dataset[i]`` serves them:
    each batch through :func:`~mtbench.data.base.model_input` (``float32`` images in [0, 1], in
    page-locked memory when the loader pins, else in an epoch's :class:`BatchBuffers`; a tensor
    target in the data set's ``target_dtype``). Length, ``sampler``, ``generator`` and
    ``batch_size`` are the DataLoader's; ``dataset`` is the :class:`~mtbench.data.base.TaskDataset`."""

    def __init__(self, loader: DataLoader, dataset: TaskDataset):
        self.loader, self.dataset = loader, dataset
        self.sampler, self.generator, self.batch_size = loader.sampler, loader.generator, loader.batch_size
        self._pin = loader.pin_memory and torch.cuda.is_available()

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, object]]:
        batches = iter(self.loader)  # now, not at the first batch: the loader draws its base seed here
        buffers = None if self._pin else BatchBuffers()
        return (model_input(images, targets, self.dataset.target_dtype, self._pin,
                            buffers and buffers.empty(images.shape)) for images, targets in batches)


def train_loader(dataset: TaskDataset, batch_size: int, generator: torch.Generator,
                 num_workers: int | None = None, pin_memory: bool = False,
                 persistent_workers: bool = False,
                 sampler_cls: Callable[..., Sampler] = RandomSampler) -> DataLoader | CompactLoader:
    """A shuffled training loader (the last partial batch dropped when the split holds at
    least one batch).

    :param generator: the cell's generator. ``num_workers`` None: the order is drawn from it
        as each epoch starts (as before); else one draw from it seeds this loader's own order,
        item-seed and worker-seed generators.
    :param num_workers: None: in-process, global-RNG augmentation (as before), a DataLoader;
        else that many worker processes with per-item seeds, a :class:`CompactLoader`.
    :param sampler_cls: the order of the items, called as ``sampler_cls(dataset, generator=g)``;
        default ``RandomSampler`` (what ``shuffle=True`` uses); the runner passes
        :class:`mtbench.checkpoint.ResumableSampler`, which draws the same order and can continue
        a pass from a checkpoint.
    """
    drop_last = len(dataset) >= batch_size
    active_registry()
    if num_workers is None:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler_cls(dataset, generator=generator),
                          collate_fn=collate, generator=generator, drop_last=drop_last)
    if num_workers:
        warm(dataset.cache, len(dataset), dataset.load, num_workers)
    root = int(torch.randint(2**62, (), generator=generator))
    sampler = SeededSampler(sampler_cls(dataset, generator=torch.Generator().manual_seed(root)), root + 1)
    loader = DataLoader(_Items(dataset), batch_size=batch_size, sampler=sampler, collate_fn=collate,
                        generator=torch.Generator().manual_seed(root + 2),
                        drop_last=drop_last, num_workers=num_workers, pin_memory=pin_memory,
                        persistent_workers=persistent_workers and num_workers > 0)
    return CompactLoader(loader, dataset)
