"""Each row of a run against a baseline row, over seeds: which differences are beyond seed noise.

``mtbench report RUN --versus strategy=equal`` compares every group of seed cells (cells that
differ only in ``seed``, as :mod:`mtbench.aggregate` groups them) with the group that has the
same axes except ``strategy`` = ``equal`` (any axis works: ``--versus level=P3``,
``--versus architecture=yolo-mtl``). For every metric column of the table
(:func:`mtbench.report.columns` that read ``metrics``) both groups have:

- **test**: the paired t-test over the seeds both groups ran (``scipy.stats.ttest_rel``: seed
  ``s`` of both cells shares its initialisation and batch order, so the per-seed difference
  removes what the seed does to both), with its ``level`` confidence interval of the mean
  difference; with fewer than 2 common seeds, Welch's t-test over all seeds of each
  (``scipy.stats.ttest_ind(equal_var=False)``) where each has at least 2; otherwise no test.
- **multiplicity**: a table compares many rows with one baseline, so the p-values of one
  metric are adjusted over all rows together by Holm's step-down method (Holm 1979, "A simple
  sequentially rejective multiple test procedure", Scand. J. Statist. 6), which controls the
  family-wise error rate at ``1 - level``.
- **verdict**: ``better`` / ``worse`` (the metric's declared direction,
  :func:`mtbench.metrics.higher_is_better`; ``higher`` / ``lower`` for a metric that declares
  none) when the Holm-adjusted p is below ``1 - level``,
  ``tie`` otherwise (no difference beyond the seed noise at this many seeds: not a proof of
  equality); ``not meaningful`` when a diagnostic finding invalidates the metric in any seed of
  either group (:mod:`mtbench.diagnostics.binding`: a difference between two numbers at chance
  level ranks nothing) - such a row takes no part in the Holm adjustment; ``identical`` when
  every per-seed difference is 0, ``no spread`` when they are all the same other number (the
  t-test is undefined).

Only ``ok`` cells take part. Differences are in the metric's own units (fractions in [0, 1]).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from mtbench.aggregate import DEFAULT_LEVEL, group_key, group_label, seed_of
from mtbench.errors import UsageError
from mtbench.metrics import higher_is_better

#: columns of the long table :func:`versus` returns
COLUMNS = ["cell", "baseline", "metric", "seeds", "difference", "CI low", "CI high", "test", "p", "p (Holm)",
           "verdict"]


def parse_baseline(text: str, records: list[dict]) -> tuple[str, str]:
    """``"strategy=equal"`` -> ``("strategy", "equal")``, checked against the records' axes.

    :raises UsageError: no ``=``, an axis no record has (the known ones listed) or a value no
        ``ok`` record has on that axis (the values present listed).
    """
    axis, sep, value = text.partition("=")
    axis, value = axis.strip(), value.strip()
    if not sep or not axis or not value:
        raise UsageError(f"--versus {text!r}: expected AXIS=VALUE, e.g. strategy=equal")
    known = sorted({a for r in records for a in (r.get("axes") or {}) if a != "seed"})
    if axis not in known:
        raise UsageError(f"--versus {text!r}: no cell has axis {axis!r}; the run's axes: {', '.join(known) or 'none'}")
    values = sorted({str(r["axes"][axis]) for r in records if r.get("status") == "ok" and axis in (r.get("axes") or {})})
    if value not in values:
        raise UsageError(f"--versus {text!r}: no ok cell has {axis} = {value!r}; its values: {', '.join(values)}")
    return axis, value


def _others(rec: dict, axis: str) -> str:
    """What a cell is apart from ``axis`` and its seed (the key a baseline group is found by)."""
    return repr(sorted((k, str(v)) for k, v in (rec.get("axes") or {}).items() if k not in (axis, "seed")))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), NaNs kept and left out of the family.

    :param pvalues: float array-like ``(m,)`` of raw p-values.
    :return: float64 ``(m,)``: ``max_{j <= i} min(1, (k - j + 1) p_(j))`` at the position of the
        ``i``-th smallest of the ``k`` finite p-values.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    k = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((k - np.arange(k)) * p[order]))
    return out


def _test(a: dict, b: dict, level: float) -> dict:
    """Difference ``a - b`` of two ``{seed: value}`` groups: paired t over common seeds, else Welch."""
    common = [s for s in a if s in b]
    if len(common) >= 2:
        x, y = np.array([a[s] for s in common]), np.array([b[s] for s in common])
        d = x - y
        row = {"seeds": len(common), "difference": float(d.mean()), "test": "paired t"}
        if np.allclose(d, d[0], rtol=0, atol=1e-12):
            return {**row, "CI low": float(d[0]), "CI high": float(d[0]), "p": math.nan, "spread": False}
        res = stats.ttest_rel(x, y)
        ci = res.confidence_interval(level)
        return {**row, "CI low": float(ci.low), "CI high": float(ci.high), "p": float(res.pvalue), "spread": True}
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    row = {"seeds": f"{len(x)} vs {len(y)}", "difference": float(x.mean() - y.mean()) if len(x) and len(y) else math.nan}
    if len(x) < 2 or len(y) < 2:
        return {**row, "CI low": math.nan, "CI high": math.nan, "test": "none (< 2 seeds)", "p": math.nan,
                "spread": True}
    if x.std() == 0 and y.std() == 0:
        return {**row, "CI low": row["difference"], "CI high": row["difference"], "test": "Welch t", "p": math.nan,
                "spread": False}
    res = stats.ttest_ind(x, y, equal_var=False)
    ci = res.confidence_interval(level)
    return {**row, "CI low": float(ci.low), "CI high": float(ci.high), "test": "Welch t", "p": float(res.pvalue),
            "spread": True}


def versus(frame: pd.DataFrame, records: list[dict], baseline: str, level: float = DEFAULT_LEVEL) -> pd.DataFrame:
    """Every seed group of a run against its baseline group, metric by metric (module docstring).

    :param frame: the per-cell table of ``records`` (:func:`mtbench.report.build_frame`: row
        ``i`` describes ``records[i]``; its ``flags`` column says which numbers are invalidated).
    :param baseline: ``AXIS=VALUE`` (:func:`parse_baseline`).
    :param level: confidence level of the intervals; the tests are at ``1 - level``.
    :return: one row per (group, metric) with a baseline group: :data:`COLUMNS` (``cell`` and
        ``baseline`` are group labels ``arch|loss|level|strategy|s0,1,2``; ``difference`` is the
        group's mean minus the baseline's, with its interval), in the order of the groups' first
        cells, metrics in table order.
    :raises UsageError: see :func:`parse_baseline`.
    """
    from mtbench.report import columns, flagged, metric_of

    axis, value = parse_baseline(baseline, records)
    frame = frame.reset_index(drop=True)
    metric_cols = [(col, path[1]) for col, path, digits, *_ in columns(records)
                   if digits is not None and path[0] == "metrics" and len(path) == 2]
    directions = higher_is_better(records)
    key_of = metric_of(records)
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        if rec.get("status") == "ok" and rec.get("axes"):
            groups.setdefault(group_key(rec), []).append(i)
    base_of = {_others(records[m[0]], axis): key for key, m in groups.items()
               if str(records[m[0]]["axes"].get(axis)) == value}
    rows = []
    for key, members in groups.items():
        base_key = base_of.get(_others(records[members[0]], axis))
        if base_key is None or base_key == key:
            continue
        base = groups[base_key]
        for col, metric in metric_cols:
            vals = [{seed_of(records[i]): float(frame.at[i, col]) for i in m
                     if col in frame and pd.notna(frame.at[i, col])} for m in (members, base)]
            if not vals[0] or not vals[1]:
                continue
            bad = [c for i in (*members, *base) for c in flagged(frame.iloc[i]).get(key_of[col], [])]
            res = _test(vals[0], vals[1], level)
            verdict = ("not meaningful: " + ", ".join(dict.fromkeys(bad))) if bad else None
            if verdict is None and not res.pop("spread"):
                verdict = "identical" if res["difference"] == 0 else "no spread"
            res.pop("spread", None)
            rows.append({"cell": group_label([records[i] for i in members]),
                         "baseline": group_label([records[i] for i in base]), "metric": metric, **res,
                         "verdict": verdict, "_higher": directions.get(metric)})
    out = pd.DataFrame(rows, columns=[*COLUMNS, "_higher"])
    if not len(out):
        return out[COLUMNS]
    tested = out["verdict"].isna()
    out["p (Holm)"] = np.nan
    for metric, idx in out[tested].groupby("metric").groups.items():
        out.loc[idx, "p (Holm)"] = holm(out.loc[idx, "p"])
    alpha = 1.0 - level
    for i in out.index[tested]:
        p, diff, higher = out.at[i, "p (Holm)"], out.at[i, "difference"], out.at[i, "_higher"]
        if not (isinstance(p, float) and math.isfinite(p)):
            out.at[i, "verdict"] = "no test"
        elif p < alpha and higher is None:  # a metric that declares no direction: say which way it moved
            out.at[i, "verdict"] = "higher" if diff > 0 else "lower"
        elif p < alpha:
            out.at[i, "verdict"] = "better" if (diff > 0) == bool(higher) else "worse"
        else:
            out.at[i, "verdict"] = "tie"
    return out[COLUMNS]


def render_wide(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """One row per compared group, one column per metric: ``+0.0170 [-0.0200, +0.0540] tie (p 0.41)``
    (difference [CI] verdict (Holm-adjusted p)); ``-`` where a group lacks the metric."""
    if not len(table):
        return pd.DataFrame(columns=["cell"])

    def text(r) -> str:
        ci = "" if pd.isna(r["CI low"]) else f" [{r['CI low']:+.{digits}f}, {r['CI high']:+.{digits}f}]"
        p = "" if pd.isna(r["p (Holm)"]) else f" (p {r['p (Holm)']:.2g})"
        return f"{r['difference']:+.{digits}f}{ci} {r['verdict']}{p}"

    cells = table.assign(text=table.apply(text, axis=1))
    wide = cells.pivot_table(index="cell", columns="metric", values="text", aggfunc="first", sort=False)
    wide = wide.reindex(index=list(dict.fromkeys(table["cell"])), columns=list(dict.fromkeys(table["metric"])))
    wide.columns = [f"Δ {m}" for m in wide.columns]
    return wide.fillna("-").reset_index()


def render(table: pd.DataFrame, baseline: str, level: float = DEFAULT_LEVEL, markdown: bool = False) -> str:
    """The wide table (:func:`render_wide`) as text (tabulate ``simple``, or ``github`` for
    Markdown), with the legend naming the baseline, the tests and the adjustment."""
    from tabulate import tabulate

    from mtbench.report import escape_pipes

    if not len(table):
        return f"versus {baseline}: no group of cells has a baseline group to compare with"
    wide = render_wide(table)
    body = tabulate(escape_pipes(wide) if markdown else wide, headers="keys", tablefmt="github" if markdown else "simple",
                    showindex=False, disable_numparse=True)
    note = (f"difference from the `{baseline}` cell of the same setting: mean over seeds [{level:.0%} CI], "
            f"paired t-test over common seeds (Welch's where fewer than 2 are common), p Holm-adjusted per metric "
            f"over the rows; better/worse at p < {1 - level:.2g}, tie otherwise (not a proof of equality); "
            "not meaningful: a finding invalidates the metric in a seed of either cell")
    return body + ("\n\n" if markdown else "\n") + note
