"""The local executor: cells run in this process, sequentially, each result stored at once.

Cells whose hash already has a stored result are skipped (resume) unless ``force``
(failed ones are re-run when the store has ``retry_failed``).
A Ctrl-C stops the run between or inside a cell; everything stored so far stays valid
and the next run starts at the first cell without a result.
"""

from __future__ import annotations

from typing import Callable

from mtbench.checkpoint import resumed_note
from mtbench.diagnostics.data import dropped_annotations
from mtbench.plugins import Registry, Spec, hookimpl
from mtbench.reprofile import stored_or_reprofiled
from mtbench.results import ResultStore
from mtbench.runner import run_cell
from mtbench.suite import Cell


def run_local(cells: list[Cell], registry: Registry, store: ResultStore, force: bool = False,
              show_progress: bool = True, echo: Callable[[str], None] = print, keep_weights: str = "final",
              reprofile_all: bool = False, fail_fast: bool = False, post_mortem: bool = False) -> list[dict]:
    """Run (or resume) ``cells``; return their records in cell order. A cell interrupted earlier
    continues from its checkpoint (unless ``force``); a stored cell measured under other profile
    settings (every stored cell with ``reprofile_all``) is re-profiled from its weights
    (:mod:`mtbench.reprofile`); ``keep_weights``: :func:`mtbench.checkpoint.tidy`.

    :param fail_fast: stop after the first cell that fails (its record is stored; the cells
        after it are not run and have no record).
    :param post_mortem: enter the debugger where a failing cell raised (``--pdb``).
    """
    records = []
    for i, cell in enumerate(cells, 1):
        stored, note = stored_or_reprofiled(cell, store, registry, force, reprofile_all)
        if note:
            echo(f"[{i}/{len(cells)}] {cell.label}: {note}")
        if stored is not None:
            records.append(stored)
            continue
        echo(f"[{i}/{len(cells)}] {cell.label} ({cell.hash}) ...")
        rec = run_cell(cell, registry, show_progress, workdir=store.cell_dir(cell.hash), keep_weights=keep_weights,
                       post_mortem=post_mortem)
        if rec.get("resumed"):
            echo(f"[{i}/{len(cells)}] {cell.label}: {resumed_note(rec['resumed'])}")
        store.write(rec)
        status = "ok" if rec["status"] == "ok" else f"FAILED: {rec['reason']}"
        echo(f"[{i}/{len(cells)}] {cell.label}: {status} in {rec['wall_s']:.0f} s")
        for finding in dropped_annotations(rec):
            echo(f"  warning: {finding.message}")
        records.append(rec)
        if fail_fast and rec["status"] != "ok" and i < len(cells):
            echo(f"stopped at the first failed cell (--fail-fast): {len(cells) - i} cell(s) not run")
            break
    return records


def _local(cells: list[Cell], registry: Registry, store: ResultStore, force: bool, show_progress: bool,
           options: dict) -> list[dict]:
    return run_local(cells, registry, store, force=force, show_progress=show_progress,
                     keep_weights=options.get("keep_weights", "final"),
                     reprofile_all=options.get("reprofile_all", False), fail_fast=options.get("fail_fast", False),
                     post_mortem=options.get("post_mortem", False))


@hookimpl
def mtbench_register_executors():
    return [Spec("executor", "local", _local, "in this process, one cell after another")]
