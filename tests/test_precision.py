"""Training numerics options: ``fixed.precision`` (autocast, fp16 loss scaling), ``fixed.channels_last``
and ``profile.cudnn_benchmark``: plumbing on CPU (bf16 and fp16 autocast run on CPU), validation,
and their place in the identities (defaults leave every stored hash as it was)."""

from __future__ import annotations

import pytest
import torch

from mtbench.errors import SuiteError
from mtbench.identity import evaluation_hash, training_hash
from mtbench.runner import run_cell
from mtbench.strategies.base import TrainContext
from mtbench.suite import expand, load_suite
from tests.conftest import TINY_SUITE


def _suite(strategy: str, fixed: str = "", profile: str = "") -> str:
    return TINY_SUITE.replace("strategy: [equal, sequential]", f"strategy: [{strategy}]").replace(
        "  threads: 2\n", f"  threads: 2\n{fixed}").replace("profile: {", f"profile: {{runtimes: [], {profile}")


def _cell(write_suite, registry, strategy="equal", fixed="", profile=""):
    return expand(load_suite(write_suite(_suite(strategy, fixed, profile))), registry)[0]


def test_defaults_keep_the_identities_and_other_values_change_them(write_suite, registry):
    cell = _cell(write_suite, registry)
    cfg = cell.config
    assert cfg["fixed"]["precision"] == "fp32" and cfg["fixed"]["channels_last"] is False  # recorded
    assert cfg["profile"]["cudnn_benchmark"] is False
    old = {**cfg, "fixed": {k: v for k, v in cfg["fixed"].items() if k not in ("precision", "channels_last")},
           "profile": {k: v for k, v in cfg["profile"].items() if k != "cudnn_benchmark"}}
    ident = cell.identity
    h = training_hash(cfg, ident)
    assert h == training_hash(old, ident) and evaluation_hash(h, cfg) == evaluation_hash(h, old)
    for key, value in (("precision", "bf16"), ("precision", "fp16"), ("channels_last", True)):
        assert training_hash({**cfg, "fixed": {**cfg["fixed"], key: value}}, ident) != h
    bench = {**cfg, "profile": {**cfg["profile"], "cudnn_benchmark": True}}
    assert training_hash(bench, ident) == h and evaluation_hash(h, bench) != evaluation_hash(h, cfg)


def test_fp16_is_refused_for_a_strategy_that_differentiates_its_losses_itself(write_suite, registry):
    with pytest.raises(SuiteError, match=r"fixed\.precision.*'pcgrad'"):
        _cell(write_suite, registry, "pcgrad", "  precision: fp16\n")
    for strategy in ("equal", "uncertainty", "rlw", "sequential", "{name: single-task, params: {task: det}}"):
        _cell(write_suite, registry, strategy, "  precision: fp16\n")  # allowed
    _cell(write_suite, registry, "pcgrad", "  precision: bf16\n")  # no loss scaling: every strategy


def _ctx(precision: str, channels_last: bool = False) -> TrainContext:
    model = torch.nn.Conv2d(3, 4, 3)
    return TrainContext(model=model, tasks=[], loaders={}, losses={}, device=torch.device("cpu"),
                        fixed={"precision": precision, "channels_last": channels_last, "grad_clip": None},
                        evaluate=lambda ts: {}, progress=lambda n, d: range(n))


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                             ("fp16", torch.float16)])
def test_forward_runs_in_the_autocast_dtype_and_fp16_scales_the_loss(precision, dtype):
    ctx = _ctx(precision)
    x = torch.randn(2, 3, 8, 8)
    out = ctx.forward(x)
    assert out.dtype == dtype and ctx.model.weight.dtype == torch.float32  # master weights stay fp32
    assert (ctx.scaler is not None) == (precision == "fp16")
    loss = out.float().square().mean()
    ctx.backward(loss)
    scaled = ctx.model.weight.grad.clone()
    ctx.model.zero_grad()
    out2 = ctx.forward(x)
    out2.float().square().mean().backward()
    assert torch.allclose(scaled / ctx.grad_scale(), ctx.model.weight.grad, rtol=1e-3, atol=1e-6)
    opt = torch.optim.SGD(ctx.model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ctx.model.zero_grad()
    ctx.backward(ctx.forward(x).float().square().mean())
    before = ctx.model.weight.detach().clone()
    ctx.step(opt, sched)  # unscales (fp16) before stepping: the update is lr x the true gradient
    expected = before - 0.1 * ctx.model.weight.grad
    assert torch.allclose(ctx.model.weight.detach(), expected, atol=1e-6)


def test_channels_last_batches():
    ctx = _ctx("fp32", channels_last=True)
    ctx.loaders = {"t": [(torch.randn(2, 3, 8, 8), {})]}
    images, _ = next(ctx.batches("t"))
    assert images.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("strategy,fixed", [
    ("equal", "  precision: bf16\n"),
    ("equal", "  precision: fp16\n  channels_last: true\n"),
    ("{name: sequential, params: {lwf: {temperature: 2}, ewc: {weight: 100, batches: 2}}}", "  precision: bf16\n"),
    ("{name: sequential, params: {ewc: {weight: 100, batches: 2}, replay: {batches: 2}}}", "  precision: fp16\n"),
])
def test_cells_train_in_reduced_precision_and_evaluate_in_fp32(write_suite, registry, strategy, fixed):
    cell = _cell(write_suite, registry, strategy, fixed, "cudnn_benchmark: true, ")
    rec = run_cell(cell, registry, False)
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["config"]["fixed"]["precision"] in ("bf16", "fp16")
    assert rec["profile"]["cudnn_benchmark"] is False  # CPU: cuDNN not used, recorded as not applied
    base = run_cell(_cell(write_suite, registry, strategy), registry, False)
    first = lambda r: [v for k, v in r["history"][0].items() if k.endswith("/total")]  # noqa: E731
    # step 0's forward at the same weights: close to fp32's, but not the same numbers (autocast ran)
    assert first(rec) != first(base) and first(rec) == pytest.approx(first(base), rel=0.05)
