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


def test_one_cell_suite_runs_with_the_plugin(installed, tmp_path):
    out = _mtbench(installed, "run", str(EXAMPLE / "suite.yaml"), "--results", str(tmp_path), "--no-progress",
                   cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rec = json.loads(next((tmp_path / "example-plugin" / "cells").glob("*.json")).read_text())
    assert rec["status"] == "ok" and rec["config"]["strategy"] == {"name": "heavy-det", "params": {"det_weight": 3.0}}
    without = _mtbench({k: v for k, v in installed.items() if k != "PYTHONPATH"}, "validate",
                       str(EXAMPLE / "suite.yaml"), cwd=tmp_path)
    assert without.returncode == 2 and "unknown strategy 'heavy-det'" in without.stderr
