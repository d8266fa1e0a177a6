"""Reduced-precision deployment runtimes on the ONNX export: fp16, int8 (calibrated), TensorRT.

Each runs the float32 ONNX export of :mod:`mtbench.profiling.runtimes` after a conversion,
timed, checked and evaluated like ``onnx`` (:func:`~mtbench.profiling.runtimes.measure_onnx_graph`);
parity is against PyTorch float32, so it measures what the precision costs (``parity_ok``
against a tolerance of that precision, :data:`PARITY_TOL`):

- ``onnx-fp16``: the graph converted to float16, inputs and outputs included
  (``onnxruntime.transformers.float16.convert_float_to_float16``, ONNX Runtime's own copy of
  the onnxconverter-common converter, which handles the ``Cast`` nodes of timm's "same"
  padding that onnxconverter-common 1.16 leaves mistyped; ``keep_io_types`` emits graphs ONNX
  Runtime rejects for outputs straight from a ``ReduceMean``), inputs cast to float16 and
  outputs read as float32. ONNX Runtime's CPU
  provider runs many float16 kernels by casting around float32 ones: slow there, recorded as
  measured; on a GPU cell the CUDA provider runs it natively.
- ``onnx-int8``: static post-training quantization (``onnxruntime.quantization.quantize_static``,
  QDQ format, int8 activations (per tensor) and weights (per output channel, as TensorRT
  quantizes them), MinMax calibration) calibrated on
  the cell's train images (``profile.calibration_images``; :func:`calibration_images`).
- ``tensorrt`` / ``tensorrt-int8``: NVIDIA TensorRT through ONNX Runtime's TensorRT execution
  provider (``onnxruntime-gpu``; TensorRT's own libraries, ``libnvinfer``, must be installed),
  fp16 kernels allowed (``trt_fp16_enable``); ``tensorrt-int8`` runs the ``onnx-int8`` QDQ graph
  with ``trt_int8_enable`` (explicit quantization: TensorRT takes the calibrated scales from
  the Q/DQ nodes). Without a CUDA device, or where ONNX Runtime cannot load TensorRT, the
  runtime is ``{"unavailable": reason}`` (:class:`~mtbench.errors.RuntimeUnavailable`), not
  an error, and the cell goes on.

References: ONNX Runtime, "Quantize ONNX models" (static quantization, QDQ) and "TensorRT
Execution Provider" (onnxruntime.ai/docs); Ultralytics ``benchmark`` (accuracy per export format).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtbench.data.base import model_input
from mtbench.errors import RuntimeUnavailable
from mtbench.plugins import Spec, hookimpl
from mtbench.profiling.latency import Budget, StopRule
from mtbench.profiling.runtimes import measure_onnx_graph

#: parity tolerance (max abs vs PyTorch float32) and batch-agreement ``(rtol, atol)`` per precision
PARITY_TOL = {"fp16": 1e-2, "int8": 0.25}
BATCH_TOL = {"fp16": (1e-2, 1e-2), "int8": (1e-2, 1e-2)}
TRT = "TensorrtExecutionProvider"


def to_fp16(path: Path, tmp: Path) -> Path:
    """``path`` (a float32 ONNX graph) converted to float16, inputs and outputs too; the new file's path."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = tmp / f"{path.stem}-fp16.onnx"
    with warnings.catch_warnings():  # one warning per weight beyond float16's range, clipped as it says
        warnings.simplefilter("ignore")
        onnx.save(convert_float_to_float16(onnx.load(str(path)), keep_io_types=False), str(out))
    return out


