"""Print batch-1 latency (p50, p90, CV) and FPS of the built-in architectures per runtime.

    python benchmarks/latency.py [--size 224] [--threads 2] [--repeats 100] [--number 1] [--device cpu]

Method as in mtbench.profiling.latency: warm-up, then repeated timed samples, threads pinned;
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
from mtbench.profiling.latency import measure_fps, measure_latency, summarise, time_calls
from mtbench.profiling.runtimes import measure_runtimes

TASKS = {"det": TaskInfo("det", 76, ()), "seg": TaskInfo("seg", 21, ()), "cls": TaskInfo("cls", 10, ())}
CONFIGS = [("yolo-mtl", {"backbone": "csp", "size": "n"}),
           ("yolo-mtl", {"backbone": "tf_efficientnet_lite0"}),
           ("unified-onehead", {"backbone": "tf_efficientnet_lite0"}),
           ("unified-onehead", {"backbone": "mobilenetv3_small_100"}),
           ("dual-backbone", {"backbone": "tf_efficientnet_lite0"}),
           ("dual-backbone", {"backbone": "mobilenetv3_small_100"})]


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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reg = get_registry()
    dev = torch.device(args.device)
    a = torch.rand(1024, 1024, device=dev)
    control = summarise(time_calls(lambda: a @ a, args.warmup, args.repeats, dev.type == "cuda", args.number))
    rows = [["control: 1024^2 matmul", "eager", f"{control['latency_ms']:.2f}", f"{control['latency_p90_ms']:.2f}",
             f"{100 * control['latency_cv']:.2f}%", "-", "-", ""]]
    for name, params in CONFIGS:
        model = reg.create_model(name, tasks=TASKS, level="P3", **params).to(dev).eval()
        eager = measure_latency(model, args.size, dev, args.warmup, args.repeats, args.number)
        eager |= measure_fps(model, args.size, args.batch, dev, 3, 10)
        figures = {"eager": eager}
        figures |= measure_runtimes([r for r in args.runtimes.split(",") if r], model, args.size, args.batch, dev,
                                    args.warmup, args.repeats, 10)
        for runtime, f in figures.items():
            label = f"{name}[{','.join(str(v) for v in params.values())}]"
            if "error" in f:
                rows.append([label, runtime, "-", "-", "-", "-", "-", f["error"][:60]])
                continue
            rows.append([label, runtime, f"{f['latency_ms']:.2f}", f"{f['latency_p90_ms']:.2f}",
                         f"{100 * f['latency_cv']:.2f}%", f"{f['fps']:.1f}",
                         f"{f.get('parity_max_abs', 0):.2e}" if runtime != "eager" else "-", ""])
    print(f"{dev.type}: batch-1 latency at {args.size} px, {args.threads} threads, {args.repeats} samples of "
          f"{args.number} call(s) after {args.warmup} warm-up; FPS at batch {args.batch}")
    print(tabulate(rows, headers=["architecture", "runtime", "p50 (ms)", "p90 (ms)", "CV", "FPS",
                                  "parity max|diff|", "error"], tablefmt="github"))


if __name__ == "__main__":
    main()
