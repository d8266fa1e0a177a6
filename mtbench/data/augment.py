"""Training augmentation (``fixed.augment``) on torchvision.transforms.v2 with tv_tensors.

One pipeline per training data set, the same options for every cell of a suite, in this order:

1. ``scale: [lo, hi]`` (off by default): :class:`torchvision.transforms.v2.RandomResizedCrop`
   to the input side ``S`` (a crop of ``lo``..``hi`` of the image's area, aspect ``ratio``,
   default ``[3/4, 4/3]``, resized back to ``S x S``: scale jitter), then
   :class:`~torchvision.transforms.v2.SanitizeBoundingBoxes` for a task with boxes (boxes are
   clipped to the crop by v2; those left under 1 pixel wide or high, or 1 pixel² in area, are
   dropped with the target rows that go with them, :attr:`mtbench.tasks.Task.with_boxes`);
2. ``hflip: p`` (default 0.5): :class:`~torchvision.transforms.v2.RandomHorizontalFlip`;
3. ``color: {brightness, contrast, saturation, hue}`` (off by default):
   :class:`~torchvision.transforms.v2.ColorJitter` (photometric: targets unchanged).

Images are ``uint8 (3, S, S)`` and seg masks as loaded (``uint8``); :func:`mtbench.data.base.model_input`
converts them after (with DataLoader workers, in the main process), so every step here, the colour
jitter included, sees what it saw when items were converted in the data set; a task's
target follows the geometric steps through its :meth:`~mtbench.tasks.Task.to_tv` /
:meth:`~mtbench.tasks.Task.from_tv` (boxes as ``BoundingBoxes``, masks as ``Mask``, points as
``KeyPoints``); a task whose target cannot follow a flip or a crop (not in ``Task.follows``)
refuses it when the suite is loaded (:func:`refusals`).

Random draws: v2 draws from torch's global (CPU) generator. For an index without a seed the
pipeline draws from it directly (``fixed.num_workers`` unset); with a per-item seed
(:class:`mtbench.data.loading.SeededSampler`) that generator is seeded with it
(``torch.default_generator.manual_seed``, the CPU part of ``torch.manual_seed``; no device
generator is touched), so an item does not depend on the worker count. In the main process
its state is saved before and restored after (what ``torch.random.fork_rng(devices=[])`` does);
in a DataLoader worker, whose generator draws for nothing but these seeded items, it is
seeded alone. ``torch.manual_seed`` also seeds every device's generators (without CUDA
initialised it records a stack trace for later, each call), which made the seeding cost more than
the flip itself (README "Data at full scale"). The default (``hflip: 0.5``,
nothing else) draws exactly one ``torch.rand(1)`` per item and flips when it is below 0.5,
as the hand-written flip of earlier versions did (``torch.rand(()) < 0.5``): the same numbers
from the same generator, so earlier results reproduce bit for bit (tested; the regression
suite's metrics are unchanged).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: the suite schema reads this module without it
    import torch

#: ``fixed.augment`` at its default: the horizontal flip (p = 0.5) of earlier versions, nothing else
DEFAULT = {"hflip": 0.5, "scale": None, "ratio": None, "color": None}


def geometric(options: dict) -> list[str]:
    """The geometric steps of ``options``: ``"flip"`` (p > 0), ``"crop"`` (``scale`` set)."""
    return [k for k, on in (("flip", bool(options.get("hflip"))), ("crop", options.get("scale") is not None)) if on]


_UNSET = {"flip": "set fixed.augment.hflip: 0", "crop": "leave fixed.augment.scale unset"}


def refusals(options: dict, tasks: dict[str, Any]) -> list[str]:
    """Why ``options`` cannot train ``tasks`` (name -> :class:`mtbench.tasks.Task`): one line per
    task and geometric step its target cannot follow (not in ``Task.follows``), and one per task
    still written to the contract before transforms.v2 (a ``flip_target`` method, no longer
    read: its target would silently stay unflipped); [] when none."""
    steps = geometric(options)
    old = [f"task {name!r} defines flip_target, which mtbench no longer reads (its target would stay "
           f"unflipped while its image flips); its plugin must say how the target moves with Task.to_tv / "
           f"Task.from_tv and Task.follows, or {_UNSET['flip']}" for name, task in tasks.items()
           if steps and hasattr(task, "flip_target")]
    return old + [f"task {name!r} cannot move its target with a {step} of the image ({step!r} is not in its "
                  f"Task.follows); {_UNSET[step]}" for name, task in tasks.items() for step in steps
                  if step not in task.follows and not hasattr(task, "flip_target")]


def _rows(keys: tuple[str, ...], inputs: tuple) -> tuple[torch.Tensor, ...]:
    """SanitizeBoundingBoxes' ``labels_getter``: the target entries row-aligned with its boxes."""
    return tuple(inputs[1][k] for k in keys)


