"""Checkpoints of a cell's training, mid-cell resume, and its final weights.

Each cell has a folder ``<results>/<suite>/cells/<hash>/`` beside its record:

- ``checkpoint.pt``: the full training state, written atomically (temporary file + rename)
  every ``fixed.checkpoint_every`` (steps, epochs of the largest train split, or minutes):
  model, optimiser, schedule, the strategy's state (:func:`state_of`: learned task weights,
  log-variances, their optimisers, generators; the forgetting mitigations' teacher, Fisher
  and anchors, replay buffers), the stage and step, every RNG (Python, NumPy, torch CPU and
  CUDA, the loaders' generator), the weights' moving average (``fixed.ema``) and its update
  count, each live batch stream's epoch order and position
  (:class:`ResumableSampler`), the loss history. Read back with
  ``torch.load(weights_only=True)`` only: a file that needs more (an arbitrary pickled
  object) is refused (:class:`CheckpointError`, one line naming the file).
- ``progress.json``: the last step done, so a resumed run says how much work was lost.
- ``weights.safetensors``: the trained model's final weights (``--keep-weights``).

The next ``mtbench run`` continues an interrupted cell from its last checkpoint; on CPU with
``num_workers = 0`` loaders (the built-in ones) it reaches bitwise the same weights and
metrics as an uninterrupted run (``tests/test_checkpoint.py``).
"""

from __future__ import annotations

import pickle
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import RandomSampler

from mtbench.atomic import atomic_path
from mtbench.errors import MtbenchError

CHECKPOINT, PROGRESS, WEIGHTS = "checkpoint.pt", "progress.json", "weights.safetensors"
KEEP = ("none", "final", "all")
PROGRESS_EVERY_S = 5.0  # seconds between progress.json writes


class CheckpointError(MtbenchError):
    """A checkpoint that cannot be trusted or read: the message names the file."""


class ResumableSampler(RandomSampler):
    """``RandomSampler(data, generator=g)`` (what ``DataLoader(shuffle=True, generator=g)`` uses)
    whose pass over the data can be saved (``order``, ``taken``) and continued (:meth:`continue_at`).

    It draws from ``generator`` exactly as ``RandomSampler`` does (one ``randperm(n)`` per pass and
    the empty tail of a second one when the pass ends), so a run's batches are the same with
    either. ``taken`` counts the indices handed out, i.e. ``batches x batch_size`` for a loader
    without worker processes (with workers, prefetching runs ahead of training).
    """

    def __init__(self, data_source, generator: torch.Generator):
        super().__init__(data_source, generator=generator)
        self.order: list[int] | None = None
        self.taken = 0
        self.pending: tuple[list[int], int] | None = None

    def continue_at(self, order: list[int], taken: int) -> None:
        """The next pass yields ``order[taken:]`` (then ends as the saved pass would have)."""
        self.pending = (list(order), int(taken))

    def __iter__(self):
        n = len(self.data_source)
        if self.pending is not None:
            (self.order, self.taken), self.pending = self.pending, None
        else:
            self.order, self.taken = torch.randperm(n, generator=self.generator).tolist(), 0
        while self.taken < len(self.order):
            self.taken += 1
            yield self.order[self.taken - 1]
        torch.randperm(n, generator=self.generator)  # RandomSampler's tail draw: the generator's stream matches it


def epoch_iter(loader):
    """``iter(loader)``; when its sampler continues a saved pass, the loader's generator is given
    back the state it had before the iterator drew its base seed (that draw was made when the
    pass first began, before the checkpoint)."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, ResumableSampler) and sampler.pending is not None and loader.generator is not None:
        state = loader.generator.get_state()
        it = iter(loader)
        loader.generator.set_state(state)
        return it
    return iter(loader)


# --- strategy state ------------------------------------------------------------------------

def _plain(v: Any, params: set[int]) -> bool:
    """A value ``torch.load(weights_only=True)`` reads back and that is not a model parameter."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, torch.Tensor):
        return id(v) not in params
    if isinstance(v, (list, tuple)):
        return all(_plain(x, params) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, (str, int, tuple)) and _plain(x, params) for k, x in v.items())
    return False


def state_of(obj: Any, model: nn.Module) -> dict:
    """The state of a strategy (or one of its parts) that training changes, by attribute:
    modules and optimisers by ``state_dict``, generators by state, tensors (not the model's
    parameters) cloned, plain values (numbers, strings, lists and dicts of them and of tensors)
    as they are, plain objects recursively; anything else (references to the model's parameters,
    callables) is rebuilt by the strategy's ``setup``. An object with ``state_dict()`` /
    ``load_state(state, ctx)`` of its own (the forgetting mitigations) gives that instead."""
    if hasattr(obj, "load_state") and hasattr(obj, "state_dict"):
        return {"own": obj.state_dict()}
    params = {id(p) for p in model.parameters()}
    out = {}
    for name, v in vars(obj).items():
        if isinstance(v, (nn.Module, torch.optim.Optimizer)):
            out[name] = ("state_dict", v.state_dict())
        elif isinstance(v, torch.Generator):
            out[name] = ("generator", v.get_state())
        elif isinstance(v, torch.Tensor) and id(v) not in params:
            out[name] = ("tensor", v.detach().clone())
        elif _plain(v, params):
            out[name] = ("value", v)
        elif isinstance(v, dict) and all(hasattr(x, "__dict__") for x in v.values()):
            out[name] = ("objects", {k: state_of(x, model) for k, x in v.items()})
        elif hasattr(v, "__dict__") and not callable(v):
            out[name] = ("object", state_of(v, model))
    return out