def quantize_int8(path: Path, tmp: Path, calibration: torch.Tensor) -> Path:
    """``path`` statically quantized to int8 (QDQ, per-channel weights), activation ranges calibrated (MinMax) on
    ``calibration``: float32 ``(N, 3, S, S)`` images in [0, 1], fed one at a time."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Images(CalibrationDataReader):
        def __init__(self):
            self._left = iter(calibration.detach().cpu().numpy().astype(np.float32))

        def get_next(self):
            x = next(self._left, None)
            return None if x is None else {"images": x[None]}

    out = tmp / f"{path.stem}-int8.onnx"
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its advice to pre-process the graph, twice per call, on the root logger
    try:
        quantize_static(str(path), str(out), _Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    finally:
        logging.disable(before)
    return out


def _need_calibration(calibration: torch.Tensor | None) -> torch.Tensor:
    if calibration is None or len(calibration) == 0:
        raise RuntimeUnavailable("int8 needs calibration images (a cell's train split gives them; "
                                 "profile.calibration_images)")
    return calibration


def measure_onnx_fp16(model: nn.Module, image_size: int, batch_size: int, device: torch.device, warmup: int,
                      repeats: int, fps_repeats: int, rule: StopRule | Budget = StopRule()) -> dict:
    """ONNX Runtime on the float16 graph (:func:`to_fp16`): latency, FPS, parity vs PyTorch float32, predict."""
    return measure_onnx_graph(model, image_size, batch_size, device, warmup, repeats, fps_repeats, rule,
                              convert=to_fp16, dtype=np.float16, tol=BATCH_TOL["fp16"],
                              parity_tol=PARITY_TOL["fp16"]) | {"precision": "fp16"}


def measure_onnx_int8(model: nn.Module, image_size: int, batch_size: int, device: torch.device, warmup: int,
                      repeats: int, fps_repeats: int, rule: StopRule | Budget = StopRule(),
                      calibration: torch.Tensor | None = None) -> dict:
    """ONNX Runtime on the int8 QDQ graph calibrated on ``calibration`` (:func:`quantize_int8`).

    :raises RuntimeUnavailable: no calibration images.
    """
    images = _need_calibration(calibration)
    return measure_onnx_graph(model, image_size, batch_size, device, warmup, repeats, fps_repeats, rule,
                              convert=lambda p, tmp: quantize_int8(p, tmp, images), tol=BATCH_TOL["int8"],
                              parity_tol=PARITY_TOL["int8"]) | {"precision": "int8",
                                                                "calibration_images": len(images)}


def tensorrt_session(device: torch.device, threads: int, int8: bool):
    """``make_session(path)`` for ONNX Runtime's TensorRT provider (fp16 allowed; int8 with ``int8``).

    :raises RuntimeUnavailable: no CUDA device, the provider not built into ONNX Runtime, or
        TensorRT's libraries not loadable (ONNX Runtime then falls back to another provider).
    """
    import onnxruntime as ort

    if device.type != "cuda":
        raise RuntimeUnavailable(f"TensorRT runs on NVIDIA GPUs; this cell runs on {device.type}")
    if TRT not in ort.get_available_providers():
        raise RuntimeUnavailable(f"onnxruntime {ort.__version__} has no {TRT} (install onnxruntime-gpu)")

    def make(path: Path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
        trt = {"trt_fp16_enable": True, "trt_int8_enable": int8}
        sess = ort.InferenceSession(str(path), sess_options=opts,
                                    providers=[(TRT, trt), "CUDAExecutionProvider", "CPUExecutionProvider"])
        if sess.get_providers()[0] != TRT:
            raise RuntimeUnavailable(f"ONNX Runtime could not load TensorRT (libnvinfer); it fell back to "
                                     f"{sess.get_providers()[0]}")
        return sess

    return make


def measure_tensorrt(model: nn.Module, image_size: int, batch_size: int, device: torch.device, warmup: int,
                     repeats: int, fps_repeats: int, rule: StopRule | Budget = StopRule()) -> dict:
    """TensorRT (fp16 kernels allowed) on the float32 ONNX export, through ONNX Runtime.

    :raises RuntimeUnavailable: see :func:`tensorrt_session`.
    """
    make = tensorrt_session(device, torch.get_num_threads(), int8=False)
    return measure_onnx_graph(model, image_size, batch_size, device, warmup, repeats, fps_repeats, rule,
                              make_session=make, tol=BATCH_TOL["fp16"],
                              parity_tol=PARITY_TOL["fp16"]) | {"precision": "fp16"}


def measure_tensorrt_int8(model: nn.Module, image_size: int, batch_size: int, device: torch.device, warmup: int,
                          repeats: int, fps_repeats: int, rule: StopRule | Budget = StopRule(),
                          calibration: torch.Tensor | None = None) -> dict:
    """TensorRT int8 (fp16 where a layer has no int8 kernel) on the calibrated QDQ graph.

    :raises RuntimeUnavailable: see :func:`tensorrt_session`; no calibration images.
    """
    make = tensorrt_session(device, torch.get_num_threads(), int8=True)
    images = _need_calibration(calibration)
    return measure_onnx_graph(model, image_size, batch_size, device, warmup, repeats, fps_repeats, rule,
                              convert=lambda p, tmp: quantize_int8(p, tmp, images), make_session=make,
                              tol=BATCH_TOL["int8"], parity_tol=PARITY_TOL["int8"]) | {
        "precision": "int8", "calibration_images": len(images)}


def calibration_images(train_sets: dict, count: int, seed: int) -> torch.Tensor:
    """``count`` train images for int8 calibration: float32 ``(count, 3, S, S)`` in [0, 1], without
    augmentation, drawn (seeded, without replacement within a data set) evenly from every task's
    train split (``train_sets``: task -> :class:`~mtbench.data.base.TaskDataset`, tasks sorted)."""
    rng = np.random.default_rng(seed)
    sets = [train_sets[t] for t in sorted(train_sets)]
    picks = []
    for k, ds in enumerate(sets):
        n = min(len(ds), count // len(sets) + (k < count % len(sets)))
        picks += [(ds, int(i)) for i in rng.choice(len(ds), size=n, replace=False)]
    return torch.stack([model_input(ds.cache.get(i, ds.load)[0], None)[0] for ds, i in picks])


@hookimpl
def mtbench_register_runtimes():
    return [Spec("runtime", "onnx-fp16", measure_onnx_fp16, "ONNX Runtime on the float16-converted graph"),
            Spec("runtime", "onnx-int8", measure_onnx_int8,
                 "ONNX Runtime on the int8 QDQ graph, calibrated on train images"),
            Spec("runtime", "tensorrt", measure_tensorrt, "TensorRT fp16 via ONNX Runtime's TensorRT provider (GPU)"),
            Spec("runtime", "tensorrt-int8", measure_tensorrt_int8,
                 "TensorRT int8 on the calibrated QDQ graph via ONNX Runtime (GPU)")]
