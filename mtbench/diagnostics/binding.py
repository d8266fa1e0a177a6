"""Findings and what they invalidate: how a diagnostic changes the outcome of a cell.

A :class:`Finding` names the metric keys it invalidates (``invalidates``): the numbers that
do not measure what their names promise once the finding is true. The table marks those
numbers (``†`` and a legend; a ``flags`` column ``metric:check`` in the CSV), a gate on
one of them reads ``not meaningful`` (:mod:`mtbench.gates`), and ``mtbench run`` exits
with 3 (suspect result) when a gate is not meaningful or a cell has an ``error`` finding.

What each check invalidates (see each check's docstring):

| finding | invalidates |
|---|---|
| dead loss / missing component / absent positives / cannot fit one batch of task ``t`` | ``t``'s metrics and those derived from them (:func:`task_metrics`) |
| task weight collapsed or held at an extreme ratio | the starved task's metrics (same) |
| a score at chance | that metric; right after its own stage: ``forgetting/t``, ``forgetting``, ``BWT`` |
| implausible speed | ``fps``, ``latency_ms``, ``latency_p90_ms`` |
| reference-figure mismatch | ``params``, ``params_m`` or ``flops_g`` |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mtbench.metrics import headlines

SPEED_METRICS = ["fps", "latency_ms", "latency_p90_ms"]


@dataclass
class Finding:
    """One diagnostic result: which check, how bad, what it means, the numbers behind it, and
    the metric keys it invalidates (``severity``: ``"warning"`` | ``"error"``; an error makes
    the cell a suspect result, exit code 3)."""

    check: str
    severity: str
    message: str
    evidence: dict = field(default_factory=dict)
    invalidates: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def task_metrics(rec: dict, task: str) -> list[str]:
    """Every metric of ``task`` in the record (``t/...`` keys, the metrics the task declares in
    ``record["task_meta"]`` under other prefixes, e.g. the points task's ``points_mask/IoU``, and
    its headline metric) plus the cell metrics derived from them: ``delta_m`` (from the headline
    metric) and, when the cell trained sequentially, ``forgetting``, ``BWT`` and
    ``forgetting/<task>`` (a broken stage makes what the later stages did to earlier tasks a
    measurement of a broken run)."""
    declared = set(((rec.get("task_meta") or {}).get(task) or {}).get("metrics") or {})
    keys = {k for k in (rec.get("metrics") or {}) if k.startswith(f"{task}/") or k in declared}
    primary = headlines([rec])
    if task in primary:
        keys |= {primary[task], "delta_m"}
    stages = rec.get("stages") or []
    if any(s.get("task") == task for s in stages):
        keys |= {"forgetting", "BWT"} | ({f"forgetting/{task}"} if stages[-1].get("task") != task else set())
    return sorted(keys)


def invalidated(findings: list[dict]) -> dict[str, list[str]]:
    """``{metric: [check, ...]}`` over stored findings (dicts). Findings stored before
    ``invalidates`` existed bind through their ``evidence.not_meaningful`` key."""
    out: dict[str, list[str]] = {}
    for f in findings:
        keys = list(f.get("invalidates") or [])
        legacy = (f.get("evidence") or {}).get("not_meaningful")
        if legacy and not keys:
            keys = [legacy, "forgetting", "BWT"]
        for k in _with_siblings(keys):
            out.setdefault(k, [])
            if f["check"] not in out[k]:
                out[k].append(f["check"])
    return out


def _with_siblings(keys: list[str]) -> list[str]:
    """A forgetting figure invalidated invalidates its siblings from the same stage scores:
    ``forgetting`` -> ``forgetting_rel``, ``BWT``; ``forgetting/t`` -> ``forgetting_rel/t``, ``BWT/t``."""
    out = list(keys)
    for k in keys:
        head, _, task = k.partition("/")
        if head == "forgetting":
            out += [f"forgetting_rel/{task}", f"BWT/{task}"] if task else ["forgetting_rel", "BWT"]
    return list(dict.fromkeys(out))


def errors(findings: list[dict]) -> list[dict]:
    """The ``error``-severity findings (a cell with one is a suspect result)."""
    return [f for f in findings if f.get("severity") == "error"]
