"""Run one :class:`~mtbench.suite.Cell` end to end and return its result record.

build (data, model, losses, strategy from the registry) -> train under the budget ->
evaluate on the val splits -> profile -> result. Any exception, NaN loss or divergence
makes the cell ``failed`` with its reason; the caller stores it and goes on.
"""

from __future__ import annotations

import copy
import platform
import random
import subprocess
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mtbench import __version__
from mtbench.data.base import collate
from mtbench.diagnostics import diagnose
from mtbench.diagnostics.overfit import SHARE, budget_steps, overfit_one_batch
from mtbench.evaluation import evaluate
from mtbench.metrics import PRIMARY
from mtbench.metrics.chance import chance_levels
from mtbench.metrics.forgetting import forgetting
from mtbench.plugins import Registry
from mtbench.profiling.complexity import count_flops, count_params, matmul_peak_gflops
from mtbench.profiling.latency import measure_fps, measure_latency
from mtbench.profiling.memory import peak_memory_mib
from mtbench.profiling.reference import reference_entries
from mtbench.profiling.runtimes import measure_runtimes
from mtbench.strategies.base import TrainContext
from mtbench.suite import Cell

SCHEMA_VERSION = 1
METRICS_DOC = (
    "det/mAP = COCO mAP@[.5:.95], det/AP50 = AP at IoU 0.5 (faster-coco-eval, val split); "
    "seg/mIoU = mean IoU from one confusion matrix over the val split, 255 ignored; "
    "cls/Top-1 = fraction of val images whose top logit is the label; "
    "forgetting/<task> = (score right after its own stage - final score) / score right after its own stage, "
    "forgetting = mean over all tasks but the last; BWT = mean(final - just learned); "
    "latency_ms = median batch-1 forward time (ms); fps = images/s at the suite batch size; "
    "peak_mem_mib = CUDA allocator peak on GPU, process RSS peak on CPU (MiB); flops_g = GFLOPs per image."
)


def environment(device: torch.device) -> dict:
    """Versions, device and commit: the provenance stored with every result."""
    import timm
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"mtbench": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version(), "device": f"{device.type}: {dev}",
            "threads": torch.get_num_threads(), "commit": commit}


def _device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def run_cell(cell: Cell, registry: Registry, show_progress: bool = True) -> dict:
    """Train, evaluate and profile one cell.

    :return: the result record (JSON-serialisable): ``schema_version``, ``suite``, ``label``,
        ``hash``, ``axes``, ``config``, ``status`` (``ok``/``failed``), ``reason``,
        ``metrics``, ``stages``, ``profile``, ``history``, ``diagnostics``, ``env``.
    """
    cfg, fixed = cell.config, cell.config["fixed"]
    result = {"schema_version": SCHEMA_VERSION, "suite": cell.suite, "label": cell.label, "hash": cell.hash,
              "axes": cell.axes, "config": cfg, "status": "running", "reason": None, "metrics": {},
              "stages": [], "profile": {}, "history": [], "diagnostics": [], "metrics_doc": METRICS_DOC}
    started = time.time()
    try:
        if fixed["threads"]:
            torch.set_num_threads(fixed["threads"])
        device = _device(fixed["device"])
        result["env"] = environment(device)
        gen = _seed_everything(cfg["seed"])
        root = Path(cfg["data_root"]) if cfg["data_root"] else None
        size, bs = fixed["image_size"], fixed["batch_size"]
        train_sets, val_sets = {}, {}
        for task, td in cfg["tasks"].items():
            for split, sets in (("train", train_sets), ("val", val_sets)):
                sets[task] = registry.create("dataset", td["dataset"], task=task, split=split, root=root,
                                             image_size=size, **td["params"])
        tasks = list(cfg["tasks"])
        infos = {t: train_sets[t].info for t in tasks}
        result["chance"] = chance_levels(val_sets)
        model = registry.create_model(cfg["architecture"]["name"], tasks=infos, level=cfg["level"],
                                      **cfg["architecture"]["params"]).to(device)
        loss_params = cfg.get("loss_params", {})
        losses = {t: registry.create("loss", cfg["losses"][t], num_classes=infos[t].num_classes,
                                     **loss_params.get(t, {})) for t in tasks}
        strategy = registry.create("strategy", cfg["strategy"]["name"], **cfg["strategy"]["params"])
        loaders = {t: DataLoader(train_sets[t], batch_size=bs, shuffle=True, collate_fn=collate, generator=gen,
                                 drop_last=len(train_sets[t]) >= bs) for t in tasks}
        eval_bs = fixed["eval_batch_size"] or bs
        dkw = {t: getattr(losses[t], "decode_kwargs", {}) for t in tasks}

        def progress(total: int, desc: str):
            return tqdm(range(total), desc=f"{cell.label} {desc}", leave=False, disable=not show_progress,
                        dynamic_ncols=True, mininterval=1.0)

        ctx = TrainContext(model=model, tasks=tasks, loaders=loaders, losses=losses, fixed=fixed, device=device,
                           evaluate=lambda ts: evaluate(model, val_sets, ts, eval_bs, device, size, dkw),
                           progress=progress)
        result["loss_components"] = {t: list(losses[t].declared_components) for t in tasks
                                     if hasattr(losses[t], "declared_components")}
        result["overfit"] = _overfit(cfg.get("checks") or {}, strategy, ctx, model, losses, train_sets, device)
        t0 = time.perf_counter()
        report = strategy.fit(ctx)
        train_s = time.perf_counter() - t0
        result["history"] = ctx.history
        result["stages"] = report.stages
        eval_tasks = report.eval_tasks or tasks
        if report.stages and set(report.stages[-1]["metrics"]) >= {PRIMARY[t] for t in eval_tasks}:
            metrics = dict(report.stages[-1]["metrics"])
        else:
            metrics = evaluate(model, val_sets, eval_tasks, eval_bs, device, size, dkw)
        metrics.update(forgetting(report.stages, PRIMARY))
        result["metrics"] = metrics
        result["extra"] = report.extra
        result["profile"] = profile(model, size, bs, device, cell.config["profile"]) | {"train_s": train_s}
        if result["overfit"]:
            result["overfit"]["share_of_train"] = result["overfit"]["seconds"] / train_s if train_s > 0 else None
        refs = reference_entries(cfg, registry.get("model", cfg["architecture"]["name"]).factory,
                                 {t: infos[t].num_classes for t in tasks}, result["profile"])
        if refs:
            result["profile"]["reference"] = refs
        result["status"] = "ok"
    except Exception as exc:  # a failing cell is recorded, the run goes on
        result["status"] = "failed"
        result["reason"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=8)
    result["diagnostics"] = diagnose(result)
    result["wall_s"] = time.time() - started
    result.setdefault("env", {})
    return result


