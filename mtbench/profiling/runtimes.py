"""Latency, throughput and export parity per deployment runtime.

Runtimes:

- ``eager``: PyTorch eager (always measured; its figures are the table's headline).
- ``compile``: ``torch.compile(model)`` (Inductor); measured after compilation (the first
  warm-up call compiles). Where it cannot compile, the reason is recorded.
- ``onnx``: export with ``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic batch
  axis, checked at the FPS batch size against batch-1 runs of the same graph; a static
  re-export where that fails), run with ONNX
  Runtime: CUDA provider on a GPU cell when available, else CPU provider; intra-op threads =
  torch's thread count. Parity = max absolute difference between ONNX and PyTorch outputs
  (all task outputs) on the same random batch-1 input; ``parity_ok`` when below
  ``parity_tol`` (1e-4). On CUDA both sides of the parity check run in strict float32: the
  PyTorch reference with TF32 switched off for the call, the CUDA provider with
  ``use_tf32=0`` (TF32 alone moves outputs by ~1e-3..1e-1).

Every runtime is timed like eager (:mod:`mtbench.profiling.latency`): batch-1 latency and
FPS series sampled under the same :class:`~mtbench.profiling.latency.StopRule`, each with
its p50 / FPS interval and stop reason.

Each runtime also returns ``predict`` (images -> the model's raw outputs, as the runtime
computes them), from which the val metrics are re-computed per runtime when the suite asks
(``profile.runtime_metrics``; :func:`measure_runtimes`, :func:`mtbench.evaluation.runtime_val`).

A runtime that fails (export error, unsupported op, divergent outputs) is recorded as
``{"error": reason}`` for that runtime, one that cannot run on this machine
(:class:`~mtbench.errors.RuntimeUnavailable`: TensorRT without a GPU) as ``{"unavailable":
reason}``; the cell itself does not fail. Runtimes register through the hook
``mtbench_register_runtimes`` (these two here; ``onnx-fp16``, ``onnx-int8``, ``tensorrt``,
``tensorrt-int8`` in :mod:`mtbench.profiling.deploy`; a vendor's in its plugin).
"""

from __future__ import annotations

import contextlib
import inspect
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtbench.errors import RuntimeUnavailable
from mtbench.plugins import Spec, active_registry, hookimpl
from mtbench.profiling.latency import Budget, StopRule, fps_figures, latency_figures, sample_adaptive, torch_runner

PARITY_TOL = 1e-4


def flat_tensors(out: dict) -> tuple[torch.Tensor, ...]:
    """The tensors of a ``dict[task, Tensor | list[Tensor]]`` output, tasks sorted, levels in order."""
    flat: list[torch.Tensor] = []
    for k in sorted(out):
        flat.extend(out[k] if isinstance(out[k], (list, tuple)) else [out[k]])
    return tuple(flat)


class _Flat(nn.Module):
    """Wrap a model returning ``dict[task, Tensor | list[Tensor]]`` into one returning a flat tuple."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return flat_tensors(self.model(x))


@contextlib.contextmanager
def strict_fp32():
    """Switch TF32 off for CUDA matmuls and cuDNN convolutions inside the block (restored after)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _flat_outputs(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """Outputs of ``model`` on ``x`` in strict float32, as numpy arrays (tasks sorted)."""
    with torch.inference_mode(), strict_fp32():
        out = model(x)
    return [t.detach().cpu().numpy() for t in flat_tensors(out)]


def export_onnx(model: nn.Module, image_size: int, batch: int, path: Path, dynamic_batch: bool = False) -> Path:
    """Export ``model`` in eval mode for input ``float32 (batch, 3, S, S)``; the model stays in eval.

    :param dynamic_batch: mark the batch axis of the input ``images`` dynamic (one file for
        every batch size; :func:`measure_onnx` checks it at the FPS batch and re-exports with
        a static batch where the graph did not keep the axis dynamic).

    The wrapper is put in eval mode first: the exporter restores the wrapper's training flag
    afterwards, which would otherwise switch the whole model (BatchNorm) back to training.
    """
    wrapper = _Flat(model).eval()
    x = torch.rand(batch, 3, image_size, image_size, device=next(model.parameters()).device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (x,), str(path), input_names=["images"], opset_version=17,
                          dynamo=False, do_constant_folding=True,
                          dynamic_axes={"images": {0: "batch"}} if dynamic_batch else None)
    model.eval()
    return path


def onnx_session(path: Path, device: torch.device, threads: int):
    """An ONNX Runtime session: CUDA provider (TF32 off) for CUDA devices when present, else CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers = [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def _parity(model: nn.Module, x: np.ndarray, got: list[np.ndarray], device: torch.device) -> float:
    """Max absolute difference between ``got`` (a runtime's outputs, any float dtype) and
    PyTorch's outputs on ``x`` (float32); ``inf`` when the outputs do not have the same shapes."""
    ref = _flat_outputs(model, torch.from_numpy(x).to(device))
    if len(ref) != len(got) or any(a.shape != b.shape for a, b in zip(ref, got)):
        return float("inf")
    return max(float(np.abs(a - b.astype(np.float32)).max()) for a, b in zip(ref, got))


def _run_per_image(sess, x: np.ndarray) -> list[np.ndarray]:
    """``sess`` run on each image of ``x`` alone (batch 1), outputs concatenated over the batch."""
    runs = [sess.run(None, {"images": x[i:i + 1]}) for i in range(len(x))]
    return [np.concatenate(parts) for parts in zip(*runs)]


def _batch_kept(sess, x: np.ndarray, rtol: float, atol: float) -> bool:
    """Whether ``sess`` on the batch ``x`` gives what it gives on each image alone (batch 1, whose
    outputs the parity check compared with PyTorch): same shapes, values within ``rtol`` /
    ``atol`` (kernels chosen per batch size move float32 outputs by ~1e-4; a batch size baked
    into the graph breaks shapes or values far beyond that)."""
    try:
        got = sess.run(None, {"images": x})
    except Exception:
        return False
    ref = _run_per_image(sess, x)
    return len(ref) == len(got) and all(a.shape == b.shape and np.allclose(b.astype(np.float32), a.astype(np.float32),
                                                                             rtol=rtol, atol=atol)
                                        for a, b in zip(ref, got))


def structure(model: nn.Module, image_size: int, device: torch.device) -> dict[str, int | None]:
    """The shape of ``model``'s output dict: task -> number of levels (a list output) or None (one tensor)."""
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, image_size, image_size, device=device))
    return {k: len(v) if isinstance(v, (list, tuple)) else None for k, v in out.items()}


