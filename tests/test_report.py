"""`mtbench report` and the tables: CIs beside every figure, seeds aggregated, plots with error bars."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from mtbench.aggregate import t_interval
from mtbench.cli import main
from mtbench.plots import draw_pareto, pareto_front, pareto_table, plot_pareto
from tests.conftest import TINY_SUITE


def test_pareto_front():
    pts = [(10, 0.5), (5, 0.4), (20, 0.45), (12, 0.6), (5, 0.3)]
    assert pareto_front(pts) == [(5, 0.4), (10, 0.5), (12, 0.6)]


def _records():
    hist = [{"step": i, "seg/total": 2.0 / (i + 1), "cls/total": 1.0 / (i + 1)} for i in range(20)]
    stages = [{"task": "seg", "metrics": {"seg/mIoU": 0.5}},
              {"task": "cls", "metrics": {"seg/mIoU": 0.3, "cls/Top-1": 0.8}}]
    base = {"status": "ok", "history": hist, "profile": {"latency_ms": 10.0, "params_m": 1.0}}
    return [
        {**base, "label": "joint", "hash": "a", "metrics": {"seg/mIoU": 0.45, "cls/Top-1": 0.7}, "stages": [],
         "extra": {"task_weights": [{"seg": 1.0, "cls": 1.0}, {"seg": 1.2, "cls": 0.8}]}},
        {**base, "label": "seq", "hash": "b", "metrics": {"seg/mIoU": 0.3, "cls/Top-1": 0.8}, "stages": stages,
         "profile": {"latency_ms": 8.0}},
        {"label": "broken", "hash": "c", "status": "failed", "reason": "ValueError: x", "metrics": {}},
    ]


def test_report_writes_markdown_and_pngs(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"suite": "s", "cells": _records()}))
    assert main(["report", str(tmp_path / "results.json")]) == 0
    md = (tmp_path / "report.md").read_text()
    for name in ("pareto", "loss_curves", "task_weights", "stages"):
        assert f"({name}.png)" in md
        with Image.open(tmp_path / f"{name}.png") as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] > 300
    assert "`broken`: ValueError: x" in md


def test_findings_mark_numbers_and_bind_gates(tmp_path):
    """An invalidated number gets a † in the console and Markdown tables with a legend, a
    ``metric:check`` entry in the CSV's flags, and its gate reads "not meaningful"; a finding on a
    single-task baseline reaches the delta-m computed from it."""
    from mtbench.report import build_frame, render, write_outputs

    def rec(h, strategy, params, metrics, diagnostics=()):
        cfg = {"architecture": {"name": "a"}, "losses": {}, "level": "P4", "seed": 0,
               "strategy": {"name": strategy, "params": params}}
        return {"label": h, "hash": h, "status": "ok", "config": cfg, "metrics": metrics,
                "profile": {"fps": 3.6e6, "latency_ms": 0.1, "params_m": 1.0}, "diagnostics": list(diagnostics)}

    dead = {"check": "dead-loss", "severity": "error", "message": "cls/ce is 0", "evidence": {},
            "invalidates": ["cls/Top-1", "delta_m"]}
    speed = {"check": "implausible-speed", "severity": "error", "message": "3.6M FPS", "evidence": {},
             "invalidates": ["fps", "latency_ms", "latency_p90_ms"]}
    records = [rec("joint", "equal", {}, {"cls/Top-1": 0.8, "seg/mIoU": 0.5}, [speed]),
               rec("single-cls", "single-task", {"task": "cls"}, {"cls/Top-1": 0.7}, [dead]),
               rec("single-seg", "single-task", {"task": "seg"}, {"seg/mIoU": 0.4})]
    frame = build_frame(records, ["fps > 10", "params < 8e6", "cls/Top-1 > 0.5"])
    assert frame.loc[0, "flags"] == "delta_m:dead-loss; fps:implausible-speed; latency_ms:implausible-speed"
    assert frame.loc[0, "gates"] == "not meaningful: fps > 10"
    assert frame.loc[1, "gates"] == "not meaningful: cls/Top-1 > 0.5" and frame.loc[1, "flags"] == "cls/Top-1:dead-loss"
    assert frame.loc[2, "gates"] == "pass" and frame.loc[2, "flags"] == ""
    text = render(frame)
    assert "3.6e+06†" in text and "0.7†" in text and "0.8†" not in text
    assert "- joint: delta_m (dead-loss), fps (implausible-speed), latency_ms (implausible-speed)" in text
    paths = write_outputs(frame, records, tmp_path, "s")
    assert "† invalidated by a diagnostic finding" in paths["md"].read_text()
    import pandas as pd
    csv = pd.read_csv(paths["csv"])
    assert csv.loc[0, "FPS"] == 3.6e6 and csv.loc[0, "flags"].startswith("delta_m:dead-loss")


# --- CIs beside every figure, seeds aggregated, plots with error bars (issue 10, items 2 and 7) ---

SEED_MIOU = [0.40, 0.43, 0.47]  # seg/mIoU of the three seeds of cell "a"


def _cell(arch: str, seed: int, miou: float, latency: float, ok: bool = True) -> dict:
    """A stored record in the format evaluation writes: metrics with ``ci``, chance, latency CI."""
    config = {"architecture": {"name": arch}, "losses": {"seg": "ce"}, "level": "P4",
              "strategy": {"name": "equal", "params": {}}, "seed": seed}
    return {
        "label": f"{arch}|ce|P4|equal|s{seed}", "hash": f"{arch}{seed}", "config": config,
        "axes": {"architecture": arch, "loss": "ce", "level": "P4", "strategy": "equal", "seed": str(seed)},
        "status": "ok" if ok else "failed", "reason": None if ok else "RuntimeError: boom",
        "metrics": {"seg/mIoU": miou, "cls/Top-1": 0.5} if ok else {},
        "ci": {"seg/mIoU": [miou - 0.032, miou + 0.028]} if ok else {},  # Top-1: no CI stored
        "chance": {"seg/mIoU": 0.05, "cls/Top-1": 0.1}, "chance_ci": {"seg/mIoU": [0.04, 0.06]},
        "profile": {"latency_ms": latency, "latency_ms_ci": [latency - 0.4, latency + 0.5], "params_m": 1.5}
        if ok else {},
    }


def _seed_records() -> list[dict]:
    recs = [_cell("a", s, m, 10.0 + s) for s, m in enumerate(SEED_MIOU)]
    return recs + [_cell("b", 0, 0.3, 20.0), _cell("b", 1, 0.0, 0.0, ok=False)]


def test_ci_shown_beside_each_figure_and_kept_in_csv(tmp_path):
    from mtbench.report import build_frame, render, write_outputs

    recs = [_cell("a", 0, 0.412, 12.0)]
    recs[0]["ci"]["seg/mIoU"] = [0.38, 0.44]
    frame = build_frame(recs, [])
    table = render(frame)
    head, _, row, *_ = table.splitlines()
    shown = dict(zip(*([c.strip() for c in re.split(r" \| ", line.strip("| "))] for line in (head, row))))
    assert shown["seg mIoU"] == "0.412 [0.38, 0.44]"  # 4 digits (COLUMNS), trailing zeros dropped
    assert shown["latency p50 (ms)"] == "12 [11.6, 12.5]"  # profile.latency_ms_ci
    assert shown["cls Top-1"] == "0.5" and shown["params (M)"] == "1.5"  # no CI stored: a plain number
    assert "bootstrap over the val images" in table  # the legend
    paths = write_outputs(frame, recs, tmp_path, "s")
    for name in ("csv", "csv_by_seed"):
        row = pd.read_csv(paths[name]).iloc[0]
        assert row["seg mIoU"] == 0.412 and row["seg mIoU CI low"] == 0.38 and row["seg mIoU CI high"] == 0.44
        assert row["latency p50 (ms) CI low"] == 11.6 and "cls Top-1 CI low" not in row
    assert "0.412 [0.38, 0.44]" in paths["md"].read_text()


def test_t_interval_matches_scipy():
    x = np.array(SEED_MIOU)
    got = t_interval(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert got["mean"] == pytest.approx(x.mean()) and got["std"] == pytest.approx(x.std(ddof=1))
    assert (got["low"], got["high"], got["n"]) == (pytest.approx(lo), pytest.approx(hi), 3)
    same = t_interval([0.2, 0.2, 0.2])  # zero spread: zero-width interval, not NaN
    assert same["low"] == same["high"] == pytest.approx(0.2)
    one = t_interval([0.2])
    assert one["n"] == 1 and np.isnan(one["std"]) and np.isnan(one["low"])


def test_seeds_aggregate_to_mean_std_and_t_interval():
    from mtbench.report import aggregate_table, build_frame

    recs = _seed_records()
    frame = build_frame(recs, ["seg/mIoU > 0.42"])
    agg = aggregate_table(frame, recs)
    assert list(agg["cell"]) == ["a|ce|P4|equal|s0,1,2", "b|ce|P4|equal|s0,1"]
    a, b = agg.iloc[0], agg.iloc[1]
    x = np.array(SEED_MIOU)
    lo, hi = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
    assert a["seeds"] == 3 and a["CI method"] == "t over seeds"
    assert a["seg mIoU"] == pytest.approx(x.mean()) and a["seg mIoU std"] == pytest.approx(x.std(ddof=1))
    assert (a["seg mIoU CI low"], a["seg mIoU CI high"]) == (pytest.approx(lo), pytest.approx(hi))
    lat = np.array([10.0, 11.0, 12.0])
    assert a["latency p50 (ms) CI high"] == pytest.approx(lat.mean() + stats.t.ppf(0.975, 2) * stats.sem(lat))
    assert a["params (M) std"] == 0 and a["params (M) CI low"] == a["params (M) CI high"] == 1.5
    assert a["gates"] == "s0: FAIL: seg/mIoU > 0.42; s1: pass; s2: pass"  # seeds disagree: listed per seed
    assert a["hash"] == "a0 a1 a2"
    # "b": the failed seed contributes no figure: n = 1 value, no spread, no interval
    assert b["seeds"] == 2 and b["seg mIoU"] == pytest.approx(0.3) and np.isnan(b["seg mIoU std"])
    assert np.isnan(b["seg mIoU CI low"]) and b["status"].startswith("s0: ok; s1: failed")


def test_seeds_run_by_separate_commands_still_aggregate():
    """Seeds added later by another command (``--set 'matrix.seed=[3]'``), with the data at
    another path or another checkpoint interval, are the same cell; another image size, other
    data (fingerprint) or another profile setting is not."""
    from mtbench.report import aggregate_table, build_frame

    def rec(seed, overrides, root="/data", fixed=None, fingerprint="f1", profile=None):
        r = _cell("a", seed, SEED_MIOU[seed], 10.0)
        r["config"].update(overrides=overrides, data_root=root, profile=profile or {"runtimes": []},
                           tasks={"seg": {"dataset": "voc", "params": {"path": "mini_voc_seg"}}},
                           fixed={"image_size": 256, "checkpoint_every": {"minutes": 5}, **(fixed or {})})
        r["identity"] = {"scheme": 2, "training": f"h{seed}", "evaluation": f"e{seed}",
                         "data": {"seg": fingerprint}, "plugins": {"model": "mtbench==0.1.0 (built-in)"}}
        return r

    same = [rec(0, ["fixed.image_size=256"]), rec(1, ["matrix.seed=[1]"], root="/elsewhere"),
            rec(2, [], fixed={"checkpoint_every": {"steps": 50}})]
    agg = aggregate_table(build_frame(same, []), same)
    assert list(agg["seeds"]) == [3] and agg.iloc[0]["seg mIoU"] == pytest.approx(np.mean(SEED_MIOU))
    apart = [rec(0, []), rec(1, [], fixed={"image_size": 320}), rec(2, [], fingerprint="f2")]
    assert list(aggregate_table(build_frame(apart, []), apart)["seeds"]) == [1, 1, 1]
    profiled = [rec(0, []), rec(1, [], profile={"runtimes": ["onnx"]})]
    assert list(aggregate_table(build_frame(profiled, []), profiled)["seeds"]) == [1, 1]


def test_one_seed_is_the_cell_itself_with_its_bootstrap_ci():
    from mtbench.report import aggregate_table, build_frame

    recs = [_cell("a", 0, 0.4, 10.0), _cell("c", 7, 0.2, 5.0)]
    frame = build_frame(recs, [])
    agg = aggregate_table(frame, recs)
    assert list(agg["cell"]) == ["a|ce|P4|equal|s0", "c|ce|P4|equal|s7"]
    assert list(agg["seeds"]) == [1, 1] and set(agg["CI method"]) == {"bootstrap over val images"}
    assert agg["seg mIoU CI low"].tolist() == pytest.approx([0.368, 0.168])
    assert "seg mIoU std" not in agg.columns  # no spread from one seed


def test_by_seed_tables_in_console_csv_and_report(tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps({"suite": "s", "cells": _seed_records()}))
    assert main(["report", str(tmp_path / "results.json")]) == 0
    out = capsys.readouterr().out
    assert "a|ce|P4|equal|s0,1,2" in out and "a|ce|P4|equal|s1 " not in out
    x = np.array(SEED_MIOU)
    lo, hi = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
    mean, std, lo, hi = (f"{round(v, 4):g}" for v in (x.mean(), x.std(ddof=1), lo, hi))  # 4 digits (COLUMNS)
    assert f"{mean} ±{std} [{lo}, {hi}]" in out
    md = (tmp_path / "report.md").read_text()
    assert "## Per seed" in md and r"a\|ce\|P4\|equal\|s2" in md  # | escaped inside Markdown cells
    assert main(["report", str(tmp_path / "results.json"), "--by-seed"]) == 0
    out = capsys.readouterr().out
    assert "a|ce|P4|equal|s1 " in out and "s0,1,2" not in out
    assert "## Seeds aggregated" in (tmp_path / "report.md").read_text()


def test_run_prints_aggregated_or_by_seed_and_writes_both_csvs(write_suite, tmp_path, monkeypatch, capsys):
    import mtbench.executors.local as local

    suite = write_suite(TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [equal]"))
    monkeypatch.setattr(local, "run_local", lambda cells, *a, **k: _seed_records()[:3])
    args = ["--no-entrypoints", "run", str(suite), "--results", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    assert "a|ce|P4|equal|s0,1,2" in capsys.readouterr().out
    assert main([*args, "--by-seed"]) == 0
    assert "a|ce|P4|equal|s2" in capsys.readouterr().out
    agg, per_seed = pd.read_csv(tmp_path / "tiny" / "results.csv"), pd.read_csv(tmp_path / "tiny" / "results_by_seed.csv")
    assert len(agg) == 1 and agg["seeds"].iloc[0] == 3 and agg["seg mIoU"].iloc[0] == round(np.mean(SEED_MIOU), 4)
    assert {"seg mIoU std", "seg mIoU CI low", "seg mIoU CI high", "CI method"} <= set(agg.columns)
    assert len(per_seed) == 3 and per_seed["seg mIoU CI low"].tolist() == pytest.approx([0.368, 0.398, 0.438])
    stored = json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert len(stored["cells"]) == 3 and stored["seed_aggregates"][0]["seeds"] == 3


def test_pareto_plot_has_error_bars_chance_and_short_ids(tmp_path):
    from matplotlib.container import ErrorbarContainer

    recs = _seed_records() + [_cell("c", 0, 0.35, 15.0)]
    fig = draw_pareto(recs)
    ax = fig.axes[0]  # seg/mIoU panel (cls/Top-1 next, without CI)
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1 and bars[0].has_xerr and bars[0].has_yerr
    x = np.array(SEED_MIOU)
    lo, hi = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
    ys = bars[0].lines[2][1].get_segments()  # the y error bars: one vertical segment per point
    assert ys[0][:, 1] == pytest.approx([lo, hi])  # "a": t-interval across seeds
    assert ys[2][:, 1] == pytest.approx([0.35 - 0.032, 0.35 + 0.028])  # "c": its bootstrap CI
    chance = [ln for ln in ax.get_lines() if ln.get_label() == "chance (measured)"]
    assert chance and chance[0].get_ydata()[0] == pytest.approx(0.05)
    assert sorted(t.get_text() for t in ax.texts) == ["#1", "#2", "#3"]
    legend = fig.axes[-1].texts[0].get_text()
    assert "#1  a|ce|P4|equal|s0,1,2" in legend and "#3  c|ce|P4|equal|s0" in legend
    assert plot_pareto(recs, tmp_path / "p.png").is_file()
    assert list(pareto_table(recs)["id"]) == ["#1", "#2", "#3"]


def test_strategy_step_time_and_overhead_vs_equal_columns():
    """Each joint method's mean step time is a column beside ``train (s)``, with its ratio to the
    ``equal`` cell of the same setting (issue 18); no ratio without such a cell, none on ``equal``."""
    from mtbench.report import build_frame, render

    def rec(h, strategy, step_s, seed=0, arch="a"):
        cfg = {"architecture": {"name": arch}, "losses": {}, "level": "P3", "seed": seed,
               "strategy": {"name": strategy, "params": {}}}
        return {"label": h, "hash": h, "status": "ok", "config": cfg, "metrics": {"cls/Top-1": 0.5},
                "profile": {"train_s": 10.0}, "extra": {"step_s": step_s}}

    records = [rec("eq", "equal", 0.050), rec("pc", "pcgrad", 0.065), rec("other-seed", "pcgrad", 0.07, seed=1),
               rec("other-arch", "mgda", 0.09, arch="b")]
    frame = build_frame(records, [])
    assert frame["step (ms)"].tolist() == pytest.approx([50.0, 65.0, 70.0, 90.0])
    ratio = frame["step vs equal (x)"].tolist()
    assert np.isnan(ratio[0]) and ratio[1] == pytest.approx(1.3) and np.isnan(ratio[2]) and np.isnan(ratio[3])
    head = render(frame).splitlines()[0]
    assert head.index("train (s)") < head.index("step (ms)") < head.index("step vs equal (x)")
