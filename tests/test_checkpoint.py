"""Checkpoints and mid-cell resume (mtbench.checkpoint): a cell SIGKILLed after a checkpoint
finishes with the metrics and loss history of an uninterrupted run; final weights kept as
safetensors; a checkpoint holding a pickled object is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from mtbench.checkpoint import CHECKPOINT, WEIGHTS
from mtbench.cli import main
from tests.conftest import TINY_SUITE

SEQUENTIAL = "{name: sequential, params: {lwf: {}, ewc: {batches: 2}, replay: {batches: 2}, freeze: [backbone]}}"


def _suite(tmp_path, strategy: str):
    text = (TINY_SUITE.replace("strategy: [equal, sequential]", f"strategy: [{strategy}]")
            .replace("budget: {steps: 2}", "budget: {steps: 4}\n  checkpoint_every: {steps: 2}")
            .replace("profile: {latency_warmup: 1, latency_repeats: 3, fps_repeats: 1}",
                     "profile: {runtimes: [], latency_warmup: 0, latency_repeats: 6, fps_repeats: 6, "
                     "latency_max_s: 0}\n"
                     "checks: {overfit_one_batch: 'off'}"))
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def _run(suite, results, *extra):
    return main(["--no-entrypoints", "run", str(suite), "--results", str(results), "--no-progress", *extra])


def _killed_after(suite, results, saves: int) -> int:
    """Run the suite in a child process that SIGKILLs itself right after its ``saves``-th checkpoint."""
    script = textwrap.dedent(f"""
        import os, signal, torch
        import mtbench.checkpoint as c
        torch.set_num_threads(2)
        real, n = c.Checkpoints.save, [0]
        def save(self, *a, **k):
            real(self, *a, **k)
            n[0] += 1
            if n[0] == {saves}:
                os.kill(os.getpid(), signal.SIGKILL)
        c.Checkpoints.save = save
        from mtbench.cli import main
        main(["--no-entrypoints", "run", {str(suite)!r}, "--results", {str(results)!r}, "--no-progress"])
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600).returncode


def _record(results):
    (rec,) = [json.loads(p.read_text()) for p in (results / "tiny" / "cells").glob("*.json")]
    return rec


@pytest.mark.parametrize("strategy, saves", [("gradnorm", 1), ("uncertainty", 1), (SEQUENTIAL, 3)],
                         ids=["gradnorm", "uncertainty", "sequential-stage2"])
def test_sigkilled_cell_resumes_to_the_same_metrics(tmp_path, capsys, strategy, saves):
    suite = _suite(tmp_path, strategy)
    assert _run(suite, tmp_path / "whole", "--allow-suspect") in (0, 3)
    whole = _record(tmp_path / "whole")
    assert whole["status"] == "ok", whole.get("reason")
    cut = tmp_path / "cut"
    assert _killed_after(suite, cut, saves) == -9
    assert not list((cut / "tiny" / "cells").glob("*.json"))  # killed mid-cell: no record
    (cell_dir,) = [d for d in (cut / "tiny" / "cells").iterdir() if d.is_dir()]
    assert (cell_dir / CHECKPOINT).is_file()
    capsys.readouterr()
    assert _run(suite, cut, "--allow-suspect") in (0, 3)
    out = capsys.readouterr().out
    assert "resumed from its checkpoint at" in out and "work lost:" in out
    resumed = _record(cut)
    assert resumed["resumed"]["step"] in (1, 3) and resumed["status"] == "ok"
    assert resumed["metrics"] == whole["metrics"]  # bitwise: CPU, no loader workers
    assert resumed["history"] == whole["history"] and resumed["stages"] == whole["stages"]
    assert not (cell_dir / CHECKPOINT).exists() and (cell_dir / WEIGHTS).is_file()  # --keep-weights final
    assert "weights and checkpoints:" in out


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path, capsys):
    suite = _suite(tmp_path, "equal")
    from mtbench.plugins import get_registry
    from mtbench.suite import expand, load_suite
    (cell,) = expand(load_suite(suite), get_registry(load_entrypoints=False))
    folder = tmp_path / "res" / "tiny" / "cells" / cell.hash
    folder.mkdir(parents=True)
    torch.save({"stage": "joint", "step": 0, "model": {}, "payload": Exploit()}, folder / CHECKPOINT)
    assert _run(suite, tmp_path / "res") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(folder / CHECKPOINT) in err[0] and "refused" in err[0]


class Exploit:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_keep_weights_none_keeps_nothing(tmp_path, capsys):
    suite = _suite(tmp_path, "equal")
    assert _run(suite, tmp_path / "res", "--keep-weights", "none", "--allow-suspect") in (0, 3)
    cells = tmp_path / "res" / "tiny" / "cells"
    assert not [p for p in cells.rglob("*") if p.is_file() and p.suffix != ".json"]
    assert "weights and checkpoints: 0.0 MiB" in capsys.readouterr().out


def test_interval_in_epochs_counts_steps_of_the_largest_split(tmp_path, monkeypatch):
    from mtbench.checkpoint import Checkpoints, parse_every
    every = parse_every({"steps": None, "epochs": 1.0, "minutes": None})
    assert every == ("epochs", 1.0)
    ck = Checkpoints(tmp_path, every, steps_per_epoch=3)
    saved = []
    monkeypatch.setattr(ck, "save", lambda ctx, stage, step, *a: saved.append(step))
    for step in range(7):
        ck.step_done(None, "joint", step, None, None, None, [], {})
    assert saved == [2, 5] and (tmp_path / "progress.json").is_file()


def test_checkpoint_every_is_validated_and_not_part_of_the_identity(write_suite, registry):
    from mtbench.errors import SuiteError
    from mtbench.suite import expand, load_suite
    def every(value: str) -> str:
        return TINY_SUITE.replace("  threads: 2", f"  threads: 2\n  checkpoint_every: {value}")

    with pytest.raises(SuiteError, match="fixed.checkpoint_every: give exactly one of"):
        load_suite(write_suite(every("{steps: 2, minutes: 1}")))
    plain = expand(load_suite(write_suite()), registry)
    nine = expand(load_suite(write_suite(every("{steps: 9}"))), registry)
    assert [c.hash for c in plain] == [c.hash for c in nine]
