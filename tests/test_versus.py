"""``mtbench report --versus AXIS=VALUE``: every row against its baseline row over seeds
(paired t-tests, Holm-adjusted, findings binding), checked against scipy on the same numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from mtbench.cli import main
from mtbench.errors import UsageError
from mtbench.report import build_frame
from mtbench.versus import holm, parse_baseline, render, versus

TOP1 = {"equal": [0.50, 0.53, 0.55], "pcgrad": [0.60, 0.64, 0.65], "dwa": [0.49, 0.55, 0.54],
        "gradnorm": [0.30, 0.31, 0.33]}


def _rec(strategy: str, seed: int, top1: float, miou: float = 0.3, arch: str = "a", diagnostics=()) -> dict:
    config = {"architecture": {"name": arch}, "losses": {"seg": "ce", "cls": "ce"}, "level": "P3",
              "strategy": {"name": strategy, "params": {}}, "seed": seed}
    return {"label": f"{arch}|ce|P3|{strategy}|s{seed}", "hash": f"{arch}{strategy}{seed}", "config": config,
            "axes": {"architecture": arch, "loss": "ce", "level": "P3", "strategy": strategy, "seed": str(seed)},
            "status": "ok", "metrics": {"cls/Top-1": top1, "seg/mIoU": miou + 0.01 * seed},
            "diagnostics": list(diagnostics), "profile": {}}


def _records() -> list[dict]:
    return [_rec(s, seed, v) for s, vals in TOP1.items() for seed, v in enumerate(vals)]


def test_holm_matches_its_definition():
    p = [0.01, 0.04, 0.03, np.nan, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 over k=4: 4*0.005, 3*0.01, 2*0.03, 1*0.04, running max
    assert holm(p)[[4, 0, 2, 1]] == pytest.approx([0.02, 0.03, 0.06, 0.06])
    assert np.isnan(holm(p)[3])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_paired_t_over_seeds_as_scipy_then_holm_and_verdicts():
    recs = _records()
    table = versus(build_frame(recs, []), recs, "strategy=equal")
    top1 = table[table["metric"] == "cls/Top-1"].set_index("cell")
    assert list(top1.index) == ["a|ce|P3|pcgrad|s0,1,2", "a|ce|P3|dwa|s0,1,2", "a|ce|P3|gradnorm|s0,1,2"]
    raw = {}
    for s in ("pcgrad", "dwa", "gradnorm"):
        ref = stats.ttest_rel(TOP1[s], TOP1["equal"])
        row = top1.loc[f"a|ce|P3|{s}|s0,1,2"]
        ci = ref.confidence_interval(0.95)
        assert row["difference"] == pytest.approx(np.mean(TOP1[s]) - np.mean(TOP1["equal"]))
        assert (row["p"], row["CI low"], row["CI high"]) == pytest.approx((ref.pvalue, ci.low, ci.high))
        assert row["test"] == "paired t" and row["seeds"] == 3 and row["baseline"] == "a|ce|P3|equal|s0,1,2"
        raw[s] = ref.pvalue
    adjusted = holm(list(raw.values()))
    assert top1["p (Holm)"].tolist() == pytest.approx(adjusted)
    expect = {s: ("tie" if a >= 0.05 else "better" if np.mean(TOP1[s]) > np.mean(TOP1["equal"]) else "worse")
              for s, a in zip(raw, adjusted)}
    assert top1["verdict"].tolist() == list(expect.values())
    assert expect["gradnorm"] == "worse" and expect["dwa"] == "tie"
    # seg/mIoU is the same in every seed of every strategy: identical (the t-test is undefined)
    seg = table[table["metric"] == "seg/mIoU"]
    assert set(seg["verdict"]) == {"identical"} and seg["p"].isna().all()


def test_an_invalidated_metric_is_not_meaningful_and_leaves_the_family():
    chance = {"check": "chance-level", "severity": "warning", "message": "at chance", "evidence": {},
              "invalidates": ["cls/Top-1"]}
    recs = _records()
    recs[4] = _rec("pcgrad", 1, TOP1["pcgrad"][1], diagnostics=[chance])  # one seed of pcgrad
    table = versus(build_frame(recs, []), recs, "strategy=equal")
    top1 = table[table["metric"] == "cls/Top-1"].set_index("cell")
    assert top1.loc["a|ce|P3|pcgrad|s0,1,2", "verdict"] == "not meaningful: chance-level"
    assert np.isnan(top1.loc["a|ce|P3|pcgrad|s0,1,2", "p (Holm)"])
    others = [stats.ttest_rel(TOP1[s], TOP1["equal"]).pvalue for s in ("dwa", "gradnorm")]
    assert top1.loc[["a|ce|P3|dwa|s0,1,2", "a|ce|P3|gradnorm|s0,1,2"], "p (Holm)"].tolist() == pytest.approx(holm(others))


def test_baseline_is_matched_within_the_same_setting_and_welch_without_common_seeds():
    recs = _records() + [_rec("equal", s, 0.7 + 0.01 * s, arch="b") for s in (0, 1)]
    recs += [_rec("pcgrad", s, 0.8 + 0.02 * s, arch="b") for s in (5, 6, 7)]
    table = versus(build_frame(recs, []), recs, "strategy=equal")
    row = table[(table["metric"] == "cls/Top-1") & (table["cell"] == "b|ce|P3|pcgrad|s5,6,7")].iloc[0]
    ref = stats.ttest_ind([0.8 + 0.02 * s for s in (5, 6, 7)], [0.7, 0.71], equal_var=False)
    assert row["baseline"] == "b|ce|P3|equal|s0,1" and row["test"] == "Welch t" and row["seeds"] == "3 vs 2"
    assert row["p"] == pytest.approx(ref.pvalue)
    assert set(table[table["cell"].str.startswith("a")]["baseline"]) == {"a|ce|P3|equal|s0,1,2"}


def test_bad_versus_names_the_known_axes_and_values():
    recs = _records()
    with pytest.raises(UsageError, match="expected AXIS=VALUE"):
        parse_baseline("equal", recs)
    with pytest.raises(UsageError, match="the run's axes: architecture, level, loss, strategy"):
        parse_baseline("strat=equal", recs)
    with pytest.raises(UsageError, match="its values: dwa, equal, gradnorm, pcgrad"):
        parse_baseline("strategy=eqaul", recs)


def test_report_versus_prints_and_writes_section_and_csv(tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps({"suite": "s", "cells": _records()}))
    assert main(["report", str(tmp_path / "results.json"), "--versus", "strategy=equal", "--no-html"]) == 0
    out = capsys.readouterr().out
    assert "versus strategy=equal:" in out and "Δ cls/Top-1" in out and "worse (p" in out
    md = (tmp_path / "report.md").read_text()
    assert "## Versus strategy=equal" in md and "| a|ce|P3|gradnorm|s0,1,2" in md.replace("\\|", "|")
    assert (tmp_path / "versus.csv").read_text().startswith("cell,baseline,metric,seeds,difference")
    assert main(["report", str(tmp_path / "results.json"), "--versus", "strategy=nope"]) == 2
    assert "its values: dwa, equal, gradnorm, pcgrad" in capsys.readouterr().err


def test_render_says_when_nothing_has_a_baseline():
    recs = _records()[:3]
    table = versus(build_frame(recs, []), recs, "strategy=equal")
    assert not len(table) and "no group of cells has a baseline" in render(table, "strategy=equal")


def test_the_same_nonzero_difference_in_every_seed_has_no_spread():
    recs = [_rec("equal", s, 0.5, miou=0.3) for s in range(3)] + [_rec("pcgrad", s, 0.5, miou=0.35) for s in range(3)]
    table = versus(build_frame(recs, []), recs, "strategy=equal").set_index("metric")
    assert table.loc["seg/mIoU", "verdict"] == "no spread" and table.loc["seg/mIoU", "difference"] == pytest.approx(0.05)
    assert table.loc["cls/Top-1", "verdict"] == "identical"
