"""Determinism on CPU, and the Ray executor giving the local executor's results."""

from __future__ import annotations

import pytest

from mtbench.executors.local import run_local
from mtbench.results import ResultStore
from mtbench.runner import run_cell
from mtbench.suite import expand, load_suite
from tests.conftest import TINY_SUITE

ONE_CELL = TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [equal]")


def _comparable(rec: dict) -> dict:
    return {"metrics": rec["metrics"], "losses": [{k: v for k, v in r.items()} for r in rec["history"]],
            "params": rec["profile"]["params"], "flops_g": rec["profile"]["flops_g"]}


def test_same_suite_and_seed_give_same_metrics(write_suite, registry):
    cell = expand(load_suite(write_suite(ONE_CELL)), registry)[0]
    a, b = run_cell(cell, registry, False), run_cell(cell, registry, False)
    assert a["status"] == b["status"] == "ok"
    assert _comparable(a) == _comparable(b)


def test_ray_executor_matches_local(write_suite, registry, tmp_path):
    ray = pytest.importorskip("ray")
    from mtbench.executors.ray import run_ray

    cells = expand(load_suite(write_suite(ONE_CELL)), registry)
    local = run_local(cells, registry, ResultStore(tmp_path / "local", "tiny"), show_progress=False,
                      echo=lambda s: None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        store = ResultStore(tmp_path / "ray", "tiny")
        remote = run_ray(cells, store, cpus_per_cell=2, load_entrypoints=False, echo=lambda s: None)
        assert store.has(cells[0].hash)  # written by the same store: resume works the same
        again = run_ray(cells, store, load_entrypoints=False, echo=lambda s: None)
    finally:
        ray.shutdown()
    assert remote[0]["status"] == "ok", remote[0].get("reason")
    assert _comparable(remote[0]) == _comparable(local[0])
    assert again[0]["wall_s"] == remote[0]["wall_s"]  # the stored record, not a re-run
    assert remote[0]["env"]["threads"] == 2


def test_executors_are_registered_and_an_unknown_one_is_named(write_suite, registry, tmp_path, capsys):
    from mtbench.cli import main
    assert registry.names("executor") == ["local", "ray"]
    code = main(["--no-entrypoints", "run", str(write_suite()), "--executor", "rey", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown executor 'rey'" in err and "Did you mean 'ray'" in err


def test_ray_slots_cut_the_cluster_into_cells():
    from mtbench.executors.ray import slots

    assert slots({"CPU": 2.0}, 1, 0.0, 2) == 2
    assert slots({"CPU": 2.0}, 1, 0.0, 5) == 2  # at most one actor per slot
    assert slots({"CPU": 16.0}, 1, 0.0, 3) == 3  # at most one actor per cell
    assert slots({"CPU": 1.0}, 2, 0.0, 2) == 1  # at least one
    assert slots({"CPU": 16.0, "GPU": 1.0}, 1, 0.25, 8) == 4  # 4 cells at 0.25 GPU on one GPU


def test_ray_pool_runs_two_cells_on_two_long_lived_workers(write_suite, registry, tmp_path):
    ray = pytest.importorskip("ray")
    from mtbench.executors.ray import run_ray

    cells = expand(load_suite(write_suite(TINY_SUITE.replace("profile: {", "profile: {runtimes: [], "))), registry)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        lines = []
        recs = run_ray(cells, ResultStore(tmp_path / "ray", "tiny"), cpus_per_cell=1, load_entrypoints=False,
                       echo=lines.append)
    finally:
        ray.shutdown()
    assert lines[0] == "ray: 2 worker(s) of 1 CPU(s)"
    assert [r["hash"] for r in recs] == [c.hash for c in cells]  # cell order, whatever finished first
    assert all(r["status"] == "ok" for r in recs), [r.get("reason") for r in recs]
    assert all(r["profile"]["concurrent_cells"] == 2 and r["env"]["threads"] == 1 for r in recs)
