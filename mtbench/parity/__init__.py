"""``mtbench parity A B``: two implementations of one architecture side by side.

Each side is a :class:`~mtbench.parity.sides.Side` (the adapter contract), built from a spec:

- ``NAME[params]``: the registered PyTorch model ``NAME`` (``gold-yolo[n]``,
  ``gold-yolo[size=s,reg_max=16]``); a bare value binds the factory's first parameter that
  mtbench does not pass itself (gold-yolo: ``size``); ``key=value`` values are YAML scalars;
  ``loss=NAME`` sets this side's det loss (default: the command's ``--loss``, ``varifocal``).
- ``FRAMEWORK:NAME[params]``: the model ``NAME`` of another framework, from the adapter a
  distribution registers under entry-point group ``mtbench.frameworks`` (``jittor:gold-yolo[n]``,
  plugins/mtbench-jittor). The entry point is ``factory(spec, num_classes, loss, loss_params)
  -> Side`` (:class:`~mtbench.parity.sides.ImplSpec`; :class:`~mtbench.parity.sides.Side`).
- ``runtime:onnx`` / ``runtime:compile`` (or ``onnx`` / ``compile``): side A's model exported to
  ONNX and run by ONNX Runtime (inference only), or under ``torch.compile``.

Both sides get the same weights: side A is built with seed ``seed``, its
:meth:`Side.state` (``{PyTorch state_dict name: float32 array}``) goes to side B's
:meth:`Side.load`, which maps names through its documented rule and reports what did not
fit (:class:`Transfer`). Then, on the same inputs:

1. parameters per named module (names grouped to ``depth`` dotted parts), A vs B;
2. eval-mode forward on the first batch: per output max-abs and relative difference;
3. train-mode loss components on that batch with the same targets (``total`` included), and
   per-parameter gradient differences after one backward of ``total``; where both sides
   record their activation gates (:mod:`mtbench.parity.gates`: the input of every ``ReLU`` /
   ``ReLU6`` module), the modules where an input lies on another side of a kink in B than in
   A; when every such flip is float rounding (``|x_a - x_b|`` within the forward tolerance of
   the module's largest input), the gradients are judged again with A's gates imposed on B
   (a flip at a kink changes a gradient by far more than rounding: train-mode BatchNorm
   spreads it over the channel), otherwise the flip fails as ``gates:``;
4. ``steps`` SGD steps (``lr``, momentum ``momentum``) on the same batches, weights
   re-transferred first, the sides in lockstep (:meth:`Side.train_step`: A, then B, then A's
   float64 twin, each step): both loss curves and the divergence step (first step whose
   ``total`` differs beyond ``curve_rel``). Gated by the rule of step 3 (unless
   ``Options.curve_gates`` is off): at each step, wherever an input of B (and of the twin)
   lies on another piece than A's and the flip is float rounding, A's piece is imposed;
   a flip beyond rounding is left as it is; both are counted per step
   (:class:`~mtbench.parity.gates.ImposeRounding`);
5. batch-1 latency and batch-``batch_size`` FPS of :meth:`Side.forward` (inputs and outputs
   as numpy: the same work in both), with :func:`mtbench.profiling.latency.sample_adaptive`
   under one :class:`~mtbench.profiling.latency.StopRule`, series interleaved A, B.

Relative difference of two arrays ``a`` (A) and ``b`` (B): ``max|a - b| / max(max|a|, max|b|)``
(0 when both are 0), so a value that is 0 on one side only has relative difference 1.

What float32 allows: where side A is a PyTorch model, each check is also run between A and
its float64 twin on the same input (``floor_rel``): the difference float32 rounding alone
makes. A difference passes up to ``limit = max(tol, floor_factor * floor_rel)``
(``floor_factor`` 10), so a gradient that is exactly 0 in exact arithmetic (a bias before a
train-mode BatchNorm, which removes any constant) and is float noise on both sides is not
reported, while one a port gets wrong is. Tolerances (:class:`~mtbench.parity.compare.Tolerances`):
forward 1e-4, loss components 1e-4, gradients 1e-3 (each parameter), loss curve 1e-2 (each
step). The curve fails when B departs from A (beyond 1e-2) before A's float64 twin does (or
the twin never does). A parameter count that differs, a weight that did not transfer or an
output missing on one side always fails. Latency is reported, never judged.
"""
from __future__ import annotations

from mtbench.parity.compare import Options, Tolerances, render, run_parity
from mtbench.parity.sides import (ImplSpec, ParityError, Setup, Side, TorchSide, Transfer, build_side, load_batches,
                                  open_dataset, parse_spec)

__all__ = ["ImplSpec", "Options", "ParityError", "Setup", "Side", "Tolerances", "TorchSide", "Transfer", "build_side",
           "load_batches", "open_dataset", "parity", "parse_spec", "render", "run_parity"]


def parity(a: str, b: str, registry, data: str = "synthetic", image_size: int = 128, loss: str = "varifocal",
           loss_params: dict | None = None, seed: int = 0, opts: Options = Options(),
           adapters: dict | None = None) -> dict:
    """``mtbench parity A B``: build both sides from their specs, feed them ``opts.steps``
    batches (at least one) of the training split of ``data`` (a dataset spec) at ``image_size``
    pixels, and return :func:`~mtbench.parity.compare.run_parity`'s report.

    :raises ParityError: a spec that does not parse or cannot be built.
    :raises PluginError: an unknown model, loss or dataset.
    """
    data_spec = parse_spec(data)
    ds = open_dataset(registry, data_spec, "det", image_size)
    setup = Setup(registry, ds.info, loss, dict(loss_params or {}), image_size, seed)
    side_a = build_side(parse_spec(a), setup, adapters=adapters)
    side_b = build_side(parse_spec(b), setup, reference=side_a, adapters=adapters)
    batches = load_batches(ds, opts.batch_size, max(1, opts.steps), seed)
    report = run_parity(side_a, side_b, batches, opts)
    report["data"] = {"dataset": data, "image_size": image_size, "seed": seed, "loss": loss,
                      "loss_params": setup.loss_params}
    return report
