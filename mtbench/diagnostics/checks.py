"""The diagnostic checks (see the package docstring for the table)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from statistics import fmean
from typing import Callable

from mtbench.metrics import PRIMARY

DEAD_WINDOW = 20          # K: logged steps looked at by dead-loss
MIN_POS_RATIO = 1 / 1000  # positive-ratio threshold (positives / negatives)
OVERFIT_DROP = 0.9       # overfit-one-batch: required fall of the loss above its floor
SPEED_SLACK = 1.5         # implausible when achieved FLOP/s > 1.5 x matmul peak
COLLAPSE_SHARE = 1e-3     # task-weight-collapse: a weight below 0.1% of the mean task weight ...
COLLAPSE_STEPS = 0.1      # ... at the end, or for at least 10% of the steps
_COUNTER = re.compile(r"/(num_pos|num_loc|forced_pos|sigma|window|floor)(/|$)")  # counters and schedules, not losses


@dataclass
class Finding:
    """One diagnostic result: which check, how bad, what it means, and the numbers behind it."""

    check: str
    severity: str  # "warning" | "error"
    message: str
    evidence: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def dead_loss(rec: dict) -> list[Finding]:
    """A loss component exactly 0 or constant over the last ``DEAD_WINDOW`` logged steps of a stage."""
    out = []
    hist = rec.get("history") or []
    for stage in dict.fromkeys(r.get("stage") for r in hist):
        rows = [r for r in hist if r.get("stage") == stage][-DEAD_WINDOW:]
        if len(rows) < min(DEAD_WINDOW, 5):
            continue
        keys = {k for r in rows for k in r if "/" in k and not _COUNTER.search(k)}
        for key in sorted(keys):
            vals = [r[key] for r in rows if key in r]
            if len(vals) < len(rows):
                continue
            task = key.split("/")[0]
            pos = [r.get(f"{task}/num_pos") for r in rows if r.get(f"{task}/num_pos") is not None]
            evidence = {"stage": stage, "component": key, "last_values": vals[-3:],
                        "num_pos_mean": fmean(pos) if pos else None, "steps": len(vals)}
            if all(v == 0 for v in vals):
                out.append(Finding("dead-loss", "error", f"{key} is exactly 0 for the last {len(vals)} steps"
                                   + (f" (assigner positives: mean {fmean(pos):.1f})" if pos else ""), evidence))
            elif max(vals) == min(vals):
                out.append(Finding("dead-loss", "warning", f"{key} is constant ({vals[0]:.6g}) for the last "
                                   f"{len(vals)} steps", evidence))
    return out


def overfit(rec: dict) -> list[Finding]:
    """``overfit-one-batch``: a task whose loss above its floor did not fall by 90% on one batch."""
    run = rec.get("overfit")
    if not run:
        return []
    out = []
    for task, r in run["tasks"].items():
        if r["fraction_left"] > 1 - OVERFIT_DROP:
            out.append(Finding("overfit-one-batch", "error",
                               f"cannot fit one batch: {task} loss above its floor fell only "
                               f"{100 * (1 - r['fraction_left']):.1f}% in {run['steps']} steps "
                               f"({r['initial']:.4g} -> {r['final']:.4g}; 90% needed)",
                               {"task": task, **r, "steps": run["steps"], "images": run["images"], "lr": run["lr"]}))
    return out


def positive_ratio(rec: dict) -> list[Finding]:
    """Positives : negatives of dense heads per level (from ``num_pos/P*`` and ``num_loc/P*``)."""
    out = []
    hist = rec.get("history") or []
    keys = sorted({k for r in hist for k in r if "/num_pos/P" in k})
    for key in keys:
        loc_key = key.replace("/num_pos/", "/num_loc/")
        rows = [r for r in hist if key in r and loc_key in r]
        if not rows:
            continue
        pos = sum(r[key] for r in rows)
        neg = sum(r[loc_key] - r[key] for r in rows)
        ratio = pos / neg if neg else float("inf")
        level = key.rsplit("/", 1)[1]
        evidence = {"level": level, "positives": pos, "negatives": neg, "ratio": ratio}
        if ratio < MIN_POS_RATIO:
            one_in = f"1:{neg / pos:.0f}" if pos else "no positives"
            out.append(Finding("positive-ratio", "warning" if pos else "error",
                               f"{key.split('/')[0]} at {level}: positives:negatives = {one_in} "
                               f"(below 1:{1 / MIN_POS_RATIO:.0f})", evidence))
    return out


def chance_level(rec: dict) -> list[Finding]:
    """Metrics not above chance; forgetting computed from a chance-level score is not meaningful."""
    out = []
    chance = rec.get("chance") or {}
    metrics = rec.get("metrics") or {}
    for key, c in chance.items():
        v = metrics.get(key)
        if v is not None and v <= c + 1e-9:
            out.append(Finding("chance-level", "warning", f"{key} = {v:.4g} is not above chance ({c:.4g})",
                               {"metric": key, "value": v, "chance": c}))
    for stage in (rec.get("stages") or [])[:-1]:
        key = PRIMARY[stage["task"]]
        just = stage["metrics"].get(key)
        if key in chance and just is not None and just <= chance[key] + 1e-9:
            out.append(Finding("chance-level", "warning",
                               f"forgetting of {stage['task']} is not meaningful: right after its stage "
                               f"{key} = {just:.4g} was at chance ({chance[key]:.4g})",
                               {"metric": key, "just_learned": just, "chance": chance[key], "not_meaningful":
                                f"forgetting/{stage['task']}"}))
    return out


def divergence(rec: dict) -> list[Finding]:
    """A cell stopped by a non-finite or exploding loss (the reason names step and learning rate)."""
    reason = rec.get("reason") or ""
    if rec.get("status") == "failed" and ("non-finite" in reason or "diverged" in reason):
        return [Finding("divergence", "error", reason.split(": ", 1)[-1], {"reason": reason})]
    return []


def gradient_conflict(rec: dict) -> list[Finding]:
    """Mean cosine similarity between task gradients on shared parameters (joint strategies)."""
    cos = (rec.get("extra") or {}).get("grad_cosine") or []
    if not cos:
        return []
    mean = fmean(cos)
    evidence = {"mean_cosine": mean, "min_cosine": min(cos), "samples": len(cos),
                "share_negative": sum(c < 0 for c in cos) / len(cos)}
    if mean < 0:
        return [Finding("gradient-conflict", "warning",
                        f"task gradients conflict: mean cosine {mean:.3f} over {len(cos)} steps", evidence)]
    return []


def task_weight_collapse(rec: dict) -> list[Finding]:
    """A learned task weight (GradNorm, uncertainty, DWA: ``extra.task_weights``) at ~0: below
    ``COLLAPSE_SHARE`` of the mean task weight at the end, or for at least ``COLLAPSE_STEPS`` of
    the steps. Such a task was switched off, not balanced, whatever its metric says."""
    traj = (rec.get("extra") or {}).get("task_weights") or []
    if not traj:
        return []
    out = []
    for task in traj[0]:
        shares = [w[task] / m if (m := fmean(w.values())) > 0 else 0.0 for w in traj]
        low = [i for i, sh in enumerate(shares) if sh < COLLAPSE_SHARE]
        if shares[-1] < COLLAPSE_SHARE or len(low) >= COLLAPSE_STEPS * len(traj):
            out.append(Finding("task-weight-collapse", "warning",
                               f"{task} weight at ~0 (< {COLLAPSE_SHARE:.1%} of the mean task weight) for "
                               f"{len(low)} of {len(traj)} steps, from step {low[0]}; ends at {traj[-1][task]:.3g}",
                               {"task": task, "steps_below": len(low), "steps": len(traj), "first_step": low[0],
                                "min_weight": min(w[task] for w in traj), "final_weight": traj[-1][task]}))
    return out


def implausible_speed(rec: dict) -> list[Finding]:
    """FPS x FLOPs/image above the device's measured dense matmul peak, or unsound timing."""
    prof = rec.get("profile") or {}
    out = []
    fps, flops, peak = prof.get("fps"), prof.get("flops_g"), prof.get("device_peak_gflops")
    if fps and flops and peak:
        achieved = fps * flops
        if achieved > SPEED_SLACK * peak:
            out.append(Finding("implausible-speed", "error",
                               f"{fps:.0f} FPS x {flops:.3g} GFLOPs = {achieved:.0f} GFLOP/s exceeds the device's "
                               f"measured peak {peak:.0f} GFLOP/s", {"achieved_gflops": achieved, "peak_gflops": peak}))
    if prof and (prof.get("latency_warmup") == 0 or prof.get("latency_synchronised") is False):
        out.append(Finding("implausible-speed", "warning", "latency measured without warm-up or synchronisation",
                           {"warmup": prof.get("latency_warmup"), "synchronised": prof.get("latency_synchronised")}))
    return out


CHECKS: dict[str, Callable[[dict], list[Finding]]] = {
    "overfit-one-batch": overfit, "dead-loss": dead_loss, "positive-ratio": positive_ratio,
    "chance-level": chance_level, "divergence": divergence, "gradient-conflict": gradient_conflict,
    "task-weight-collapse": task_weight_collapse, "implausible-speed": implausible_speed,
}


def diagnose(rec: dict) -> list[dict]:
    """Every check's findings for one cell record, as JSON-ready dicts."""
    return [f.as_dict() for check in CHECKS.values() for f in check(rec)]
