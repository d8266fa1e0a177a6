"""Latency, throughput and export parity per deployment runtime.

Runtimes:

- ``eager``: PyTorch eager (always measured; its figures are the table's headline).
- ``compile``: ``torch.compile(model)`` (Inductor); measured after compilation (the first
  warm-up call compiles). Where it cannot compile, the reason is recorded.
- ``onnx``: export with ``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic batch
  axis, checked at the FPS batch size; a static re-export where that fails), run with ONNX
  Runtime: CUDA provider on a GPU cell when available, else CPU provider; intra-op threads =
  torch's thread count. Parity = max absolute difference between ONNX and PyTorch outputs
  (all task outputs) on the same random batch-1 input; ``parity_ok`` when below
  ``parity_tol`` (1e-4). On CUDA both sides of the parity check run in strict float32: the
  PyTorch reference with TF32 switched off for the call, the CUDA provider with
  ``use_tf32=0`` (TF32 alone moves outputs by ~1e-3..1e-1).

Every runtime is timed like eager (:mod:`mtbench.profiling.latency`): batch-1 latency and
FPS series sampled under the same :class:`~mtbench.profiling.latency.StopRule`, each with
its p50 / FPS interval and stop reason.

A runtime that fails (export error, unsupported op, divergent outputs) is recorded as
``{"error": reason}`` for that runtime; the cell itself does not fail. Runtimes register
through the hook ``mtbench_register_runtimes`` (these two here, a vendor's in its plugin).
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

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


def _reference(model: nn.Module, x: np.ndarray, got: list[np.ndarray],
               device: torch.device) -> list[np.ndarray] | None:
    """PyTorch's outputs on ``x``, or None when ``got`` (ONNX outputs) does not have their shapes."""
    ref = _flat_outputs(model, torch.from_numpy(x).to(device))
    return ref if len(ref) == len(got) and all(a.shape == b.shape for a, b in zip(ref, got)) else None


def _parity(model: nn.Module, x: np.ndarray, got: list[np.ndarray], device: torch.device) -> float:
    """Max absolute difference between ``got`` (ONNX outputs) and PyTorch's outputs on ``x``;
    ``inf`` when the outputs do not have the same shapes."""
    ref = _reference(model, x, got, device)
    return float("inf") if ref is None else max(float(np.abs(a - b).max()) for a, b in zip(ref, got))


def _same_function(model: nn.Module, x: np.ndarray, sess, device: torch.device) -> bool:
    """Whether ``sess`` computes the model's outputs on the batch ``x``: same shapes, and values
    within ``rtol`` 1e-3 / ``atol`` 1e-4 (kernels chosen per batch size move them by ~1e-4; a
    batch size baked into the graph breaks shapes or values far beyond that)."""
    try:
        got = sess.run(None, {"images": x})
    except Exception:
        return False
    ref = _reference(model, x, got, device)
    return ref is not None and all(np.allclose(b, a, rtol=1e-3, atol=PARITY_TOL) for a, b in zip(ref, got))


def measure_onnx(model: nn.Module, image_size: int, batch_size: int, device: torch.device, warmup: int,
                 repeats: int, fps_repeats: int, rule: StopRule | Budget = StopRule()) -> dict:
    """ONNX Runtime batch-1 latency, FPS at ``batch_size`` (with intervals) and parity with PyTorch.

    One export with a dynamic batch axis serves both series when it computes the model's
    outputs at ``batch_size`` too (:func:`_same_function`); otherwise (a batch size the graph
    kept constant) the FPS series uses a second, static export (``batch_export: "static"``).
    """
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="mtbench-onnx-") as tmp:
        sess = onnx_session(export_onnx(model, image_size, 1, Path(tmp) / "model.onnx", dynamic_batch=True),
                            device, threads)
        x = np.random.default_rng(0).random((1, 3, image_size, image_size), dtype=np.float32)
        parity = _parity(model, x, sess.run(None, {"images": x}), device)
        out = latency_figures(sample_adaptive(lambda: sess.run(None, {"images": x}), warmup, repeats, rule))
        xb = np.random.default_rng(1).random((batch_size, 3, image_size, image_size), dtype=np.float32)
        sess_b, how = sess, "dynamic"
        if batch_size > 1 and not _same_function(model, xb, sess, device):
            sess_b, how = onnx_session(export_onnx(model, image_size, batch_size, Path(tmp) / "bn.onnx"),
                                       device, threads), "static"
        out |= fps_figures(sample_adaptive(lambda: sess_b.run(None, {"images": xb}), 2, fps_repeats, rule), batch_size)
    return out | {"parity_max_abs": parity, "parity_ok": parity < PARITY_TOL, "batch_export": how,
                  "provider": sess.get_providers()[0], "threads": float(threads)}


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
                  "threads": float(torch.get_num_threads())}



@hookimpl
def mtbench_register_runtimes():
    return [Spec("runtime", "onnx", measure_onnx, "ONNX export (opset 17) run by ONNX Runtime, parity vs PyTorch"),
            Spec("runtime", "compile", measure_compile, "torch.compile (Inductor), parity vs eager")]


def measure_runtimes(names: list[str], model: nn.Module, image_size: int, batch_size: int, device: torch.device,
                     warmup: int, repeats: int, fps_repeats: int, rule: StopRule | Budget = StopRule()) -> dict[str, dict]:
    """Figures per runtime in ``names`` (besides eager); a failing runtime gives ``{"error": reason}``.

    ``repeats`` / ``fps_repeats`` are the minimum samples of the latency / FPS series; ``rule``
    (the suite's ``profile`` stopping rule) decides how many more each takes.
    """
    registry, out = active_registry(), {}
    for name in names:
        try:
            out[name] = registry.get("runtime", name).factory(model, image_size, batch_size, device, warmup, repeats, fps_repeats, rule)
        except Exception as exc:  # recorded per runtime; the cell goes on
            out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return out
