"""`mtbench report`: Markdown with plots that really are PNG images."""

from __future__ import annotations

import json

from PIL import Image

from mtbench.cli import main
from mtbench.plots import pareto_front


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
