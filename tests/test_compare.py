"""Regression tracking: `mtbench compare` rules and exit codes."""

from __future__ import annotations

import copy
import json

import pytest

from mtbench.cli import main
from mtbench.compare import compare, parse_rules
from mtbench.errors import MtbenchError


def _rec(label="a", miou=0.5, lat=10.0, status="ok"):
    return {"label": label, "hash": f"h-{label}", "status": status, "reason": None if status == "ok" else "boom",
            "metrics": {"seg/mIoU": miou, "cls/Top-1": 0.9}, "profile": {"latency_ms": lat, "params": 100}}


def _write(tmp_path, name, records):
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps({"suite": "s", "cells": records}))
    return p


def test_rules_parse():
    r = parse_rules("seg/mIoU<-0.02, latency_ms>+10%")
    assert (r[0].metric, r[0].op, r[0].threshold, r[0].relative) == ("seg/mIoU", "<", -0.02, False)
    assert (r[1].metric, r[1].threshold, r[1].relative) == ("latency_ms", pytest.approx(0.10), True)
    with pytest.raises(MtbenchError, match="'mIoU drops'"):
        parse_rules("mIoU drops")


def test_degraded_fails_equal_passes():
    rules = parse_rules("seg/mIoU<-0.02,latency_ms>+10%")
    base = [_rec()]
    assert compare(copy.deepcopy(base), base, rules)[1] == []
    _, fails = compare([_rec(miou=0.45, lat=12.0)], base, rules)
    assert len(fails) == 2 and "a: seg/mIoU 0.5 -> 0.45 violates seg/mIoU<-0.02 (no CI)" in fails
    assert compare([_rec(miou=0.49, lat=10.5)], base, rules)[1] == []  # within tolerance


def test_missing_or_failed_cell_fails():
    assert "missing" in compare([], [_rec()], [])[1][0]
    assert "failed in the new run" in compare([_rec(status="failed")], [_rec()], [])[1][0]


def test_cli_exit_codes(tmp_path, capsys):
    base = _write(tmp_path, "base", [_rec()])
    same = _write(tmp_path, "same", [_rec()])
    worse = _write(tmp_path, "worse", [_rec(miou=0.40)])
    assert main(["compare", str(same), str(base), "--fail-on", "seg/mIoU<-0.02"]) == 0
    assert main(["compare", str(worse), str(base), "--fail-on", "seg/mIoU<-0.02"]) == 1
    assert "FAIL a: seg/mIoU 0.5 -> 0.4" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "nope"), str(base)]) == 2


def test_run_folder_forms(tmp_path):
    from mtbench.report import load_records
    only_json = tmp_path / "baseline"
    only_json.mkdir()
    _write(only_json, "results", [_rec()])
    assert [r["label"] for r in load_records(only_json)] == ["a"]
    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    (run / "cells" / "h-b.json").write_text(json.dumps(_rec("b")))
    _write(run, "results", [_rec("stale")])
    assert [r["label"] for r in load_records(run)] == ["b"]  # cells/ wins over the summary


def test_committed_regression_baseline_compares_with_itself():
    from mtbench.report import load_records
    base = load_records("results/baselines/regression")
    assert len(base) == 2 and all(r["status"] == "ok" for r in base)
    assert compare(base, base, parse_rules("det/mAP<-0.05,seg/mIoU<-0.05"))[1] == []


def _top1_rec(label, correct, hash_=None, seed=0):
    """A record with per-image Top-1 records (the metric contract) and its CI."""
    import numpy as np

    from mtbench.metrics.base import bootstrap_ci
    from mtbench.metrics.classification import Top1
    cols = {"correct": list(correct), "label": [0] * len(correct)}
    ci = bootstrap_ci(Top1.reduce, cols)
    return {"label": label, "hash": hash_ or f"h-{label}", "status": "ok", "reason": None, "config": {"seed": seed},
            "metrics": {"cls/Top-1": float(np.mean(correct))}, "profile": {"params": 100},
            "ci": {k: list(v) for k, v in ci.items()},
            "samples": {"cls": {"metric": "mtbench.metrics.classification:Top1", "columns": cols}}}


def test_change_within_noise_is_not_significant_and_does_not_fire():
    rules = parse_rules("cls/Top-1<-0.02")
    base = [_top1_rec("a|s0", [1, 0] * 30)]
    # two images flipped: -3.3 points, beyond the threshold but inside the paired CI
    new = [_top1_rec("a|s0", [0, 0, 0, 0] + [1, 0] * 28, hash_="other")]
    frame, fails = compare(new, base, rules)
    row = frame[frame["metric"] == "cls/Top-1"].iloc[0]
    assert row["ci"] == "paired" and row["significant"] == "no"
    assert fails == []


def test_degraded_cell_is_significant_and_fires():
    rules = parse_rules("cls/Top-1<-0.02")
    base = [_top1_rec("a|s0", [1] * 50 + [0] * 10)]
    new = [_top1_rec("a|s0", [1] * 20 + [0] * 40, hash_="other")]
    frame, fails = compare(new, base, rules)
    assert frame[frame["metric"] == "cls/Top-1"].iloc[0]["significant"] == "yes"
    assert frame[frame["metric"] == "cls/Top-1"].iloc[0]["ci"] == "paired"
    assert len(fails) == 1 and fails[0].startswith("a|s0: cls/Top-1") and "excludes 0" in fails[0]


