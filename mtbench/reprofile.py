"""Re-profiling a trained cell from its stored weights, never retraining it.

A stored record whose training identity is the cell's but whose evaluation identity is not
(only ``profile.*`` changed: more latency repeats, another runtime) is measured again on the
cell's final weights (``cells/<hash>/weights.safetensors``, :mod:`mtbench.checkpoint`):
``mtbench run`` does it by itself, ``mtbench run SUITE --reprofile`` does it for every stored
cell (e.g. on a quieter machine). Metrics, stages and history stay those of the training run
(the same weights); ``profile``, ``harness``, ``diagnostics`` and ``identity`` are renewed and
``reprofiled`` says when, where and how long it took.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from mtbench.checkpoint import WEIGHTS, discard_checkpoint, load_weights
from mtbench.diagnostics import diagnose
from mtbench.plugins import Registry
from mtbench.results import cell_identity_record
from mtbench.provenance import environment, plugins_in_play
from mtbench.runner import _device, build_model, datasets, measure, runtime_inputs
from mtbench.suite import Cell


def can_reprofile(record: dict | None, workdir: Path) -> bool:
    """An ok record whose cell folder holds its final weights."""
    return bool(record) and record.get("status") == "ok" and (Path(workdir) / WEIGHTS).is_file()


def reprofile(cell: Cell, registry: Registry, record: dict, workdir: Path) -> dict:
    """``record`` with its profile measured afresh under ``cell``'s ``profile`` settings on the
    weights stored in ``workdir``; no training step is taken.

    :raises CheckpointError: no stored weights, or weights that do not fit the cell's model.
    """
    started = time.perf_counter()
    cfg = cell.config
    if cfg["fixed"].get("threads"):
        torch.set_num_threads(cfg["fixed"]["threads"])
    device = _device(cfg["fixed"]["device"])
    train_sets = datasets(cfg, registry, "train")
    infos = {t: ds.info for t, ds in train_sets.items()}
    model = build_model(cfg, registry, infos, device)
    load_weights(model, Path(workdir))
    out = copy.deepcopy(record)
    out.update(config=cfg, identity=cell_identity_record(cell))
    train_s = float((record.get("profile") or {}).get("train_s") or 0.0)
    measure(out, model, cfg, registry, {t: i.num_classes for t, i in infos.items()}, device, train_s,
            runtime_inputs(cfg, registry, model, device, record.get("metrics") or {}, train_sets))
    out["diagnostics"] = diagnose(out)
    out["reprofiled"] = {"seconds": time.perf_counter() - started, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "env": environment(device, plugins_in_play(cell.identity), cell.suite_sha256),
                         "trained_wall_s": record.get("wall_s")}
    return out


def stored_or_reprofiled(cell: Cell, store, registry: Registry, force: bool = False, reprofile_all: bool = False
                         ) -> tuple[dict | None, str | None]:
    """What an executor does with a cell before running it: ``(record, note)``, the record to keep
    (None: run the cell) and what to say. :meth:`mtbench.results.ResultStore.resume`, then a kept ok
    record measured under other profile settings (or any, with ``reprofile_all``) re-profiled from
    its weights and stored; ``force``: nothing kept, the cell's checkpoint discarded (step 0)."""
    workdir = store.cell_dir(cell.hash)
    if force:
        discard_checkpoint(workdir)
        return None, None
    stored, note = store.resume(cell)
    if stored is not None and (reprofile_all or store.profile_stale(cell, stored)) and can_reprofile(stored, workdir):
        stored = reprofile(cell, registry, stored, workdir)
        store.write(stored)
        took = stored["reprofiled"]
        note = (f"re-profiled from its stored weights in {took['seconds']:.1f} s, no training step (its full run took "
                f"{took['trained_wall_s'] or 0:.1f} s)")
    return stored, note
