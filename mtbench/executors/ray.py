"""The Ray executor: one Ray task per cell, results written by the same store as ``local``.

``mtbench run SUITE --executor ray [--address ADDR]``. Each task asks Ray for
``cpus_per_cell`` CPUs (default: the suite's ``fixed.threads``, else 1) and
``gpus_per_cell`` GPUs; inside the task torch's thread count is set to the CPUs given.
Workers build their own plugin registry (plugins must be installed where the workers
run). The driver stores every record as it arrives (atomic write), so resume,
interruption and aggregation behave exactly as with the local executor.

Ray is an optional extra: ``pip install mtbench[ray]``.
"""

from __future__ import annotations

from typing import Callable

from mtbench.checkpoint import resumed_note
from mtbench.diagnostics.data import dropped_annotations
from mtbench.errors import MtbenchError
from mtbench.plugins import Registry, Spec, get_registry, hookimpl
from mtbench.reprofile import stored_or_reprofiled
from mtbench.results import ResultStore
from mtbench.suite import Cell


def _run_remote(cell: Cell, threads: int, load_entrypoints: bool, disable: list[str], workdir,
                keep_weights: str) -> dict:
    import torch

    from mtbench.runner import run_cell

    torch.set_num_threads(threads)
    cell.config["fixed"] = {**cell.config["fixed"], "threads": threads}
    return run_cell(cell, get_registry(load_entrypoints=load_entrypoints, disable=disable), show_progress=False,
                    workdir=workdir, keep_weights=keep_weights)


def run_ray(cells: list[Cell], store: ResultStore, force: bool = False, address: str | None = None,
            cpus_per_cell: int | None = None, gpus_per_cell: float = 0.0, load_entrypoints: bool = True,
            disable: list[str] = (), echo: Callable[[str], None] = print, fail_fast: bool = False,
            keep_weights: str = "final", reprofile_all: bool = False) -> list[dict]:
    """Run (or resume) ``cells`` as Ray tasks; return their records in cell order.

    Each task builds its registry as the driver did (``load_entrypoints``, ``disable``).
    With ``fail_fast`` the tasks still pending when the first cell fails are cancelled (the
    records returned are those of the cells that finished).

    :raises MtbenchError: Ray is not installed.
    """
    try:
        import ray
    except ImportError as exc:
        raise MtbenchError("the Ray executor needs Ray: pip install 'mtbench[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    registry = get_registry(load_entrypoints=load_entrypoints, disable=disable)  # re-profiling runs here, in the driver
    records: dict[str, dict] = {}
    pending = {}
    for cell in cells:
        stored, note = stored_or_reprofiled(cell, store, registry, force, reprofile_all)
        if note:
            echo(f"{cell.label}: {note}")
        if stored is not None:
            records[cell.hash] = stored
            continue
        cpus = cpus_per_cell or cell.config["fixed"].get("threads") or 1
        task = ray.remote(num_cpus=cpus, num_gpus=gpus_per_cell)(_run_remote)
        pending[task.remote(cell, cpus, load_entrypoints, list(disable), store.cell_dir(cell.hash),
                            keep_weights)] = cell
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        cell = pending.pop(done[0])
        rec = ray.get(done[0])
        store.write(rec)
        echo(f"{cell.label}: {rec['status']}" + ("" if rec["status"] == "ok" else f" ({rec['reason']})"))
        if rec.get("resumed"):
            echo(f"{cell.label}: {resumed_note(rec['resumed'])}")
        for finding in dropped_annotations(rec):
            echo(f"  warning: {finding.message}")
        records[cell.hash] = rec
        if fail_fast and rec["status"] != "ok" and pending:
            for ref in pending:
                ray.cancel(ref)
            echo(f"stopped at the first failed cell (--fail-fast): {len(pending)} cell(s) cancelled")
            break
    return [records[c.hash] for c in cells if c.hash in records]


def _ray(cells: list[Cell], registry: Registry, store: ResultStore, force: bool, show_progress: bool,
         options: dict) -> list[dict]:
    return run_ray(cells, store, force=force, address=options.get("address"),
                   cpus_per_cell=options.get("cpus_per_cell"), gpus_per_cell=options.get("gpus_per_cell") or 0.0,
                   load_entrypoints=options.get("load_entrypoints", True), disable=options.get("disable", ()),
                   fail_fast=options.get("fail_fast", False), keep_weights=options.get("keep_weights", "final"),
                   reprofile_all=options.get("reprofile_all", False))


@hookimpl
def mtbench_register_executors():
    return [Spec("executor", "ray", _ray, "one Ray task per cell (pip install 'mtbench[ray]')")]
