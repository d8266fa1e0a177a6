"""``--tracker mlflow`` / ``--tracker tensorboard``: read back with the libraries' own readers
(``mlflow.search_runs``, TensorBoard's ``EventAccumulator``); every metric of every cell is there."""

from __future__ import annotations

import json
import os

import pytest

from mtbench.cli import main
from mtbench.trackers import exported, flat_params, tags
from tests.conftest import TINY_SUITE

mlflow = pytest.importorskip("mlflow", reason="the tracking extra is not installed (pip install 'mtbench[tracking]')")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                        reason="tensorboard is not installed (pip install 'mtbench[tracking]')")


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """The two-cell tiny suite run with both trackers, MLflow on its default ./mlruns."""
    tmp = tmp_path_factory.mktemp("track")
    (tmp / "suite.yaml").write_text(TINY_SUITE)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
        code = main(["--no-entrypoints", "run", "suite.yaml", "--results", "results", "--no-progress",
                     "--allow-suspect", "--tracker", "mlflow", "--tracker", "tensorboard"])
        assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # set for mtbench's own calls only
    assert code == 0
    run = tmp / "results" / "tiny"
    return tmp, run, [json.loads(p.read_text()) for p in sorted((run / "cells").glob("*.json"))]


def _same(got: list[tuple], want: list[tuple], key: str) -> None:
    """Same steps, values equal to float32 precision (TensorBoard stores float32)."""
    assert [s for s, _ in got] == [s for s, _ in want], key
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6, abs=1e-12), key


def _search(uri: str):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(uri)
        return mlflow.search_runs(experiment_names=["tiny"]), mlflow.tracking.MlflowClient()


def test_mlflow_has_every_metric_param_curve_tag_and_artifact(tracked_run):
    tmp, run, records = tracked_run
    runs, client = _search((tmp / "mlruns").as_uri())
    assert len(runs) == 2 and sorted(runs["tags.mlflow.runName"]) == sorted(r["label"] for r in records)
    for rec in records:
        row = runs[runs["tags.mtbench.hash"] == rec["hash"]].iloc[0]
        series, finals = exported(rec)
        assert finals and {k for k in finals} <= {c.removeprefix("metrics.") for c in runs.columns}
        for key, v in finals.items():
            assert row[f"metrics.{key}"] == pytest.approx(v)
        assert "seg/mIoU_ci_low" in finals and "profile/latency_ms" in finals and "det/num_pos/all" in series
        params = flat_params(rec["config"])
        assert row["params.fixed.budget.steps"] == "2" and all(f"params.{k}" in runs.columns for k in params)
        assert row["tags.env.torch"] == rec["env"]["torch"] and row["tags.mtbench.status"] == "ok"
        for key, points in series.items():  # per-step curves, every point (the last value at a step)
            history = client.get_metric_history(row["run_id"], key)
            _same(sorted((m.step, m.value) for m in history), sorted(points), key)
        arts = [a.path for a in client.list_artifacts(row["run_id"])]
        report = [a.path for a in client.list_artifacts(row["run_id"], "report")]
        assert f"{rec['hash']}.json" in arts and "report/results.md" in report


def test_tensorboard_has_every_metric_and_curve(tracked_run):
    _, run, records = tracked_run
    for rec in records:
        acc = event_accumulator.EventAccumulator(str(run / "tensorboard" / rec["hash"]), size_guidance={"scalars": 0})
        acc.Reload()
        scalars = set(acc.Tags()["scalars"])
        series, finals = exported(rec)
        assert set(finals) <= scalars and set(series) <= scalars
        for key, v in finals.items():
            assert acc.Scalars(key)[-1].value == pytest.approx(v, rel=1e-6)
        for key, points in series.items():
            _same([(e.step, e.value) for e in acc.Scalars(key)], points, key)
        assert "provenance" in " ".join(acc.Tags()["tensors"])


def test_tracking_uri_from_the_environment(tracked_run, monkeypatch, capsys):
    tmp, run, records = tracked_run
    other = (tmp / "elsewhere").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store the user chose: their opt-in
    assert main(["report", str(run), "--no-html", "--tracker", "mlflow"]) == 0
    assert other in capsys.readouterr().out
    runs, client = _search(other)
    assert len(runs) == 2
    assert any(a.path == "report/report.md" for a in client.list_artifacts(runs["run_id"][0], "report"))


def test_tags_keep_unknown_provenance_keys():
    rec = {"hash": "h", "status": "ok", "env": {"torch": "2", "new_key": [1, 2]}, "provenance": {"host": "x"}}
    assert tags(rec) == {"mtbench.hash": "h", "mtbench.status": "ok", "env.torch": "2", "env.new_key": "[1, 2]",
                         "provenance.host": "x"}
