"""The result store under stress: one run per folder (lock), stale temporary files, records
that are not what they should be."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from mtbench.cli import main
from mtbench.errors import Exit, ResultFileError, RunLocked
from mtbench.results import LOCK_INFO, ResultStore, read_record
from tests.conftest import REPO, TINY_SUITE

ONE_CELL = TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [equal]")


def _cli(*argv: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MTBENCH_TEST_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mtbench", "--no-entrypoints", *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_second_run_on_a_locked_folder_exits_at_once(write_suite, tmp_path, capsys):
    holder = ResultStore(tmp_path, "tiny")
    with holder.locked():
        info = json.loads((holder.dir / LOCK_INFO).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        t0 = time.perf_counter()
        code = main(["--no-entrypoints", "run", str(write_suite(ONE_CELL)), "--results", str(tmp_path)])
        assert code == Exit.LOCKED == 4 and time.perf_counter() - t0 < 30
        err = capsys.readouterr().err
        assert f"in use by another mtbench run (pid {os.getpid()} on {info['host']}, started {info['started']})" in err
        with pytest.raises(RunLocked):
            with ResultStore(tmp_path, "tiny").locked():
                pass
    assert not (holder.dir / LOCK_INFO).exists()
    with ResultStore(tmp_path, "tiny").locked():  # released with the block
        pass


def test_two_concurrent_runs_compute_each_cell_once(write_suite, tmp_path):
    """Both started together: whichever takes the lock computes every cell, the other stops at
    once (exit 4; or, arriving after the first finished, finds every cell stored)."""
    suite, results = str(write_suite()), str(tmp_path / "res")
    first, second = (_cli("run", suite, "--results", results, "--no-progress", "--allow-suspect") for _ in range(2))
    outs = [p.communicate(timeout=600)[0] for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    computed = [h for out in outs for h in re.findall(r"\(([0-9a-f]{12})\) \.\.\.$", out, re.M)]
    assert codes in ([0, 0], [0, Exit.LOCKED]), outs
    assert len(computed) == 2 and len(set(computed)) == 2, outs
    if codes == [0, Exit.LOCKED]:
        assert any("is in use by another mtbench run (pid" in out for out in outs)
    cells = sorted((tmp_path / "res" / "tiny" / "cells").glob("*.json"))  # beside them: each cell's folder (weights)
    assert sorted(p.stem for p in cells) == sorted(computed)


def test_kill_during_a_cell_write_leaves_no_stale_file(tmp_path):
    """``kill -9`` between writing a record's temporary file and renaming it: the lock goes with
    the process, and the next start removes the temporary file."""
    script = textwrap.dedent(f"""
        import time
        import mtbench.results as results
        store = results.ResultStore({str(tmp_path)!r}, "tiny")
        with store.locked():
            results.os.replace = lambda *a: time.sleep(600)  # stop inside the atomic write
            store.write({{"hash": "0123456789ab", "label": "x", "status": "ok", "metrics": {{}}}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    cells = tmp_path / "tiny" / "cells"
    deadline = time.time() + 60
    while not list(cells.glob("*.tmp")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stale = list(cells.glob("*.tmp"))
    assert len(stale) == 1 and not list(cells.glob("*.json"))
    with ResultStore(tmp_path, "tiny").locked() as removed:  # the next start
        assert removed == stale
        assert not list(cells.glob("*.tmp"))


def test_sigterm_mid_cell_stops_as_ctrl_c_does(write_suite, tmp_path):
    """``kill`` (SIGTERM, what a job scheduler sends) during a cell: the Ctrl-C clean-up runs (one
    line, the lock info removed), with the shell's exit code for SIGTERM, 143."""
    suite = write_suite(TINY_SUITE.replace("budget: {steps: 2}", "budget: {steps: 5000}"))
    results = tmp_path / "res"
    proc = _cli("run", str(suite), "--results", str(results), "--no-progress")
    deadline = time.time() + 300
    while not list((results / "tiny" / "cells").glob("*/progress.json")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == Exit.TERMINATED == 143, out
    assert "mtbench: terminated (SIGTERM); finished cells are stored, re-run to resume" in out
    assert "Traceback" not in out and not (results / "tiny" / ".lock.json").exists()


def test_unreadable_stored_cell_is_recomputed_and_failed_one_says_how(tmp_path):
    store = ResultStore(tmp_path, "tiny")
    store.cells_dir.mkdir(parents=True)
    store.path("aaaaaaaaaaaa").write_text('{"hash": "aaaaaaaaaaaa", "lab')
    store.path("bbbbbbbbbbbb").write_text("{}")
    store.write({"hash": "cccccccccccc", "label": "c", "status": "failed", "reason": "DataError: x"})
    for h in ("aaaaaaaaaaaa", "bbbbbbbbbbbb"):
        rec, note = store.resume(h)
        assert rec is None and note.startswith("stored result unreadable, recomputed") and h in note
    rec, note = store.resume("cccccccccccc")
    assert rec["status"] == "failed" and note == "stored result (failed), skipped; re-run it with --retry-failed"
    retry = ResultStore(tmp_path, "tiny", retry_failed=True)
    assert retry.resume("cccccccccccc") == (None, "stored result (failed), recomputed (--retry-failed)")
    assert store.resume("dddddddddddd") == (None, None)


def test_read_record_names_file_line_and_key(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{\n "hash": "h",\n "label": ')
    with pytest.raises(ResultFileError, match=r"c\.json:3:\d+: not valid JSON"):
        read_record(p)
    p.write_text('{"hash": "h", "label": "l", "status": "ok", "diagnostics": {}}')
    with pytest.raises(ResultFileError, match=r"c\.json: not a cell record: diagnostics \(input should be a valid list\)"):
        read_record(p)


def test_unwritable_results_folder_is_named_not_a_temporary_file(tmp_path, monkeypatch):
    """mkstemp's error names a random ``.NAME.xxxx.tmp``; the user can only fix the folder."""
    import errno
    import tempfile

    from mtbench.atomic import atomic_path

    def refuse(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}abcd{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # as root, chmod cannot make a folder unwritable
    with pytest.raises(PermissionError, match="folder not writable, so c.json cannot be written") as err:
        with atomic_path(tmp_path / "cells" / "c.json") as tmp:
            tmp.write_text("{}")
    assert err.value.filename == str(tmp_path / "cells")
