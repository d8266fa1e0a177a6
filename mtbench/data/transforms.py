"""Geometric transforms that keep images and task targets consistent.

Images are ``uint8 (3, H, W)`` tensors here; conversion to ``float32`` in [0, 1] happens
in :func:`mtbench.data.base.model_input`. The model normalises (mean/std of its backbone).
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
    if img.mode != "RGB":  # convert() of an RGB image is a copy
        img = img.convert("RGB")
    img = img.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def resize_mask(mask: Image.Image, size: int) -> torch.Tensor:
    """Nearest-neighbour resize of a class-index mask (255 = ignore) to ``size x size``.

    :return: ``uint8 (size, size)`` (a data set serves it as ``int64``:
        :attr:`mtbench.data.base.TaskDataset.target_dtype`).
    """
    mask = mask.resize((size, size), Image.NEAREST)
    return torch.from_numpy(np.asarray(mask, dtype=np.uint8).copy())


def scale_boxes(boxes: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Scale ``float32 (N, 4)`` xyxy boxes by ``sx`` horizontally and ``sy`` vertically."""
    return boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype)


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of ``(B, C, h, w)`` logits to ``(B, C, *size)``."""
    if logits.shape[-2:] == torch.Size(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
