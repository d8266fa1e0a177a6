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
