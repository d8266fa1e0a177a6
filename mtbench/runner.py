"""Run one :class:`~mtbench.suite.Cell` end to end and return its result record.

build (data, model, losses, strategy from the registry) -> train under the budget ->
evaluate on the val splits -> profile -> result. Any exception, NaN loss or divergence
makes the cell ``failed`` with its reason; the caller stores it and goes on.
"""

from __future__ import annotations

import copy
import random
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mtbench.checkpoint import Checkpoints, ResumableSampler, parse_every, save_weights, tidy
from mtbench.data.base import dropped_summary
from mtbench.data.cache import RamBudget
from mtbench.data.loading import train_loader
from mtbench.diagnostics import diagnose
from mtbench.diagnostics.overfit import SHARE, budget_steps, overfit_one_batch
from mtbench.evaluation import evaluate_detailed, runtime_val, verdict_inputs
from mtbench.errors import CellFailure, DataError, MtbenchError, PluginError
from mtbench.metrics import headlines
from mtbench.metrics.forgetting import forgetting, forgetting_ci
from mtbench.models.contract import ContractError, check_model
from mtbench.plugins import Registry, use_registry
from mtbench.profiling.complexity import count_flops, count_params, matmul_peak_gflops
from mtbench.profiling.latency import Budget, StopRule, measure_fps, measure_latency
from mtbench.profiling.memory import peak_memory_mib
from mtbench.profiling.reference import reference_entries
from mtbench.profiling.deploy import calibration_images
from mtbench.profiling.runtimes import measure_runtimes
from mtbench.provenance import environment, plugins_in_play
from mtbench.results import cell_identity_record, json_safe
from mtbench.strategies.base import TrainContext
from mtbench.suite import Cell

SCHEMA_VERSION = 1
METRICS_DOC = (
    "det/mAP = COCO mAP@[.5:.95], det/AP50 = AP at IoU 0.5 (faster-coco-eval, val split); "
    "seg/mIoU = mean IoU from one confusion matrix over the val split, 255 ignored; "
    "cls/Top-1 = fraction of val images whose top logit is the label; "
    "sequential cells, per task but the last, headline score a[stage]: "
    "forgetting/<task> = max over earlier stages of a - final a (Chaudhry et al. 2018), "
    "forgetting_rel/<task> = that / the max (None when the max is 0), "
    "BWT/<task> = final a - a right after its own stage (Lopez-Paz & Ranzato 2017); "
    "forgetting, BWT = means over all tasks but the last, forgetting_rel = mean over its defined tasks "
    "(forgetting_rel_n of them); delta_m = 100 x mean over tasks of the mean signed relative change vs the "
    "single-task cell, over the headline metric or all of a task's metrics (delta_m_convention); "
    "latency_ms = median batch-1 forward time (ms), latency_ms_ci = its distribution-free 95% CI "
    "(order statistics, binomial), latency_stop = why sampling stopped (ci-target/time-cap/max-samples); "
    "fps = images/s at the suite batch size, fps_ci = its 95% CI; "
    "peak_mem_mib = CUDA allocator peak on GPU, process RSS peak on CPU (MiB); flops_g = GFLOPs per image; "
    "ci[metric] = 95% bootstrap CI over val images (percentile, seeded; uncertainty gives resamples); "
    "chance[metric] = measured chance level on the same val split (cls: majority class; det, seg and "
    "by default: the model's predictions scored against other images' ground truth), chance_ci its CI; "
    "samples[task] = per-image records the metric is recomputed from."
)


