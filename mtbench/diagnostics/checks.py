"""The loss-history, overfit and speed checks, and the built-in checks' registration (table:
package docstring).

Every check is a pure function ``check(record) -> list[Finding]``; each finding names the
metric keys it invalidates (:mod:`mtbench.diagnostics.binding`). The built-in checks register
through the hook ``mtbench_register_diagnostics`` like a plugin's; :func:`diagnose` runs every
registered one.
"""

from __future__ import annotations

import re
from statistics import fmean
from typing import Callable

from mtbench.diagnostics.binding import SPEED_METRICS, Finding, task_metrics
from mtbench.diagnostics.chance_level import at_chance, chance_level
from mtbench.diagnostics.data import dropped_annotations
from mtbench.diagnostics.reference import reference_figures
from mtbench.diagnostics.uncertainty import no_uncertainty
from mtbench.diagnostics.weights import task_weight_collapse
from mtbench.metrics import headlines, higher_is_better
from mtbench.plugins import Spec, hookimpl, reader_registry

DEAD_WINDOW = 20          # K: logged steps of the last window looked at by dead-loss (all 0 / constant)
DEAD_SHARE = 0.25         # dead-loss: a component 0 or missing, or no positives, in >= 25% of a stage's steps
MIN_POS_RATIO = 1 / 1000  # positive-ratio threshold (positives / negatives of one step at one level)
FIT_LEFT = 0.8            # overfit-one-batch: the loss above its floor must fall by >= 20% on the batch ...
MIN_INPUT_GAIN = 0.05     # ... and end >= 5% below the loss on the same batch with its images rolled
SPEED_SLACK = 1.5         # implausible when achieved FLOP/s > 1.5 x matmul peak
_COUNTER = re.compile(r"/(num_pos|num_loc|forced_pos|sigma|window|floor)(/|$)")  # counters and schedules, not losses


def _stages(hist: list[dict]) -> dict:
    return {st: [r for r in hist if r.get("stage") == st] for st in dict.fromkeys(r.get("stage") for r in hist)}


def _per_window(flags: list[bool]) -> list[int]:
    """How many flagged steps fall in each window of ``DEAD_WINDOW`` steps (where in the run)."""
    return [sum(flags[i:i + DEAD_WINDOW]) for i in range(0, len(flags), DEAD_WINDOW)]


def _component_findings(rec: dict, stage, task: str, rows: list[dict]) -> list[Finding]:
    n = len(rows)
    keys = {k for r in rows for k in r if k.startswith(f"{task}/") and not _COUNTER.search(k)}
    declared = {f"{task}/{c}" for c in (rec.get("loss_components") or {}).get(task, [])}
    out = []
    for key in sorted(keys | declared):
        vals = [r.get(key) for r in rows]
        missing = [v is None for v in vals]
        zero = [v == 0 for v in vals]
        base = {"stage": stage, "component": key, "steps": n}
        if all(missing):
            out.append(Finding("dead-loss", "error", f"{key} is never reported in stage {stage} ({n} steps), "
                               "though the loss declares it", base, task_metrics(rec, task)))
            continue
        if sum(missing) >= DEAD_SHARE * n:
            out.append(Finding("dead-loss", "error", f"{key} is missing in {sum(missing)} of {n} steps of stage {stage}",
                               {**base, "missing_steps": sum(missing), "missing_per_window": _per_window(missing)},
                               task_metrics(rec, task)))
            continue
        last = [v for v in vals[-DEAD_WINDOW:] if v is not None]
        if sum(zero) >= DEAD_SHARE * n or (len(last) >= min(DEAD_WINDOW, 5) and all(v == 0 for v in last)):
            out.append(Finding("dead-loss", "error", f"{key} is exactly 0 in {sum(zero)} of {n} steps of stage {stage}",
                               {**base, "zero_steps": sum(zero), "zero_per_window": _per_window(zero),
                                "last_values": last[-3:]}, task_metrics(rec, task)))
        elif len(last) >= min(DEAD_WINDOW, 5) and max(last) == min(last):
            out.append(Finding("dead-loss", "warning", f"{key} is constant ({last[0]:.6g}) for the last "
                               f"{len(last)} steps of stage {stage}", {**base, "last_values": last[-3:]}))
    return out


