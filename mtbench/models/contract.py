"""The model contract checked at the door: one forward pass on a tiny batch before training.

A model declares its ``tasks``, ``strides[task]`` (pixels, a list for multi-level heads) and
``infos[task].num_classes`` (:mod:`mtbench.models.base`); :func:`check_model` runs it on
``float32 (2, 3, S, S)`` random images in eval mode without gradients (BatchNorm statistics and
the random state are left as they were) and compares what comes out with what it declares:

- every declared task has an output;
- the output fits the task's contract (:meth:`mtbench.tasks.Task.check_output`; dense maps:
  :func:`check_dense`, one map per declared stride, each ``(B, ch, S/stride, S/stride)``;
  det maps ``C + 4*nb + 1`` channels for the declared ``C`` classes; seg maps ``(B, C, h, w)``;
  cls logits ``(B, C)``);
- ``decode`` returns what the task expects (:meth:`mtbench.tasks.Task.check_decoded`: one
  prediction per image by default, ``(B, S, S)`` class indices for seg).

A mismatch raises :class:`ContractError` naming the task and expected vs got, so a cell fails
before its first training step instead of training the whole budget into garbage metrics
(the runner adds the plugin, its distribution and version).
"""

from __future__ import annotations

import torch

from mtbench.errors import MtbenchError
from mtbench.plugins import active_registry

BATCH = 2


class ContractError(MtbenchError):
    """A model's outputs do not match what it declares (task, shapes)."""


def _maps(raw) -> list:
    return list(raw) if isinstance(raw, (list, tuple)) else [raw]


def strides_of(model, task: str) -> list[int]:
    """``model.strides[task]`` as a list (one entry per output map)."""
    s = model.strides[task]
    return list(s) if isinstance(s, (list, tuple)) else [s]


def check_dense(task: str, raw, strides: list[int], batch: int, image_size: int) -> list[torch.Tensor]:
    """Dense maps: one per declared stride, each ``(batch, ch, S/stride, S/stride)``.

    :return: the maps, as a list.
    :raises ContractError: a map count or size that does not match ``strides``.
    """
    maps = _maps(raw)
    if len(maps) != len(strides):
        raise ContractError(f"task {task}: {len(maps)} output map(s), but strides declares {len(strides)} "
                            f"({strides})")
    for i, (m, s) in enumerate(zip(maps, strides)):
        want = (batch, image_size // s, image_size // s)
        got = (m.shape[0], *m.shape[-2:]) if m.dim() == 4 else tuple(m.shape)
        if m.dim() != 4 or got != want:
            raise ContractError(f"task {task}: map {i} has shape {tuple(m.shape)}, expected (batch {batch}, ch, "
                                f"{want[1]}, {want[2]}) for its declared stride {s} at {image_size} px")
    return maps


def check_per_image(task: str, pred, batch: int) -> None:
    """Decoded predictions: one per image (a tensor ``(batch, ...)`` or a list of ``batch`` items).

    :raises ContractError: another count or type.
    """
    if not (isinstance(pred, (torch.Tensor, list)) and len(pred) == batch):
        got = f"shape {tuple(pred.shape)}" if isinstance(pred, torch.Tensor) else \
            f"{type(pred).__name__} of {len(pred)}" if isinstance(pred, list) else type(pred).__name__
        raise ContractError(f"task {task}: decode returned {got}, expected one prediction per image ({batch})")


@torch.no_grad()
def check_model(model, image_size: int, device: torch.device, decode_kwargs: dict[str, dict] | None = None) -> None:
    """Run ``model`` once on ``float32 (2, 3, S, S)`` and check its outputs against its declarations.

    :param image_size: input size ``S`` in pixels (the suite's ``image_size``).
    :param decode_kwargs: per task, the options its loss passes to ``decode``.
    :raises ContractError: a declared task without output, a map whose size does not match
        its declared stride, a channel or class count that does not match the declared
        classes, a decode of the wrong shape; the message names the task and expected vs got.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            out = model(torch.rand(BATCH, 3, image_size, image_size, device=device))
        if not isinstance(out, dict):
            raise ContractError(f"forward returned {type(out).__name__}, expected a dict task -> output")
        for task in model.tasks:
            if task not in out:
                raise ContractError(f"task {task}: no output (forward returned {sorted(out)})")
            spec = active_registry().task(task)
            spec.check_output(out[task], num_classes=model.infos[task].num_classes, strides=strides_of(model, task),
                              batch=BATCH, image_size=image_size)
            spec.check_decoded(model.decode(task, out[task], image_size, **(decode_kwargs or {}).get(task, {})),
                               batch=BATCH, image_size=image_size)
    finally:
        model.train(was_training)
