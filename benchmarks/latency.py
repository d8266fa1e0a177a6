"""Print batch-1 latency (p50 with its 95% CI, p90, CV) and FPS (with CI) of the built-in
architectures per runtime, and why each timing series stopped.

    python benchmarks/latency.py [--size 224] [--threads 2] [--repeats 100] [--number 1] [--device cpu]
                                 [--ci-target 0.02] [--max-s 3] [--max-repeats 1000]

Method as in mtbench.profiling.latency: warm-up, then at least ``--repeats`` timed samples
(``--fps-repeats`` for FPS), threads pinned, continuing until the p50's distribution-free 95%
CI is within +-``--ci-target`` (relative half-width), ``--max-s`` seconds of timing or
``--max-repeats`` samples (the ``stop`` columns say which, with the samples taken);
``--number N`` makes each sample the mean of N consecutive calls (eager; ONNX Runtime always
times single calls). The acceptance target on a 2-core CPU is CV < 5% at batch 1.

The first row is a control: a 1024 x 1024 float32 matmul timed the same way. Its CV is the
machine's own timing noise floor; a model's CV cannot be expected to sit far below it.
"""

from __future__ import annotations

import argparse

import torch
from tabulate import tabulate

from mtbench.data.base import TaskInfo
from mtbench.plugins import get_registry
from mtbench.profiling.latency import StopRule, latency_figures, measure_fps, measure_latency, sample_adaptive
from mtbench.profiling.runtimes import measure_runtimes

TASKS = {"det": TaskInfo("det", 76, ()), "seg": TaskInfo("seg", 21, ()), "cls": TaskInfo("cls", 10, ())}
CONFIGS = [("yolo-mtl", {"backbone": "csp", "size": "n"}),
           ("yolo-mtl", {"backbone": "tf_efficientnet_lite0"}),
           ("unified-onehead", {"backbone": "tf_efficientnet_lite0"}),
           ("unified-onehead", {"backbone": "mobilenetv3_small_100"}),
           ("dual-backbone", {"backbone": "tf_efficientnet_lite0"}),
           ("dual-backbone", {"backbone": "mobilenetv3_small_100"})]
HEADERS = ["architecture", "runtime", "p50 (ms)", "p50 95% CI", "+-", "stop (n)", "p90 (ms)", "CV", "FPS",
           "FPS 95% CI", "FPS stop (n)", "parity max|diff|", "error"]


def _ci(ci, digits: int) -> str:
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "-"


def _row(label: str, runtime: str, f: dict) -> list:
    """One table row of latency (and, where measured, FPS) figures."""
    fps = [f"{f['fps']:.1f}", _ci(f.get("fps_ci"), 1), f"{f['fps_stop']} ({f['fps_repeats']:.0f})"] \
        if "fps" in f else ["-", "-", "-"]
    rel = f["latency_ci_halfwidth_rel"]
    return [label, runtime, f"{f['latency_ms']:.2f}", _ci(f["latency_ms_ci"], 2),
            f"{100 * rel:.1f}%" if rel is not None else "-", f"{f['latency_stop']} ({f['latency_repeats']:.0f})",
            f"{f['latency_p90_ms']:.2f}", f"{100 * f['latency_cv']:.2f}%", *fps,
            f"{f['parity_max_abs']:.2e}" if "parity_max_abs" in f else "-", ""]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--number", type=int, default=1, help="calls per timed sample (eager)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--runtimes", default="onnx")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (CUDA-synchronised timing)")
    ap.add_argument("--fps-repeats", type=int, default=10, help="minimum samples of an FPS series")
    ap.add_argument("--ci-target", type=float, default=0.02, help="relative half-width of the p50's 95%% CI")
    ap.add_argument("--max-s", type=float, default=3.0, help="seconds of timing per series at most")
    ap.add_argument("--max-repeats", type=int, default=1000, help="samples per series at most")
    args = ap.parse_args()
    rule = StopRule(ci_target=args.ci_target, max_s=args.max_s, max_samples=args.max_repeats)
    torch.set_num_threads(args.threads)
    reg = get_registry()
    dev = torch.device(args.device)
    a = torch.rand(1024, 1024, device=dev)
    control = latency_figures(sample_adaptive(lambda: a @ a, args.warmup, args.repeats, rule,
                                              dev.type == "cuda", args.number))
    rows = [_row("control: 1024^2 matmul", "eager", control)]
    for name, params in CONFIGS:
        model = reg.create_model(name, tasks=TASKS, level="P3", **params).to(dev).eval()
        eager = measure_latency(model, args.size, dev, args.warmup, args.repeats, args.number, rule)
        eager |= measure_fps(model, args.size, args.batch, dev, 3, args.fps_repeats, rule)
        figures = {"eager": eager}
        figures |= measure_runtimes([r for r in args.runtimes.split(",") if r], model, args.size, args.batch, dev,
                                    args.warmup, args.repeats, args.fps_repeats, rule)
        for runtime, f in figures.items():
            label = f"{name}[{','.join(str(v) for v in params.values())}]"
            if "error" in f:
                rows.append([label, runtime, *["-"] * (len(HEADERS) - 3), f["error"][:60]])
                continue
            rows.append(_row(label, runtime, f))
    print(f"{dev.type}: batch-1 latency at {args.size} px, {args.threads} threads, >= {args.repeats} samples of "
          f"{args.number} call(s) after {args.warmup} warm-up; FPS at batch {args.batch} (>= {args.fps_repeats} "
          f"samples); each series until its p50's 95% CI is within +-{100 * args.ci_target:g}%, {args.max_s:g} s "
          f"or {args.max_repeats} samples")
    print(tabulate(rows, headers=HEADERS, tablefmt="github"))


if __name__ == "__main__":
    main()