def dead_loss(rec: dict) -> list[Finding]:
    """A loss component that does not train its task, per stage and task, over every step:

    - exactly 0 in >= ``DEAD_SHARE`` of the steps, or in all of the last ``DEAD_WINDOW``;
    - missing (not reported) in >= ``DEAD_SHARE`` of the steps, or never reported though the
      loss declares it (``record["loss_components"]``, from the loss's ``components``);
    - the assigner's positives (``<task>/num_pos``) absent in >= ``DEAD_SHARE`` of the steps;
    - constant over the last ``DEAD_WINDOW`` steps (warning).

    Errors invalidate the task's metrics. Evidence counts the flagged steps per window of
    ``DEAD_WINDOW`` steps, so it shows where in the run it happened.
    """
    out = []
    for stage, rows in _stages(rec.get("history") or []).items():
        for task in dict.fromkeys(k.split("/")[0] for r in rows for k in r if k.endswith("/total")):
            trows = [r for r in rows if f"{task}/total" in r]
            if len(trows) < 5:
                continue
            out += _component_findings(rec, stage, task, trows)
            pos = [r.get(f"{task}/num_pos") for r in trows]
            if all(p is None for p in pos):
                continue
            none = [p == 0 for p in pos]
            if sum(none) >= DEAD_SHARE * len(trows):
                out.append(Finding("dead-loss", "error", f"{task}: the assigner found no positives in {sum(none)} of "
                                   f"{len(trows)} steps of stage {stage}",
                                   {"stage": stage, "task": task, "steps": len(trows), "steps_without_positives":
                                    sum(none), "per_window": _per_window(none),
                                    "num_pos_mean": fmean(p for p in pos if p is not None)},
                                   task_metrics(rec, task)))
    return out


def overfit(rec: dict) -> list[Finding]:
    """``overfit-one-batch`` (:mod:`.overfit`): per trained task, the copy must leave at most
    ``FIT_LEFT`` of its loss above the floor on the fixed batch, and that loss must be at least
    ``MIN_INPUT_GAIN`` below the loss on the same batch with its images rolled (a model that
    ignores its input scores 0: its outputs do not depend on the image). Error; invalidates the
    task's metrics. Records from before ``input_gain`` existed are judged on the fit alone.

    The check is a cheap forecast that the model cannot learn the task from its input; the
    trained cell's own val scores are the measurement. When every score of the task that has a
    measured chance level beats it by both CIs (:func:`refuting_scores`; the chance level pairs
    the model's predictions with other images' targets, so it too scores a model that ignores
    its input), the forecast is refuted: the finding stays, as a **warning** that invalidates
    nothing and names the scores that refute it (e.g. a soft-IoU loss started from a small
    target prior falls too slowly for the check's few steps, yet trains).
    """
    run = rec.get("overfit")
    if not run:
        return []
    out = []
    for task, r in run["tasks"].items():
        why = []
        if r["fraction_left"] > FIT_LEFT:
            why.append(f"its loss above the floor fell only {100 * (1 - r['fraction_left']):.1f}% "
                       f"({r['initial']:.4g} -> {r['final']:.4g}; {100 * (1 - FIT_LEFT):.0f}% needed)")
        gain = r.get("input_gain")
        if gain is not None and r.get("images", 2) > 1 and gain < MIN_INPUT_GAIN:
            why.append(f"it does not use its input: loss {r['final']:.4g} on the batch vs {r['rolled']:.4g} with "
                       f"the images rolled ({100 * gain:.1f}% lower; {100 * MIN_INPUT_GAIN:.0f}% needed)")
        if not why:
            continue
        message = (f"cannot fit one batch of {r.get('images', run['images'])} {task} images in "
                   f"{run['steps']} steps: " + "; ".join(why))
        evidence = {"task": task, **r, "steps": run["steps"], "lr": run["lr"]}
        refuted = refuting_scores(rec, task)
        if refuted:
            key = headlines([rec])[task]
            v = refuted[key]
            more = f", and {len(refuted) - 1} more" if len(refuted) > 1 else ""
            out.append(Finding("overfit-one-batch", "warning",
                               f"{message}; refuted by the trained model, whose every {task} score beats its "
                               f"measured chance by its CI ({key} {v['value']:.4g} [{v['ci'][0]:.4g}, "
                               f"{v['ci'][1]:.4g}] vs chance [{v['chance_ci'][0]:.4g}, {v['chance_ci'][1]:.4g}]"
                               f"{more}: evidence.refuted_by)", {**evidence, "refuted_by": refuted}))
        else:
            out.append(Finding("overfit-one-batch", "error", message, evidence, task_metrics(rec, task)))
    return out


