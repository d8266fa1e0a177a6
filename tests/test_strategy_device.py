"""Every registered strategy (built-ins and installed plugins) keeps its state on the cell's
device and dtype: set up on the ``meta`` device (no GPU needed), trained for a few steps on
a float64 model (state created lazily in float32 or on the CPU shows as a mismatch), and,
marked ``gpu``, trained one step on CUDA (skipped without it)."""

from __future__ import annotations

import pytest
import torch

from mtbench.plugins import get_registry
from mtbench.strategies.checks import state_mismatches, toy_context

REGISTRY = get_registry()  # entry points included: installed plugins' strategies are checked too
STRATEGIES = REGISTRY.names("strategy")
PARAMS = {"single-task": {"task": "det"}, "sequential": {"order": ["det", "seg", "cls"]}}


def _build(name: str):
    return REGISTRY.create("strategy", name, **PARAMS.get(name, {}))


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_state_on_meta_device(name):
    ctx = toy_context(device="meta")
    strategy = _build(name)
    if hasattr(strategy, "setup"):  # joint strategies create their state here
        strategy.setup(ctx)
    assert state_mismatches(strategy, ctx) == []


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_state_device_and_dtype_after_steps(name):
    ctx = toy_context(dtype=torch.float64)
    strategy = _build(name)
    strategy.fit(ctx)
    assert state_mismatches(strategy, ctx) == []
    assert ctx.history and all(torch.isfinite(torch.tensor(v)) for r in ctx.history for k, v in r.items()
                               if k.endswith("/total"))


def test_strategy_device_check_flags_a_cpu_weight():
    ctx = toy_context(device="meta")
    strategy = _build("uncertainty")
    strategy.setup(ctx)
    strategy.log_var = torch.zeros(3)  # the bug of issue 18: created on the CPU
    assert any("log_var" in m for m in state_mismatches(strategy, ctx))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_device_cuda_step(name):
    ctx = toy_context(device="cuda", steps=2)
    strategy = _build(name)
    strategy.fit(ctx)
    assert state_mismatches(strategy, ctx) == []
