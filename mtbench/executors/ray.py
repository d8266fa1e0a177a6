"""The Ray executor: long-lived worker actors, one per CPU slot, cells dispatched to idle ones.

``mtbench run SUITE --executor ray [--address ADDR]``. The cluster's CPUs (and GPUs) are cut
into slots of ``cpus_per_cell`` CPUs (default: the suite's ``fixed.threads``, else 1) and
``gpus_per_cell`` GPUs; one actor (:class:`CellWorker`) holds each slot for the whole run, with
torch's thread count set to its CPUs. An actor imports torch/timm/mtbench and builds its
plugin registry once (plugins must be installed where the workers run), then runs cell after
cell: a short cell no longer pays a fresh worker's imports (the cost that made one Ray task per
cell slower than the local executor on 2 cores). Cells go to whichever actor is idle
(:class:`ray.util.ActorPool`). The driver stores every record as it arrives (atomic write),
so resume, re-profiling, interruption and aggregation behave exactly as with the local
executor.

Cells that run side by side share the machine's memory bandwidth and caches, so their
latency/FPS figures are taken under that load: every record says how many cells the pool could
run at once (``profile.concurrent_cells``, the number of actors; 1 = alone, as the local
executor runs). Profiling is not serialised: a serialised phase would leave the other slots
idle, which the fan-out is meant to avoid; compare latencies only between records with the
same ``concurrent_cells``.

Ray is an optional extra: ``pip install mtbench[ray]``.
"""

from __future__ import annotations

import math
from typing import Callable

from mtbench.checkpoint import resumed_note
from mtbench.diagnostics.data import dropped_annotations
from mtbench.errors import MtbenchError
from mtbench.plugins import Registry, Spec, get_registry, hookimpl
from mtbench.reprofile import stored_or_reprofiled
from mtbench.results import ResultStore
from mtbench.suite import Cell


class CellWorker:
    """One slot's worker: imports and the plugin registry once, then :meth:`run` per cell.

    :param threads: torch's intra-op threads (the slot's CPUs), also written into each cell's
        ``fixed.threads`` so the record says what the cell ran with.
    """

    def __init__(self, threads: int, load_entrypoints: bool, disable: list[str]):
        import torch

        import mtbench.runner  # noqa: F401  (imported once per actor, not once per cell)

        torch.set_num_threads(threads)
        self.threads = threads
        self.registry = get_registry(load_entrypoints=load_entrypoints, disable=disable)

    def run(self, cell: Cell, workdir, keep_weights: str) -> dict:
        """:func:`mtbench.runner.run_cell` of ``cell`` in this actor (its record)."""
        from mtbench.runner import run_cell

        cell.config["fixed"] = {**cell.config["fixed"], "threads": self.threads}
        return run_cell(cell, self.registry, show_progress=False, workdir=workdir, keep_weights=keep_weights)


def slots(resources: dict, cpus: int, gpus: float, cells: int) -> int:
    """How many actors to start: the ``cpus``-CPU (``gpus``-GPU) slots the cluster's
    ``resources`` (``ray.cluster_resources()``) hold, at most ``cells``, at least 1."""
    n = int(resources.get("CPU", 1) // cpus)
    if gpus:
        n = min(n, int(math.floor(resources.get("GPU", 0) / gpus + 1e-9)))
    return max(1, min(n, cells))


def run_ray(cells: list[Cell], store: ResultStore, force: bool = False, address: str | None = None,
            cpus_per_cell: int | None = None, gpus_per_cell: float = 0.0, load_entrypoints: bool = True,
            disable: list[str] = (), echo: Callable[[str], None] = print, fail_fast: bool = False,
            keep_weights: str = "final", reprofile_all: bool = False) -> list[dict]:
    """Run (or resume) ``cells`` on a pool of Ray actors; return their records in cell order.

    Each actor builds its registry as the driver did (``load_entrypoints``, ``disable``).
    Stored cells are skipped (or re-profiled in the driver when only ``profile.*`` changed).
    With ``fail_fast`` the pool is stopped when the first cell fails: cells not yet started
    are not run and those running are cancelled (the records returned are those of the cells
    that finished).

    :raises MtbenchError: Ray is not installed.
    """
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise MtbenchError("the Ray executor needs Ray: pip install 'mtbench[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    registry = get_registry(load_entrypoints=load_entrypoints, disable=disable)  # re-profiling runs here, in the driver
    records: dict[str, dict] = {}
    todo = []
    for cell in cells:
        stored, note = stored_or_reprofiled(cell, store, registry, force, reprofile_all)
        if note:
            echo(f"{cell.label}: {note}")
        if stored is not None:
            records[cell.hash] = stored
        else:
            todo.append(cell)
    if not todo:
        return [records[c.hash] for c in cells if c.hash in records]
    cpus = cpus_per_cell or todo[0].config["fixed"].get("threads") or 1
    n = slots(ray.cluster_resources(), cpus, gpus_per_cell, len(todo))
    worker = ray.remote(num_cpus=cpus, num_gpus=gpus_per_cell)(CellWorker)
    actors = [worker.remote(cpus, load_entrypoints, list(disable)) for _ in range(n)]
    echo(f"ray: {n} worker(s) of {cpus} CPU(s)" + (f" and {gpus_per_cell} GPU" if gpus_per_cell else ""))
    pool = ActorPool(actors)
    by_hash = {cell.hash: cell for cell in todo}
    for cell in todo:
        pool.submit(lambda actor, c: actor.run.remote(c, store.cell_dir(c.hash), keep_weights), cell)
    left = len(todo)
    try:
        while left:
            rec = pool.get_next_unordered()
            left -= 1
            cell = by_hash[rec["hash"]]
            if rec.get("profile"):
                rec["profile"]["concurrent_cells"] = n
            store.write(rec)
            echo(f"{cell.label}: {rec['status']}" + ("" if rec["status"] == "ok" else f" ({rec['reason']})"))
            if rec.get("resumed"):
                echo(f"{cell.label}: {resumed_note(rec['resumed'])}")
            for finding in dropped_annotations(rec):
                echo(f"  warning: {finding.message}")
            records[cell.hash] = rec
            if fail_fast and rec["status"] != "ok" and left:
                echo(f"stopped at the first failed cell (--fail-fast): {left} cell(s) cancelled")
                break
    finally:
        for actor in actors:  # ends the cells still running (fail-fast, Ctrl-C) and frees the slots
            ray.kill(actor)
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
    return [Spec("executor", "ray", _ray, "long-lived Ray actors, one per slot of CPUs, a cell each at a time (pip install 'mtbench[ray]')")]
