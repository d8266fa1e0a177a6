"""The README's plugin example, built by pip as a real distribution and used by a one-cell suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "plugins" / "example-mtbench-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--target", str(target), str(EXAMPLE)], capture_output=True, text=True)
    if build.returncode:
        pytest.fail(f"pip could not build the example plugin:\n{build.stderr[-2000:]}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    return env


def _mtbench(env, *args, cwd):
    return subprocess.run([sys.executable, "-m", "mtbench", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_plugin_is_listed_with_its_distribution(installed, tmp_path):
    out = _mtbench(installed, "plugins", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if "heavy-det" in ln)
    assert "example-mtbench-plugin" in line and "0.1.0" in line


def test_the_plugin_passes_the_conformance_checks(installed, tmp_path):
    """What the plugin's own CI runs: mtbench.testing's task and metric checks."""
    code = ("import torch, example_mtbench_plugin as p; "
            "from mtbench.testing import check_metric, check_runtime, check_task; "
            "check_task(p.Count, p.synthetic_count('count', 'val', None, 64, num_images=2, seed=0, max_shapes=3)); "
            "check_metric(p.CountMetric, torch.tensor([1.2, 2.9]), torch.tensor([1, 2])); "
            "check_runtime(p.channels_last); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=installed, cwd=tmp_path)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_one_cell_suite_runs_with_the_plugin(installed, tmp_path):
    # --allow-suspect: 2 training steps leave every task at chance, and the overfit check finds
    # that 4 steps do not teach the counter to use its input (an error finding, exit 3 otherwise)
    out = _mtbench(installed, "run", str(EXAMPLE / "suite.yaml"), "--results", str(tmp_path), "--no-progress",
                   "--allow-suspect", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rec = json.loads(next((tmp_path / "example-plugin" / "cells").glob("*.json")).read_text())
    assert rec["status"] == "ok" and rec["config"]["strategy"] == {"name": "heavy-det", "params": {"det_weight": 3.0}}
    # the plugin's task ran beside det and cls, with its metrics, CIs and measured chance level
    assert {"det/mAP", "cls/Top-1", "count/acc", "count/MAE"} <= set(rec["metrics"])
    assert "count/acc" in rec["ci"] and "count/acc" in rec["chance"] and rec["uncertainty"]["chance"]["count"] == "permutation"
    assert rec["task_meta"]["count"]["headline"] == "count/acc"
    # the plugin's diagnostic ran on the cell (8 val images) and binds the numbers it invalidates
    few = [f for f in rec["diagnostics"] if f["check"] == "count-few-images"]
    assert few and few[0]["invalidates"] == ["count/acc", "count/MAE"] and few[0]["evidence"]["images"] == 8
    # the plugin's runtime was timed like eager, with its parity to PyTorch's outputs
    nhwc = rec["profile"]["runtimes"]["channels-last"]
    assert "error" not in nhwc and nhwc["latency_ms"] > 0 and nhwc["fps"] > 0 and nhwc["parity_max_abs"] < 1e-4
    header = next(ln for ln in out.stdout.splitlines() if "cell" in ln and "count acc" in ln)
    assert all(col in header for col in ("det mAP@[.5:.95]", "cls Top-1", "count acc", "count MAE", "count acc chance"))
    # the stored records carry the task's columns: the report reads them where the plugin is not installed
    report = _mtbench({k: v for k, v in installed.items() if k != "PYTHONPATH"}, "report",
                      str(tmp_path / "example-plugin"), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert report.returncode == 0 and "count acc chance" in report.stdout, report.stderr[-2000:]
    without = _mtbench({k: v for k, v in installed.items() if k != "PYTHONPATH"}, "validate",
                       str(EXAMPLE / "suite.yaml"), cwd=tmp_path)
    assert without.returncode == 2 and "unknown strategy 'heavy-det'" in without.stderr
