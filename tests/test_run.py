"""End to end: a tiny run through the CLI, resume, interruption, atomic writes, failures, gates."""

from __future__ import annotations

import json

import pytest
import torch

import mtbench.executors.local as local
from mtbench.cli import main
from mtbench.plugins import Spec, get_registry, hookimpl
from mtbench.profiling.latency import STOP_REASONS
from mtbench.results import ResultStore, write_json_atomic
from mtbench.suite import expand, load_suite
from tests.conftest import TINY_SUITE


def _run(suite, results, *extra):
    return main(["--no-entrypoints", "run", str(suite), "--results", str(results), "--no-progress", *extra])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    suite = tmp / "suite.yaml"
    suite.write_text(TINY_SUITE)
    return suite, tmp / "results", _run(suite, tmp / "results")


def test_tiny_run_end_to_end(tiny_run, capsys):
    suite, results, code = tiny_run
    assert code == 0
    cells = sorted((results / "tiny" / "cells").glob("*.json"))
    assert len(cells) == 2
    for p in cells:
        rec = json.loads(p.read_text())
        assert rec["status"] == "ok", rec.get("reason")
        m, prof = rec["metrics"], rec["profile"]
        for key in ("det/mAP", "det/AP50", "seg/mIoU", "cls/Top-1"):
            assert 0.0 <= m[key] <= 1.0
        assert prof["params"] > 0 and prof["latency_ms"] > 0 and prof["fps"] > 0 and prof["peak_mem_mib"] > 0
        for fig in (prof, prof["runtimes"]["onnx"]):  # every runtime: p50 / FPS intervals and why sampling stopped
            assert fig["latency_ms_ci"][0] <= fig["latency_ms"] <= fig["latency_ms_ci"][1]
            assert fig["fps_ci"][0] <= fig["fps"] <= fig["fps_ci"][1]
            assert fig["latency_stop"] in STOP_REASONS and fig["fps_stop"] in STOP_REASONS
            assert fig["latency_repeats"] >= 6 and fig["fps_repeats"] >= 6
        assert rec["history"] and rec["env"]["torch"] == torch.__version__
        if rec["axes"]["strategy"] == "sequential":
            assert [s["task"] for s in rec["stages"]] == ["seg", "det", "cls"]
            assert "forgetting" in m and "BWT" in m
    table = (results / "tiny" / "results.csv").read_text().splitlines()[0]
    for col in ("det mAP@[.5:.95]", "det AP50", "seg mIoU", "cls Top-1", "forgetting", "params (M)",
                "latency p50 (ms)", "FPS", "peak mem (MiB)", "train (s)", "status"):
        assert col in table


def test_resume_recomputes_nothing(tiny_run, monkeypatch, capsys):
    suite, results, _ = tiny_run
    monkeypatch.setattr(local, "run_cell", lambda *a, **k: pytest.fail("a finished cell was recomputed"))
    assert _run(suite, results) == 0
    assert capsys.readouterr().out.count("stored result (ok), skipped") == 2


