"""Geometric transforms that keep images and task targets consistent.

Images are ``uint8 (3, H, W)`` tensors here; conversion to ``float32`` in [0, 1] happens
in :class:`mtbench.data.base.TaskDataset`. The model normalises (mean/std of its backbone).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

import numpy as np


def resize_image(img: Image.Image, size: int) -> torch.Tensor:
    """Plain (non letter-boxed) bilinear resize of a PIL image to ``size x size``.

    :return: ``uint8 (3, size, size)``.
    """
    img = img.convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def resize_mask(mask: Image.Image, size: int) -> torch.Tensor:
    """Nearest-neighbour resize of a class-index mask (255 = ignore) to ``size x size``.

    :return: ``int64 (size, size)``.
    """
    mask = mask.resize((size, size), Image.NEAREST)
    return torch.from_numpy(np.asarray(mask, dtype=np.uint8).astype(np.int64))


def scale_boxes(boxes: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Scale ``float32 (N, 4)`` xyxy boxes by ``sx`` horizontally and ``sy`` vertically."""
    return boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype)


def hflip(image: torch.Tensor, task: str, target):
    """Horizontally flip an image ``(3, H, W)`` and its target for ``task``.

    det: boxes xyxy are mirrored; seg: the mask is mirrored; points: points, boxes and
    mask are mirrored; cls: unchanged.
    """
    width = image.shape[-1]
    image = image.flip(-1)
    if task in ("det", "points"):
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
        target = {**target, "boxes": boxes}
    if task == "points":
        points = target["points"].clone()
        points[:, 0] = width - points[:, 0]
        target = {**target, "points": points, "mask": target["mask"].flip(-1)}
    elif task == "seg":
        target = target.flip(-1)
    return image, target


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of ``(B, C, h, w)`` logits to ``(B, C, *size)``."""
    if logits.shape[-2:] == torch.Size(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
