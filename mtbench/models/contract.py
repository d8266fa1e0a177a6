"""The model contract checked at the door: one forward pass on a tiny batch before training.

A model declares its ``tasks``, ``strides[task]`` (pixels, a list for multi-level heads) and
``infos[task].num_classes`` (:mod:`mtbench.models.base`); :func:`check_model` runs it on
``float32 (2, 3, S, S)`` random images in eval mode without gradients (BatchNorm statistics and
the random state are left as they were) and compares what comes out with what it declares:

- every declared task has an output;
- dense maps (det, points) have one map per declared stride, each ``(B, ch, S/stride, S/stride)``;
- det maps have ``C + 4*nb + 1`` channels for the declared ``C`` classes
  (:mod:`mtbench.models.dense`); seg maps ``(B, C, h, w)``; cls logits ``(B, C)``;
- ``decode`` returns one prediction per image (det, points) or ``(B, S, S)`` class indices
  (seg).

A mismatch raises :class:`ContractError` naming the task and expected vs got, so a cell fails
before its first training step instead of training the whole budget into garbage metrics
(the runner adds the plugin, its distribution and version).
"""

from __future__ import annotations

import torch

from mtbench.errors import MtbenchError

BATCH = 2


class ContractError(MtbenchError):
    """A model's outputs do not match what it declares (task, shapes)."""


def _maps(raw) -> list:
    return list(raw) if isinstance(raw, (list, tuple)) else [raw]


def _strides(model, task: str) -> list[int]:
    s = model.strides[task]
    return list(s) if isinstance(s, (list, tuple)) else [s]


def _check_dense(model, task: str, raw, image_size: int) -> None:
    maps, strides = _maps(raw), _strides(model, task)
    if len(maps) != len(strides):
        raise ContractError(f"task {task}: {len(maps)} output map(s), but strides declares {len(strides)} "
                            f"({strides})")
    for i, (m, s) in enumerate(zip(maps, strides)):
        want = (BATCH, image_size // s, image_size // s)
        got = (m.shape[0], *m.shape[-2:]) if m.dim() == 4 else tuple(m.shape)
        if m.dim() != 4 or got != want:
            raise ContractError(f"task {task}: map {i} has shape {tuple(m.shape)}, expected (batch {BATCH}, ch, "
                                f"{want[1]}, {want[2]}) for its declared stride {s} at {image_size} px")
        if task == "det":
            c = model.infos["det"].num_classes
            extra = m.shape[1] - c - 1
            if extra < 4 or extra % 4:
                raise ContractError(f"task det: map {i} has {m.shape[1]} channels, expected {c} classes + 4*nb box "
                                    f"+ 1 quality (nb >= 1) for the declared {c} classes")


def _check_raw(model, task: str, raw, image_size: int) -> None:
    if task in ("det", "points"):
        _check_dense(model, task, raw, image_size)
        return
    c = model.infos[task].num_classes
    if task == "cls" and (raw.dim() != 2 or tuple(raw.shape) != (BATCH, c)):
        raise ContractError(f"task cls: logits of shape {tuple(raw.shape)}, expected ({BATCH}, {c}) for the "
                            f"declared {c} classes")
    if task == "seg" and (raw.dim() != 4 or raw.shape[0] != BATCH or raw.shape[1] != c):
        raise ContractError(f"task seg: logits of shape {tuple(raw.shape)}, expected ({BATCH}, {c}, h, w) for "
                            f"the declared {c} classes")


def _check_decoded(task: str, pred, image_size: int) -> None:
    if task in ("det", "points"):
        ok = isinstance(pred, list) and len(pred) == BATCH
        want = f"a list of {BATCH} per-image dicts"
    elif task == "seg":
        ok = isinstance(pred, torch.Tensor) and tuple(pred.shape) == (BATCH, image_size, image_size)
        want = f"({BATCH}, {image_size}, {image_size}) class indices"
    else:
        ok = isinstance(pred, torch.Tensor) and pred.shape[0] == BATCH
        want = f"({BATCH}, C) logits"
    if not ok:
        got = f"shape {tuple(pred.shape)}" if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise ContractError(f"task {task}: decode returned {got}, expected {want}")


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
            _check_raw(model, task, out[task], image_size)
            _check_decoded(task, model.decode(task, out[task], image_size, **(decode_kwargs or {}).get(task, {})),
                           image_size)
    finally:
        model.train(was_training)