def refuting_scores(rec: dict, task: str) -> dict[str, dict]:
    """The val scores of ``task`` that refute a forecast that it cannot learn: ``{metric:
    {"value", "ci", "chance_ci"}}`` for every metric of the task with a measured chance level,
    when each is outside its chance level's CI on the better side (:func:`at_chance` with both
    intervals) and the task's headline metric is among them; ``{}`` otherwise (a score at
    chance, a missing interval, a record from before chance levels, a failed cell)."""
    metrics, chance, cis, chance_cis = (rec.get(k) or {} for k in ("metrics", "chance", "ci", "chance_ci"))
    directions = higher_is_better([rec])
    keys = [k for k in task_metrics(rec, task) if k in chance and metrics.get(k) is not None]
    if headlines([rec]).get(task) not in keys:
        return {}
    out = {}
    for k in keys:
        if cis.get(k) is None or chance_cis.get(k) is None or at_chance(
                k, metrics[k], chance[k], cis[k], chance_cis[k], directions.get(k, True)):
            return {}
        out[k] = {"value": metrics[k], "ci": list(cis[k]), "chance_ci": list(chance_cis[k])}
    return out


def positive_ratio(rec: dict) -> list[Finding]:
    """Positives : negatives of dense heads per level and per step (``num_pos/P*``, ``num_loc/P*``):
    a finding when the ratio is below ``MIN_POS_RATIO`` in >= ``DEAD_SHARE`` of the steps (an error,
    invalidating the task's metrics, when some of those steps had no positive at all)."""
    out = []
    hist = rec.get("history") or []
    for key in sorted({k for r in hist for k in r if "/num_pos/P" in k}):
        loc_key = key.replace("/num_pos/", "/num_loc/")
        rows = [r for r in hist if key in r and loc_key in r]
        if not rows:
            continue
        ratios = [r[key] / (r[loc_key] - r[key]) if r[loc_key] > r[key] else float("inf") for r in rows]
        below = [x < MIN_POS_RATIO for x in ratios]
        if sum(below) < DEAD_SHARE * len(rows):
            continue
        task, level = key.split("/")[0], key.rsplit("/", 1)[1]
        pos, neg = sum(r[key] for r in rows), sum(r[loc_key] - r[key] for r in rows)
        empty = sum(r[key] == 0 for r in rows)
        worst = min(ratios)
        evidence = {"level": level, "steps": len(rows), "steps_below": sum(below), "steps_without_positives": empty,
                    "below_per_window": _per_window(below), "worst_ratio": worst, "positives": pos,
                    "negatives": neg, "ratio": pos / neg if neg else float("inf")}
        out.append(Finding("positive-ratio", "error" if empty else "warning",
                           f"{task} at {level}: positives:negatives below 1:{1 / MIN_POS_RATIO:.0f} in {sum(below)} of "
                           f"{len(rows)} steps (worst {f'1:{1 / worst:.0f}' if worst > 0 else 'no positives'}"
                           f"{f', {empty} steps without positives' if empty else ''})",
                           evidence, task_metrics(rec, task) if empty else []))
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


