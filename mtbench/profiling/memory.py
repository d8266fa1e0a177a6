"""Peak memory of a callable, in MiB.

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (allocator
  peak, ``peak_mem_mib``) and, through nvidia-ml-py (NVML), the peak device memory in use
  sampled every 2 ms (``nvml_peak_mib``: every process and the CUDA context included).
- CPU: the process's resident set size (RSS), sampled every 2 ms from ``/proc/self/statm``
  while the callable runs; the figure is the peak absolute RSS of the whole process (Python,
  torch and the data cache included), so compare it between cells of one run.
"""

from __future__ import annotations

import os
import resource
import threading
from typing import Callable

import torch

MIB = 1024 * 1024


def current_rss_mib() -> float:
    """Current RSS of this process in MiB (Linux ``/proc``; else peak RSS from ``getrusage``)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def nvml_used_mib(device_index: int = 0) -> float:
    """Device memory in use (MiB) on GPU ``device_index`` according to NVML."""
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / MIB
    finally:
        pynvml.nvmlShutdown()


def _sampled_peak(fn: Callable[[], object], read: Callable[[], float]) -> float:
    """Run ``fn`` while a thread samples ``read()`` every 2 ms; return the peak reading."""
    peak = [read()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], read())
            stop.wait(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        fn()
    finally:
        stop.set()
        th.join()
    return max(peak[0], read())


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> dict[str, float | str]:
    """Run ``fn`` once; ``{"peak_mem_mib", "mem_kind": "cuda-allocator"|"cpu-rss"[, "nvml_peak_mib"]}``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        out: dict[str, float | str] = {"mem_kind": "cuda-allocator"}
        try:
            out["nvml_peak_mib"] = _sampled_peak(fn, lambda: nvml_used_mib(index))
        except Exception as exc:  # NVML missing or not permitted: allocator figure only
            out["nvml_error"] = f"{type(exc).__name__}: {exc}"
            fn()
        torch.cuda.synchronize(device)
        out["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / MIB
        return out
    return {"peak_mem_mib": _sampled_peak(fn, current_rss_mib), "mem_kind": "cpu-rss"}
