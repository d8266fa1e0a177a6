"""Print how well a classifier read out of a FROZEN ImageNet backbone can do on a small image
folder: the ceiling a frozen-backbone multi-task cell's cls Top-1 is measured against.

    MTBENCH_DATA=../shared/data python benchmarks/cls_ceiling.py [--path imagenette_160]
        [--backbone tf_efficientnet_lite0] [--sizes 224 288] [--C 0.1 1.0] [--threads 2]

For each input size (pixels, the harness's resize of the ``imagefolder`` data set) the backbone
with its offline ImageNet weights (``mtbench.models.blocks.PRETRAINED_LOADERS``), in eval mode,
gives global-average-pooled features of every train and val image: each ``features_only`` stage
at strides 8, 16, 32 (``P3``, ``P4``, ``P5``: what a neck such as ``unified-onehead``'s reads),
the three concatenated, and the full network's last features (``conv_head``: EfficientNet's
final 1x1 conv + BN + activation, which ``features_only`` drops). Rows:

- ``probe <features>``: multinomial logistic regression (scikit-learn ``LogisticRegression``,
  L-BFGS, features standardised, inverse regularisation ``--C``) fitted on the train split,
  Top-1 on the val split: the best a linear read-out learned from the train images reaches.
- ``ImageNet classifier``: the backbone's own 1000-way ImageNet classifier restricted to the
  data set's classes (only when every class folder is an ImageNet-1k WordNet id, as
  Imagenette's are): no training on the data set at all. Its train-split figure is not a test:
  Imagenette's train images come from ImageNet's train set, which that classifier was fitted on.

Each Top-1 comes with its exact 95 % Clopper-Pearson interval over the val images
(``scipy.stats.binomtest``), in the manner of Top-1 in ``mtbench.tasks``: a fraction of images.
Nothing is drawn at random, but a rerun need not print the same table: the CPU kernels'
floating-point order varies slightly from run to run, and a probe fitted to 240 nearly
separable points can flip borderline val images (measured on Imagenette at 288 px over four
runs: the P5 probe gave 0.917-0.967, `conv_head` 0.933-0.95, P4 0.65-0.72). Run it
more than once; the interval is the val split's sampling uncertainty, not this run-to-run one.

:raises SystemExit: the backbone has no offline ImageNet weights, or the data set is missing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest
from tabulate import tabulate
from torch.utils.data import DataLoader

from mtbench.data.base import collate
from mtbench.errors import PluginError
from mtbench.models.blocks import Backbone, imagenet_classifier
from mtbench.plugins import get_registry


def pooled(full, stages: list[int], norm, ds) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """One pass of the full network ``full`` over ``ds`` (timm's ``forward_intermediates``): the
    pooled feature stages ``stages`` and then ``conv_head``, ``[(N, C_i)]``, its ImageNet logits
    ``(N, 1000)`` and the labels ``(N,)``."""
    feats, logits, labels = [], [], []
    with torch.no_grad():
        for images, targets in DataLoader(ds, batch_size=16, collate_fn=collate):
            last, inter = full.forward_intermediates(norm(images), indices=stages)
            feats.append([f.mean(dim=(2, 3)).numpy() for f in (*inter, last)])
            logits.append(full.forward_head(last).numpy())
            labels.append(np.asarray(targets))
    cols = [np.concatenate([r[i] for r in feats]) for i in range(len(feats[0]))]
    return cols, np.concatenate(logits), np.concatenate(labels)


def top1_row(name: str, pred: np.ndarray, truth: np.ndarray, dims: int | str) -> list:
    hits = int((pred == truth).sum())
    ci = binomtest(hits, len(truth)).proportion_ci(0.95, method="exact")
    return [name, dims, f"{hits}/{len(truth)}", f"{hits / len(truth):.3f}", f"[{ci.low:.3f}, {ci.high:.3f}]"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("MTBENCH_DATA"), help="data root (default $MTBENCH_DATA)")
    ap.add_argument("--path", default="imagenette_160", help="image folder under the data root")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 288], help="input sizes in pixels")
    ap.add_argument("--C", type=float, nargs="+", default=[0.1, 1.0], help="logistic regression's inverse L2 weight")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import timm
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    torch.set_num_threads(args.threads)
    try:
        norm, full = imagenet_classifier(args.backbone)
    except PluginError as exc:
        raise SystemExit(str(exc)) from exc
    if not args.data or not (Path(args.data) / args.path).is_dir():
        raise SystemExit(f"no image folder {args.path!r} under --data {args.data!r} (set MTBENCH_DATA)")
    registry = get_registry()
    backbone = Backbone(args.backbone, 8, "imagenet", 32)  # its strides
    stage_idx = [i for i, f in enumerate(full.feature_info) if f["reduction"] in backbone.strides]
    wnids = timm.data.ImageNetInfo().label_names()
    for size in args.sizes:
        sets = {split: registry.create("dataset", "imagefolder", task="cls", split=split, root=Path(args.data),
                                       image_size=size, path=args.path) for split in ("train", "val")}
        names = list(sets["train"].info.class_names)
        (tr, _, ytr), (va, logits, yva) = (pooled(full, stage_idx, norm, sets[s]) for s in ("train", "val"))
        stages = {f"P{int(np.log2(s))}": i for i, s in enumerate(backbone.strides)}
        groups = {**{k: [i] for k, i in stages.items()}, "+".join(stages): list(stages.values()),
                  "conv_head": [len(tr) - 1]}
        rows = []
        for group, idx in groups.items():
            xtr, xva = np.concatenate([tr[i] for i in idx], 1), np.concatenate([va[i] for i in idx], 1)
            for c in args.C:
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(xtr, ytr)
                rows.append(top1_row(f"probe {group}, C={c:g}", clf.predict(xva), yva, xtr.shape[1]))
        if all(n in wnids for n in names):
            index = [wnids.index(n) for n in names]
            rows.append(top1_row("ImageNet classifier (no training)", logits[:, index].argmax(1), yva, "-"))
        print(f"\n{args.backbone}, frozen ImageNet weights, {size} px; {args.path}: train {len(ytr)}, val {len(yva)}, "
              f"{len(names)} classes; Top-1 on val [exact 95 % CI]")
        print(tabulate(rows, headers=["read-out", "features", "hits", "Top-1", "95 % CI"]))


if __name__ == "__main__":
    main()
