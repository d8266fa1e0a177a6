"""Chance levels: what a model that learned nothing scores, per task, on a val split.

- cls/Top-1: the majority class's share of val images (>= 1/C; a constant predictor gets it).
- seg/mIoU: mIoU of predicting the most frequent (non-ignored) class everywhere: that class's
  IoU is its pixel share, every other present class scores 0, mean over present classes.
- det/mAP, det/AP50: 0 (random boxes score ~0).
- points/Pd, points/F1, points/Pd_FA_AUC (point-level): 0, what an empty prediction scores.
  Points placed uniformly at random do no better in expectation to four decimals: each hits
  a target's 3 px disc with probability (targets x pi 9 px^2) / native pixels, about 4e-4
  on a 320 x 240 SIRST image with one target, so at 1 false alarm per image Pd ~ 4e-4
  and the AUC ~ 2e-4.
"""

from __future__ import annotations

from collections import Counter

import torch

from mtbench.data.base import TaskDataset


def chance_levels(val_sets: dict[str, TaskDataset]) -> dict[str, float]:
    """Chance level of each task's headline metrics on its val split (val sets: no augmentation)."""
    out: dict[str, float] = {}
    for task, ds in val_sets.items():
        if task == "det":
            out["det/mAP"] = out["det/AP50"] = 0.0
        elif task == "points":
            out["points/Pd"] = out["points/F1"] = out["points/Pd_FA_AUC"] = 0.0
        elif task == "cls":
            counts = Counter(int(ds[i][1]) for i in range(len(ds)))
            out["cls/Top-1"] = max(max(counts.values()) / len(ds), 1.0 / ds.info.num_classes)
        elif task == "seg":
            counts = torch.zeros(ds.info.num_classes, dtype=torch.float64)
            for i in range(len(ds)):
                mask = ds[i][1]
                valid = mask[mask != 255]
                counts += torch.bincount(valid.flatten(), minlength=ds.info.num_classes).double()
            present = int((counts > 0).sum())
            out["seg/mIoU"] = float(counts.max() / counts.sum()) / present if present else 0.0
    return out
