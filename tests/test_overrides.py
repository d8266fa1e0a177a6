"""Command-line habits: ``--version``, ``--set KEY=VALUE`` on run/validate, several files and
backbone names in ``validate``."""

from __future__ import annotations

import json

import pytest

from mtbench import __version__
from mtbench.cli import main
from mtbench.errors import SuiteError
from mtbench.overrides import apply, parse
from mtbench.suite import Suite, expand, load_suite
from tests.conftest import TINY_SUITE


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mtbench {__version__}"


def test_parse_reads_yaml_values_and_shorthands():
    assert parse("fixed.batch_size=8", Suite).value == 8
    assert parse("fixed.optimizer.lr=0.002", Suite).value == 0.002
    assert parse("matrix.seed=[0, 1]", Suite).value == [0, 1]
    o = parse("fixed.epochs=2", Suite)
    assert o.path == ("fixed", "budget") and o.value == {"epochs": 2}
    assert parse("tasks.det.params.num_images=3", Suite).path == ("tasks", "det", "params", "num_images")
    data = apply({"fixed": {"budget": {"steps": 4}}}, [o, parse("fixed.batch_size=8", Suite)])
    assert data["fixed"] == {"budget": {"epochs": 2}, "batch_size": 8}


@pytest.mark.parametrize("text, expected", [
    ("fixed.epoch=1", "Did you mean 'fixed.epochs'?"),
    ("fixed.optimizer.lrr=1", "Did you mean 'fixed.optimizer.lr'?"),
    ("fixd.batch_size=2", "Did you mean 'fixed.batch_size'?"),
    ("tasks.det.paramz=3", "Did you mean 'tasks.det.params'?"),
    ("epochs", "expected KEY=VALUE"),
])
def test_unknown_key_is_one_line_with_a_suggestion(text, expected):
    with pytest.raises(SuiteError) as exc:
        parse(text, Suite)
    assert expected in str(exc.value) and f"--set {text}" in str(exc.value) and "\n" not in str(exc.value)


def test_bad_value_names_the_set_and_field(write_suite, capsys):
    path = write_suite()
    assert main(["validate", str(path), "--set", "fixed.batch_size=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mtbench: error: {path}: --set fixed.batch_size=0: fixed.batch_size:") and "\n" not in err
    assert main(["validate", str(path), "--set", "fixed.epoch=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "Did you mean 'fixed.epochs'?" in err


def test_hash_changes_only_when_results_change(write_suite, registry):
    path = write_suite()
    base = [c.hash for c in expand(load_suite(path), registry)]
    steps = expand(load_suite(path, ["fixed.steps=3"]), registry)
    checks = expand(load_suite(path, ["checks.overfit_one_batch=off"]), registry)
    same = expand(load_suite(path, ["fixed.steps=2"]), registry)  # what the file says already
    assert all(h not in base for h in (c.hash for c in steps))
    assert [c.hash for c in checks] == base and [c.hash for c in same] == base
    assert steps[0].config["fixed"]["budget"] == {"epochs": None, "steps": 3}
    assert steps[0].config["overrides"] == ["fixed.steps=3"]


def test_validate_several_files_and_backbones(write_suite, capsys):
    good = write_suite()
    typo = write_suite(TINY_SUITE.replace("mobilenetv3_small_100", "mobilenetv3_smal_100"), "typo.yaml")
    assert main(["validate", str(good), str(good)]) == 0
    assert capsys.readouterr().out.count("valid, 2 cells") == 2
    assert main(["validate", str(good), str(typo)]) == 2
    out, err = capsys.readouterr()
    assert f"{good}: valid, 2 cells" in out and f"{typo}: invalid" in out
    assert "typo.yaml:10: matrix.architecture.0.params.backbone" in out
    assert "Did you mean 'mobilenetv3_small_100'?" in out
    assert "1 of 2 suites invalid" in err


@pytest.mark.slow
def test_run_with_set_records_it(write_suite, tmp_path, capsys):
    path = write_suite()
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--no-progress", "--allow-suspect",
                 "--set", "fixed.steps=1", "--set", "checks.overfit_one_batch=off"]) in (0, 1)
    assert "overrides: fixed.steps=1, checks.overfit_one_batch=off" in capsys.readouterr().out
    data = json.loads((tmp_path / "r" / "tiny" / "results.json").read_text())
    assert data["overrides"] == ["fixed.steps=1", "checks.overfit_one_batch=off"]
    assert all(c["config"]["overrides"] == data["overrides"] for c in data["cells"])
    assert all(c["config"]["fixed"]["budget"]["steps"] == 1 for c in data["cells"])
    assert "`--set fixed.steps=1`" in (tmp_path / "r" / "tiny" / "results.md").read_text()