def build(options: dict, task, image_size: int):
    """The v2 pipeline of ``options`` for ``task`` (a :class:`mtbench.tasks.Task`) at input side
    ``image_size``; None when it would do nothing."""
    from torchvision.transforms import v2
    steps = []
    if options.get("scale") is not None:
        ratio = tuple(options["ratio"]) if options.get("ratio") else (3 / 4, 4 / 3)
        steps.append(v2.RandomResizedCrop(image_size, scale=tuple(options["scale"]), ratio=ratio, antialias=True))
        if task.with_boxes is not None:
            steps.append(v2.SanitizeBoundingBoxes(labels_getter=functools.partial(_rows, tuple(task.with_boxes))))
    if options.get("hflip"):
        steps.append(v2.RandomHorizontalFlip(options["hflip"]))
    if options.get("color"):
        steps.append(v2.ColorJitter(**options["color"]))
    return v2.Compose(steps) if steps else None


class Augmentation:
    """``fixed.augment`` for one training data set of ``task`` (its name) at side ``image_size``.

    Called as ``aug(image, target, seed)``: ``image`` ``uint8 (3, S, S)``, ``target`` in the
    task's schema, ``seed`` an int (per-item seeded draws) or None (torch's global generator);
    returns the augmented ``(image, target)``. The pipeline is built on first use (in a worker
    process, there), from the active registry's task.
    """

    def __init__(self, options: dict, task: str, image_size: int):
        self.options, self.task, self.image_size = dict(options), task, image_size
        self._built: tuple | None = None

    def __getstate__(self) -> dict:  # the pipeline is rebuilt where it is used (a spawned worker)
        return {**self.__dict__, "_built": None}

    def _pipeline(self) -> tuple:
        if self._built is None:
            from mtbench.plugins import active_registry  # the registry is built on first use, not at import
            task = active_registry().task(self.task)
            self._built = (task, build(self.options, task, self.image_size))
        return self._built

    def __call__(self, image: torch.Tensor, target: Any, seed: int | None) -> tuple[torch.Tensor, Any]:
        import torch
        from torch.utils.data import get_worker_info
        task, pipe = self._pipeline()
        if pipe is None:
            return image, target
        if seed is None:
            return self.apply(pipe, task, image, target)
        generator = torch.default_generator  # v2 draws CPU numbers from it; no device generator is touched
        if get_worker_info() is not None:  # a worker's global generator serves its items alone, all seeded
            generator.manual_seed(seed)
            return self.apply(pipe, task, image, target)
        state = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self.apply(pipe, task, image, target)
        finally:
            generator.set_state(state)

    @staticmethod
    def apply(pipe, task, image: torch.Tensor, target: Any) -> tuple[torch.Tensor, Any]:
        """``pipe`` (from :func:`build`) on a ``uint8 (3, H, W)`` image and ``task``'s target, with
        torch's global generator: the target through the task's ``to_tv`` / ``from_tv``."""
        import torch
        from torchvision import tv_tensors
        out_image, out_target = pipe(tv_tensors.Image(image), task.to_tv(target, tuple(image.shape[-2:])))
        return out_image.as_subclass(torch.Tensor), task.from_tv(out_target)
