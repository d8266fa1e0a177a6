"""Regression tracking: compare a run's results with a baseline's.

Cells are matched by config hash, else by label (so a baseline stays usable after a
change that alters hashes but not what a cell is). For every numeric metric and headline
profile figure the change new - baseline is reported, absolute and relative.

Fail rules (``--fail-on``), comma-separated, each ``METRIC OP THRESHOLD``:

- ``seg/mIoU<-0.02``: fail when the absolute change is below -0.02;
- ``latency_ms>+10%``: fail when the relative change is above +10 %;
- OP is ``<`` or ``>``; a ``%`` threshold compares the relative change.

Significance: every change carries a 95 % CI. When both records stored per-image samples
of the same val images (``record["samples"]``), the CI is a paired bootstrap over those
images (:func:`mtbench.metrics.base.paired_bootstrap_ci`: the same resample scores both
runs) and were trained with the same seed; otherwise (e.g. runs of different seeds, whose
difference includes training noise that a paired CI, holding both models fixed, cannot see), when both stored a CI of the value (``ci``, ``latency_ms_ci``, ``fps_ci``),
an unpaired normal approximation from the two half-widths. A rule fires only when the change
is beyond its threshold AND its CI excludes 0 ("beyond noise"); a change without any CI is
judged on its threshold alone and says so (``ci: none``).

Timing figures (``latency_ms``, ``fps``) carry order-statistic CIs of their own series: they
hold the run's timing noise, not the run-to-run variation of a machine (frequency, load, a new
process), so their CIs are marked ``within-run`` and a change beyond them is reported apart
from the quality metrics' significant changes (a rule on them still fires on threshold + CI).

A baseline cell missing from the new run, failed in the baseline, or ok in the baseline and
failed in the new run is always a failure; so is a new cell without a baseline. A rule naming
a metric that no cell of either run has is an error (a typo must not disable a gate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtbench.errors import MtbenchError, did_you_mean
from mtbench.metrics.base import paired_bootstrap_ci, reducer_of

Z95 = 1.959963984540054
_SEED_RE = re.compile(r"\|s-?\d+$")

RULE_RE = re.compile(r"^\s*(?P<metric>[\w/\-@\[\].:]+)\s*(?P<op>[<>])\s*(?P<value>[-+]?[0-9.]+(?:[eE][-+]?\d+)?)(?P<pct>%?)\s*$")
PROFILE_KEYS = ("params", "flops_g", "latency_ms", "latency_p90_ms", "fps", "peak_mem_mib", "train_s")
TIMING_KEYS = ("latency_ms", "fps")  # CIs of one timing series: within-run noise only


@dataclass(frozen=True)
class Rule:
    metric: str
    op: str
    threshold: float
    relative: bool

    def violated(self, delta: float | None, rel: float | None, ci: tuple[float, float] | None = None) -> bool:
        """Beyond the threshold and, when the change has a CI, beyond noise (CI excludes 0)."""
        value = rel if self.relative else delta
        if value is None:
            return False
        beyond = value < self.threshold if self.op == "<" else value > self.threshold
        return beyond and (ci is None or not ci[0] <= 0.0 <= ci[1])

    def __str__(self) -> str:
        t = f"{self.threshold * 100:+g}%" if self.relative else f"{self.threshold:+g}"
        return f"{self.metric}{self.op}{t}"


def parse_rules(text: str | None) -> list[Rule]:
    """Parse ``"seg/mIoU<-0.02,latency_ms>+10%"``.

    :raises MtbenchError: a rule that does not parse, naming it.
    """
    rules = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        m = RULE_RE.match(part)
        if not m:
            raise MtbenchError(f"--fail-on rule {part!r} is not METRIC<NUMBER or METRIC>NUMBER[%] "
                               f"(e.g. 'seg/mIoU<-0.02,latency_ms>+10%')")
        value = float(m["value"])
        rules.append(Rule(m["metric"], m["op"], value / 100 if m["pct"] else value, bool(m["pct"])))
    return rules


def _values(rec: dict) -> dict[str, float]:
    vals = {k: v for k, v in (rec.get("metrics") or {}).items() if isinstance(v, (int, float))}
    prof = rec.get("profile") or {}
    vals.update({k: prof[k] for k in PROFILE_KEYS if isinstance(prof.get(k), (int, float))})
    return vals


def _seedless(label: str) -> str:
    return _SEED_RE.sub("", label)


def match_cells(new: list[dict], base: list[dict]) -> list[tuple[dict, dict | None]]:
    """Each baseline cell with its new cell: same hash, else same label, else same label but
    for the seed (a run of the same suite with another seed)."""
    by_hash = {r["hash"]: r for r in new}
    by_label = {r["label"]: r for r in new}
    by_seedless: dict[str, dict] = {}
    for r in new:
        by_seedless.setdefault(_seedless(r["label"]), r)
    return [(b, by_hash.get(b["hash"]) or by_label.get(b["label"]) or by_seedless.get(_seedless(b["label"])))
            for b in base]


def _paired_cis(n: dict, b: dict, metrics: list[str], seed: int = 0) -> dict[str, tuple[float, float]]:
    """Paired bootstrap CIs of new - base for metrics both records can recompute per image."""
    out: dict[str, tuple[float, float]] = {}
    if (n.get("config") or {}).get("seed") != (b.get("config") or {}).get("seed"):
        return out  # two trainings: the paired CI holds the models fixed and would call seed noise real
    ns, bs = n.get("samples") or {}, b.get("samples") or {}
    for task in set(ns) & set(bs):
        if ns[task].get("metric") != bs[task].get("metric"):
            continue
        try:
            reduce = reducer_of(bs[task])
            cols_n, cols_b = ns[task]["columns"], bs[task]["columns"]
            keys = [m for m in metrics if m in reduce(cols_b, np.arange(1))]
            if keys:
                resamples = int((b.get("uncertainty") or {}).get("resamples", 200))
                out.update(paired_bootstrap_ci(reduce, cols_n, cols_b, keys, resamples=resamples, seed=seed))
        except (ValueError, KeyError, IndexError):
            continue  # different images or unloadable metric: fall back to the unpaired CI
    return out


def _ci_of(rec: dict, metric: str) -> list | None:
    prof = rec.get("profile") or {}
    ci = (rec.get("ci") or {}).get(metric) or prof.get(f"{metric}_ci")
    return ci if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci else None


def _unpaired_ci(n: dict, b: dict, metric: str, delta: float) -> tuple[float, float] | None:
    """Normal approximation: half-width sqrt(h_new^2 + h_base^2) from each value's 95 % CI."""
    cn, cb = _ci_of(n, metric), _ci_of(b, metric)
    if cn is None or cb is None:
        return None
    half = float(np.hypot((cn[1] - cn[0]) / 2, (cb[1] - cb[0]) / 2))
    return delta - half, delta + half


