"""Print the time of one training step of every joint strategy and its overhead vs ``equal``,
beside LibMTL 1.1.5's step for the methods both have (the ``test`` extra installs LibMTL).

    python benchmarks/strategies_step.py [--arch yolo-mtl] [--size 128] [--batch 8] [--steps 3]
                                         [--warmup 1] [--rounds 3] [--threads 2] [--device cpu]

One model (``--arch``: ``yolo-mtl``, CSP-Darknet n, P3; random weights, seed 0) with det + seg +
cls heads, one fixed batch per task from the ``synthetic`` data set (``--batch`` images of
``--size`` px each), the built-in losses (det ``fcos``, seg ``ce``, cls ``ce``) and AdamW. A step
is: zero the gradients, each task's forward and loss on its own batch, the strategy's backward,
the optimiser step (and FAMO's after-step re-scoring). LibMTL's step is the same but for its
weighting's ``backward(losses, **kwargs)`` (``rep_grad=False``; its shared parameters are the
model's; GradNorm at ``epoch >= 1`` and DWA at ``epoch >= 2``, where they weight). The methods
are timed in turn, ``--rounds`` times round-robin (so a slow spell of a shared machine spreads
over all of them), each time on a fresh model: ``--warmup`` untimed steps, then ``--steps``
timed ones (CUDA synchronised); each figure is the median of its ``rounds x steps`` samples.

Where the two differ by design the step does different work: mtbench's GradNorm takes the
gradient norms on the last shared layer (Chen et al. 2018), LibMTL's on every shared
parameter; LibMTL's CAGrad solves its problem with SLSQP, mtbench's (torchjd) with Clarabel.
LibMTL's GradDrop needs ``rep_grad=True`` (an activation), so it has no row here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/_libmtl.py, the LibMTL loader

from _stepbench import TASKS, add_timing_args, start, synthetic_context, time_steps  # noqa: E402

LOSSES = {"det": "det/fcos", "seg": "seg/ce", "cls": "cls/ce"}
# mtbench strategy -> (LibMTL weighting, its backward kwargs, LibMTL state that makes it weight)
LIBMTL = {"equal": ("EW", {}, {}), "dwa": ("DWA", {"T": 2.0}, {"epoch": 2}),
          "uncertainty": ("UW", {}, {}), "gradnorm": ("GradNorm", {"alpha": 1.5}, {"epoch": 1}),
          "pcgrad": ("PCGrad", {}, {}), "mgda": ("MGDA", {"mgda_gn": "none"}, {}),
          "cagrad": ("CAGrad", {"calpha": 0.5, "rescale": 1}, {}), "gradvac": ("GradVac", {"beta": 0.5}, {}),
          "imtl-g": ("IMTL", {}, {}), "rlw": ("RLW", {"dist": "Normal"}, {}), "gls": ("GLS", {}, {})}


def _setup(args, registry, device):
    """A fresh model (seed 0), its training context, one batch per task on ``device`` and an AdamW."""
    ctx, batches = synthetic_context(args, registry, device,
                                     lambda infos: registry.create_model(args.arch, tasks=infos, level="P3"), LOSSES)
    return ctx, batches, torch.optim.AdamW(ctx.model.parameters(), lr=0.001)


def mtbench_step(name, args, registry, device) -> list[float]:
    ctx, batches, opt = _setup(args, registry, device)
    strategy = registry.create("strategy", name)
    strategy.setup(ctx)

    def step(i):
        opt.zero_grad(set_to_none=True)
        strategy.train_step(ctx, batches, i)
        opt.step()
        strategy.after_step(ctx, batches, i)

    return time_steps(step, args, device)


def libmtl_step(name, args, registry, device) -> list[float]:
    from tests._libmtl import bind
    peer_name, kwargs, state = LIBMTL[name]
    ctx, batches, opt = _setup(args, registry, device)
    peer, _ = bind(peer_name, ctx.model, TASKS, ctx.model.shared_parameters, device)
    for k, v in state.items():
        setattr(peer, k, v)
    peer.train_loss_buffer = torch.ones(len(TASKS), 3).numpy()

    def step(i):
        opt.zero_grad(set_to_none=True)
        peer.backward(torch.stack([ctx.task_loss(t, b)["total"] for t, b in batches.items()]), **kwargs)
        opt.step()

    return time_steps(step, args, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="yolo-mtl")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    add_timing_args(ap)
    args = ap.parse_args()
    device, registry = start(args)
    names = [n for n in registry.names("strategy") if n not in ("sequential", "single-task")]
    names = ["equal"] + [n for n in names if n != "equal"]
    try:
        from tests._libmtl import libmtl_weighting
        libmtl_weighting("EW")
        peers = True
    except Exception as exc:  # LibMTL not installed: mtbench's figures alone
        print(f"LibMTL not available ({exc}); its columns are left empty")
        peers = False
    runs = [(n, "mtbench", mtbench_step) for n in names]
    runs += [(n, "LibMTL", libmtl_step) for n in names if peers and n in LIBMTL]
    samples: dict = {}
    mtbench_step("equal", args, registry, device)  # process warm-up (thread pool, allocator), untimed
    for _ in range(args.rounds):
        for n, side, fn in runs:
            samples.setdefault((n, side), []).extend(fn(n, args, registry, device))
    ours = {n: statistics.median(samples[(n, "mtbench")]) for n in names}
    theirs = {n: statistics.median(v) for (n, side), v in samples.items() if side == "LibMTL"}
    rows = []
    for n in names:
        t = theirs.get(n)
        rows.append([n, 1e3 * ours[n], ours[n] / ours["equal"], LIBMTL.get(n, ("-",))[0] if t else "-",
                     1e3 * t if t else None, t / theirs["equal"] if t else None, ours[n] / t if t else None])
    print(f"{args.arch}, {args.size} px, batch {args.batch} per task, tasks {'+'.join(TASKS)}, "
          f"{args.device}, {args.threads} threads; median of {args.rounds} rounds x {args.steps} steps")
    print(tabulate(rows, headers=["strategy", "step (ms)", "vs equal", "LibMTL", "LibMTL step (ms)",
                                  "LibMTL vs EW", "mtbench / LibMTL"], floatfmt=".3g", missingval="-"))


if __name__ == "__main__":
    main()
