"""Profiling: parameter/FLOP counts, latency statistics, ONNX parity, memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from mtbench.data.base import TaskInfo
from mtbench.errors import SuiteError
from mtbench.profiling.complexity import count_flops, count_params
from mtbench.profiling.latency import (FIXED, StopRule, fps_figures, latency_figures, median_ci,
                                       min_samples_for_ci, sample_adaptive, summarise, time_calls)
from mtbench.profiling.memory import peak_memory_mib
from mtbench.profiling.runtimes import measure_runtimes
from mtbench.suite import load_suite
from tests.conftest import TINY_SUITE

TASKS = {"det": TaskInfo("det", 3, ()), "seg": TaskInfo("seg", 4, ()), "cls": TaskInfo("cls", 3, ())}


def test_flops_of_a_known_conv():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # one 3x3x3 MAC per output element: 8 * 32 * 32 outputs x 27 MACs x 2 FLOPs
    assert count_flops(conv, 32) == pytest.approx(2 * 8 * 32 * 32 * 27 / 1e9)
    conv.weight.requires_grad_(False)
    assert count_params(conv) == {"params": 216, "params_trainable": 0}


def test_summarise_percentiles():
    s = summarise([0.001 * i for i in range(1, 11)])
    assert s["latency_ms"] == pytest.approx(5.5) and s["latency_p90_ms"] == pytest.approx(9.0)
    assert 0 < s["latency_cv"] < 1 and s["latency_repeats"] == 10


def test_time_calls_warms_up_first():
    calls = []
    times = time_calls(lambda: calls.append(1), warmup=3, repeats=4)
    assert len(calls) == 7 and len(times) == 4
    calls.clear()
    assert len(time_calls(lambda: calls.append(1), warmup=0, repeats=4, number=5)) == 4 and len(calls) == 20


@pytest.mark.parametrize("name,params", [
    ("unified-onehead", {"backbone": "mobilenetv3_small_100", "neck_channels": 16}),
    ("dual-backbone", {"backbone": "mobilenetv3_small_100", "neck_channels": 16}),
    ("yolo-mtl", {"backbone": "csp", "size": "n"}),
])
def test_onnx_parity_for_builtin_architectures(registry, name, params):
    model = registry.create_model(name, tasks=TASKS, level="P4", **params)
    out = measure_runtimes(["onnx"], model.eval(), 64, 2, torch.device("cpu"), 1, 3, 1, FIXED)["onnx"]
    assert "error" not in out, out.get("error")
    assert out["parity_max_abs"] < 1e-4 and out["parity_ok"]
    assert out["provider"] == "CPUExecutionProvider" and out["latency_ms"] > 0 and out["fps"] > 0
    # FIXED: exactly the minimum, raised to 6 samples (the fewest with a 95 % interval of the median)
    assert out["latency_repeats"] == 6 and out["fps_repeats"] == 6
    # max_s = 0 stops at the minimum, either because the interval is already within ci_target
    # (a quiet machine: CI's runner did this) or because the cap is reached; both are honest
    for key in ("latency", "fps"):
        assert out[f"{key}_stop"] in ("ci-target", "time-cap")
    if out["latency_stop"] == "ci-target":
        assert out["latency_ci_halfwidth_rel"] <= FIXED.ci_target
    lo, hi = out["latency_ms_ci"]
    assert lo <= out["latency_ms"] <= hi and out["fps_ci"][0] <= out["fps"] <= out["fps_ci"][1]
    assert not model.training  # export must not flip BatchNorm back to training


def test_onnx_one_dynamic_export_or_a_static_one_where_the_batch_is_baked():
    class Baked(nn.Module):  # int(x.shape[0]) is traced as a constant: the graph only runs batch 1
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=4)

        def forward(self, x):
            return {"cls": self.conv(x).view(int(x.shape[0]), -1)}

    plain = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4))
    ok = measure_runtimes(["onnx"], _DictOut(plain).eval(), 32, 4, torch.device("cpu"), 0, 1, 1, FIXED)["onnx"]
    baked = measure_runtimes(["onnx"], Baked().eval(), 32, 4, torch.device("cpu"), 0, 1, 1, FIXED)["onnx"]
    assert ok["batch_export"] == "dynamic" and ok["parity_ok"]
    assert baked["batch_export"] == "static" and baked["parity_ok"] and baked["fps"] > 0


class _DictOut(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return {"seg": self.net(x)}


def test_failing_runtime_is_recorded_not_raised():
    class Bad(nn.Module):
        def forward(self, x):
            return {"cls": torch.linalg.eigvals(x[0, 0])}  # complex output: not exportable

    out = measure_runtimes(["onnx"], Bad(), 32, 1, torch.device("cpu"), 0, 1, 1)
    assert "error" in out["onnx"]


def test_cpu_peak_memory_sees_an_allocation():
    base = peak_memory_mib(lambda: None, torch.device("cpu"))["peak_mem_mib"]
    got = peak_memory_mib(lambda: torch.ones(64 * 1024 * 1024 // 4).add_(1), torch.device("cpu"))
    assert got["mem_kind"] == "cpu-rss" and got["peak_mem_mib"] >= base


# --- the p50's interval and the adaptive stopping rule (deterministic fake clock) ---------

class FakeTimer:
    """A clock and a call: each call advances the clock by the next duration (seconds)."""

    def __init__(self, durations):
        self.now, self.calls, self._it = 0.0, 0, iter(durations)

    def clock(self) -> float:
        return self.now

    def call(self) -> None:
        self.now += next(self._it)
        self.calls += 1


def _durations(seed: int, spread: float, median_s: float = 0.01, n: int = 100_000) -> np.ndarray:
    """Log-normal call durations: median ``median_s``, log-sd ``spread`` (0.001 tight, 0.5 noisy)."""
    return median_s * np.exp(spread * np.random.default_rng(seed).standard_normal(n))


def _run(durations, min_samples=30, warmup=0, **rule):
    t = FakeTimer(durations)
    return sample_adaptive(t.call, warmup, min_samples, StopRule(**rule), clock=t.clock), t


def test_tight_samples_stop_at_the_ci_target_after_the_minimum():
    s, timer = _run(_durations(0, 0.001), min_samples=30, warmup=5, ci_target=0.02, max_s=100.0)
    assert s.stop == "ci-target" and len(s.times) == 30 and timer.calls == 35
    assert s.elapsed_s == pytest.approx(sum(s.times))  # the fake clock only moves inside calls
    fig = latency_figures(s)
    lo, hi = fig["latency_ms_ci"]
    assert lo <= fig["latency_ms"] <= hi and fig["latency_ci_halfwidth_rel"] <= 0.02
    assert fig["latency_stop"] == "ci-target" and fig["latency_repeats"] == 30


def test_noisy_samples_stop_at_the_time_cap():
    s, _ = _run(_durations(0, 0.5), min_samples=30, ci_target=0.02, max_s=2.0)
    assert s.stop == "time-cap" and len(s.times) > 30
    assert 2.0 <= s.elapsed_s < 2.0 + max(s.times)  # stops at the first sample past the cap
    fig = latency_figures(s)
    lo, hi = fig["latency_ms_ci"]
    assert lo <= fig["latency_ms"] <= hi and fig["latency_ci_halfwidth_rel"] > 0.02
    assert fig["latency_ci_halfwidth_rel"] == pytest.approx((hi - lo) / 2 / fig["latency_ms"])


def test_noisy_samples_without_time_cap_stop_at_max_samples():
    s, _ = _run(_durations(0, 0.5), min_samples=30, ci_target=0.001, max_s=1e9, max_samples=200)
    assert s.stop == "max-samples" and len(s.times) == 200


def test_ci_target_is_checked_every_chunk():
    # noisy for 40 samples, then constant: the interval narrows only once enough constant
    # samples sit around the median, and the series can only stop at a check (30, 40, 50, ...)
    durations = np.concatenate([_durations(1, 0.5)[:40], np.full(10_000, 0.01)])
    s, _ = _run(durations, min_samples=30, ci_target=0.02, max_s=1e9, chunk=10)
    assert s.stop == "ci-target" and len(s.times) > 40 and (len(s.times) - 30) % 10 == 0
    assert median_ci(s.times) == s.ci


def test_minimum_is_always_taken_and_raised_to_six():
    s, _ = _run(_durations(0, 0.5), min_samples=30, max_s=0.0)
    assert s.stop == "time-cap" and len(s.times) == 30
    s, _ = _run(_durations(0, 0.5), min_samples=2, max_s=0.0)
    assert len(s.times) == 6 and s.ci is not None


def test_sampling_is_reproducible_with_a_seed():
    a, _ = _run(_durations(7, 0.3), max_s=1.5)
    b, _ = _run(_durations(7, 0.3), max_s=1.5)
    c, _ = _run(_durations(8, 0.3), max_s=1.5)
    assert a == b and latency_figures(a) == latency_figures(b)
    assert a.times != c.times


def test_stop_rule_rejects_bad_values():
    for bad in ({"ci_target": 0.0}, {"max_s": -1.0}, {"max_samples": 0}, {"chunk": 0}, {"level": 1.0}):
        with pytest.raises(ValueError):
            StopRule(**bad)


@pytest.mark.parametrize("level", [0.90, 0.95, 0.99])
def test_median_ci_matches_scipy_quantile_test(level):
    # reference: scipy's exact binomial confidence interval of a quantile (Conover 1999, sec. 3.2)
    rng = np.random.default_rng(3)
    for n in [*range(min_samples_for_ci(level), 60), 99, 100, 257, 1000]:
        x = rng.lognormal(0.0, 0.3, n)
        ref = stats.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(confidence_level=level)
        assert median_ci(x, level) == (ref.low, ref.high), n


def test_median_ci_needs_six_samples_at_95_percent():
    assert min_samples_for_ci(0.95) == 6 and min_samples_for_ci(0.99) == 8 and min_samples_for_ci(0.9) == 5
    assert median_ci([1.0, 2.0, 3.0, 4.0, 5.0]) is None and median_ci(np.arange(7.0), 0.99) is None
    assert median_ci(np.arange(6.0)) == (0.0, 5.0)  # [min, max] covers 1 - 2 / 64 = 96.9 %


def test_median_ci_covers_the_true_median_at_least_95_percent():
    # exponential timings (skewed, like real ones), true median ln 2; exact coverage at n = 30 is 95.7 %
    x = np.random.default_rng(0).exponential(1.0, (4000, 30))
    cis = np.array([median_ci(row) for row in x])
    coverage = np.mean((cis[:, 0] <= np.log(2)) & (np.log(2) <= cis[:, 1]))
    assert coverage >= 0.945  # 0.957 minus ~3 standard errors of 4000 draws


def test_fps_interval_is_the_batch_time_interval_mapped():
    s, _ = _run(_durations(0, 0.2, median_s=0.1), min_samples=10, max_s=0.0)
    f = fps_figures(s, 16)
    lo_t, hi_t = median_ci(s.times)
    assert f["fps"] == pytest.approx(16 / np.median(s.times))
    assert f["fps_ci"] == pytest.approx([16 / hi_t, 16 / lo_t]) and f["fps_ci"][0] <= f["fps"] <= f["fps_ci"][1]
    assert f["fps_stop"] == "time-cap" and f["fps_repeats"] == 10 and f["fps_batch"] == 16


def test_suite_profile_rejects_max_below_min(write_suite):
    text = TINY_SUITE.replace("latency_repeats: 3", "latency_repeats: 50, latency_max_repeats: 20")
    with pytest.raises(SuiteError, match="latency_max_repeats"):
        load_suite(write_suite(text))
    ok = load_suite(write_suite(TINY_SUITE)).suite.profile
    assert ok.latency_ci_target == 0.02 and ok.latency_max_s == 0.5