def _device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def run_cell(cell: Cell, registry: Registry, show_progress: bool = True, workdir: Path | None = None,
             keep_weights: str = "final", post_mortem: bool = False) -> dict:
    """Train, evaluate and profile one cell.

    :param workdir: the cell's folder for checkpoints and final weights (:mod:`mtbench.checkpoint`;
        None: nothing saved); a checkpoint there is resumed from (``resumed`` in the record says
        from where and how much work the interruption lost).
    :param keep_weights: ``none`` | ``final`` | ``all`` (:func:`mtbench.checkpoint.tidy`).
    :raises CheckpointError: the checkpoint in ``workdir`` is refused (not weights-only); the
        only error not recorded as a failed cell.

    :return: the result record (JSON-serialisable): ``schema_version``, ``suite``, ``label``,
        ``hash``, ``axes``, ``config``, ``identity`` (:func:`mtbench.results.cell_identity_record`),
        ``status`` (``ok``/``failed``), ``reason``,
        ``metrics``, ``stages``, ``profile``, ``history``, ``diagnostics``, ``env``, ``data``
        (``dropped``: annotations the loaders left out of training and evaluation alike,
        :func:`mtbench.data.base.dropped_summary`), ``task_meta`` (each task's metrics and
        their directions, headline and columns: :meth:`mtbench.tasks.Task.meta`). A failed
        cell's ``reason`` names the plugin whose code raised (``plugin loss 'x' (dist version):
        Error: first line``) and its ``traceback`` holds the last frames.
    :param post_mortem: on a failure, enter :func:`pdb.post_mortem` at the exception (``--pdb``)
        before recording it.

    Inside, ``registry`` is the active one (:func:`mtbench.plugins.use_registry`): the tasks'
    flip, decode, metric and chance rules come from it.
    """
    with use_registry(registry):
        return _run_cell(cell, registry, show_progress, workdir, keep_weights, post_mortem)


