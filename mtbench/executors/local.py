"""The local executor: cells run in this process, sequentially, each result stored at once.

Cells whose hash already has a stored result are skipped (resume) unless ``force``
(failed ones are re-run when the store has ``retry_failed``).
A Ctrl-C stops the run between or inside a cell; everything stored so far stays valid
and the next run starts at the first cell without a result.
"""

from __future__ import annotations

from typing import Callable

from mtbench.diagnostics.data import dropped_annotations
from mtbench.plugins import Registry, Spec, hookimpl
from mtbench.results import ResultStore
from mtbench.runner import run_cell
from mtbench.suite import Cell


def run_local(cells: list[Cell], registry: Registry, store: ResultStore, force: bool = False,
              show_progress: bool = True, echo: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) ``cells``; return their records in cell order."""
    records = []
    for i, cell in enumerate(cells, 1):
        if not force:
            stored, note = store.resume(cell.hash)
            if note:
                echo(f"[{i}/{len(cells)}] {cell.label}: {note}")
            if stored is not None:
                records.append(stored)
                continue
        echo(f"[{i}/{len(cells)}] {cell.label} ({cell.hash}) ...")
        rec = run_cell(cell, registry, show_progress)
        store.write(rec)
        status = "ok" if rec["status"] == "ok" else f"FAILED: {rec['reason']}"
        echo(f"[{i}/{len(cells)}] {cell.label}: {status} in {rec['wall_s']:.0f} s")
        for finding in dropped_annotations(rec):
            echo(f"  warning: {finding.message}")
        records.append(rec)
    return records


def _local(cells: list[Cell], registry: Registry, store: ResultStore, force: bool, show_progress: bool,
           options: dict) -> list[dict]:
    return run_local(cells, registry, store, force=force, show_progress=show_progress)


@hookimpl
def mtbench_register_executors():
    return [Spec("executor", "local", _local, "in this process, one cell after another")]