def load_state_of(obj: Any, state: dict, ctx) -> None:
    """Put :func:`state_of`'s ``state`` back into ``obj`` (tensors in place where their shape
    matches, so optimisers holding them keep working)."""
    if "own" in state and hasattr(obj, "load_state"):
        obj.load_state(state["own"], ctx)
        return
    for name, (kind, v) in state.items():
        cur = getattr(obj, name, None)
        if kind == "state_dict":
            cur.load_state_dict(v)
        elif kind == "generator":
            cur.set_state(v)
        elif kind == "tensor" and isinstance(cur, torch.Tensor) and cur.shape == v.shape:
            with torch.no_grad():
                cur.copy_(v)
        elif kind == "object":
            load_state_of(cur, v, ctx)
        elif kind == "objects":
            for k, s in v.items():
                load_state_of(cur[k], s, ctx)
        else:
            setattr(obj, name, v)


# --- RNG -----------------------------------------------------------------------------------

def rng_state(loaders: dict) -> dict:
    """Every random stream training draws from (weights-only loadable)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    out = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                   cached), "torch": torch.get_rng_state(),
           "loaders": {t: l.generator.get_state() for t, l in loaders.items() if l.generator is not None}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict, loaders: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    for t, s in state["loaders"].items():
        loaders[t].generator.set_state(s)
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


# --- the cell's checkpoints ----------------------------------------------------------------

def parse_every(every: dict | None) -> tuple[str, float] | None:
    """``fixed.checkpoint_every`` (``{steps|epochs|minutes: n}``) as ``(unit, n)``; None = never."""
    if not every:
        return None
    unit, n = next((k, v) for k, v in every.items() if v)
    return unit, float(n)


class Checkpoints:
    """Saving and restoring one cell's training state in its folder ``folder``.

    :param every: ``(unit, n)`` from :func:`parse_every` (None: no checkpoints).
    :param steps_per_epoch: batches per epoch of the largest train split (for ``epochs``).
    """

    def __init__(self, folder: Path, every: tuple[str, float] | None, steps_per_epoch: int = 1):
        self.dir, self.every, self.steps_per_epoch = Path(folder), every, max(1, steps_per_epoch)
        self.saved: dict | None = None  # the checkpoint this run resumes from
        self.resumed: dict | None = None  # what the record says about it
        self._since, self._steps, self._progress_t = time.monotonic(), 0, 0.0

    @property
    def path(self) -> Path:
        return self.dir / CHECKPOINT

    def load(self) -> dict | None:
        """The saved checkpoint (None: there is none).

        :raises CheckpointError: a file ``torch.load(weights_only=True)`` refuses (it holds an
            arbitrary pickled object), or that is not a checkpoint; one line naming the file.
        """
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise CheckpointError(f"{self.path}: refused: not a weights-only checkpoint ({type(exc).__name__}: "
                                  f"{first[:160]}); delete it to retrain the cell from step 0") from None
        if not isinstance(state, dict) or not {"stage", "step", "model"} <= set(state):
            raise CheckpointError(f"{self.path}: refused: not an mtbench checkpoint (no stage/step/model); "
                                  f"delete it to retrain the cell from step 0")
        self.saved = state
        return state

    def lost(self) -> dict:
        """Work the interrupted run did after its last checkpoint (from ``progress.json``)."""
        from mtbench.results import read_json
        try:
            prog = read_json(self.dir / PROGRESS)
            same = prog.get("stage") == self.saved["stage"]
            return {"steps": max(0, prog["step"] - self.saved["step"]) if same else None,
                    "seconds": max(0.0, prog["time"] - self.saved["time"])}
        except (MtbenchError, KeyError, TypeError):
            return {"steps": None, "seconds": None}

    def restore(self, ctx, stage: str, opt, sched, owner) -> int:
        """Put the saved state back when it belongs to ``stage``; return the first step to run
        (0 when there is nothing to resume in this stage)."""
        s = self.saved
        if s is None or s["stage"] != stage:
            return 0
        ctx.model.load_state_dict(s["model"])
        opt.load_state_dict(s["optimizer"])
        sched.load_state_dict(s["scheduler"])
        load_state_of(owner, s["strategy"], ctx)
        if ctx.scaler is not None and s.get("scaler"):
            ctx.scaler.load_state_dict(s["scaler"])
        if ctx.ema is not None:
            ctx.ema.load_state_dict(s["ema"])
            ctx.ema_steps = int(s["ema_steps"])
        ctx.history[:] = s["history"]
        ctx.epochs.clear()
        ctx.epochs.update(s["epochs"])
        ctx._first_loss.clear()
        ctx._first_loss.update(s["first_loss"])
        for t, (order, taken) in s["streams"].items():
            ctx.loaders[t].sampler.continue_at(order, taken)
        set_rng_state(s["rng"], ctx.loaders)
        self.saved = None  # once
        return int(s["step"]) + 1

    def step_done(self, ctx, stage: str, step: int, opt, sched, owner, live: list[str], extra: dict) -> None:
        """After each optimiser step: save when the interval has passed; note progress."""
        self._steps += 1
        now = time.monotonic()
        if now - self._progress_t >= PROGRESS_EVERY_S:
            self._progress_t = now
            _write_progress(self.dir, stage, step)
        if self.every is None:
            return
        unit, n = self.every
        due = (now - self._since >= 60 * n if unit == "minutes" else
               self._steps >= (n if unit == "steps" else n * self.steps_per_epoch))
        if due:
            self.save(ctx, stage, step, opt, sched, owner, live, extra)
            self._since, self._steps = now, 0

    def save(self, ctx, stage: str, step: int, opt, sched, owner, live: list[str], extra: dict) -> None:
        """Write the full training state atomically (temporary file + rename)."""
        streams = {t: (ctx.loaders[t].sampler.order, ctx.loaders[t].sampler.taken) for t in live
                   if isinstance(ctx.loaders[t].sampler, ResumableSampler) and ctx.loaders[t].sampler.order}
        state = {"stage": stage, "step": step, "time": time.time(), "model": ctx.model.state_dict(),
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "strategy": state_of(owner, ctx.model), "history": list(ctx.history), "epochs": dict(ctx.epochs),
                 "first_loss": dict(ctx._first_loss), "streams": streams, "rng": rng_state(ctx.loaders),
                 "extra": extra, "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
                 "ema": ctx.ema.state_dict() if ctx.ema is not None else None, "ema_steps": ctx.ema_steps}
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        _write_progress(self.dir, stage, step)


def _write_progress(folder: Path, stage: str, step: int) -> None:
    from mtbench.results import write_json_atomic
    write_json_atomic(folder / PROGRESS, {"stage": stage, "step": step, "time": time.time()})


def save_weights(model: nn.Module, folder: Path) -> Path:
    """The trained model's weights as ``weights.safetensors`` (tensors sharing memory kept once)."""
    from safetensors.torch import save_model
    path = folder / WEIGHTS
    with atomic_path(path, mode=0o644) as tmp:  # as before: an ordinary readable file
        save_model(model, str(tmp))
    return path


