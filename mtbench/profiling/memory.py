"""Peak memory of a callable, in MiB.

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (allocator peak).
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


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> dict[str, float | str]:
    """Run ``fn`` once and return ``{"peak_mem_mib": peak, "mem_kind": "cuda-allocator"|"cpu-rss"}``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return {"peak_mem_mib": torch.cuda.max_memory_allocated(device) / MIB, "mem_kind": "cuda-allocator"}
    peak = [current_rss_mib()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], current_rss_mib())
            stop.wait(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        fn()
    finally:
        stop.set()
        th.join()
    peak[0] = max(peak[0], current_rss_mib())
    return {"peak_mem_mib": peak[0], "mem_kind": "cpu-rss"}
