"""Print the time of one training step at each ``fixed.precision`` x ``fixed.channels_last``
setting, through the harness's own path (``TrainContext`` + the ``equal`` strategy).

    python benchmarks/precision_step.py [--size 288] [--batch 8] [--freeze-at 32] [--neck 128]
                                        [--head-layers 3] [--steps 3] [--warmup 1] [--rounds 3]
                                        [--threads 2] [--device cpu]

The model is ``suites/unified_onehead_joint.yaml``'s (``unified-onehead``, EfficientNet-Lite0,
P3, ``--neck`` channels, ``--head-layers``, ``--freeze-at`` 32 = the whole backbone frozen)
with random weights (seed 0: the step's cost does not depend on them) and det + seg + cls on one
fixed batch per task of the ``synthetic`` data set (``--batch`` images of ``--size`` px each);
losses det ``varifocal``, seg ``ce``, cls ``ce``; AdamW. A step is: zero the gradients, each
task's forward and loss under ``TrainContext.autocast`` on its batch in the memory format
``TrainContext`` gives it, the backward pass, the optimiser step. The settings are timed in turn,
``--rounds`` times round-robin (a slow spell of a shared machine spreads over all of them),
each time on a fresh model: ``--warmup`` untimed steps, then ``--steps`` timed ones; each figure
is the median of its ``rounds x steps`` samples, in ms. bf16 is fast only where the CPU has
native bf16 arithmetic (AVX512-BF16 or AMX; the script prints whether ``lscpu`` lists them);
elsewhere oneDNN emulates it and it can be slower than fp32.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import torch
from tabulate import tabulate
from torch.utils.data import DataLoader

from mtbench.data.base import collate, to_device
from mtbench.plugins import get_registry
from mtbench.strategies.base import TrainContext

TASKS = ("det", "seg", "cls")
LOSSES = {"det": "det/varifocal", "seg": "seg/ce", "cls": "cls/ce"}
SETTINGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def _setup(args, registry, device, precision: str, channels_last: bool):
    """A fresh model (seed 0), its training context, one batch per task and an AdamW."""
    torch.manual_seed(0)
    sets = {t: registry.create("dataset", "synthetic", task=t, split="train", root=None, image_size=args.size,
                               num_images=args.batch) for t in TASKS}
    infos = {t: sets[t].info for t in TASKS}
    model = registry.create_model("unified-onehead", tasks=infos, level="P3", backbone="tf_efficientnet_lite0",
                                  neck_channels=args.neck, head_layers=args.head_layers,
                                  freeze_at=args.freeze_at).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    losses = {t: registry.create("loss", LOSSES[t], num_classes=infos[t].num_classes) for t in TASKS}
    loaders = {t: DataLoader(sets[t], batch_size=args.batch, collate_fn=collate) for t in TASKS}
    fixed = {"optimizer": {"lr": 0.001}, "budget": {"steps": 1, "epochs": None}, "precision": precision,
             "channels_last": channels_last}
    ctx = TrainContext(model=model, tasks=list(TASKS), loaders=loaders, losses=losses, fixed=fixed, device=device,
                       evaluate=lambda ts: {}, progress=lambda n, d: range(n), seed=0)
    batches = {t: (lambda b: (ctx._images(b[0]), to_device(b[1], device)))(next(iter(loaders[t]))) for t in TASKS}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.001)
    return ctx, batches, opt


def time_setting(args, registry, device, precision: str, channels_last: bool) -> list[float]:
    """Seconds of each timed step of one setting on a fresh model."""
    ctx, batches, opt = _setup(args, registry, device, precision, channels_last)
    times = []
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        ctx.backward(sum(ctx.task_loss(t, b)["total"] for t, b in batches.items()))
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times[args.warmup:]


def bf16_flags() -> str:
    """The CPU's native bf16 flags as ``lscpu`` lists them (``none`` if it lists none)."""
    try:
        flags = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.split()
    except OSError:
        return "unknown (no lscpu)"
    found = sorted({f for f in flags if f in ("avx512_bf16", "amx_bf16")})
    return ", ".join(found) or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=288)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--freeze-at", type=int, default=32)
    ap.add_argument("--neck", type=int, default=128)
    ap.add_argument("--head-layers", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    registry = get_registry()
    time_setting(args, registry, device, "fp32", False)  # process warm-up (thread pool, allocator), untimed
    samples: dict = {}
    for _ in range(args.rounds):
        for s in SETTINGS:
            samples.setdefault(s, []).extend(time_setting(args, registry, device, *s))
    base = statistics.median(samples[SETTINGS[0]])
    rows = [[p, cl, 1e3 * statistics.median(v), base / statistics.median(v)] for (p, cl), v in samples.items()]
    print(f"unified-onehead Lite0 P3 freeze_at {args.freeze_at}, neck {args.neck}, head {args.head_layers}; "
          f"{args.size} px, batch {args.batch} per task, det+seg+cls; {args.device}, {args.threads} threads, "
          f"CPU bf16 flags: {bf16_flags()}; median of {args.rounds} rounds x {args.steps} steps")
    print(tabulate(rows, headers=["precision", "channels_last", "step (ms)", "speed-up vs fp32"], floatfmt=".3g"))


if __name__ == "__main__":
    main()