def _run_cell(cell: Cell, registry: Registry, show_progress: bool, workdir: Path | None, keep_weights: str,
              post_mortem: bool) -> dict:
    cfg, fixed = cell.config, cell.config["fixed"]
    result = {"schema_version": SCHEMA_VERSION, "suite": cell.suite, "label": cell.label, "hash": cell.hash,
              "axes": cell.axes, "config": cfg, "identity": cell_identity_record(cell), "status": "running",
              "reason": None, "metrics": {},
              "stages": [], "profile": {}, "history": [], "diagnostics": [], "metrics_doc": METRICS_DOC}
    started = time.time()
    checkpoints = Checkpoints(workdir, parse_every(fixed.get("checkpoint_every"))) if workdir else None
    if checkpoints is not None and checkpoints.load() is not None:
        saved = checkpoints.saved
        result["resumed"] = {"stage": saved["stage"], "step": saved["step"], "lost": checkpoints.lost()}
    try:
        if fixed["threads"]:
            torch.set_num_threads(fixed["threads"])
        device = _device(fixed["device"])
        result["env"] = environment(device, plugins_in_play(cell.identity), cell.suite_sha256)
        gen = _seed_everything(cfg["seed"])
        size, bs = fixed["image_size"], fixed["batch_size"]
        train_sets, val_sets = datasets(cfg, registry, "train"), datasets(cfg, registry, "val")
        result["data"] = {"dropped": dropped_summary({"train": train_sets, "val": val_sets})}
        tasks = list(cfg["tasks"])
        result["task_meta"] = {t: registry.task(t).meta() for t in tasks}
        infos = {t: train_sets[t].info for t in tasks}
        model = build_model(cfg, registry, infos, device)
        if fixed.get("channels_last"):
            model = model.to(memory_format=torch.channels_last)
        loss_params = cfg.get("loss_params", {})
        losses = {t: _build(registry, "loss", cfg["losses"][t], infos[t], **loss_params.get(t, {})) for t in tasks}
        strategy = _build(registry, "strategy", cfg["strategy"]["name"], **cfg["strategy"]["params"])
        budget = RamBudget(int(fixed["cache_ram_gib"] * 2**30) if fixed["cache_ram_gib"] else None)
        for ds in (*train_sets.values(), *val_sets.values()):
            ds.set_cache(fixed["cache"], budget)
            if fixed.get("augment"):
                ds.set_augment(fixed["augment"])
        loaders = {t: train_loader(train_sets[t], bs, gen, fixed["num_workers"], fixed["pin_memory"],
                                   fixed["persistent_workers"], sampler_cls=ResumableSampler) for t in tasks}
        if checkpoints is not None:
            checkpoints.steps_per_epoch = max(1, max(len(loader) for loader in loaders.values()))
        eval_bs = fixed["eval_batch_size"] or bs
        dkw = {t: getattr(losses[t], "decode_kwargs", {}) for t in tasks}
        _check_model_contract(registry, cfg["architecture"]["name"], model, size, device, dkw)

        def progress(total: int, desc: str):
            return tqdm(range(total), desc=f"{cell.label} {desc}", leave=False, disable=not show_progress,
                        dynamic_ncols=True, mininterval=1.0)

        last_eval: dict = {}  # the latest evaluation of each task, with per-image records

        def evaluate_tasks(ts: list[str]) -> dict[str, float]:
            last_eval.clear()
            last_eval.update(evaluate_detailed(ctx.deployed, val_sets, ts, eval_bs, device, size, dkw))
            return {k: v for ev in last_eval.values() for k, v in ev.values.items()}

        def evaluation_samples() -> dict[str, dict]:  # JSON-safe: stages go into checkpoints and the record
            return json_safe({t: e for t, ev in last_eval.items() if (e := ev.sample_entry()) is not None})

        ctx = TrainContext(model=model, tasks=tasks, loaders=loaders, losses=losses, fixed=fixed, device=device,
                           evaluate=evaluate_tasks, evaluation_samples=evaluation_samples, progress=progress,
                           seed=cfg["seed"], checkpoints=checkpoints)
        result["loss_components"] = {t: list(losses[t].declared_components) for t in tasks
                                     if hasattr(losses[t], "declared_components")}
        result["overfit"] = _overfit(cfg.get("checks") or {}, strategy, ctx, model, losses, train_sets, device)
        t0 = time.perf_counter()
        report = strategy.fit(ctx)
        train_s = time.perf_counter() - t0
        if ctx.ema is not None and not ctx.ema_steps:
            raise CellFailure(f"fixed.ema: strategy {cfg['strategy']['name']!r} never stepped through "
                              f"TrainContext.step, so the weights' average was never updated")
        model = ctx.deployed  # from here on: the model evaluated, profiled and saved
        if workdir and keep_weights != "none":
            save_weights(model, workdir)
        result["history"] = ctx.history
        result["stages"] = report.stages
        eval_tasks = report.eval_tasks or tasks
        if not (report.stages and set(report.stages[-1]["metrics"]) >= {headlines()[t] for t in eval_tasks}
                and set(last_eval) >= set(eval_tasks)):
            evaluate_tasks(eval_tasks)
        metrics = {k: v for t in eval_tasks for k, v in last_eval[t].values.items()}
        unc = cfg.get("uncertainty") or {}
        result.update(verdict_inputs({t: last_eval[t] for t in eval_tasks}, cfg["seed"],
                                     unc.get("resamples", 200), unc.get("level", 0.95),
                                     unc.get("method", "percentile")))
        metrics.update(forgetting(report.stages, headlines()))
        t_ci = time.perf_counter()
        result["ci"].update(forgetting_ci(report.stages, headlines(), unc.get("resamples", 200),
                                          unc.get("level", 0.95), cfg["seed"]))
        result["uncertainty"]["seconds"] += time.perf_counter() - t_ci  # the harness's own work (budget)
        result["metrics"] = metrics
        result["extra"] = report.extra
        if result["overfit"]:
            result["overfit"]["share_of_train"] = result["overfit"]["seconds"] / train_s if train_s > 0 else None
        measure(result, model, cfg, registry, {t: infos[t].num_classes for t in tasks}, device, train_s,
                runtime_inputs(cfg, registry, model, device, metrics, train_sets, val_sets, dkw))
        result["status"] = "ok"
        if workdir:
            tidy(workdir, keep_weights)
    except Exception as exc:  # a failing cell is recorded, the run goes on
        result["status"] = "failed"
        result["reason"] = _reason(exc, registry, cfg)
        result["traceback"] = traceback.format_exc(limit=8)
        if post_mortem:
            import pdb
            pdb.post_mortem(exc.__traceback__)
    result["diagnostics"] = diagnose(result)
    result["wall_s"] = time.time() - started
    result.setdefault("env", {})
    return result