def check_rule_metrics(rules: list[Rule], records: list[dict]) -> None:
    """:raises MtbenchError: a rule naming a metric that no cell has (listing the known ones)."""
    known = sorted(set().union(*(_values(r) for r in records))) if records else []
    for r in rules:
        if r.metric not in known:
            raise MtbenchError(f"--fail-on rule {r} names metric {r.metric!r}, which no cell has."
                               f"{did_you_mean(r.metric, known)} Known: {', '.join(known)}")


def compare(new: list[dict], base: list[dict], rules: list[Rule]) -> tuple[pd.DataFrame, list[str]]:
    """One row per (cell, metric): baseline, new, change, relative change, its 95 % CI, verdict.

    :return: ``(frame, failures)``; ``failures`` lists a sentence per violated rule or
        missing/failed cell.
    :raises MtbenchError: a rule names a metric no cell has.
    """
    check_rule_metrics(rules, new + base)
    rows, failures = [], []
    matched = set()
    for b, n in match_cells(new, base):
        if b.get("status") != "ok":
            failures.append(f"{b['label']}: the baseline cell failed ({b.get('reason')}); re-make the baseline")
            continue
        if n is None:
            failures.append(f"{b['label']}: missing from the new run")
            continue
        matched.add(id(n))
        if n["status"] != "ok":
            failures.append(f"{b['label']}: failed in the new run ({n.get('reason')})")
            continue
        bv, nv = _values(b), _values(n)
        names = sorted(set(bv) | set(nv))
        paired = _paired_cis(n, b, names)
        for metric in names:
            old, cur = bv.get(metric), nv.get(metric)
            delta = cur - old if old is not None and cur is not None else None
            rel = delta / abs(old) if delta is not None and old else None
            ci, kind = (paired[metric], "paired") if metric in paired else (None, "none")
            if ci is None and delta is not None:
                ci = _unpaired_ci(n, b, metric, delta)
                kind = ("within-run" if metric in TIMING_KEYS else "unpaired") if ci else "none"
            significant = None if ci is None else not ci[0] <= 0.0 <= ci[1]
            broken = [r for r in rules if r.metric == metric and r.violated(delta, rel, ci)]
            for r in broken:
                failures.append(f"{b['label']}: {metric} {old:.6g} -> {cur:.6g} violates {r}"
                                + (f" (change CI [{ci[0]:+.4g}, {ci[1]:+.4g}] excludes 0)" if ci else " (no CI)"))
            rows.append({"cell": b["label"], "metric": metric, "baseline": old, "new": cur, "change": delta,
                         "change %": None if rel is None else 100 * rel,
                         "change CI": "-" if ci is None else f"[{ci[0]:+.4g}, {ci[1]:+.4g}]", "ci": kind,
                         "significant": {None: "-", True: "yes", False: "no"}[significant],
                         "verdict": "FAIL" if broken else ""})
    for n in new:
        if id(n) not in matched:
            failures.append(f"{n['label']}: no baseline cell to compare with; re-make the baseline")
    return pd.DataFrame(rows), failures
