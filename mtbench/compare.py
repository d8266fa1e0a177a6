"""Regression tracking: compare a run's results with a baseline's.

Cells are matched by config hash, else by label (so a baseline stays usable after a
change that alters hashes but not what a cell is). For every numeric metric and headline
profile figure the change new - baseline is reported, absolute and relative.

Fail rules (``--fail-on``), comma-separated, each ``METRIC OP THRESHOLD``:

- ``seg/mIoU<-0.02``: fail when the absolute change is below -0.02;
- ``latency_ms>+10%``: fail when the relative change is above +10 %;
- OP is ``<`` or ``>``; a ``%`` threshold compares the relative change.

A baseline cell missing from the new run, or ok in the baseline and failed in the new
run, is always a failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from mtbench.errors import MtbenchError

RULE_RE = re.compile(r"^\s*(?P<metric>[\w/\-@\[\].:]+)\s*(?P<op>[<>])\s*(?P<value>[-+]?[0-9.]+(?:[eE][-+]?\d+)?)(?P<pct>%?)\s*$")
PROFILE_KEYS = ("params", "flops_g", "latency_ms", "latency_p90_ms", "fps", "peak_mem_mib", "train_s")


@dataclass(frozen=True)
class Rule:
    metric: str
    op: str
    threshold: float
    relative: bool

    def violated(self, delta: float | None, rel: float | None) -> bool:
        value = rel if self.relative else delta
        if value is None:
            return False
        return value < self.threshold if self.op == "<" else value > self.threshold

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


def _match(new: list[dict], base: list[dict]) -> list[tuple[dict, dict | None]]:
    by_hash = {r["hash"]: r for r in new}
    by_label = {r["label"]: r for r in new}
    return [(b, by_hash.get(b["hash"]) or by_label.get(b["label"])) for b in base]


def compare(new: list[dict], base: list[dict], rules: list[Rule]) -> tuple[pd.DataFrame, list[str]]:
    """One row per (cell, metric): baseline, new, change, relative change, verdict.

    :return: ``(frame, failures)``; ``failures`` lists a sentence per violated rule.
    """
    rows, failures = [], []
    for b, n in _match(new, base):
        if n is None:
            failures.append(f"{b['label']}: missing from the new run")
            continue
        if b["status"] == "ok" and n["status"] != "ok":
            failures.append(f"{b['label']}: failed in the new run ({n.get('reason')})")
            continue
        bv, nv = _values(b), _values(n)
        for metric in sorted(set(bv) | set(nv)):
            old, cur = bv.get(metric), nv.get(metric)
            delta = cur - old if old is not None and cur is not None else None
            rel = delta / abs(old) if delta is not None and old else None
            broken = [r for r in rules if r.metric == metric and r.violated(delta, rel)]
            for r in broken:
                failures.append(f"{b['label']}: {metric} {old:.6g} -> {cur:.6g} violates {r}")
            rows.append({"cell": b["label"], "metric": metric, "baseline": old, "new": cur, "change": delta,
                         "change %": None if rel is None else 100 * rel,
                         "verdict": "FAIL" if broken else ""})
    return pd.DataFrame(rows), failures