def test_interrupted_run_keeps_finished_cells(write_suite, tmp_path, monkeypatch):
    suite, results = write_suite(), tmp_path / "res"
    real, calls = local.run_cell, []

    def flaky(cell, registry, show_progress=True, **kw):
        calls.append(cell.hash)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cell, registry, show_progress, **kw)

    monkeypatch.setattr(local, "run_cell", flaky)
    assert _run(suite, results) == 130
    stored = list((results / "tiny" / "cells").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["status"] == "ok"
    assert not list((results / "tiny" / "cells").glob("*.tmp"))
    calls.clear()
    assert _run(suite, results) == 0
    assert len(calls) == 1  # only the unfinished cell ran


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "cells" / "abc.json"
    write_json_atomic(target, {"v": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(OSError):
        write_json_atomic(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in target.parent.iterdir()] == ["abc.json"]


class _NanStrategy:
    def fit(self, ctx):
        ctx.record(0, "joint", {"cls": {"total": torch.tensor(float("nan"))}},
                   torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))


class _Plugin:
    @hookimpl
    def mtbench_register_strategies(self):
        return [Spec("strategy", "nan-loss", _NanStrategy, "test: produces a NaN loss")]


def test_failing_cell_is_recorded_and_run_goes_on(write_suite, tmp_path):
    text = TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [nan-loss, equal]")
    registry = get_registry(load_entrypoints=False, extra_plugins=[_Plugin()])
    cells = expand(load_suite(write_suite(text)), registry)
    store = ResultStore(tmp_path, "tiny")
    records = local.run_local(cells, registry, store, show_progress=False, echo=lambda s: None)
    assert [r["status"] for r in records] == ["failed", "ok"]
    assert "non-finite cls loss (nan) at joint step 0, lr 0.1" in records[0]["reason"]
    assert json.loads(store.path(cells[0].hash).read_text())["status"] == "failed"
    said = []
    local.run_local(cells, registry, store, show_progress=False, echo=said.append)  # resume keeps the failure
    assert said[0].endswith("stored result (failed), skipped; re-run it with --retry-failed")
    said.clear()
    retry = ResultStore(tmp_path, "tiny", retry_failed=True)
    again = local.run_local(cells, registry, retry, show_progress=False, echo=said.append)
    assert "skipped" not in said[0] and said[-1].endswith("stored result (ok), skipped")
    assert again[0]["status"] == "failed"  # re-run (still NaN), recorded afresh


def test_failed_gate_gives_nonzero_exit(tiny_run, capsys):
    suite, results, _ = tiny_run
    gated = suite.with_name("gated.yaml")
    gated.write_text(TINY_SUITE + "gates: ['params < 1000', 'latency_ms < 100000']\n")
    assert _run(gated, results) == 1  # same cells (gates are not in the hash): only re-judged
    out = capsys.readouterr().out
    assert "FAIL: params < 1000" in out and "stored result (ok), skipped" in out


def test_dry_run_and_validate(write_suite, capsys):
    suite = write_suite()
    assert main(["--no-entrypoints", "run", str(suite), "--dry-run"]) == 0
    assert "2 cells (dry run" in capsys.readouterr().out
    assert main(["--no-entrypoints", "validate", str(suite)]) == 0
    bad = write_suite(TINY_SUITE.replace("batch_size", "bach_size"), "bad.yaml")
    assert main(["--no-entrypoints", "validate", str(bad)]) == 2
    assert "fixed.bach_size: unknown field" in capsys.readouterr().err


def test_harness_budget_caps_profiling_and_is_reported():
    """Profiling gets what is left of ``checks.harness_share`` x training time after the
    overfit check and the CIs; each timing series' cap is that share of it."""
    from mtbench.report import harness_summary
    from mtbench.profiling.latency import Budget, StopRule
    from mtbench.runner import harness_cost, harness_left

    rec = {"overfit": {"seconds": 0.5}, "uncertainty": {"seconds": 0.3}}
    assert harness_left(0.15, rec, 10.0) == pytest.approx(0.15 * 10 - 0.8)
    assert harness_left(0.05, rec, 10.0) == 0.0  # already spent: minimum samples only
    now = [100.0]
    budget = Budget(StopRule(max_s=0.5), seconds=1.0, series=4, clock=lambda: now[0])
    assert budget.next_rule().max_s == pytest.approx(0.25)       # an equal share of 1 s over 4 series
    now[0] += 0.6                                                 # that series and an export used 0.6 s
    assert budget.next_rule().max_s == pytest.approx(0.4 / 3)
    now[0] += 1.0                                                 # past the deadline: minimum samples only
    assert budget.next_rule().max_s == 0.0
    assert Budget(StopRule(max_s=0.5), 60.0, 2).next_rule().max_s == 0.5  # ample: the suite's own cap
    cheap = {"label": "a", "status": "ok", "harness": harness_cost(rec, 10.0, 0.2)}
    dear = {"label": "b", "status": "ok", "harness": harness_cost(rec, 2.0, 0.2)}
    assert cheap["harness"]["share_of_train"] == pytest.approx(0.1)
    line = harness_summary([cheap, dear, {"label": "c", "status": "failed"}])
    assert "2.0 s = 16.7% of 12 s training" in line and "over budget: b 50%" in line and "a 10%" not in line
    assert harness_summary([]) == ""


KD_SUITE = """\
name: kd
tasks:
  cls: {dataset: imagefolder, params: {path: nette}}
losses:
  cls: {name: kd, params: {alpha: 0.5, temperature: 2.0}}
""" + TINY_SUITE[TINY_SUITE.index("matrix:"):].replace("strategy: [equal, sequential]", "strategy: [equal]")


def test_kd_cell_distils_on_imagenet_classes_and_fails_clearly_on_others(write_suite, tmp_path, monkeypatch):
    """``cls/kd`` runs a cell end to end on a generated image folder whose classes are ImageNet
    WordNet ids (its ``kd`` component recorded); on generated classes that are not, the cell is
    recorded failed with a reason naming them, and the run goes on."""
    from PIL import Image
    rng = torch.Generator().manual_seed(0)
    for split, n in (("train", 4), ("val", 2)):
        for wnid in ("n01440764", "n02102040"):
            folder = tmp_path / "data" / "nette" / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 256, (48, 48, 3), generator=rng, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    monkeypatch.setenv("MTBENCH_DATA", str(tmp_path / "data"))
    registry = get_registry(load_entrypoints=False)
    store = ResultStore(tmp_path / "res", "kd")
    records = local.run_local(expand(load_suite(write_suite(KD_SUITE)), registry), registry, store,
                              show_progress=False, echo=lambda s: None)
    assert records[0]["status"] == "ok", records[0].get("reason")
    assert records[0]["loss_components"]["cls"] == ["ce", "kd"]
    synthetic = KD_SUITE.replace("{dataset: imagefolder, params: {path: nette}}",
                                 "{dataset: synthetic, params: {num_images: {train: 8, val: 4}}}")
    records = local.run_local(expand(load_suite(write_suite(synthetic, "synth.yaml")), registry), registry,
                              ResultStore(tmp_path / "res2", "kd"), show_progress=False, echo=lambda s: None)
    assert records[0]["status"] == "failed"
    assert "cls/kd" in records[0]["reason"]
    assert "every class must be an ImageNet-1k WordNet id" in records[0]["reason"]
