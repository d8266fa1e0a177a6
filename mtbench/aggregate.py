"""Seeds aggregate: cells that differ only in ``seed`` become one row of the table.

For every figure column of the per-cell table (:func:`mtbench.report.build_frame`) a group
of ``n`` seed cells gets the mean, the sample standard deviation (``ddof=1``) and the
two-sided Student-t confidence interval of the mean across seeds,
``mean -/+ t_{(1+level)/2, n-1} * std / sqrt(n)`` (the interval ``scipy.stats.t.interval``
gives; a zero spread gives a zero-width interval). A figure only ``ok`` cells contribute to;
``n`` counts the cells that have it. A group of one cell is that cell's row unchanged,
with its bootstrap CI over val images (no t-interval from one seed). Text columns (gates,
diagnostics, status, ...) are kept when every seed agrees, else listed per seed
(``s0: pass; s1: FAIL: ...``).

Frame columns: a figure ``X`` has ``X CI low`` / ``X CI high`` (both tables) and ``X std``
(aggregated table); ``seeds`` is the group's number of cells and ``CI method`` says which
interval the row carries.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
from scipy import stats

from mtbench.identity import seed_group

DEFAULT_LEVEL = 0.95
T_METHOD = "t over seeds"
BOOTSTRAP_METHOD = "bootstrap over val images"


def ci_columns(col: str) -> tuple[str, str]:
    """Names of the CI columns of figure column ``col``: ``(<col> CI low, <col> CI high)``."""
    return f"{col} CI low", f"{col} CI high"


def std_column(col: str) -> str:
    """Name of the across-seed standard deviation column of figure column ``col``."""
    return f"{col} std"


def seed_of(rec: dict) -> int | str | None:
    """The seed of a cell record: ``config.seed``, else ``axes.seed``, else None."""
    seed = (rec.get("config") or {}).get("seed")
    return seed if seed is not None else (rec.get("axes") or {}).get("seed")


def group_key(rec: dict) -> str:
    """What a cell is apart from its seed: :func:`mtbench.identity.seed_group` of its resolved
    config and stored identity (the ``--set`` texts it was run with, where its data lay and how
    it was loaded do not split a group; data fingerprints, plugins, ``profile`` and the other
    sections do).

    Falls back to its axes without ``seed``, then to its label without the ``|s<seed>``
    suffix (records without a stored config).
    """
    if rec.get("config"):
        return seed_group(rec["config"], rec.get("identity"))
    if rec.get("axes"):
        return json.dumps({k: v for k, v in rec["axes"].items() if k != "seed"}, sort_keys=True)
    return re.sub(r"\|s[^|]*$", "", rec["label"])


def _seed_order(seed) -> tuple:
    """Sort key of a seed: integers (stored as int or digit string) by value, then any other text."""
    text = str(seed)
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def group_label(recs: list[dict]) -> str:
    """``arch|loss|level|strategy|s0,1,2`` from the members' labels and seeds (in seed order,
    whatever order the cells finished in)."""
    seeds = sorted((seed_of(r) for r in recs), key=_seed_order)
    base = re.sub(r"\|s[^|]*$", "", recs[0]["label"])
    return f"{base}|s" + ",".join(str(s) for s in seeds)


def t_interval(values, level: float = DEFAULT_LEVEL) -> dict[str, float]:
    """Mean, std (ddof=1), n and the Student-t CI of the mean of ``values`` (NaNs dropped).

    :return: ``{"mean", "std", "n", "low", "high"}``; std and the interval are NaN when
        ``n < 2``.
    """
    x = pd.Series(values, dtype=float).dropna()
    frame = _summary(x.to_frame("v"), pd.Series(0, index=x.index), level)
    return {k: float(frame[k]["v"].iloc[0]) if len(frame[k]) else math.nan for k in ("mean", "std", "n", "low", "high")}


def _summary(values: pd.DataFrame, groups: pd.Series, level: float) -> dict[str, pd.DataFrame]:
    """Per group and column: mean, std (ddof=1), n, t-interval low/high (pandas, vectorised)."""
    g = values.groupby(groups, sort=False)
    mean, std, n = g.mean(), g.std(ddof=1), g.count()
    t = pd.DataFrame(stats.t.ppf((1 + level) / 2, (n - 1).where(n > 1)), index=n.index, columns=n.columns)
    half = t * std / np.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "low": mean - half, "high": mean + half}


def _combine_text(values: list, seeds: list) -> object:
    """One text cell for a group: the value when every seed agrees, else ``s<seed>: value`` per seed."""
    shown = ["-" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    if len({str(v) for v in shown}) == 1:
        return values[0]
    return "; ".join(f"s{s}: {v}" for s, v in zip(seeds, shown))


def aggregate_seeds(frame: pd.DataFrame, records: list[dict], figures: list[str],
                    level: float = DEFAULT_LEVEL) -> pd.DataFrame:
    """The per-cell table with cells that differ only in ``seed`` merged into one row.

    :param frame: the per-cell table, row ``i`` describing ``records[i]`` (``cell``,
        ``hash``, ``status`` and the figure columns with their CI columns).
    :param records: the cell records (for each row's seed and what it is apart from it).
    :param figures: the figure columns to aggregate (those in ``frame``).
    :param level: confidence level of the t-interval (0.95 = 95 %).
    :return: one row per group, in the order of each group's first cell: ``cell``, ``hash``
        (the members' hashes, space-separated), ``seeds``, ``CI method``, each figure ``X``
        as the mean with ``X std``, ``X CI low``, ``X CI high``, and the other columns of
        ``frame`` combined per :func:`_combine_text`.
    :raises ValueError: ``frame`` and ``records`` differ in length.
    """
    if len(frame) != len(records):
        raise ValueError(f"the table has {len(frame)} rows for {len(records)} records")
    if not len(frame):
        return frame.copy()
    frame = frame.reset_index(drop=True)
    figures = [c for c in figures if c in frame.columns]
    derived = {c for f in figures for c in (*ci_columns(f), std_column(f))}
    keys = pd.Series([group_key(r) for r in records])
    ok = frame["status"].eq("ok") if "status" in frame else pd.Series(True, index=frame.index)
    values = frame[figures].apply(pd.to_numeric, errors="coerce").where(ok)
    summary = _summary(values, keys, level)
    rows = []
    for key, members in keys.groupby(keys, sort=False).groups.items():
        members = list(members)
        if len(members) == 1:
            row = frame.iloc[members[0]].to_dict()
            has_ci = any(pd.notna(row.get(ci_columns(f)[0])) for f in figures)
            row.update({"seeds": 1, "CI method": BOOTSTRAP_METHOD if has_ci else None})
            rows.append(row)
            continue
        recs = [records[i] for i in members]
        seeds = [seed_of(r) for r in recs]
        row = {"cell": group_label(recs), "hash": " ".join(frame.loc[members, "hash"].astype(str)),
               "seeds": len(members), "CI method": T_METHOD}
        for col in frame.columns:
            if col in ("cell", "hash") or col in derived:
                continue
            if col in figures:
                lo, hi = ci_columns(col)
                row[col] = summary["mean"].at[key, col]
                row[std_column(col)] = summary["std"].at[key, col]
                row[lo], row[hi] = summary["low"].at[key, col], summary["high"].at[key, col]
            else:
                row[col] = _combine_text(frame.loc[members, col].tolist(), seeds)
        rows.append(row)
    out = pd.DataFrame(rows)
    lead = ["cell", "hash", "seeds"]
    order = lead + [c for c in frame.columns if c not in lead and c not in derived]
    placed = []
    for col in order:
        placed.append(col)
        if col in figures:
            placed += [c for c in (std_column(col), *ci_columns(col)) if c in out.columns]
    placed += [c for c in out.columns if c not in placed]
    return out[placed]
