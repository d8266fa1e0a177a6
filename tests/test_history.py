"""``mtbench history``: metric history over commits, regressions marked where they became significant."""

from __future__ import annotations

import json
import re

import pytest

from mtbench.cli import main
from mtbench.history import load_runs, regressions


def _cell(label: str, commit: str, miou: float, top1: float, latency: float, half: float = 0.03) -> dict:
    return {"label": label, "hash": label, "status": "ok",
            "env": {"commit": commit, "torch": "2.14.1"},
            "metrics": {"seg/mIoU": miou, "cls/Top-1": top1},
            "ci": {"seg/mIoU": [miou - half, miou + half], "cls/Top-1": [top1 - half, top1 + half]},
            "profile": {"latency_ms": latency, "latency_ms_ci": [latency - 1.0, latency + 1.0], "params_m": 1.0}}


def _runs(tmp_path, values: dict[str, list[tuple]]) -> list[str]:
    """One result folder per commit: ``{commit: [(label, mIoU, Top-1, latency), ...]}``."""
    paths = []
    for commit, cells in values.items():
        folder = tmp_path / commit
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(
            {"suite": "s", "cells": [_cell(label, commit, *v) for label, *v in cells]}))
        paths.append(str(folder))
    return paths


def test_injected_regression_is_marked_at_its_commit_and_nowhere_else(tmp_path, capsys):
    """Three commits; commit b2 drops cell A's mIoU by 0.15 (CIs +-0.03) and c3 keeps the drop;
    every other change (Top-1 +-0.01, latency +-0.4 ms, an improvement of B at c3) is within noise
    or better: one regression, at b2."""
    paths = _runs(tmp_path, {
        "a1": [("A", 0.45, 0.70, 10.0), ("B", 0.40, 0.60, 12.0)],
        "b2": [("A", 0.30, 0.71, 10.4), ("B", 0.41, 0.59, 11.8)],
        "c3": [("A", 0.30, 0.69, 9.9), ("B", 0.55, 0.61, 12.1)],
    })
    found = regressions(load_runs(paths))
    assert [(f["commit"], f["cell"], f["metric"]) for f in found] == [("b2", "A", "seg/mIoU")]
    assert found[0]["reference"] == "a1" and found[0]["change"] == pytest.approx(-0.15)

    out = tmp_path / "page"
    assert main(["history", *paths, "--out", str(out)]) == 0
    assert "regression at b2: A seg/mIoU 0.45 -> 0.3" in capsys.readouterr().out
    html = (out / "index.html").read_text()
    rows = re.search(r"<table id='regressions'.*?<tbody>(.*?)</tbody>", html, re.S).group(1)
    assert rows.count("<tr>") == 1 and "<td class='text'>b2</td>" in rows and "seg/mIoU" in rows
    assert "a1, b2, c3" in html and "Latest run (c3)" in html and 'id="results"' in html
    svg = (out / "history.svg").read_text()
    assert all(c in svg for c in ("a1", "b2", "c3")) and "regression (change CI excludes 0)" in svg


def test_slow_drift_is_marked_where_its_sum_leaves_the_noise(tmp_path):
    """-0.02, -0.02, -0.01 with CIs +-0.03 (a change's CI +-0.042): no single step is significant,
    nor the sum at c3 (-0.04); at d4 (-0.05 from a1) it is, and it is marked there."""
    paths = _runs(tmp_path, {c: [("A", m, 0.7, 10.0)] for c, m in
                             (("a1", 0.45), ("b2", 0.43), ("c3", 0.41), ("d4", 0.40))})
    runs = load_runs(paths)
    assert [(f["commit"], f["reference"]) for f in regressions(runs)] == [("d4", "a1")]


def test_no_regression_page_and_latency_direction(tmp_path):
    paths = _runs(tmp_path, {"a1": [("A", 0.45, 0.7, 10.0)], "b2": [("A", 0.45, 0.7, 20.0)],
                             "c3": [("A", 0.45, 0.7, 5.0)]})
    found = regressions(load_runs(paths))
    assert [(f["commit"], f["metric"], f["ci"]) for f in found] == [("b2", "latency_ms", "within-run")]
    (tmp_path / "q").mkdir()
    quiet = _runs(tmp_path / "q", {"x1": [("A", 0.45, 0.7, 10.0)], "x2": [("A", 0.46, 0.7, 10.2)]})
    assert main(["history", *paths, "--out", str(tmp_path / "lp")]) == 0
    assert "re-measure before believing a latency regression" in (tmp_path / "lp" / "index.html").read_text()
    assert main(["history", *quiet, "--out", str(tmp_path / "qp")]) == 0
    assert "No significant regression." in (tmp_path / "qp" / "index.html").read_text()


def test_bad_run_is_one_line(tmp_path, capsys):
    assert main(["history", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
