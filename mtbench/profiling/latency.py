"""Latency and throughput of a forward pass, for any runtime, with the p50's uncertainty.

Method: ``warmup`` untimed runs, then timed runs with ``time.perf_counter``; on CUDA every
run is bracketed by ``torch.cuda.synchronize()`` so kernel time is counted, not just the
launch. Python's garbage collector is paused while timing. Latency is at batch 1: median
(p50), p90 and coefficient of variation (population std / mean). FPS = images per second
at the suite's batch size (batch size / median batch time). The thread count used
(``torch.get_num_threads()`` or the ONNX Runtime session's) is reported with the figures.

Uncertainty: the 95 % confidence interval of the p50 is the distribution-free
order-statistic interval of the median (Conover, *Practical Nonparametric Statistics*,
3rd ed. 1999, sec. 3.2; Hahn & Meeker, *Statistical Intervals*, 1991, sec. 5.2): sorted
samples ``x(l) <= x(u)`` whose ranks come from the Binomial(n, 1/2) distribution of the
number of samples below the true median (``scipy.stats.binom``; the same interval as
``scipy.stats.quantile_test(...).confidence_interval``, which the tests check). Chosen
over a bootstrap because it is exact (coverage >= 95 % for any continuous timing
distribution, where a percentile bootstrap of a median is known to under-cover at small
n), deterministic (no resampling seed: the same samples always give the same interval)
and cheap (one partial sort), so it can be checked while sampling. It needs at least 6
samples (the widest interval ``[min, max]`` covers ``1 - 2 * 0.5^n``, below 95 % for
n = 5), so every series takes at least 6. Like every interval on timings it assumes the
samples are exchangeable (no drift during the series); the CV and p90 beside it show
when they are not.

FPS = ``batch / median batch time`` is monotone in the median, so its interval is the
median batch time's interval mapped through ``batch / t`` (ends swapped).

Adaptive sampling (:func:`sample_adaptive`, rule :class:`StopRule`): take the minimum
number of samples, then check the interval every ``chunk`` samples and stop at the first of

- ``ci-target``: the interval's relative half-width ``(hi - lo) / 2 / p50`` is at most
  ``ci_target`` (e.g. 0.02 = +-2 %);
- ``time-cap``: the timed sampling of this series has run for ``max_s`` seconds (the
  minimum is always taken; ``max_s = 0`` gives a fixed number of samples);
- ``max-samples``: ``max_samples`` samples.

Checking an interval repeatedly and stopping when it is narrow enough (optional stopping)
can make its real coverage a little lower than the nominal 95 %; the interval is
reported as measured, with the reason the series stopped.
"""

from __future__ import annotations

import functools
import gc
import math
import statistics
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from scipy import stats
from torch import nn

STOP_REASONS = ("ci-target", "time-cap", "max-samples")


def time_calls(fn: Callable[[], object], warmup: int, repeats: int, sync: bool = False,
               number: int = 1) -> list[float]:
    """Seconds per call of ``fn``: ``repeats`` samples after ``warmup`` untimed calls.

    Each sample times ``number`` consecutive calls and is their mean (timeit's ``number``,
    pytest-benchmark's iterations); ``number = 1`` times every call on its own.
    """
    for _ in range(warmup):
        fn()
    if sync:
        torch.cuda.synchronize()
    times = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            if sync:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def min_samples_for_ci(level: float = 0.95) -> int:
    """Fewest samples for which a distribution-free ``level`` interval of the median exists.

    The widest interval, ``[min, max]`` of ``n`` samples, covers the median with probability
    ``1 - 2 * 0.5**n``; the smallest ``n`` where that reaches ``level`` (6 for 0.95).
    """
    return math.ceil(math.log2(2.0 / (1.0 - level)) - 1e-12)


@functools.lru_cache(maxsize=4096)
def _median_ci_ranks(n: int, level: float) -> tuple[int, int] | None:
    """0-based indices ``(l, u)`` into ``n`` sorted samples of the median's ``level`` interval.

    ``K`` = samples below the true median ~ Binomial(n, 1/2), so the interval between the
    ``r``-th smallest and ``r``-th largest sample covers it with probability
    ``1 - 2 P(K <= r - 1)``; ``r`` is the largest rank keeping that at least ``level``.
    """
    cdf = stats.binom.cdf(np.arange(n + 1), n, 0.5)
    r = int(np.searchsorted(cdf, (1.0 - level) / 2.0, side="right"))  # ranks 1..r keep P(K <= r-1) <= alpha/2
    return (r - 1, n - r) if r >= 1 else None