def _overfit(checks: dict, strategy, ctx: TrainContext, model, losses, train_sets, device) -> dict | None:
    """The overfit-one-batch check on the tasks the strategy trains (None when ``off``): ``auto``
    bounds its steps by ``overfit_share`` of the budget's steps per trained task."""
    mode = checks.get("overfit_one_batch", "auto")
    if mode == "off":
        return None
    trained = getattr(strategy, "trained_tasks", lambda ts: ts)(ctx.tasks)  # single-task: its one task
    images, max_steps = checks.get("overfit_images", 2), checks.get("overfit_steps", 40)
    per_task = sum(ctx.steps([t]) for t in trained) / len(trained)
    steps = max_steps if mode == "on" else budget_steps(per_task, checks.get("overfit_share", SHARE), max_steps)
    return overfit_one_batch(model, losses, {t: train_sets[t] for t in trained}, device,
                             checks.get("overfit_lr", 0.01), steps, images)


def profile(model, image_size: int, batch_size: int, device: torch.device, cfg: dict) -> dict:
    """Params, GFLOPs, batch-1 latency (p50/p90/CV), FPS at ``batch_size``, peak memory
    (PyTorch eager: top-level keys), and the same figures per extra runtime in ``runtimes``.

    A model with ``fuse()`` (re-parameterisable blocks such as RepVGG) is profiled as
    deployed: a fused copy is measured (``reparameterised: true``), as its papers report.
    """
    out: dict = {}
    if hasattr(model, "fuse"):
        model = copy.deepcopy(model).fuse()
        out["reparameterised"] = True
    out.update(count_params(model))
    out["params_m"] = out["params"] / 1e6
    out["flops_g"] = count_flops(model, image_size)
    out["device_peak_gflops"] = matmul_peak_gflops(device)
    out.update(measure_latency(model, image_size, device, cfg["latency_warmup"], cfg["latency_repeats"]))
    out["latency_warmup"] = float(cfg["latency_warmup"])
    out["latency_synchronised"] = True  # CPU ops are synchronous; CUDA runs are bracketed by synchronize()
    fps: dict = {}
    mem = peak_memory_mib(lambda: fps.update(measure_fps(model, image_size, batch_size, device,
                                                         repeats=cfg["fps_repeats"])), device)
    out.update(fps)
    out.update(mem)
    out["runtimes"] = measure_runtimes(cfg["runtimes"], model, image_size, batch_size, device,
                                       cfg["latency_warmup"], cfg["latency_repeats"], cfg["fps_repeats"])
    return out
