"""The bad-input table: every command on inputs a new or a hostile user gives it.

Each row runs one command through :func:`mtbench.cli.main` (a few through a real subprocess, to
prove no traceback reaches stderr) and asserts the exit code, that the one error line names the
file (and line) or field, and that no traceback is printed. README, "Errors and exit codes",
lists the same cases. Nothing here trains: bad suites stop at validation, and the results
commands read stored records copied from ``tests/fixtures/healthy``.

Rows for data sets and ``mtbench metrics coco`` live in their own file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from mtbench.cli import main
from tests.conftest import REPO, TINY_SUITE

T = TINY_SUITE
HEALTHY = sorted((REPO / "tests" / "fixtures" / "healthy").glob("compare-*.json"))
# TINY_SUITE's lines: 1 name, 3-5 tasks, 10 the architecture's params, 12 strategy, 15 batch_size;
# text appended to it starts at line 19.


def _bytes(content: str | bytes) -> bytes:
    return content if isinstance(content, bytes) else content.encode()


def _suite(tmp: Path, text: str | bytes, name: str = "suite.yaml") -> str:
    (tmp / name).write_bytes(_bytes(text))
    return str(tmp / name)


def _run_folder(tmp: Path, name: str = "run", extra: dict[str, str | bytes] | None = None) -> str:
    """A stored run (two healthy cell records) plus ``extra`` files in its ``cells/``."""
    cells = tmp / name / "cells"
    cells.mkdir(parents=True)
    for p in HEALTHY:
        shutil.copy(p, cells / f"{json.loads(p.read_text())['hash']}.json")
    for fname, content in (extra or {}).items():
        (cells / fname).write_bytes(_bytes(content))
    return str(tmp / name)


def validate(text: str | bytes) -> Callable[[Path], list[str]]:
    return lambda tmp: ["validate", _suite(tmp, text)]


def run(text: str | bytes, *extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", _suite(tmp, text), "--results", str(tmp / "results"), "--no-progress", *extra]


def on_run(command: str, *extra: str, cells: dict | None = None) -> Callable[[Path], list[str]]:
    """``command RUN`` (``compare RUN BASELINE``) on a stored run with ``cells`` added to it."""
    def make(tmp: Path) -> list[str]:
        bad = _run_folder(tmp, "bad", cells)
        return [command, bad, *([_run_folder(tmp, "base")] if command == "compare" else []), *extra]
    return make


def on_file(command: str, content: str | bytes | None, *extra: str) -> Callable[[Path], list[str]]:
    """``command FILE`` (``compare FILE BASELINE``); ``content`` None: the file does not exist."""
    def make(tmp: Path) -> list[str]:
        p = tmp / "result.json"
        if content is not None:
            p.write_bytes(_bytes(content))
        return [command, str(p), *([_run_folder(tmp, "base")] if command == "compare" else []), *extra]
    return make


def matrix(line: str) -> str:
    """TINY_SUITE with ``line`` added to its matrix (as line 13)."""
    return T.replace(f"  {STRAT}\n", f"  {STRAT}\n  {line}\n")


TRUNCATED = HEALTHY[0].read_text()[:700]
STRAT = "strategy: [equal, sequential]"
COCO = T.replace("det: {dataset: synthetic, params: {num_images: {train: 8, val: 4}}}", "det: {dataset: coco}")

#: (id, command, exit code, what the message must name[, environment[, through a subprocess]]);
#: ids without a command prefix are ``validate`` rows
CASES = [
    # --- suites: strict YAML -------------------------------------------------------------
    ("duplicate-key", validate(T + "name: other\n"), 2, ["suite.yaml:19", "'name' written twice", "line 1"]),
    ("duplicate-nested-key", validate(T.replace("batch_size: 4", "batch_size: 4\n  batch_size: 8")), 2,
     ["suite.yaml:16", "fixed.batch_size", "written twice"]),
    ("alias-bomb", validate('a: &a ["l","l","l","l","l","l","l","l","l"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
                            'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n' + T), 2,
     ["suite.yaml:2", "alias '*a' refused"]),
    ("over-1-MiB", validate(T + "".join(f"k{i}: 1\n" for i in range(150_000))), 2, ["suite.yaml", "1,048,576"]),
    ("not-utf8", validate(T.encode() + b"description: caf\xe9\n"), 2, ["suite.yaml:19", "not UTF-8"]),
    ("control-character", validate(T + "description: \x07\n"), 2, ["suite.yaml:19", "control character"]),
    ("nested-too-deep", validate("name: " + "[" * 5000 + "]" * 5000 + "\n"), 2, ["suite.yaml:1", "nested deeper"]),
    ("two-documents", validate(T + "---\nname: other\n"), 2, ["suite.yaml:19", "single document"]),
    ("empty-file", validate(""), 2, ["suite.yaml", "empty file"]),
    ("not-a-mapping", validate("- a\n- b\n"), 2, ["suite.yaml", "mapping, got list"]),
    ("missing-file", lambda tmp: ["validate", str(tmp / "nope.yaml")], 2, ["nope.yaml", "cannot read"]),
    ("suite-is-a-folder", lambda tmp: ["validate", str(tmp)], 2, ["is a folder"]),
    ("many-unknown-keys", validate(T + "".join(f"k{i}: 1\n" for i in range(500))), 2,
     ["suite.yaml:19: k0: unknown field", "... and 480 more"]),
    # --- suites: schema and values -------------------------------------------------------
    ("plugin-param-type", validate(T.replace("neck_channels: 16", "neck_channels: sixteen")), 2,
     ["suite.yaml:10", "neck_channels", "valid integer", "'sixteen'"]),
    ("plugin-param-quoted-number", validate(T.replace("neck_channels: 16", 'neck_channels: "16"')), 2,
     ["suite.yaml:10", "neck_channels", "quoted int"]),
    ("plugin-param-yaml-boolean", validate(T.replace("neck_channels: 16", "neck_channels: yes")), 2,
     ["suite.yaml:10", "neck_channels", "boolean where int"]),
    ("plugin-param-negative", validate(T.replace("neck_channels: 16", "neck_channels: -16")), 2,
     ["suite.yaml:10", "neck_channels", "greater than 0", "-16"]),
    ("plugin-param-unknown", validate(T.replace("neck_channels: 16", "neck_chanels: 16")), 2,
     ["suite.yaml:10", "unknown parameter 'neck_chanels'"]),
    ("num-images-0", validate(T.replace("train: 8, val: 4}}}\n  seg", "train: 0, val: 4}}}\n  seg")), 2,
     ["suite.yaml:3", "tasks.det.params.num_images", "greater than 0 at train"]),
    ("batch-size-1e8", validate(T.replace("batch_size: 4", "batch_size: 100000000")), 2,
     ["suite.yaml:15", "fixed.batch_size", "less than or equal to 4096"]),
    ("batch-size-1e8-string", validate(T.replace("batch_size: 4", "batch_size: 1e8")), 2,
     ["suite.yaml:15", "fixed.batch_size", "valid integer"]),
    ("overfit-check-typo", validate(T + "checks: {overfit_one_batch: of}\n"), 2,
     ["suite.yaml:19", "checks.overfit_one_batch"]),
    ("name-dot-dot", validate(T.replace("name: tiny", "name: ..")), 2, ["suite.yaml:1", "name '..'", "folder name"]),
    ("name-with-slash", validate(T.replace("name: tiny", "name: a/b")), 2, ["suite.yaml:1", "name 'a/b'"]),
    # --- suites: cross-references --------------------------------------------------------
    ("sequential-order-unknown-task",
     validate(T.replace(STRAT, "strategy: [{name: sequential, params: {order: [seg, det, clss]}}]")), 2,
     ["suite.yaml:12", "matrix.strategy.0.params.order", "'clss'", "Did you mean 'cls'"]),
    ("sequential-ewc-yaml-exponent",  # PyYAML reads 1.0e4 as a string: refused, not a TypeError mid-run
     validate(T.replace(STRAT, "strategy: [{name: sequential, params: {ewc: {weight: 1.0e4}}}]")), 2,
     ["suite.yaml:12", "sequential's ewc", "'weight'", "write 1.0e+4 or 10000.0"]),
    ("sequential-lwf-unknown-option",
     validate(T.replace(STRAT, "strategy: [{name: sequential, params: {lwf: {temp: 2}}}]")), 2,
     ["suite.yaml:12", "unknown parameter 'temp' for sequential's lwf", "temperature"]),
    ("sequential-stage-lr-mult-length",
     validate(T.replace(STRAT, "strategy: [{name: sequential, params: {stage_lr_mult: [1.0, 0.3]}}]")), 2,
     ["suite.yaml:12", "params.stage_lr_mult", "one positive multiplier per stage (3 stages"]),
    ("single-task-unknown-task",
     validate(T.replace(STRAT, "strategy: [{name: single-task, params: {task: points}}]")), 2,
     ["suite.yaml:12", "params.task", "'points'"]),
    ("equal-weights-unknown-task", validate(T.replace(STRAT, "strategy: [{name: equal, params: {weights: {dett: 2}}}]")),
     2, ["suite.yaml:12", "params.weights", "dett"]),
    ("equal-weights-negative", validate(T.replace(STRAT, "strategy: [{name: equal, params: {weights: {det: -1}}}]")),
     2, ["suite.yaml:12", "params.weights", "negative weights", "det"]),
    ("equal-weights-nan", validate(T.replace(STRAT, "strategy: [{name: equal, params: {weights: {cls: .nan}}}]")),
     2, ["suite.yaml:12", "params.weights", "not finite"]),
    ("equal-weights-all-zero",
     validate(T.replace(STRAT, "strategy: [{name: equal, params: {weights: {det: 0, seg: 0, cls: 0}}}]")),
     2, ["suite.yaml:12", "params.weights", "nothing would train"]),
    ("seed-negative", validate(matrix("seed: [0, -1]")), 2, ["suite.yaml:13", "matrix.seed.1", "greater than or equal to 0"]),
    ("seed-too-large", validate(matrix("seed: [4294967296]")), 2, ["suite.yaml:13", "matrix.seed.0", "less than or equal"]),
    ("seed-twice", validate(matrix("seed: [0, 0]")), 2, ["suite.yaml:13", "matrix.seed.1", "'0' is also entry 0", "list it once"]),
    ("strategy-twice", validate(T.replace(STRAT, "strategy: [equal, equal]")), 2,
     ["suite.yaml:12", "matrix.strategy.1", "'equal' is also entry 0"]),
    ("architecture-label-twice", validate(T.replace(
        "      params: {backbone: mobilenetv3_small_100, neck_channels: 16}\n",
        "      params: {backbone: mobilenetv3_small_100, neck_channels: 16}\n"
        "    - {name: unified-onehead, label: mnv3s, params: {backbone: mobilenetv3_small_100, neck_channels: 8}}\n")),
     2, ["suite.yaml:11", "matrix.architecture.1", "'mnv3s' is also entry 0", "distinct 'label'"]),
    ("gate-misspelt-metric", validate(T + "gates: ['seg/mIOU > 0.1']\n"), 2,
     ["suite.yaml:19", "gates.0", "'seg/mIOU'", "Did you mean 'seg/mIoU'"]),
    ("unknown-task", validate(T.replace("  seg: {dataset", "  segm: {dataset")), 2,
     ["suite.yaml:4", "tasks.segm", "unknown task 'segm'", "Did you mean 'seg'", "Known tasks: cls, det, seg"]),
    ("unknown-optimizer-and-schedule",
     validate(T.replace("batch_size: 4", "batch_size: 4\n  optimizer: {name: adamww, schedule: cosin}")), 2,
     ["suite.yaml:16: fixed.optimizer.name", "unknown optimizer 'adamww'", "Did you mean 'adamw'",
      "suite.yaml:16: fixed.optimizer.schedule", "unknown schedule 'cosin'", "Did you mean 'cosine'"]),
    ("gate-metric-of-absent-task", validate(T + "gates: ['points/Pd > 0.1']\n"), 2, ["suite.yaml:19", "'points/Pd'"]),
    ("loss-for-absent-task", validate(T.replace("matrix:", "losses: {points: bce-hard}\nmatrix:")), 2,
     ["suite.yaml:6", "losses.points", "task 'points'"]),
    ("exclude-matches-nothing", validate(matrix("exclude: [{strategy: gradnorm}]")),
     2, ["suite.yaml:13", "matrix.exclude.0", "matches no cell"]),
    ("include-adds-nothing", validate(matrix("include: [{strategy: equal}]")),
     2, ["suite.yaml:13", "matrix.include.0", "adds no cell"]),
    ("include-bad-level", validate(matrix("include: [{level: P9}]")), 2,
     ["suite.yaml:13", "matrix.include.0.level", "'P9'"]),
    ("include-strategy-bad-order", validate(matrix("include: [{strategy: {name: sequential, params: {order: [seg]}}}]")),
     2, ["suite.yaml:13", "matrix.include.0.strategy.params", "sequential order ['seg']"]),
    ("include-architecture-typo", validate(matrix("include: [{architecture: {nme: unified-onehead}}]")), 2,
     ["suite.yaml:13", "matrix.include.0.architecture.nme: unknown field", "architecture.name: Field required"]),
    ("zero-cells", validate(matrix("exclude: [{level: P4}]")), 2,
     ["suite.yaml:6", "0 cells"]),
    ("data-root-missing", validate("data_root: /nonexistent/mtbench-data\n" + COCO), 2,
     ["suite.yaml:1", "data_root", "/nonexistent/mtbench-data"]),
    ("MTBENCH_DATA-missing", validate(COCO), 2, ["MTBENCH_DATA=/nonexistent/env-data", "/nonexistent/env-data"],
     {"MTBENCH_DATA": "/nonexistent/env-data"}),
    ("dataset-folder-missing", validate(COCO.replace("{dataset: coco}", "{dataset: coco, params: {path: nowhere}}")), 2,
     ["suite.yaml:3", "tasks.det.params.path", "nowhere"], {"MTBENCH_DATA": "{tmp}"}),
    ("backbone-unknown", validate(T.replace("mobilenetv3_small_100", "mobilenetv3_smal_100")), 2,
     ["suite.yaml:10", "matrix.architecture.0.params.backbone", "Did you mean 'mobilenetv3_small_100'?"]),
    ("set-unknown-key", lambda tmp: ["validate", _suite(tmp, T), "--set", "fixed.epoch=1"], 2,
     ["suite.yaml", "--set fixed.epoch=1", "unknown key 'fixed.epoch'", "Did you mean 'fixed.epochs'?"]),
    ("set-bad-value", lambda tmp: ["validate", _suite(tmp, T), "--set", "fixed.batch_size=0"], 2,
     ["suite.yaml", "--set fixed.batch_size=0: fixed.batch_size", "greater than 0"]),
    ("set-not-key-value", lambda tmp: ["validate", _suite(tmp, T), "--set", "epochs"], 2,
     ["--set epochs", "KEY=VALUE"]),
    # --- run -----------------------------------------------------------------------------
    ("run-results-is-a-file", lambda tmp: ["run", _suite(tmp, T), "--results", _suite(tmp, "x", "file.txt")], 2,
     ["file.txt", "give --results a folder"]),
    ("run-zero-cells", run(matrix("exclude: [{level: P4}]")), 2,
     ["suite.yaml:6", "0 cells"]),
    ("run-duplicate-key", run(T + "fixed: {}\n"), 2, ["suite.yaml:19", "'fixed' written twice"]),
    ("run-bad-cpus-per-cell", run(T, "--cpus-per-cell", "0"), 2, ["--cpus-per-cell", "0 is not >= 1"]),
    ("run-not-utf8-subprocess", run(b"name: caf\xe9\n"), 2, ["suite.yaml:1", "not UTF-8"], None, True),
    # --- compare -------------------------------------------------------------------------
    ("compare-truncated-cell", on_run("compare", cells={"0123456789ab.json": TRUNCATED}), 2,
     ["0123456789ab.json:", "not valid JSON"]),
    ("compare-empty-object-cell", on_run("compare", cells={"0123456789ab.json": "{}"}), 2,
     ["0123456789ab.json", "hash (field required)"]),
    ("compare-missing-run", lambda tmp: ["compare", str(tmp / "gone"), _run_folder(tmp)], 2, ["gone", "no such file"]),
    ("compare-misspelt-fail-on", lambda tmp: ["compare", _run_folder(tmp, "a"), _run_folder(tmp, "b"),
                                              "--fail-on", "seg/mIOU<-0.02"], 2, ["'seg/mIOU'", "Did you mean"]),
    ("compare-bad-fail-on", lambda tmp: ["compare", _run_folder(tmp, "a"), _run_folder(tmp, "b"),
                                         "--fail-on", "mIoU drops"], 2, ["'mIoU drops'", "METRIC<NUMBER"]),
    ("compare-cells-not-a-list", on_file("compare", '{"cells": {}}'), 2, ["result.json", "'cells' is a dict"]),
    ("compare-truncated-subprocess", on_run("compare", cells={"0123456789ab.json": TRUNCATED}), 2,
     ["0123456789ab.json:", "not valid JSON"], None, True),
    # --- doctor --------------------------------------------------------------------------
    ("doctor-not-json", on_file("doctor", "not json\n"), 2, ["result.json:1:1", "not valid JSON"]),
    ("doctor-missing-file", on_file("doctor", None), 2, ["result.json", "no such file"]),
    ("doctor-empty-object", on_file("doctor", "{}"), 2, ["result.json", "hash (field required)"]),
    ("doctor-empty-list", on_file("doctor", "[]"), 2, ["result.json", "a JSON list"]),
    ("doctor-wrong-types", on_file("doctor", '{"hash": 1, "label": "a", "status": "ok", "metrics": []}'), 2,
     ["result.json", "hash (input should be a valid string)", "metrics"]),
    ("doctor-not-utf8", on_file("doctor", b"\xff\xfe{}"), 2, ["result.json", "not UTF-8"]),
    ("doctor-truncated-cell", on_run("doctor", cells={"0123456789ab.json": TRUNCATED}), 2,
     ["0123456789ab.json:", "not valid JSON"]),
    ("doctor-empty-list-subprocess", on_file("doctor", "[]"), 2, ["result.json", "a JSON list"], None, True),
    # --- report --------------------------------------------------------------------------
    ("report-truncated-cell", on_run("report", cells={"0123456789ab.json": TRUNCATED}), 2,
     ["0123456789ab.json:", "not valid JSON"]),
    ("report-empty-object-cell", on_run("report", cells={"0123456789ab.json": "{}"}), 2,
     ["0123456789ab.json", "status (field required)"]),
    ("report-empty-folder", lambda tmp: ["report", str(tmp)], 2, ["{tmp}", "no cell results"]),
    ("report-out-is-a-file", lambda tmp: ["report", _run_folder(tmp), "--out", _suite(tmp, "x", "file.txt")], 2,
     ["--out", "file.txt", "is a file"]),
    ("history-missing-run", lambda tmp: ["history", _run_folder(tmp), str(tmp / "nope")], 2, ["nope"]),
    ("history-out-is-a-file", lambda tmp: ["history", _run_folder(tmp), "--out", _suite(tmp, "x", "file.txt")], 2,
     ["--out", "file.txt", "is a file"]),
]


def _case(row):
    cid, make, code, needles, *rest = row
    env = rest[0] if rest else None
    return pytest.param(make, code, needles, env or {}, bool(rest[1:] and rest[1]), id=cid)


@pytest.mark.parametrize("make, code, needles, env, subproc", [_case(r) for r in CASES])
def test_bad_input(make, code, needles, env, subproc, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MTBENCH_DATA", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v.format(tmp=tmp_path))
    argv = ["--no-entrypoints", *make(tmp_path)]
    if subproc:
        proc = subprocess.run([sys.executable, "-m", "mtbench", *argv], capture_output=True, text=True, timeout=300,
                              cwd=REPO, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        got, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        got = main(argv)
        out, err = capsys.readouterr()
    assert got == code, err
    assert "Traceback" not in err + out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    first = next(ln for ln in lines if ln.startswith("mtbench"))
    assert "error:" in first, err
    assert len(lines) <= 24, "the error must stay short"  # argparse: usage + one line; suites: at most 20 + 2
    for needle in needles:
        assert needle.format(tmp=tmp_path) in err, f"{needle!r} not in {err!r}"


def test_table_is_large_enough():
    """At least 32 distinct bad inputs across validate, run, compare, doctor and report."""
    ids = [cid for cid, *_ in CASES]
    assert len(ids) >= 32 and len(set(ids)) == len(ids)
    assert {"run", "compare", "doctor", "report"} <= {cid.split("-")[0] for cid in ids}


def test_alias_bomb_is_refused_fast(write_suite):
    """406 bytes that expand to 9^9 (387 million) strings under ``yaml.safe_load`` stop at the first alias."""
    from mtbench.errors import SuiteError
    from mtbench.suite import load_suite
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    path = write_suite("\n".join(levels) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(SuiteError, match=r"suite.yaml:2:\d+: invalid YAML: alias '\*a' refused"):
        load_suite(path)
    assert time.perf_counter() - t0 < 10.0  # unrefused, the expansion runs for minutes; 10 s spares a loaded runner


def test_results_file_fails_before_any_training(write_suite, tmp_path, monkeypatch, capsys):
    import mtbench.executors.local as local
    monkeypatch.setattr(local, "run_cell", lambda *a, **k: pytest.fail("a cell trained before the results folder was checked"))
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    assert main(["--no-entrypoints", "run", str(write_suite()), "--results", str(blocker)]) == 2
    assert "give --results a folder" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, capsys):
    (tmp_path / "r.json").write_text("[]")
    assert main(["--debug", "doctor", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("mtbench: error:")


def test_internal_error_is_one_line_with_exit_70(tmp_path, monkeypatch, capsys):
    import mtbench.cli as cli
    monkeypatch.setattr(cli, "cmd_plugins", lambda args: {}["boom"])
    assert main(["plugins"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error: KeyError" in err and "--debug" in err


def test_tracker_without_the_extra_is_one_line(tmp_path, monkeypatch, capsys):
    """``--tracker mlflow`` where mlflow cannot be imported: exit 2, the library and the extra named."""
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError, as when not installed
    assert main(["report", _run_folder(tmp_path), "--no-html", "--tracker", "mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mtbench: error: --tracker mlflow: mlflow is not installed; pip install 'mtbench[tracking]'"
