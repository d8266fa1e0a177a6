"""Re-evaluate stored cells' final weights at other input sides: does testing at a higher
resolution than training pay ("FixRes", Touvron et al., NeurIPS 2019)?

    python benchmarks/eval_resolution.py RESULTS/SUITE [--sizes 288 352] [--base SIZE]
        [--resamples 1000] [--threads 2]

``RESULTS/SUITE`` is a run's suite folder (``RESULTS/<suite name>``, holding ``cells/``). For
every ok cell record there whose final weights are stored (``cells/<hash>/weights.safetensors``,
``mtbench run``'s default ``--keep-weights final``), the cell's model is built from its stored
config, the weights loaded (the deployed model: the EMA where ``fixed.ema`` is set), and its val
splits evaluated at each side in ``--sizes`` (pixels, multiples of 32: every image resized as
the cell's data sets resize it for training, ``fixed.image_size`` replaced) with the harness's
own evaluation (:func:`mtbench.evaluation.evaluate_detailed`) and metrics. Nothing trains.

Why it can pay: ``fixed.augment.scale: [lo, hi]`` (RandomResizedCrop of ``lo``..``hi`` of the
image's area, resized back to the side S) shows the model its objects magnified by
``1 / sqrt(area)``, on average ``2 (1 - sqrt(lo)) / (hi - lo)`` for ``hi = 1`` (1.17x for
``[0.5, 1]``), while evaluation shows them at 1x: FixRes's "apparent object size" discrepancy,
which testing at about S times that factor removes. The script prints that factor and the side
it suggests (the nearest multiple of 32), so the side to use is chosen before the val scores
are seen, not by picking the best of several on the val split.

Printed per cell: each side's metrics with their 95 % bootstrap CI over the val images (as a
record's ``ci``), and for every side other than ``--base`` (default: the cell's training side)
the paired difference, side minus base, with its 95 % paired bootstrap CI resampling the same
images at both sides (:func:`mtbench.metrics.base.paired_bootstrap_ci`). The base side's
metrics are checked against the record's (they are the same weights and the same evaluation;
a difference beyond 1e-6 is printed as a warning: floating-point order, threads).

Latency grows with the side squared (a batch-1 forward at 352 px costs about (352/288)^2 = 1.49x
one at 288 px); re-run the cell with the new side to measure it.

:raises SystemExit: no folder, no stored ok cell with weights, or a side that is not a multiple of 32.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import torch
from tabulate import tabulate

from mtbench.checkpoint import WEIGHTS, load_weights
from mtbench.evaluation import evaluate_detailed
from mtbench.metrics.base import bootstrap_ci, paired_bootstrap_ci, sample_entry
from mtbench.plugins import active_registry
from mtbench.reprofile import can_reprofile
from mtbench.results import read_record
from mtbench.runner import build_model, datasets, loss_decode_kwargs


def apparent_magnification(scale: list[float] | None) -> float:
    """Mean linear magnification ``E[1 / sqrt(a)]`` of objects under a RandomResizedCrop whose
    area fraction ``a`` is uniform on ``[lo, hi]`` (torchvision draws it so), aspect ignored;
    1.0 without crops."""
    if not scale:
        return 1.0
    lo, hi = scale
    return 2 * (math.sqrt(hi) - math.sqrt(lo)) / (hi - lo) if hi > lo else 1 / math.sqrt(lo)


def fixres_side(fixed: dict) -> tuple[float, int]:
    """``(magnification, side)``: the mean object magnification of ``fixed.augment.scale``'s crops
    and the training side times it, rounded to the nearest multiple of 32 pixels."""
    mag = apparent_magnification((fixed.get("augment") or {}).get("scale"))
    return mag, 32 * round(fixed["image_size"] * mag / 32)


def evaluate_at(cfg: dict, registry, model, size: int, device: torch.device) -> dict:
    """Task -> (values, sample entry) of ``model`` on the cell's val splits at side ``size``."""
    cfg = copy.deepcopy(cfg)
    cfg["fixed"]["image_size"] = size
    val = datasets(cfg, registry, "val")
    dkw = loss_decode_kwargs(cfg, registry, {t: val[t].info for t in cfg["tasks"]})
    bs = cfg["fixed"]["eval_batch_size"] or cfg["fixed"]["batch_size"]
    detail = evaluate_detailed(model, val, list(cfg["tasks"]), bs, device, size, dkw)
    return {t: (ev.values, sample_entry(ev.metric) if hasattr(ev.metric, "samples") else None, type(ev.metric))
            for t, ev in detail.items()}


