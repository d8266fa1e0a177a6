"""Print the time of one training step at each ``fixed.precision`` x ``fixed.channels_last``
setting, through the harness's own path (``TrainContext`` + the ``equal`` strategy).

    python benchmarks/precision_step.py [--size 288] [--batch 8] [--freeze-at 32] [--neck 128]
                                        [--head-layers 3] [--steps 3] [--warmup 1] [--rounds 3]
                                        [--threads 2] [--device cpu]

The model is ``suites/unified_onehead_joint.yaml``'s (``unified-onehead``, EfficientNet-Lite0,
P3, ``--neck`` channels, ``--head-layers``, ``--freeze-at`` 32 = the whole backbone frozen)
with random weights (seed 0: the step's cost does not depend on them) and det + seg + cls on one
fixed batch per task of the ``synthetic`` data set (``--batch`` images of ``--size`` px each);
losses det ``varifocal``, seg ``ce``, cls ``ce``; AdamW. A step is: zero the gradients, the ``equal``
strategy's step (each task's forward and loss under ``TrainContext.autocast`` on its batch in the
memory format ``TrainContext`` gives it, the summed backward), the optimiser step. The settings are timed in turn,
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

import torch
from tabulate import tabulate

from _stepbench import add_timing_args, start, synthetic_context, time_steps

LOSSES = {"det": "det/varifocal", "seg": "seg/ce", "cls": "cls/ce"}
SETTINGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def time_setting(args, registry, device, precision: str, channels_last: bool) -> list[float]:
    """Seconds of each timed step of one setting on a fresh model."""
    def make_model(infos):
        return registry.create_model("unified-onehead", tasks=infos, level="P3", backbone="tf_efficientnet_lite0",
                                     neck_channels=args.neck, head_layers=args.head_layers, freeze_at=args.freeze_at)

    ctx, batches = synthetic_context(args, registry, device, make_model, LOSSES,
                                     {"precision": precision, "channels_last": channels_last})
    opt = torch.optim.AdamW([p for p in ctx.model.parameters() if p.requires_grad], lr=0.001)
    strategy = registry.create("strategy", "equal")
    strategy.setup(ctx)

    def step(i):
        opt.zero_grad(set_to_none=True)
        strategy.train_step(ctx, batches, i)
        opt.step()

    return time_steps(step, args, device)


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
    add_timing_args(ap)
    args = ap.parse_args()
    device, registry = start(args)
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
