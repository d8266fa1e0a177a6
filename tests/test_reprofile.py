"""Re-profiling from stored weights (mtbench.reprofile): a finished run whose profile settings
changed is measured again without a training step; the time it took is printed beside the
full run's."""

from __future__ import annotations

import json

import pytest

import mtbench.executors.local as local
from mtbench.strategies.base import TrainContext
from tests.test_checkpoint import _record, _run, _suite


def _no_training(monkeypatch):
    monkeypatch.setattr(TrainContext, "step", lambda *a, **k: pytest.fail("a training step was taken"))
    monkeypatch.setattr(local, "run_cell", lambda *a, **k: pytest.fail("a cell was run"))


def test_changed_profile_settings_reprofile_without_training(tmp_path, monkeypatch, capsys):
    suite = _suite(tmp_path, "equal")
    results = tmp_path / "res"
    assert _run(suite, results, "--allow-suspect") in (0, 3)
    first = _record(results)
    suite.write_text(suite.read_text().replace("latency_repeats: 6", "latency_repeats: 9"))
    capsys.readouterr()
    _no_training(monkeypatch)
    assert _run(suite, results, "--allow-suspect") in (0, 3)
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if "re-profiled from its stored weights" in ln]
    with capsys.disabled():
        print(f"\n  {line.strip()}")  # the figures the issue asks for: re-profile vs full run
    again = _record(results)
    assert again["hash"] == first["hash"] and again["metrics"] == first["metrics"]
    assert again["history"] == first["history"]
    assert again["identity"]["evaluation"] != first["identity"]["evaluation"]
    assert again["profile"]["latency_repeats"] >= 9 and again["config"]["profile"]["latency_repeats"] == 9
    assert again["reprofiled"]["seconds"] < first["wall_s"]
    monkeypatch.undo()
    _no_training(monkeypatch)
    capsys.readouterr()
    assert _run(suite, results, "--allow-suspect", "--reprofile") in (0, 3)  # the explicit entry point
    assert "re-profiled from its stored weights" in capsys.readouterr().out
    assert _record(results)["reprofiled"]["at"]


def test_without_stored_weights_the_cell_is_recomputed(tmp_path, capsys):
    suite = _suite(tmp_path, "equal")
    results = tmp_path / "res"
    assert _run(suite, results, "--allow-suspect", "--keep-weights", "none") in (0, 3)
    suite.write_text(suite.read_text().replace("latency_repeats: 6", "latency_repeats: 9"))
    capsys.readouterr()
    assert _run(suite, results, "--allow-suspect") in (0, 3)
    assert "no stored weights, recomputed" in capsys.readouterr().out
    assert json.loads(next((results / "tiny" / "cells").glob("*.json")).read_text())["status"] == "ok"
