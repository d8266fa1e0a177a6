"""Provenance (mtbench.provenance): stored with every cell, shown by report, checked by compare."""

from __future__ import annotations

import json

import torch

from mtbench.cli import main
from mtbench.provenance import differences, environment


def test_environment_names_machine_versions_and_commit():
    env = environment(torch.device("cpu"), {"mtbench-x": "0.2"}, "ab" * 32)
    assert env["cpu_model"] and env["logical_cores"] >= 1 and env["memory_gib"] > 0
    assert env["torch"] == torch.__version__ and env["plugins"] == {"mtbench-x": "0.2"}
    assert env["suite_sha256"] == "ab" * 32 and env["gpu"] is None
    assert env["commit_full"] is None or (len(env["commit_full"]) == 40 and isinstance(env["dirty"], bool))


def _write(path, cpu: str, torch_version: str = "2.0"):
    env = {"cpu_model": cpu, "logical_cores": 2, "memory_gib": 8.0, "torch": torch_version, "plugins": {}}
    cells = [{"label": "a|s0", "hash": "aaaaaaaaaaaa", "status": "ok", "metrics": {"cls/Top-1": 0.5}, "env": env}]
    path.write_text(json.dumps({"cells": cells}))
    return str(path)


def test_compare_warns_on_another_machine_and_strict_refuses(tmp_path, capsys):
    new, base = _write(tmp_path / "new.json", "CPU A"), _write(tmp_path / "base.json", "CPU B", "2.1")
    assert main(["compare", new, base]) == 0
    err = capsys.readouterr().err
    assert "warning: different machine: cpu_model 'CPU A' (new) vs 'CPU B' (baseline)" in err
    assert "warning: different version: torch" in err
    assert main(["compare", new, base, "--strict"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "different machines or versions (--strict)" in line
    same = _write(tmp_path / "same.json", "CPU A")
    assert main(["compare", new, same, "--strict"]) == 0 and differences([], []) == []


def test_report_shows_provenance(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _write(run / "results.json", "CPU A")
    assert main(["report", str(run / "results.json"), "--out", str(tmp_path / "out")]) == 0
    assert "cpu_model" in capsys.readouterr().out and "CPU A" in (tmp_path / "out" / "report.md").read_text()
