"""``chance-level``: a score that does not beat the chance level of its own val split.

Rule (issue 10): a score is *at chance* when its 95 % confidence interval overlaps the
chance level's (``record["ci"][m] = [lo, hi]``, ``record["chance_ci"][m] = [lo, hi]``,
:mod:`mtbench.metrics.chance`): for a higher-is-better metric, ``lo <= chance_hi``; no
epsilon. Records without intervals (stored before they existed) fall back to the point
values: at chance when ``value <= chance`` or the two are equal within ``RTOL`` relative,
which a float32 round trip survives (Top-1 = 6/60 stored as 0.10000000149 against a
chance of 0.1 is at chance). Per-stage scores use ``stage["ci"]`` when the stage has it.

Forgetting and BWT of a task whose score right after its own stage was at chance are not
meaningful (nothing learned, nothing to forget): the finding invalidates
``forgetting/<task>``, ``forgetting`` and ``BWT``.
"""

from __future__ import annotations

import math

from mtbench.diagnostics.binding import Finding
from mtbench.metrics import headlines, higher_is_better

RTOL = 1e-6  # float32 keeps ~7 significant digits (eps 1.2e-7)


def at_chance(metric: str, value: float, chance: float, ci: list | None = None,
              chance_ci: list | None = None, higher: bool = True) -> bool:
    """Whether ``value`` (with its CI ``[lo, hi]`` when known) is at the ``chance`` level (with
    its CI when known) of ``metric`` (``higher``: whether higher is better); see the module
    docstring for the rule."""
    lo, hi = ci if ci is not None else (value, value)
    c_lo, c_hi = chance_ci if chance_ci is not None else (chance, chance)
    score, level = (lo, c_hi) if higher else (hi, c_lo)
    if ci is None or chance_ci is None:  # a stored float32 point on one side: equal within RTOL is equal
        if math.isclose(score, level, rel_tol=RTOL):
            return True
    return score <= level if higher else score >= level


def _fmt_ci(ci) -> str:
    return f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""


def chance_level(rec: dict) -> list[Finding]:
    """Metrics at chance (invalidating themselves) and forgetting computed from a stage score
    at chance (invalidating ``forgetting/<task>``, ``forgetting``, ``BWT``)."""
    out = []
    chance = rec.get("chance") or {}
    chance_ci = rec.get("chance_ci") or {}
    cis = rec.get("ci") or {}
    metrics = rec.get("metrics") or {}
    directions = higher_is_better([rec])
    for key, c in chance.items():
        v = metrics.get(key)
        if v is None or not at_chance(key, v, c, cis.get(key), chance_ci.get(key), directions.get(key, True)):
            continue
        out.append(Finding("chance-level", "warning",
                           f"{key} = {v:.4g}{_fmt_ci(cis.get(key))} is at chance ({c:.4g}{_fmt_ci(chance_ci.get(key))})",
                           {"metric": key, "value": v, "chance": c, "ci": cis.get(key), "chance_ci": chance_ci.get(key)},
                           [key]))
    for stage in (rec.get("stages") or [])[:-1]:
        key = headlines([rec]).get(stage["task"])
        just = stage["metrics"].get(key)
        if key not in chance or just is None:
            continue
        ci = (stage.get("ci") or {}).get(key)
        if at_chance(key, just, chance[key], ci, chance_ci.get(key), directions.get(key, True)):
            task = stage["task"]
            out.append(Finding("chance-level", "warning",
                               f"forgetting of {task} is not meaningful: right after its stage {key} = "
                               f"{just:.4g}{_fmt_ci(ci)} was at chance ({chance[key]:.4g}{_fmt_ci(chance_ci.get(key))})",
                               {"metric": key, "just_learned": just, "chance": chance[key], "ci": ci,
                                "not_meaningful": f"forgetting/{task}"},
                               [f"forgetting/{task}", "forgetting", "BWT"]))
    return out