def load_weights(model: nn.Module, folder: Path) -> None:
    """Load ``weights.safetensors`` into ``model`` (strict).

    :raises CheckpointError: missing file, or weights that do not fit the model.
    """
    from safetensors.torch import load_model
    path = folder / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path}: no stored weights (the cell ran with --keep-weights none?)")
    try:
        load_model(model, str(path), strict=True, device=str(next(model.parameters()).device))
    except (RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path}: does not fit the model: {str(exc).splitlines()[0]}") from None


def tidy(folder: Path, keep: str) -> None:
    """After a finished cell: ``none`` removes its weights and checkpoint, ``final`` the
    checkpoint, ``all`` keeps both; ``progress.json`` always goes."""
    drop = {"none": (CHECKPOINT, WEIGHTS), "final": (CHECKPOINT,), "all": ()}[keep]
    for name in drop + (PROGRESS,):
        (folder / name).unlink(missing_ok=True)


def discard_checkpoint(folder: Path) -> None:
    """Remove a cell's checkpoint (a forced re-run starts from step 0)."""
    for name in (CHECKPOINT, PROGRESS):
        (folder / name).unlink(missing_ok=True)


def resumed_note(resumed: dict) -> str:
    """What a run says about a cell it continued: where from, and the work the interruption lost."""
    lost = resumed.get("lost") or {}
    steps = "unknown" if lost.get("steps") is None else f"{lost['steps']} step(s)"
    secs = "" if lost.get("seconds") is None else f", {lost['seconds']:.1f} s"
    return f"resumed from its checkpoint at {resumed['stage']} step {resumed['step']}; work lost: {steps}{secs}"


def disk_used(cells_dir: Path) -> int:
    """Bytes in the cell folders (weights, checkpoints) under ``cells_dir`` (0 when absent)."""
    cells_dir = Path(cells_dir)
    return sum(p.stat().st_size for d in (cells_dir.iterdir() if cells_dir.is_dir() else ()) if d.is_dir()
               for p in d.rglob("*") if p.is_file())

