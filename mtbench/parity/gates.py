"""Activation gates in ``mtbench parity``: which linear piece of each piecewise-linear activation
module (``ReLU``, ``ReLU6``) every element took in a side's train-mode forward.

Why: a ReLU passes the gradient only where its input is above its kink. PyTorch's backward of
``relu`` (``threshold_backward``) passes it where ``x > 0``; of ``ReLU6`` (``hardtanh(0, 6)``)
where ``0 < x < 6``; Jittor's ``relu`` (``ternary(x > 0, x, 0)``) the same. Two implementations
whose forwards agree to float32 rounding can still put an input that lies within rounding of a
kink on opposite sides of it: the gradient passes on one side only, and a train-mode BatchNorm
before that activation spreads the one element's difference over its whole channel and
everything upstream. (Measured on Gold-YOLO-n at 128 px, README "Parity": three elements
within 2.7e-6 of 0 moved 224 of 456 parameter gradients by up to 6 %.)

So each side records the input of every such module (:func:`record_gates`); the report
compares the pieces (:func:`compare_gates`), judges each flip by how far the two inputs are
apart (a flip is float rounding when ``|x_a - x_b|`` is within the forward tolerance, relative
to the module's largest input), and B's backward is re-run with A's pieces imposed, so that
both gradients are of the same piecewise-linear function (:func:`mtbench.parity.compare.run_parity`).
In the N training steps the rule is applied at every step, element by element
(:class:`ImposeRounding`, :func:`mtbench.parity.compare.train_lockstep`): A's piece where a flip
is rounding, the side's own where it is not.
Covered: activation *modules* of these classes, by their class name (PyTorch's ``ReLU``,
Jittor's ``relu``, compared lower-cased); a functional ``relu`` / ``hardsigmoid`` call and max pooling (near-ties) are not.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable

import numpy as np

KINKED: dict[str, float | None] = {"relu": None, "relu6": 6.0}  # lower-cased class name -> upper kink (lower: 0)


def pieces(x: np.ndarray, upper: float | None) -> np.ndarray:
    """The linear piece each element of ``x`` (an activation's input) is on: int8 of ``x``'s
    shape, 0 where ``x <= 0``, 1 where ``0 < x`` (``< upper``), 2 where ``x >= upper``; the
    gradient passes on piece 1 only (PyTorch's backward, module docstring)."""
    p = (x > 0).astype(np.int8)
    if upper is not None:
        p[x >= upper] = 2
    return p


Force = Callable[[str, int, Callable[[], np.ndarray], "float | None"], "np.ndarray | None"]
"""Which pieces an activation call takes: ``force(module name, call index, x, upper kink)`` with
``x()`` the call's input as a numpy array; returns int8 pieces of its shape (:func:`pieces`) or
None for the module's own output (:func:`record_gates`)."""


def fixed(pieces_by_module: dict[str, list[np.ndarray]]) -> Force:
    """The :data:`Force` that imposes the given pieces (``{name: [int8 array per call]}``,
    :func:`gate_pieces`) on every call they cover."""
    def force(name, call, x, upper):
        calls = pieces_by_module.get(name, [])
        return calls[call] if call < len(calls) else None
    return force


@contextmanager
def record_gates(named_modules: Iterable[tuple[str, Any]], method: str, keep: Callable[[Any], Any],
                 impose: Callable[[Any, np.ndarray, float | None], Any],
                 force: dict[str, list[np.ndarray]] | Force | None = None,
                 to_numpy: Callable[[Any], np.ndarray] = np.asarray):
    """Within the block, every module of a :data:`KINKED` class among ``named_modules`` records
    ``keep(input)`` of each call in the yielded ``{name: [(kept input, upper), ...]}`` (calls in
    order); where ``force`` gives pieces for that call, the module returns
    ``impose(input, pieces, upper)`` instead of its own output. ``force``: ``{name: [int8 array
    per call]}`` (:func:`pieces`, :func:`fixed`), or a :data:`Force` ``force(name, call index,
    x, upper) -> int8 pieces or None`` (None: the module's own output), ``x()`` giving the
    kept input as a numpy array through ``to_numpy`` (:class:`ImposeRounding`).
    ``method``: the module's compute method (``forward`` in PyTorch, ``execute`` in Jittor),
    replaced on the instance and restored on exit.

    :raises ValueError: forced pieces whose shape differs from the call's input.
    """
    if isinstance(force, dict):
        force = fixed(force)
    record: dict[str, list] = {}
    patched = []
    for name, module in named_modules:
        kind = type(module).__name__.lower()  # PyTorch ReLU / ReLU6; Jittor relu / relu6 (jt.make_module)
        if kind not in KINKED:
            continue
        upper = KINKED[kind]

        def wrapped(x, *args, _name=name, _upper=upper, _own=getattr(module, method), **kwargs):
            calls = record.setdefault(_name, [])
            kept = keep(x)
            calls.append((kept, _upper))
            p = force and force(_name, len(calls) - 1, lambda: to_numpy(kept), _upper)
            if p is None:
                return _own(x, *args, **kwargs)
            if tuple(p.shape) != tuple(x.shape):
                raise ValueError(f"gates for {_name} (call {len(calls)}): shape {p.shape}, input {tuple(x.shape)}")
            return impose(x, p, _upper)

        setattr(module, method, wrapped)
        patched.append(module)
    try:
        yield record
    finally:
        for module in patched:
            delattr(module, method)


def _kink_dist(x: np.ndarray, upper: float | None) -> np.ndarray:
    return np.abs(x) if upper is None else np.minimum(np.abs(x), np.abs(x - upper))


def gate_pieces(gates: dict[str, list[tuple[np.ndarray, float | None]]]) -> dict[str, list[np.ndarray]]:
    """The ``force`` argument of :func:`record_gates` that imposes the pieces of a record."""
    return {n: [pieces(x, upper) for x, upper in calls] for n, calls in gates.items()}


def compare_gates(ga: dict[str, list[tuple[np.ndarray, float | None]]],
                  gb: dict[str, list[tuple[np.ndarray, float | None]]], tol: float) -> list[dict]:
    """Per activation module recorded on both sides (same calls, same shapes) whose pieces
    differ: ``elements`` compared, ``flipped`` (elements on another piece in B than in A),
    ``kink_dist_a`` (the largest distance of A's input from its nearest kink among them), ``rel``
    (``max |x_a - x_b|`` over the flipped elements over the module's largest ``|x|``) and
    ``ok`` (``rel <= tol``: the flip is float rounding at the kink). A module recorded on
    one side only or with other calls or shapes is a row with ``rel`` None (not ok)."""
    rows = []
    for name in dict.fromkeys([*ga, *gb]):
        a, b = ga.get(name), gb.get(name)
        if a is None or b is None or len(a) != len(b) or any(x.shape != y.shape for (x, _), (y, _) in zip(a, b)):
            rows.append({"module": name, "elements": None, "flipped": None, "kink_dist_a": None, "rel": None,
                         "limit": tol, "ok": False})
            continue
        xa = np.concatenate([np.asarray(x, np.float64).ravel() for x, _ in a])
        xb = np.concatenate([np.asarray(x, np.float64).ravel() for x, _ in b])
        dist = np.concatenate([_kink_dist(np.asarray(x, np.float64), u).ravel() for x, u in a])
        pa = np.concatenate([pieces(x, u).ravel() for x, u in a])
        flip = pa != np.concatenate([pieces(x, u).ravel() for x, u in b])
        if not flip.any():
            continue
        scale = max(np.abs(xa).max(), np.abs(xb).max())
        rel = float(np.abs(xa - xb)[flip].max() / scale)
        rows.append({"module": name, "elements": int(xa.size), "flipped": int(flip.sum()),
                     "kink_dist_a": float(dist[flip].max()), "rel": rel, "limit": tol, "ok": rel <= tol})
    return rows


class ImposeRounding:
    """The :data:`Force` of lockstep training (:func:`mtbench.parity.compare.train_lockstep`):
    A's pieces imposed on this side wherever its input is on another piece than A's and the
    flip is float rounding (``|x_a - x_b|`` within ``tol`` of the call's largest ``|x|``, A's or
    this side's: the rule of :func:`compare_gates`, per call), the side's own piece elsewhere, so
    a flip beyond rounding is left as it is. ``gates``: A's record of the same step
    (:meth:`~mtbench.parity.sides.Side.gates`). After the pass, ``imposed`` and ``beyond`` count
    the flipped elements per module (``{name: count}``) and ``beyond_rel`` is the largest
    ``|x_a - x_b|`` relative difference among the ones not imposed; a call A did not record, or
    recorded with another shape, is counted in ``unmatched`` and not imposed."""

    def __init__(self, gates: dict[str, list[tuple[np.ndarray, float | None]]], tol: float):
        self.gates, self.tol = gates, tol
        self.imposed: dict[str, int] = {}
        self.beyond: dict[str, int] = {}
        self.beyond_rel = 0.0
        self.unmatched: list[str] = []

    def __call__(self, name: str, call: int, x: Callable[[], np.ndarray], upper: float | None) -> np.ndarray | None:
        calls = self.gates.get(name, [])
        xb = np.asarray(x(), np.float64)
        if call >= len(calls) or calls[call][0].shape != xb.shape:
            self.unmatched.append(f"{name}[{call}]")
            return None
        xa = np.asarray(calls[call][0], np.float64)
        pa, pb = pieces(xa, upper), pieces(xb, upper)
        flip = pa != pb
        if not flip.any():
            return None
        gap = np.abs(xa - xb) / max(np.abs(xa).max(), np.abs(xb).max())
        near = flip & (gap <= self.tol)
        far = flip & ~near
        if far.any():
            self.beyond[name] = self.beyond.get(name, 0) + int(far.sum())
            self.beyond_rel = max(self.beyond_rel, float(gap[far].max()))
        if not near.any():
            return None
        self.imposed[name] = self.imposed.get(name, 0) + int(near.sum())
        return np.where(near, pa, pb).astype(np.int8)