def _fmt(v: float, ci=None) -> str:
    return f"{v:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def report_cell(rec: dict, workdir: Path, sizes: list[int], base: int | None, resamples: int) -> None:
    registry = active_registry()
    cfg, device = rec["config"], torch.device("cpu")
    train = datasets(cfg, registry, "train")
    model = build_model(cfg, registry, {t: ds.info for t, ds in train.items()}, device)
    load_weights(model, workdir)
    model.eval()
    trained = cfg["fixed"]["image_size"]
    base = base or trained
    mag, side = fixres_side(cfg["fixed"])
    print(f"\n{rec['label']} ({rec['hash']}): trained at {trained} px; crops magnify objects {mag:.3f}x on "
          f"average, so FixRes's side is {trained * mag:.0f} px (nearest multiple of 32: {side} px)")
    runs = {s: evaluate_at(cfg, registry, model, s, device) for s in sorted(set(sizes) | {base})}
    rows = []
    for s, res in runs.items():
        row = {"side (px)": s}
        for t, (values, entry, metric) in res.items():
            ci = bootstrap_ci(metric.reduce, entry["columns"], list(values), resamples) if entry else {}
            row.update({k: _fmt(v, ci.get(k)) for k, v in values.items()})
        rows.append(row)
        if s != base:
            diff = {"side (px)": f"{s} - {base}"}
            for t, (values, entry, metric) in res.items():
                base_values, base_entry, _ = runs[base][t]
                ci = (paired_bootstrap_ci(metric.reduce, entry["columns"], base_entry["columns"], list(values),
                                          resamples) if entry and base_entry else {})
                diff.update({k: f"{v - base_values[k]:+.4f}" + (f" [{ci[k][0]:+.4f}, {ci[k][1]:+.4f}]" if k in ci else "")
                             for k, v in values.items()})
            rows.append(diff)
    print(tabulate(rows, headers="keys", tablefmt="github"))
    if base == trained:
        got = {k: v for values, _, _ in runs[base].values() for k, v in values.items()}
        off = {k: got[k] - v for k, v in rec.get("metrics", {}).items() if k in got and abs(got[k] - v) > 1e-6}
        print("the base side reproduces the record's metrics" if not off else
              f"warning: the base side differs from the record by {off}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a run's suite folder (RESULTS/<suite>, holding cells/)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="input sides in pixels (default: the "
                    "training side and the FixRes side)")
    ap.add_argument("--base", type=int, default=None, help="the side differences are taken from (default: training)")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if any(s % 32 for s in (args.sizes or [])) or (args.base or 0) % 32:
        raise SystemExit("every side must be a multiple of 32 pixels")
    cells = args.folder / "cells"
    if not cells.is_dir():
        raise SystemExit(f"{args.folder}: no cells/ folder (pass RESULTS/<suite name>)")
    done = 0
    for path in sorted(cells.glob("*.json")):
        rec, workdir = read_record(path), cells / path.stem
        if not can_reprofile(rec, workdir):
            continue
        sizes = args.sizes or sorted({rec["config"]["fixed"]["image_size"], fixres_side(rec["config"]["fixed"])[1]})
        report_cell(rec, workdir, sizes, args.base, args.resamples)
        done += 1
    if not done:
        raise SystemExit(f"{cells}: no ok cell with stored weights ({WEIGHTS})")


if __name__ == "__main__":
    main()
