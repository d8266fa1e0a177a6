"""delta-m: mean relative change of each task's metric against its single-task baseline.

``delta_m = 100 / T * sum_t (-1)^{l_t} (M_t - M_t^single) / M_t^single`` (Maninis et al.,
CVPR 2019; the form LibMTL reports), ``l_t = 1`` when lower is better (none of det mAP,
seg mIoU, cls Top-1), in percent. Positive = the multi-task model beats training alone.
A task whose single-task score is 0 is left out (no relative change exists).
"""

from __future__ import annotations

import json

from mtbench.metrics import HIGHER_IS_BETTER, PRIMARY


def delta_m(metrics: dict[str, float], single: dict[str, dict[str, float]]) -> float | None:
    """delta-m in percent from a cell's ``metrics`` and ``single[task]`` metrics of its baselines."""
    terms = []
    for task, base in single.items():
        key = PRIMARY[task]
        m, b = metrics.get(key), base.get(key)
        if m is None or not b:
            continue
        sign = 1 if HIGHER_IS_BETTER.get(key, True) else -1
        terms.append(sign * (m - b) / b)
    return 100 * sum(terms) / len(terms) if terms else None


def attach_delta_m(records: list[dict]) -> None:
    """Set ``metrics["delta_m"]`` on every ok multi-task record that has single-task baselines,
    and ``delta_m_from`` (the baselines' hashes), so a finding on a baseline reaches the delta-m."""
    def key(r):
        c = r["config"]
        return (json.dumps(c["architecture"], sort_keys=True), json.dumps(c["losses"], sort_keys=True),
                c["level"], c["seed"])

    ok = [r for r in records if r.get("status") == "ok" and "config" in r]
    singles: dict[tuple, dict[str, dict]] = {}
    hashes: dict[tuple, list[str]] = {}
    for r in ok:
        if r["config"]["strategy"]["name"] == "single-task":
            singles.setdefault(key(r), {})[r["config"]["strategy"]["params"]["task"]] = r["metrics"]
            hashes.setdefault(key(r), []).append(r["hash"])
    for r in ok:
        if r["config"]["strategy"]["name"] != "single-task" and key(r) in singles:
            value = delta_m(r["metrics"], singles[key(r)])
            if value is not None:
                r["metrics"]["delta_m"] = value
                r["delta_m_from"] = hashes[key(r)]