def _reason(exc: Exception, registry: Registry, cfg: dict) -> str:
    """``Error: message``; an unexpected exception (not an :class:`MtbenchError`, whose message
    already says what and where, e.g. a ``DataError`` naming the file) is prefixed by the plugin
    whose code raised it."""
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MtbenchError):  # raised on purpose: its message already says what and where
        return str(exc) if str(exc).startswith("plugin ") else reason
    used = [("model", cfg["architecture"]["name"]), ("strategy", cfg["strategy"]["name"])]
    used += [("loss", key) for key in cfg.get("losses", {}).values()]
    used += [("dataset", td["dataset"]) for td in cfg["tasks"].values()]
    blamed = registry.blame(exc, used)
    return f"{blamed}: {reason.splitlines()[0]}" if blamed else reason


def datasets(cfg: dict, registry: Registry, split: str) -> dict:
    """The cell's data set of every task for ``split`` (``train`` / ``val``).

    :raises DataError: a data set with no item (a loader that did not say why itself): a split
        without items would train on nothing or score nothing, and a score of nothing is no result.
    """
    root = Path(cfg["data_root"]) if cfg["data_root"] else None
    out = {}
    for task, td in cfg["tasks"].items():
        out[task] = ds = registry.create("dataset", td["dataset"], task=task, split=split, root=root,
                                         image_size=cfg["fixed"]["image_size"], **td["params"])
        if len(ds) == 0:
            where = f" under {root}" if root else ""
            raise DataError(f"task {task}: dataset {td['dataset']!r} ({td['params']}) has no {split} items{where}")
    return out


def build_model(cfg: dict, registry: Registry, infos: dict, device: torch.device):
    """The cell's model, untrained, on ``device`` (``infos``: task -> :class:`TaskInfo` of its train split).

    :raises PluginError: the model's factory raised (:func:`_build`).
    """
    return _build(registry, "model", cfg["architecture"]["name"], tasks=infos, level=cfg["level"],
                  **cfg["architecture"]["params"]).to(device)


def runtime_inputs(cfg: dict, registry: Registry, model, device: torch.device, eager: dict[str, float],
                   train_sets: dict, val_sets: dict | None = None, decode_kwargs: dict | None = None) -> dict:
    """The ``calibration`` and ``evaluate`` arguments of :func:`mtbench.profiling.runtimes.measure_runtimes`
    for a cell: its train images (``profile.calibration_images``, drawn only when an int8
    runtime asks) and, with ``profile.runtime_metrics``, a val pass over the tasks ``eager``
    (the cell's eager float32 metrics) scores, from a runtime's outputs
    (:func:`mtbench.evaluation.runtime_val`); ``val_sets`` / ``decode_kwargs`` (the losses')
    are built from the config when not given."""
    prof, fixed = cfg["profile"], cfg["fixed"]
    out = {"calibration": lambda: calibration_images(train_sets, prof.get("calibration_images", 32), cfg["seed"])}
    if not prof.get("runtime_metrics"):
        return out
    val_sets = val_sets if val_sets is not None else datasets(cfg, registry, "val")
    tasks = [t for t in cfg["tasks"] if headlines().get(t) in eager]
    if decode_kwargs is None:
        decode_kwargs = loss_decode_kwargs(cfg, registry, {t: val_sets[t].info for t in tasks})
    bs = fixed["eval_batch_size"] or fixed["batch_size"]
    out["evaluate"] = lambda predict: runtime_val(predict, model, val_sets, tasks, bs, device, fixed["image_size"],
                                                  decode_kwargs, eager)
    return out


def loss_decode_kwargs(cfg: dict, registry: Registry, infos: dict) -> dict[str, dict]:
    """Task -> the ``decode_kwargs`` of the cell's loss for it (what ``model.decode`` is given),
    for the tasks in ``infos`` (task -> :class:`TaskInfo`); ``{}`` for a loss without any.

    :raises PluginError: a loss's factory raised (:func:`_build`).
    """
    names, params = cfg.get("losses", {}), cfg.get("loss_params", {})
    return {t: getattr(_build(registry, "loss", names[t], info, **params.get(t, {})), "decode_kwargs", {})
            for t, info in infos.items()}


