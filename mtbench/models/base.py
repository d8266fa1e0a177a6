"""The contract every architecture implements.

A model maps ``float32 (B, 3, S, S)`` images in [0, 1] to ``dict[task, raw output]``.
Normalisation with the backbone's mean/std is part of the model (so an exported ONNX
graph takes the same input). ``strides[task]`` states the feature stride feeding each
task head in pixels (P2 = 4, P3 = 8, P4 = 16, P5 = 32); ``decode`` turns raw outputs into
predictions in the shapes :meth:`MultiTaskModel.decode` lists. The whole contract, and the
checks that enforce it, are in README "Writing a plugin" and :mod:`mtbench.models.contract`.
"""

from __future__ import annotations

import torch
from torch import nn


LEVEL_STRIDES = {"P2": 4, "P3": 8, "P4": 16, "P5": 32}


def level_stride(level: str) -> int:
    """Stride in pixels of a level name ``P2``..``P5``.

    :raises ValueError: unknown level (the suite validator names the field first).
    """
    try:
        return LEVEL_STRIDES[level]
    except KeyError:
        raise ValueError(f"unknown level {level!r}; known: {', '.join(LEVEL_STRIDES)}") from None


class MultiTaskModel(nn.Module):
    """Base class: a subclass calls :meth:`set_tasks` in ``__init__`` (or sets ``tasks``,
    ``infos``, ``strides`` and ``level`` itself) and implements ``forward`` (and ``decode``
    where the built-in one does not fit its outputs)."""

    tasks: tuple[str, ...]
    strides: dict[str, int | list[int]]  # a list for multi-level heads (finest first)
    infos: dict  # task -> TaskInfo

    def set_tasks(self, tasks: dict, level: str) -> int:
        """Record ``tasks`` (name -> TaskInfo), ``infos`` (the same dict) and ``level``; every
        head at that level's stride (a multi-level model then sets ``strides[task]`` to its list).

        :return: the stride in pixels.
        :raises ValueError: a level other than P2..P5.
        """
        stride = level_stride(level)
        self.tasks, self.infos, self.level = tuple(tasks), dict(tasks), level
        self.strides = {t: stride for t in self.tasks}
        return stride

    _set_tasks = set_tasks  # the name before 0.1.0's plugin guide; kept for existing plugins

    def decode(self, task: str, raw, image_size: int, **options) -> list | torch.Tensor:
        """Predictions for ``task`` from its raw output, by the task's rule
        (:meth:`mtbench.tasks.Task.decode` of the active registry; its ``prediction`` names the
        shapes), at this model's ``strides[task]`` and class count.

        ``options`` come from the task's loss (``loss.decode_kwargs``), e.g. whether the
        quality logit of a dense head was trained. A model with its own encoding overrides this.

        - det: list (one per image) of ``{"boxes": float32 (K, 4) xyxy input pixels,
          "scores": float32 (K,), "labels": int64 (K,)}`` after NMS (dense encoding of
          :mod:`mtbench.models.dense`, one map or a list per level).
        - seg: ``int64 (B, S, S)`` class indices.
        - cls: ``float32 (B, C)`` logits.
        """
        from mtbench.plugins import active_registry  # here: the registry is built on first use, not at import
        info = getattr(self, "infos", {}).get(task)
        return active_registry().task(task).decode(raw, num_classes=info.num_classes if info else None,
                                                   stride=self.strides[task], image_size=image_size, **options)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss depends on (PCGrad projects gradients on these)."""
        return [p for p in self.parameters() if p.requires_grad]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last layer shared by all tasks (GradNorm measures gradient norms here)."""
        raise NotImplementedError(f"{type(self).__name__} does not name its last shared layer")