def test_unpaired_ci_from_stored_intervals():
    a, b = _rec(miou=0.5), _rec(miou=0.45)
    a["ci"], b["ci"] = {"seg/mIoU": [0.40, 0.60]}, {"seg/mIoU": [0.35, 0.55]}
    frame, fails = compare([b], [a], parse_rules("seg/mIoU<-0.02"))
    row = frame[frame["metric"] == "seg/mIoU"].iloc[0]
    assert row["ci"] == "unpaired" and row["significant"] == "no" and fails == []


def test_rule_on_unknown_metric_is_an_error():
    with pytest.raises(MtbenchError, match="'seg/mIOU'.*Did you mean 'seg/mIoU'.*Known: .*seg/mIoU"):
        compare([_rec()], [_rec()], parse_rules("seg/mIOU<-0.02"))


def test_failed_baseline_or_unmatched_new_cell_fails():
    assert "baseline cell failed" in compare([_rec()], [_rec(status="failed")], [])[1][0]
    assert "no baseline cell" in compare([_rec(), _rec("b")], [_rec()], [])[1][0]


def test_other_seed_is_compared_unpaired():
    base = [_top1_rec("a|s0", [1, 0] * 30)]
    new = [_top1_rec("a|s1", [0, 1] * 30, hash_="other", seed=1)]
    frame, _ = compare(new, base, [])
    assert frame[frame["metric"] == "cls/Top-1"].iloc[0]["ci"] == "unpaired"


def _degrade_seg(rec: dict, keep: float = 0.3) -> dict:
    """A copy of ``rec`` whose seg predictions lost most of their correct pixels: per-image
    intersections cut to ``keep``, metric and CI recomputed from the per-image records."""
    import numpy as np

    from mtbench.metrics.base import bootstrap_ci
    from mtbench.metrics.segmentation import SegmentationMIoU
    rec = copy.deepcopy(rec)
    cols = rec["samples"]["seg"]["columns"]
    inter = np.asarray(cols["inter"])
    lost = inter - np.floor(inter * keep).astype(int)
    cols["inter"] = (inter - lost).tolist()
    cols["union"] = (np.asarray(cols["union"]) + lost).tolist()  # lost pixels became false positives
    rec["metrics"]["seg/mIoU"] = SegmentationMIoU.reduce(cols, np.arange(len(inter)))["seg/mIoU"]
    rec["ci"]["seg/mIoU"] = list(bootstrap_ci(SegmentationMIoU.reduce, cols)["seg/mIoU"])
    return rec


def test_regression_suite_other_seed_then_degraded_cell(tmp_path, capsys):
    """Acceptance: regression.yaml at another seed vs the committed baseline reports no
    significant difference; with one cell degraded, compare exits 1 naming it."""
    from pathlib import Path

    import yaml

    from mtbench.report import load_records
    suite = yaml.safe_load(Path("suites/regression.yaml").read_text())
    suite["matrix"]["seed"] = [1]
    (tmp_path / "regression.yaml").write_text(yaml.safe_dump(suite))
    main(["--no-entrypoints", "run", str(tmp_path / "regression.yaml"), "--results", str(tmp_path / "out"),
          "--no-progress"])
    rules = "det/mAP<-0.05,det/AP50<-0.08,seg/mIoU<-0.05,cls/Top-1<-0.15"
    new = load_records(tmp_path / "out" / "regression")
    assert all(r["status"] == "ok" and "samples" in r for r in new)
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "out" / "regression"), "results/baselines/regression",
                 "--fail-on", rules]) == 0
    assert "no significant difference" in capsys.readouterr().out
    bad = [_degrade_seg(new[0])] + new[1:]
    _write(tmp_path, "degraded", bad)
    assert main(["compare", str(tmp_path / "degraded.json"), "results/baselines/regression", "--fail-on", rules]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {new[0]['label'].replace('|s1', '|s0')}: seg/mIoU" in out and "excludes 0" in out


@pytest.mark.parametrize("argv", [
    ["compare", "results/baselines/regression", "results/baselines/regression", "--fail-on", "det/mAP<-0.05"],
    ["doctor", "results/baselines/regression/results.json"],
    ["report", "results/baselines/regression", "--out", "{tmp}"],
])
def test_reading_commands_import_neither_torch_nor_torchvision(argv, tmp_path):
    """compare / doctor / report read stored records (their per-image samples included, through
    the metrics' numpy-only ``reduce``): a separate interpreter, as the user runs them."""
    import subprocess
    import sys
    argv = [a.replace("{tmp}", str(tmp_path / "report")) for a in argv]
    code = ("import sys; from mtbench.cli import main; rc = main(sys.argv[1:]); print(rc, sorted(m for m in "
            "sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout[-2000:] + out.stderr[-2000:]