def unflatten(flat, like: dict[str, int | None]) -> dict:
    """The inverse of :func:`flat_tensors`: tensors in its order (tasks sorted, levels in order) back
    into ``dict[task, Tensor | list[Tensor]]`` shaped as ``like`` (:func:`structure`)."""
    out, i = {}, 0
    for k in sorted(like):
        n = like[k]
        out[k], i = (list(flat[i:i + n]), i + n) if n is not None else (flat[i], i + 1)
    return out


def session_predict(sess, like: dict[str, int | None], device: torch.device, dtype=np.float32):
    """A runtime's ``predict`` (hookspecs ``mtbench_register_runtimes``) from an ONNX Runtime
    session of a batch-1 graph: ``float32 (B, 3, S, S)`` images -> the model's raw outputs
    ``dict[task, Tensor | list[Tensor]]`` as float32 on ``device``, each image run alone (the
    graph whose parity was checked), its input cast to ``dtype`` (the graph's input type)."""

    def predict(images: torch.Tensor) -> dict:
        outs = _run_per_image(sess, images.detach().cpu().numpy().astype(dtype))
        return unflatten([torch.from_numpy(o.astype(np.float32)).to(device) for o in outs], like)

    return predict


def measure_onnx_graph(model: nn.Module, image_size: int, batch_size: int, device: torch.device, warmup: int,
                       repeats: int, fps_repeats: int, rule: StopRule | Budget = StopRule(), convert=None,
                       make_session=None, dtype=np.float32, tol: tuple[float, float] = (1e-3, PARITY_TOL),
                       parity_tol: float = PARITY_TOL) -> dict:
    """Figures of the model exported to ONNX, optionally converted, run by ONNX Runtime: batch-1
    latency, FPS at ``batch_size`` (with intervals), parity with PyTorch and a ``predict``.

    :param convert: ``convert(path, tmp_dir) -> path`` of the graph to run (fp16, int8 ...;
        None: the float32 export itself).
    :param make_session: ``make_session(path) -> session`` (default :func:`onnx_session` on
        ``device`` with torch's thread count).
    :param dtype: the graph's input dtype (inputs are cast to it; outputs read as float32).
    :param tol: ``(rtol, atol)`` within which the batch-``batch_size`` run must agree with
        batch-1 runs of the same graph (:func:`_batch_kept`).
    :param parity_tol: ``parity_ok`` when ``parity_max_abs`` is below it.

    One export with a dynamic batch axis serves both series when the graph kept the axis
    dynamic (:func:`_batch_kept` at ``batch_size``); otherwise the FPS series uses a second,
    static export (``batch_export: "static"``).
    """
    threads = torch.get_num_threads()
    make_session = make_session or (lambda path: onnx_session(path, device, threads))
    with tempfile.TemporaryDirectory(prefix="mtbench-onnx-") as tmp:
        def session(batch: int, dynamic: bool):
            path = export_onnx(model, image_size, batch, Path(tmp) / f"b{batch}.onnx", dynamic_batch=dynamic)
            return make_session(convert(path, Path(tmp)) if convert else path)

        sess = session(1, True)
        x = np.random.default_rng(0).random((1, 3, image_size, image_size), dtype=np.float32)
        parity = _parity(model, x, sess.run(None, {"images": x.astype(dtype)}), device)
        xd = x.astype(dtype)
        out = latency_figures(sample_adaptive(lambda: sess.run(None, {"images": xd}), warmup, repeats, rule))
        xb = np.random.default_rng(1).random((batch_size, 3, image_size, image_size), dtype=np.float32).astype(dtype)
        sess_b, how = sess, "dynamic"
        if batch_size > 1 and not _batch_kept(sess, xb, *tol):
            sess_b, how = session(batch_size, False), "static"
        out |= fps_figures(sample_adaptive(lambda: sess_b.run(None, {"images": xb}), 2, fps_repeats, rule), batch_size)
    return out | {"parity_max_abs": parity, "parity_ok": parity < parity_tol, "parity_tol": parity_tol,
                  "batch_export": how,
                  "provider": sess.get_providers()[0], "threads": float(threads),
                  "predict": session_predict(sess, structure(model, image_size, device), device, dtype)}