def implausible_speed(rec: dict) -> list[Finding]:
    """FPS x FLOPs/image above the device's measured dense matmul peak (error), or latency measured
    without warm-up or synchronisation (warning); both invalidate ``fps`` and the latencies."""
    prof = rec.get("profile") or {}
    out = []
    fps, flops, peak = prof.get("fps"), prof.get("flops_g"), prof.get("device_peak_gflops")
    if fps and flops and peak:
        achieved = fps * flops
        if achieved > SPEED_SLACK * peak:
            out.append(Finding("implausible-speed", "error",
                               f"{fps:.0f} FPS x {flops:.3g} GFLOPs = {achieved:.0f} GFLOP/s exceeds the device's "
                               f"measured peak {peak:.0f} GFLOP/s", {"achieved_gflops": achieved, "peak_gflops": peak},
                               SPEED_METRICS))
    if prof and (prof.get("latency_warmup") == 0 or prof.get("latency_synchronised") is False):
        out.append(Finding("implausible-speed", "warning", "latency measured without warm-up or synchronisation",
                           {"warmup": prof.get("latency_warmup"), "synchronised": prof.get("latency_synchronised")},
                           SPEED_METRICS))
    return out


CHECKS: dict[str, Callable[[dict], list[Finding]]] = {
    "overfit-one-batch": overfit, "dead-loss": dead_loss, "positive-ratio": positive_ratio,
    "chance-level": chance_level, "divergence": divergence, "gradient-conflict": gradient_conflict,
    "task-weight-collapse": task_weight_collapse, "implausible-speed": implausible_speed,
    "reference-figures": reference_figures, "dropped-annotations": dropped_annotations,
    "no-uncertainty": no_uncertainty,
}
#: Checks that read the loss history, which ``results.json`` does not keep: ``mtbench doctor``
#: shows their stored findings when the history is absent.
HISTORY_CHECKS = ("dead-loss", "positive-ratio")


@hookimpl
def mtbench_register_diagnostics():
    return [Spec("diagnostic", name, check, (check.__doc__ or "").strip().split("\n")[0])
            for name, check in CHECKS.items()]


def checks() -> dict[str, Callable[[dict], list[Finding]]]:
    """Every registered check by name: the active registry's (:func:`mtbench.plugins.use_registry`,
    a run's plugins included), else the built-in ones."""
    return {name: entry.spec.factory for name, entry in reader_registry().entries["diagnostic"].items()}


def diagnose(rec: dict) -> list[dict]:
    """Every registered check's findings for one cell record, as JSON-ready dicts."""
    return [f.as_dict() for check in checks().values() for f in check(rec)]


def rediagnose(rec: dict) -> tuple[list[dict], bool]:
    """Findings of a stored record with the current checks, for ``mtbench doctor``.

    :return: ``(findings, stored)``: when the record has no loss history (``results.json``
        strips it), the history checks cannot re-run, so their findings are the ones stored
        with the record (``record["diagnostics"]``) and ``stored`` is True. Findings of a check
        that is not registered here (a plugin's, not installed) are kept as stored.
    """
    known = checks()
    foreign = [f for f in rec.get("diagnostics") or [] if f.get("check") not in known]
    if rec.get("history"):
        return foreign + diagnose(rec), False
    fresh = [f.as_dict() for name, check in known.items() if name not in HISTORY_CHECKS for f in check(rec)]
    kept = [f for f in rec.get("diagnostics") or [] if f.get("check") in HISTORY_CHECKS]
    return foreign + kept + fresh, True