def median_ci(times: list[float] | np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free ``level`` confidence interval of the median of ``times``.

    The order-statistic interval from the Binomial(n, 1/2) distribution (Conover 1999,
    sec. 3.2), ranks from ``scipy.stats.binom`` (cached per ``n``); the same interval as
    ``scipy.stats.quantile_test(x, p=0.5).confidence_interval(level)`` (the test checks it),
    at a fraction of its cost, so it can be checked while sampling.

    :param times: samples, float ``(n,)``, any unit (the interval has the same unit).
    :param level: confidence level in (0, 1).
    :return: ``(low, high)``, two of the sorted samples; ``None`` when ``n`` is below
        :func:`min_samples_for_ci` (no interval with that coverage exists).
    """
    x = np.asarray(times, dtype=np.float64)
    ranks = _median_ci_ranks(x.size, float(level))
    if ranks is None:
        return None
    lo, hi = np.partition(x, ranks)[list(ranks)]
    return float(lo), float(hi)


def halfwidth_rel(ci: tuple[float, float] | None, centre: float) -> float:
    """Relative half-width ``(hi - lo) / 2 / centre`` of an interval (``inf`` when there is none)."""
    if ci is None or not centre > 0:
        return math.inf
    return (ci[1] - ci[0]) / 2.0 / centre


@dataclass(frozen=True)
class StopRule:
    """When a timing series stops (see the module docstring).

    :param ci_target: relative half-width of the p50's interval that ends the series (> 0).
    :param max_s: seconds of timed sampling after which the series stops (>= 0); the
        minimum number of samples is taken whatever it costs.
    :param max_samples: samples after which the series stops.
    :param chunk: samples between two checks of the interval.
    :param level: confidence level of the interval.
    :raises ValueError: a parameter out of range.
    """

    ci_target: float = 0.02
    max_s: float = 0.5
    max_samples: int = 1000
    chunk: int = 10
    level: float = 0.95

    def __post_init__(self) -> None:
        if not self.ci_target > 0:
            raise ValueError(f"StopRule.ci_target must be > 0 (a relative half-width), got {self.ci_target}")
        if not self.max_s >= 0:
            raise ValueError(f"StopRule.max_s must be >= 0 seconds, got {self.max_s}")
        if self.max_samples < 1 or self.chunk < 1:
            raise ValueError(f"StopRule.max_samples and chunk must be >= 1, got {self.max_samples}, {self.chunk}")
        if not 0 < self.level < 1:
            raise ValueError(f"StopRule.level must be in (0, 1), got {self.level}")


FIXED = StopRule(max_s=0.0)  # exactly the minimum number of samples (no adaptive extension)


class Budget:
    """A time budget shared by the timing series still to come (the harness budget of a cell).

    Each series, when it starts (:meth:`next_rule`), gets ``rule`` with its time cap lowered to
    an equal share of the seconds left before ``deadline``: whatever the series before it and
    the work between them (exports, compilation, warm-up) cost is taken out first. The
    minimum samples are still taken, so the budget can be overrun by them.

    :param rule: the suite's stopping rule (its ``max_s`` is the cap when the budget is ample).
    :param seconds: seconds of profiling left from now (>= 0).
    :param series: how many series will share them (>= 1).
    """

    def __init__(self, rule: StopRule, seconds: float, series: int,
                 clock: Callable[[], float] = time.perf_counter):
        self.rule, self.series, self.clock = rule, max(1, series), clock
        self.deadline = clock() + max(0.0, seconds)

    def next_rule(self) -> StopRule:
        """The rule of the series starting now (its share of what is left)."""
        share = max(0.0, self.deadline - self.clock()) / self.series
        self.series = max(1, self.series - 1)
        return replace(self.rule, max_s=min(self.rule.max_s, share))


@dataclass
class Sampled:
    """A timing series: per-call seconds, why it stopped, its p50 interval and its cost."""

    times: list[float]
    stop: str
    ci: tuple[float, float] | None
    elapsed_s: float

    @property
    def p50(self) -> float:
        return statistics.median(self.times)


def sample_adaptive(fn: Callable[[], object], warmup: int, min_samples: int,
                    rule: StopRule | Budget = StopRule(), sync: bool = False, number: int = 1,
                    clock: Callable[[], float] = time.perf_counter) -> Sampled:
    """Time ``fn`` until the p50's interval is narrow enough, or the time or sample cap.

    :param fn: the call to time (one forward).
    :param warmup: untimed calls first.
    :param min_samples: samples always taken (raised to :func:`min_samples_for_ci`).
    :param rule: the stopping rule, or a :class:`Budget` that gives this series its rule when
        it starts (after the warm-up).
    :param sync: bracket every sample by ``torch.cuda.synchronize()``.
    :param number: calls per sample; a sample is their mean (see :func:`time_calls`).
    :param clock: seconds, monotone (``time.perf_counter``; injectable for tests).
    :return: the series; ``elapsed_s`` is the wall time of the timed part (interval
        checks included, warm-up excluded), measured with ``clock``.
    """
    for _ in range(warmup):
        fn()
    if sync:
        torch.cuda.synchronize()
    if isinstance(rule, Budget):
        rule = rule.next_rule()
    n_min = max(min_samples, min_samples_for_ci(rule.level))
    n_max = max(rule.max_samples, n_min)
    times: list[float] = []
    next_check, checked_n, stop, ci = n_min, 0, "", None
    gc_was_enabled = gc.isenabled()
    gc.disable()
    start = clock()
    try:
        while not stop:
            t0 = clock()
            for _ in range(number):
                fn()
            if sync:
                torch.cuda.synchronize()
            times.append((clock() - t0) / number)
            if len(times) >= next_check:
                next_check, checked_n = next_check + rule.chunk, len(times)
                ci = median_ci(times, rule.level)
                if halfwidth_rel(ci, statistics.median(times)) <= rule.ci_target:
                    stop = "ci-target"
            if not stop and len(times) >= n_min:
                if clock() - start >= rule.max_s:
                    stop = "time-cap"
                elif len(times) >= n_max:
                    stop = "max-samples"
    finally:
        if gc_was_enabled:
            gc.enable()
    elapsed = clock() - start
    if checked_n != len(times):  # stopped between two checks: the interval of all samples
        ci = median_ci(times, rule.level)
    return Sampled(times, stop, ci, elapsed)


def summarise(times: list[float]) -> dict[str, float]:
    """``latency_ms`` (p50), ``latency_p90_ms``, ``latency_cv`` of per-call seconds."""
    t = sorted(times)
    p90 = t[min(len(t) - 1, int(round(0.9 * (len(t) - 1))))]
    mean = statistics.fmean(t)
    return {"latency_ms": statistics.median(t) * 1e3, "latency_p90_ms": p90 * 1e3,
            "latency_cv": statistics.pstdev(t) / mean if mean > 0 else 0.0, "latency_repeats": float(len(t))}


def latency_figures(s: Sampled) -> dict:
    """:func:`summarise` of a batch-1 series plus its p50 interval and stopping record.

    Keys added: ``latency_ms_ci`` ``[lo, hi]`` (ms, or ``None`` below 6 samples),
    ``latency_ci_halfwidth_rel`` (fraction of the p50), ``latency_stop`` (one of
    :data:`STOP_REASONS`), ``latency_sampling_s`` (seconds spent in the timed series).
    ``latency_repeats`` is the number of samples taken.
    """
    return summarise(s.times) | {
        "latency_ms_ci": [s.ci[0] * 1e3, s.ci[1] * 1e3] if s.ci else None,
        "latency_ci_halfwidth_rel": halfwidth_rel(s.ci, s.p50) if s.ci else None,
        "latency_stop": s.stop, "latency_sampling_s": s.elapsed_s}


def fps_figures(s: Sampled, batch_size: int) -> dict:
    """Throughput of a batch series: ``fps`` (images/s = batch / median batch time), its
    interval ``fps_ci`` ``[lo, hi]`` (images/s; the batch-time interval mapped through
    ``batch / t``), ``fps_ci_halfwidth_rel`` (fraction of ``fps``), ``fps_stop``,
    ``fps_repeats`` (samples taken), ``fps_sampling_s`` and ``fps_batch``."""
    med = s.p50
    fps = batch_size / med if med > 0 else float("nan")
    ci = [batch_size / s.ci[1], batch_size / s.ci[0]] if s.ci and s.ci[0] > 0 else None
    return {"fps": fps, "fps_batch": float(batch_size), "fps_ci": ci,
            "fps_ci_halfwidth_rel": halfwidth_rel(tuple(ci), fps) if ci else None,
            "fps_stop": s.stop, "fps_repeats": float(len(s.times)), "fps_sampling_s": s.elapsed_s}


def torch_runner(model: nn.Module, batch: int, image_size: int, device: torch.device) -> Callable[[], object]:
    """A no-grad forward of ``model`` on random ``float32 (batch, 3, S, S)`` (eval mode)."""
    model.eval()
    x = torch.rand(batch, 3, image_size, image_size, device=device)

    def run():
        with torch.inference_mode():
            return model(x)

    return run


def measure_latency(model: nn.Module, image_size: int, device: torch.device, warmup: int = 5,
                    repeats: int = 30, number: int = 1, rule: StopRule | Budget = StopRule()) -> dict:
    """Batch-1 latency of PyTorch eager: p50, p90 (ms), CV, the p50's interval, the thread count.

    :param repeats: the minimum number of samples; ``rule`` decides how many more.
    :param number: calls per timed sample (see :func:`time_calls`); the suites use 1.
    :return: :func:`latency_figures` plus ``threads``.
    """
    s = sample_adaptive(torch_runner(model, 1, image_size, device), warmup, repeats, rule,
                        device.type == "cuda", number)
    return latency_figures(s) | {"threads": float(torch.get_num_threads())}


def measure_fps(model: nn.Module, image_size: int, batch_size: int, device: torch.device,
                warmup: int = 2, repeats: int = 5, rule: StopRule | Budget = StopRule()) -> dict:
    """Throughput of PyTorch eager at ``batch_size``: :func:`fps_figures` (``repeats`` = minimum samples)."""
    s = sample_adaptive(torch_runner(model, batch_size, image_size, device), warmup, repeats, rule,
                        device.type == "cuda")
    return fps_figures(s, batch_size)
