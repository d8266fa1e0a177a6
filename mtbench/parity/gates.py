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


@contextmanager
def record_gates(named_modules: Iterable[tuple[str, Any]], method: str, keep: Callable[[Any], Any],
                 impose: Callable[[Any, np.ndarray, float | None], Any], force: dict[str, list[np.ndarray]] | None = None):
    """Within the block, every module of a :data:`KINKED` class among ``named_modules`` records
    ``keep(input)`` of each call in the yielded ``{name: [(kept input, upper), ...]}`` (calls in
    order); where ``force`` holds pieces for that call (``{name: [int8 array, ...]}``,
    :func:`pieces`), the module returns ``impose(input, pieces, upper)`` instead of its own
    output. ``method``: the module's compute method (``forward`` in PyTorch, ``execute`` in
    Jittor), replaced on the instance and restored on exit.

    :raises ValueError: forced pieces whose shape differs from the call's input.
    """
    record: dict[str, list] = {}
    patched = []
    for name, module in named_modules:
        kind = type(module).__name__.lower()  # PyTorch ReLU / ReLU6; Jittor relu / relu6 (jt.make_module)
        if kind not in KINKED:
            continue
        upper = KINKED[kind]

        def wrapped(x, *args, _name=name, _upper=upper, _own=getattr(module, method), **kwargs):
            calls = record.setdefault(_name, [])
            calls.append((keep(x), _upper))
            forced = (force or {}).get(_name, [])
            if len(calls) > len(forced):
                return _own(x, *args, **kwargs)
            p = forced[len(calls) - 1]
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