def measure(result: dict, model, cfg: dict, registry: Registry, num_classes: dict[str, int],
            device: torch.device, train_s: float, runtime_args: dict | None = None) -> None:
    """Profile the trained ``model`` into ``result``: ``profile`` (:func:`profile`, the harness
    budget left after the record's overfit check and CIs, its reference figures) and ``harness``.

    :param runtime_args: ``calibration`` / ``evaluate`` for the runtimes (:func:`runtime_inputs`).
    """
    t_prof = time.perf_counter()
    fixed = cfg["fixed"]
    share = (cfg.get("checks") or {}).get("harness_share", HARNESS_SHARE)
    left = harness_left(share, result, train_s)
    result["profile"] = profile(model, fixed["image_size"], fixed["batch_size"], device, cfg["profile"],
                                left, **(runtime_args or {})) | {"train_s": train_s}
    refs = reference_entries(cfg, registry.get("model", cfg["architecture"]["name"]).factory, num_classes,
                             result["profile"])
    if refs:
        result["profile"]["reference"] = refs
    result["harness"] = harness_cost(result, train_s, time.perf_counter() - t_prof, share)


def _runtime_val_s(result: dict) -> float:
    """Seconds of the runtimes' val passes in a record (``profile.runtime_metrics``)."""
    runtimes = (result.get("profile") or {}).get("runtimes") or {}
    return float(sum((r.get("val") or {}).get("seconds") or 0.0 for r in runtimes.values() if isinstance(r, dict)))


def _build(registry: Registry, kind: str, name: str, info=None, **params):
    """``registry.create`` (:meth:`Registry.create_loss` for a loss, with its task's ``info``), an
    exception from the plugin's factory re-raised naming the plugin.

    :raises PluginError: ``model 'x' (dist version) failed to build: RuntimeError: ...`` (the
        original exception chained, its traceback in the cell record).
    """
    try:
        if kind == "loss":
            return registry.create_loss(name, info, **params)
        return registry.create(kind, name, **params)
    except MtbenchError:
        raise
    except Exception as exc:
        raise PluginError(f"{registry.origin(kind, name)} failed to build: {type(exc).__name__}: {exc}") from exc


def _check_model_contract(registry: Registry, name: str, model, image_size: int, device: torch.device,
                          decode_kwargs: dict) -> None:
    """:func:`mtbench.models.contract.check_model` before training, the plugin named on failure.

    :raises ContractError: ``model NAME (DISTRIBUTION VERSION): task ...: expected vs got``.
    """
    try:
        check_model(model, image_size, device, decode_kwargs)
    except ContractError as exc:
        raise ContractError(f"{registry.origin('model', name)}: {exc}") from None


HARNESS_SHARE = 0.15  # default budget of the harness's own work, as a share of the cell's training time


def harness_left(share: float, result: dict, train_s: float) -> float:
    """Seconds left for profiling in the harness budget (``share`` x ``train_s``; the suite's
    ``checks.harness_share``, default 15 %) after the overfit-one-batch check and the CIs +
    chance levels; 0 when they already used it."""
    return max(0.0, share * train_s - harness_cost(result, train_s, 0.0)["total_s"])


def harness_cost(result: dict, train_s: float, profile_s: float, share: float = HARNESS_SHARE) -> dict:
    """Seconds the harness spent on its own work beside training, and their share of ``train_s``:
    the overfit-one-batch copy, CIs + measured chance (``uncertainty``), profiling, the
    runtimes' val passes (``runtime_val_s``, opt-in ``profile.runtime_metrics``; taken out of
    ``profile_s``, in which they ran); ``budget_share`` is the suite's ``checks.harness_share``
    it is held to."""
    val_s = _runtime_val_s(result) if profile_s else 0.0
    parts = {"overfit_s": float((result.get("overfit") or {}).get("seconds") or 0.0),
             "uncertainty_s": float((result.get("uncertainty") or {}).get("seconds") or 0.0),
             "profile_s": profile_s - val_s, "runtime_val_s": val_s}
    total = sum(parts.values())
    return parts | {"total_s": total, "train_s": train_s,
                    "share_of_train": total / train_s if train_s > 0 else None, "budget_share": share}


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


