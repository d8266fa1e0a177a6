"""Tables derived from stored results: the console table (tabulate), CSV, JSON and Markdown.

Column names are the field's terms: mAP@[.5:.95], AP50, mIoU, Top-1, forgetting, BWT, delta-m.
Fractions stay in [0, 1]; a missing value is shown as ``-``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from mtbench.gates import check_gates
from mtbench.metrics.delta_m import attach_delta_m
from mtbench.results import write_json_atomic

#: (column, where in the record, digits (None: a text column)[, scale])
COLUMNS = [
    ("det mAP@[.5:.95]", ("metrics", "det/mAP"), 4),
    ("det AP50", ("metrics", "det/AP50"), 4),
    ("seg mIoU", ("metrics", "seg/mIoU"), 4),
    ("cls Top-1", ("metrics", "cls/Top-1"), 4),
    ("points Pd", ("metrics", "points/Pd"), 4),
    ("points FA/img", ("metrics", "points/FA_per_image"), 3),
    ("points F1", ("metrics", "points/F1"), 4),
    ("points Pd-FA AUC", ("metrics", "points/Pd_FA_AUC"), 4),
    ("forgetting", ("metrics", "forgetting"), 3),
    ("forgetting (rel)", ("metrics", "forgetting_rel"), 3),
    ("BWT", ("metrics", "BWT"), 4),
    ("delta-m (%)", ("metrics", "delta_m"), 2),
    ("delta-m convention", ("delta_m_convention",), None),
    ("params (M)", ("profile", "params_m"), 3),
    ("GFLOPs", ("profile", "flops_g"), 2),
    ("latency p50 (ms)", ("profile", "latency_ms"), 1),
    ("FPS", ("profile", "fps"), 1),
    ("ONNX latency p50 (ms)", ("profile", "runtimes", "onnx", "latency_ms"), 1),
    ("ONNX parity", ("profile", "runtimes", "onnx", "parity_max_abs"), 7),
    ("peak mem (MiB)", ("profile", "peak_mem_mib"), 0),
    ("train (s)", ("profile", "train_s"), 0),
]


def _dig(rec: dict, path: tuple):
    for key in path:
        if not isinstance(rec, dict):
            return None
        rec = rec.get(key)
    return rec


def gate_values(rec: dict) -> dict:
    """The values gates may name: every metric and profile figure of a record."""
    values = dict(rec.get("metrics") or {})
    values.update({k: v for k, v in (rec.get("profile") or {}).items() if not isinstance(v, dict)})
    return values


def build_frame(records: list[dict], gates: list[str], delta_m: str | None = None) -> pd.DataFrame:
    """One row per cell record, in the given order (delta-m attached where baselines exist).

    :param delta_m: the delta-m convention (``headline``/``all``, the suite's ``delta_m``);
        ``None``: the one stored in each record's config.
    """
    attach_delta_m(records, delta_m)
    rows = []
    for rec in records:
        row = {"cell": rec["label"], "hash": rec["hash"]}
        for col, path, digits, *scale in COLUMNS:
            v = _dig(rec, path)
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            if digits is None:  # a text column
                row[col] = v if isinstance(v, str) else None
            else:
                row[col] = round(v * (scale[0] if scale else 1), digits) if num else None
        findings = rec.get("diagnostics") or []
        not_meaningful = {f["evidence"]["not_meaningful"] for f in findings if "not_meaningful" in f.get("evidence", {})}
        gate_res = check_gates(gates, gate_values(rec), not_meaningful) if rec["status"] == "ok" else {}
        fails = [g for g, r in gate_res.items() if r == "FAIL"]
        moot = [g for g, r in gate_res.items() if r == "not meaningful"]
        if fails:
            row["gates"] = "FAIL: " + "; ".join(fails)
        elif moot:
            row["gates"] = "not meaningful: " + "; ".join(moot)
        else:
            row["gates"] = "pass" if gate_res else "-"
        row["diagnostics"] = "; ".join(dict.fromkeys(f["check"] for f in findings)) or "-"
        row["status"] = rec["status"] if rec["status"] == "ok" else f"failed: {rec.get('reason')}"[:120]
        rows.append(row)
    return pd.DataFrame(rows)


def _with_none(frame: pd.DataFrame) -> pd.DataFrame:
    """NaN -> None, so tabulate prints its ``missingval``."""
    return frame.astype(object).where(frame.notna(), None)


def _markdown(frame: pd.DataFrame) -> str:
    """The Markdown table of ``results.md``/``report.md``: like the console, without empty columns."""
    shown = _with_none(frame.drop(columns=["hash"]).dropna(axis=1, how="all"))
    return tabulate(shown, headers="keys", tablefmt="github", showindex=False, missingval="-")


def render(frame: pd.DataFrame) -> str:
    """The console table: empty columns (a task the suite does not have) are dropped."""
    shown = _with_none(frame.drop(columns=["hash"]).dropna(axis=1, how="all"))
    return tabulate(shown, headers="keys", tablefmt="github", showindex=False, floatfmt="g", missingval="-")


def write_outputs(frame: pd.DataFrame, records: list[dict], out_dir: Path, suite: str) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json`` (the full records) and ``results.md`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "results.csv", "json": out_dir / "results.json", "md": out_dir / "results.md"}
    tmp = paths["csv"].with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(paths["csv"])
    slim = [{k: v for k, v in r.items() if k != "history"} for r in records]
    write_json_atomic(paths["json"], {"suite": suite, "cells": slim})
    md = f"# {suite}\n\n" + _markdown(frame) + "\n"
    paths["md"].write_text(md)
    return paths


def write_report(records: list[dict], out_dir: Path, title: str, gates: list[str] | None = None) -> Path:
    """``report.md`` in ``out_dir``: the table, failure reasons, and the plots (PNG beside it)."""
    from mtbench.plots import plot_all

    frame = build_frame(records, gates or [])
    plots = plot_all(records, out_dir)
    lines = [f"# {title}", "", _markdown(frame), ""]
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines += ["## Failed cells", ""] + [f"- `{r['label']}`: {r.get('reason')}" for r in failed] + [""]
    captions = {"pareto": "Accuracy vs latency (Pareto front)", "loss_curves": "Loss curves",
                "task_weights": "Task-weight trajectories", "stages": "Per-stage scores (sequential)"}
    for name, path in plots.items():
        lines += [f"## {captions[name]}", "", f"![{name}]({path.name})", ""]
    out = out_dir / "report.md"
    out.write_text("\n".join(lines))
    return out


def any_gate_failed(frame: pd.DataFrame) -> bool:
    return bool(frame["gates"].astype(str).str.startswith("FAIL").any()) if len(frame) else False


def load_records(path: Path) -> list[dict]:
    """Records of a run: its ``cells/`` folder, else its ``results.json``, else loose cell JSONs.

    ``path`` may be a run folder (``results/<suite>``), a ``results.json`` or a ``cells`` folder.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "cells").is_dir():
            path = path / "cells"
        elif (path / "results.json").is_file():
            return json.loads((path / "results.json").read_text())["cells"]
        return [json.loads(p.read_text()) for p in sorted(path.glob("*.json"))]
    return json.loads(path.read_text())["cells"]