def measure_onnx(model: nn.Module, image_size: int, batch_size: int, device: torch.device, warmup: int,
                 repeats: int, fps_repeats: int, rule: StopRule | Budget = StopRule()) -> dict:
    """ONNX Runtime (float32 graph) batch-1 latency, FPS at ``batch_size`` (with intervals),
    parity with PyTorch and ``predict`` (:func:`measure_onnx_graph`)."""
    return measure_onnx_graph(model, image_size, batch_size, device, warmup, repeats, fps_repeats, rule)


def measure_compile(model: nn.Module, image_size: int, batch_size: int, device: torch.device, warmup: int,
                    repeats: int, fps_repeats: int, rule: StopRule | Budget = StopRule()) -> dict:
    """``torch.compile`` latency and FPS (compilation happens in the warm-up; its time is reported)."""
    import time

    compiled = torch.compile(model)
    run1 = torch_runner(compiled, 1, image_size, device)
    t0 = time.perf_counter()
    run1()
    compile_s = time.perf_counter() - t0
    sync = device.type == "cuda"
    out = latency_figures(sample_adaptive(run1, warmup, repeats, rule, sync))
    runb = torch_runner(compiled, batch_size, image_size, device)
    out |= fps_figures(sample_adaptive(runb, 2, fps_repeats, rule, sync), batch_size)
    x = torch.rand(1, 3, image_size, image_size, device=device)
    parity = max(float(np.abs(a - b).max()) for a, b in zip(_flat_outputs(model, x), _flat_outputs(compiled, x)))
    return out | {"compile_s": compile_s, "parity_max_abs": parity,
                  "threads": float(torch.get_num_threads()), "predict": compiled}



@hookimpl
def mtbench_register_runtimes():
    return [Spec("runtime", "onnx", measure_onnx, "ONNX export (opset 17) run by ONNX Runtime, parity vs PyTorch"),
            Spec("runtime", "compile", measure_compile, "torch.compile (Inductor), parity vs eager")]


def measure_runtimes(names: list[str], model: nn.Module, image_size: int, batch_size: int, device: torch.device,
                     warmup: int, repeats: int, fps_repeats: int, rule: StopRule | Budget = StopRule(),
                     calibration=None, evaluate=None) -> dict[str, dict]:
    """Figures per runtime in ``names`` (besides eager); a failing runtime gives ``{"error":
    reason}``, one that cannot run here (:class:`~mtbench.errors.RuntimeUnavailable`)
    ``{"unavailable": reason}``.

    ``repeats`` / ``fps_repeats`` are the minimum samples of the latency / FPS series; ``rule``
    (the suite's ``profile`` stopping rule) decides how many more each takes.

    :param calibration: ``calibration() -> float32 (N, 3, S, S)`` images in [0, 1] (a cell's
        train images); called once, and only when a runtime's factory declares a
        ``calibration`` parameter, which then gets its result (None when not given).
    :param evaluate: ``evaluate(predict) -> dict``, the val metrics re-computed with a
        runtime's outputs (:func:`mtbench.evaluation.runtime_val`), stored as the runtime's
        ``val``; a runtime whose figures carry no ``predict`` gets ``{"unavailable": ...}``
        there, a pass that raises ``{"error": ...}``. None (default): no val pass. ``predict``
        itself is never stored.
    """
    registry, out, calib = active_registry(), {}, {}
    for name in names:
        try:
            factory, kwargs = registry.get("runtime", name).factory, {}
            if "calibration" in inspect.signature(factory).parameters:
                if "images" not in calib:
                    calib["images"] = calibration() if calibration else None
                kwargs["calibration"] = calib["images"]
            figures = factory(model, image_size, batch_size, device, warmup, repeats, fps_repeats, rule, **kwargs)
        except RuntimeUnavailable as exc:  # not this machine's: recorded, the cell goes on
            out[name] = {"unavailable": str(exc)}
            continue
        except Exception as exc:  # recorded per runtime; the cell goes on
            out[name] = {"error": _reason(exc)}
            continue
        predict = figures.pop("predict", None)
        if evaluate is not None:
            figures["val"] = _val(evaluate, predict)
        out[name] = figures
    return out


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _val(evaluate, predict) -> dict:
    """``evaluate(predict)``, or why there is none (``unavailable``: no predict; ``error``)."""
    if predict is None:
        return {"unavailable": "the runtime's figures carry no 'predict' (hookspecs: mtbench_register_runtimes)"}
    try:
        return evaluate(predict)
    except Exception as exc:  # a runtime that cannot run the val split: recorded, the cell goes on
        return {"error": _reason(exc)}