def profile(model, image_size: int, batch_size: int, device: torch.device, cfg: dict,
            time_left: float | None = None, calibration=None, evaluate=None) -> dict:
    """Params, GFLOPs, batch-1 latency (p50/p90/CV), FPS at ``batch_size``, peak memory
    (PyTorch eager: top-level keys), and the same figures per extra runtime in ``runtimes``.
    Latency and FPS carry their 95 % intervals (``latency_ms_ci``, ``fps_ci``) and why their
    sampling stopped (``latency_stop``, ``fps_stop``; rule: :func:`stop_rule`).

    ``time_left`` (seconds, the harness budget left: :func:`harness_left`, recorded as
    ``harness_left_s``) is shared by the timing series (latency and FPS, eager then each
    runtime): each, when it starts, may use an equal share of what is left of it
    (:class:`~mtbench.profiling.latency.Budget`), at most ``latency_max_s``; each still takes
    its minimum samples.

    A model with ``fuse()`` (re-parameterisable blocks such as RepVGG) is profiled as
    deployed: a fused copy is measured (``reparameterised: true``), as its papers report.

    ``cudnn_benchmark`` (the profile option) sets :data:`torch.backends.cudnn.benchmark` while a
    CUDA model is profiled (restored afterwards); ``out["cudnn_benchmark"]`` records whether it
    was on (always False on CPU, where cuDNN is not used). Profiling is fp32 at every
    ``fixed.precision``.

    ``calibration`` / ``evaluate``: passed to
    :func:`~mtbench.profiling.runtimes.measure_runtimes` (int8 calibration images; the val
    pass per runtime, ``profile.runtime_metrics``).
    """
    benchmark = bool(cfg.get("cudnn_benchmark")) and device.type == "cuda"
    args = (model, image_size, batch_size, device, cfg, time_left, calibration, evaluate)
    if device.type != "cuda":
        return _profile(*args) | {"cudnn_benchmark": False}
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark
    try:
        return _profile(*args) | {"cudnn_benchmark": benchmark}
    finally:
        torch.backends.cudnn.benchmark = before


def _profile(model, image_size: int, batch_size: int, device: torch.device, cfg: dict,
             time_left: float | None, calibration=None, evaluate=None) -> dict:
    out: dict = {}
    if hasattr(model, "fuse"):
        model = copy.deepcopy(model).fuse()
        out["reparameterised"] = True
    out.update(count_params(model))
    out["params_m"] = out["params"] / 1e6
    out["flops_g"] = count_flops(model, image_size)
    out["device_peak_gflops"] = matmul_peak_gflops(device)
    rule: StopRule | Budget = stop_rule(cfg)
    if time_left is not None:
        rule = Budget(rule, time_left, series=2 * (1 + len(cfg["runtimes"])))
        out["harness_left_s"] = time_left
    out.update(measure_latency(model, image_size, device, cfg["latency_warmup"], cfg["latency_repeats"], rule=rule))
    out["latency_warmup"] = float(cfg["latency_warmup"])
    out["latency_synchronised"] = True  # CPU ops are synchronous; CUDA runs are bracketed by synchronize()
    fps: dict = {}
    mem = peak_memory_mib(lambda: fps.update(measure_fps(model, image_size, batch_size, device,
                                                         repeats=cfg["fps_repeats"], rule=rule)), device)
    out.update(fps)
    out.update(mem)
    out["runtimes"] = measure_runtimes(cfg["runtimes"], model, image_size, batch_size, device,
                                       cfg["latency_warmup"], cfg["latency_repeats"], cfg["fps_repeats"], rule,
                                       calibration, evaluate)
    return out


def stop_rule(cfg: dict) -> StopRule:
    """The timing series' stopping rule from a cell's ``profile`` section (:class:`mtbench.suite.Profile`)."""
    return StopRule(ci_target=cfg["latency_ci_target"], max_s=cfg["latency_max_s"],
                    max_samples=cfg["latency_max_repeats"])
