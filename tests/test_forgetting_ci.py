"""CIs of forgetting, relative forgetting and BWT: one resample of a task's val images re-scores it
after every stage (paired across stages), the tasks' splits resampled independently."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mtbench.metrics.forgetting import forgetting, forgetting_ci
from mtbench.suite import expand, load_suite
from mtbench.runner import run_cell
from tests.conftest import TINY_SUITE

TOP1 = "mtbench.metrics.classification:Top1"
SEG = "mtbench.metrics.segmentation:SegmentationMIoU"
PRIMARY = {"cls": "cls/Top-1", "seg": "seg/mIoU"}


def _cls(correct) -> dict:
    return {"metric": TOP1, "columns": {"correct": list(correct), "label": [0] * len(correct)}}


def _stage(task: str, samples: dict) -> dict:
    from mtbench.metrics.base import resampler
    metrics = {PRIMARY[t]: resampler(e)[0](np.arange(len(next(iter(e["columns"].values())))))[PRIMARY[t]]
               for t, e in samples.items()}
    return {"task": task, "metrics": metrics, "samples": samples}


def _two_stages(rng) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """cls learned in stage 0 (70 of 100 right), partly forgotten in stage 1; seg learned in stage 1."""
    before = (rng.random(100) < 0.7).astype(int)
    after = before * (rng.random(100) < 0.8)  # some right answers lost, none gained
    inter = rng.integers(0, 50, size=(40, 3))
    seg = {"metric": SEG, "columns": {"inter": inter.tolist(), "union": (inter + 20).tolist()}}
    return [_stage("cls", {"cls": _cls(before)}), _stage("seg", {"cls": _cls(after), "seg": seg})], before, after


def test_one_forgotten_task_is_the_one_sample_percentile_bootstrap_of_its_paired_drop():
    stages, before, after = _two_stages(np.random.default_rng(0))
    ci = forgetting_ci(stages, PRIMARY, resamples=300, seed=7)
    point = forgetting(stages, PRIMARY)
    assert set(ci) == {"forgetting/cls", "forgetting_rel/cls", "BWT/cls", "forgetting", "forgetting_rel", "BWT"}

    def stat(idx):
        b, a = before[idx].mean(), after[idx].mean()
        return np.array([b - a, (b - a) / b, a - b])

    ref = stats.bootstrap((np.arange(100),), stat, n_resamples=300, vectorized=False, method="percentile",
                          random_state=np.random.default_rng(7)).confidence_interval
    assert ci["forgetting/cls"] == pytest.approx([ref.low[0], ref.high[0]])
    assert ci["forgetting_rel/cls"] == pytest.approx([ref.low[1], ref.high[1]])
    assert ci["BWT/cls"] == pytest.approx([ref.low[2], ref.high[2]])
    assert ci["forgetting"] == ci["forgetting/cls"] and ci["BWT"] == ci["BWT/cls"]
    for key, (lo, hi) in ci.items():
        assert lo <= point[key] <= hi
    assert ci["forgetting"][0] > 0  # every lost answer is a drop on every resample that holds it


def test_nothing_changed_gives_a_zero_width_interval_and_missing_records_give_none():
    stages, before, _ = _two_stages(np.random.default_rng(1))
    stages[1]["samples"]["cls"] = _cls(before)
    stages[1]["metrics"]["cls/Top-1"] = before.mean()
    ci = forgetting_ci(stages, PRIMARY)
    assert ci["forgetting/cls"] == [0.0, 0.0] and ci["BWT/cls"] == [0.0, 0.0]
    del stages[1]["samples"]["cls"]
    assert forgetting_ci(stages, PRIMARY) == {}
    assert forgetting_ci(stages[:1], PRIMARY) == {}


def test_a_relative_drop_undefined_on_some_resample_gets_no_interval():
    """A best score of 0 on a resample leaves forgetting_rel undefined there: no interval, not a zero-width one."""
    before = np.zeros(30, dtype=int)
    before[0] = 1  # 1 of 30 right: many resamples miss it
    stages = [_stage("cls", {"cls": _cls(before)}), _stage("seg", {"cls": _cls(np.zeros(30, dtype=int))})]
    ci = forgetting_ci(stages, PRIMARY, seed=3)
    assert "forgetting_rel/cls" not in ci and "forgetting_rel" not in ci
    assert ci["forgetting/cls"][0] == 0.0 and ci["forgetting/cls"][1] > 0


def test_tasks_are_resampled_independently_for_the_means():
    """seg learned first, cls second, a third task last: the mean over seg and cls is the two-sample
    bootstrap (each split resampled on its own) of the mean of their drops."""
    rng = np.random.default_rng(2)
    inter = rng.integers(0, 50, size=(40, 3))
    seg_then = {"metric": SEG, "columns": {"inter": inter.tolist(), "union": (inter + 20).tolist()}}
    worse = inter // 2
    seg_later = {"metric": SEG, "columns": {"inter": worse.tolist(), "union": (inter + 20).tolist()}}
    cls_then = (rng.random(60) < 0.8).astype(int)
    cls_later = cls_then * (rng.random(60) < 0.9)
    stages = [_stage("seg", {"seg": seg_then}), _stage("cls", {"seg": seg_later, "cls": _cls(cls_then)}),
              _stage("last", {"seg": seg_later, "cls": _cls(cls_later)})]
    ci = forgetting_ci(stages, PRIMARY, resamples=200, seed=5)

    def miou(x, idx):
        i = np.asarray(x["columns"]["inter"])[idx].sum(0)
        u = np.asarray(x["columns"]["union"])[idx].sum(0)
        return (i / u).mean()

    def stat(i_seg, i_cls):
        seg_best = max(miou(seg_then, i_seg), miou(seg_later, i_seg))
        drops = [seg_best - miou(seg_later, i_seg), cls_then[i_cls].mean() - cls_later[i_cls].mean()]
        return np.array([np.mean(drops)])

    ref = stats.bootstrap((np.arange(40), np.arange(60)), stat, n_resamples=200, vectorized=False,
                          method="percentile", random_state=np.random.default_rng(5)).confidence_interval
    assert ci["forgetting"] == pytest.approx([ref.low[0], ref.high[0]])
    assert set(ci) >= {"forgetting/seg", "forgetting/cls", "BWT/seg", "BWT/cls"}


def test_a_sequential_cell_stores_stage_records_and_forgetting_cis(write_suite, registry):
    text = TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [sequential]").replace(
        "profile: {", "profile: {runtimes: [], ")
    rec = run_cell(expand(load_suite(write_suite(text)), registry)[0], registry, False)
    assert rec["status"] == "ok", rec.get("reason")
    assert [sorted(s["samples"]) for s in rec["stages"]] == [["seg"], ["det", "seg"], ["cls", "det", "seg"]]
    assert {"forgetting", "BWT", "forgetting/seg", "forgetting/det", "BWT/det"} <= set(rec["ci"])
    for key in ("forgetting", "BWT", "forgetting/seg", "BWT/det"):
        lo, hi = rec["ci"][key]
        assert lo <= rec["metrics"][key] + 1e-12 and rec["metrics"][key] <= hi + 1e-12
