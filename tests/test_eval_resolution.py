"""benchmarks/eval_resolution.py: a stored cell's weights re-evaluated at other input sides,
the training side reproducing the record, differences paired over the same val images."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from mtbench.strategies.base import TrainContext
from tests.test_checkpoint import _run, _suite

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_resolution.py"


def _script():
    spec = importlib.util.spec_from_file_location("eval_resolution", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_apparent_magnification_is_the_mean_of_one_over_sqrt_area():
    mag = _script().apparent_magnification
    assert mag(None) == 1.0 and mag([1.0, 1.0]) == 1.0 and mag([0.25, 0.25]) == 2.0
    assert mag([0.5, 1.0]) == pytest.approx(2 * (1 - math.sqrt(0.5)) / 0.5)  # 1.1716
    # uniform area on [lo, hi]: a Monte-Carlo mean of 1 / sqrt(a) agrees
    import numpy as np
    a = np.random.default_rng(0).uniform(0.08, 1.0, 200_000)
    assert mag([0.08, 1.0]) == pytest.approx(np.mean(1 / np.sqrt(a)), rel=5e-3)


def test_stored_cell_reevaluated_at_two_sides_without_training(tmp_path, monkeypatch, capsys):
    suite = _suite(tmp_path, "equal")
    results = tmp_path / "res"
    assert _run(suite, results, "--allow-suspect") in (0, 3)
    monkeypatch.setattr(TrainContext, "step", lambda *a, **k: pytest.fail("a training step was taken"))
    capsys.readouterr()
    _script().main([str(results / "tiny"), "--sizes", "64", "96", "--resamples", "50", "--threads", "1"])
    out = capsys.readouterr().out
    assert "the base side reproduces the record's metrics" in out
    assert "| 96 - 64 " in out and "det/mAP" in out and "seg/mIoU" in out and "cls/Top-1" in out
    with pytest.raises(SystemExit, match="multiple of 32"):
        _script().main([str(results / "tiny"), "--sizes", "70"])
    with pytest.raises(SystemExit, match="no cells/ folder"):
        _script().main([str(tmp_path)])
