"""Strategies: GradNorm's toy example (Chen et al., ICML 2018, section 4), PCGrad's projection,
and every registered joint strategy training a tiny model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtbench.plugins import get_registry
from mtbench.runner import run_cell
from mtbench.strategies.gradnorm import GradNormBalancer
from mtbench.strategies.jacobian import METHODS, JacobianDescent
from mtbench.strategies.pcgrad import project_conflicting
from mtbench.suite import expand, load_suite
from tests.conftest import TINY_SUITE


class _Toy(nn.Module):
    """Shared 4-layer ReLU trunk (width 100) + one affine head per task (the paper's toy)."""

    def __init__(self, tasks: int = 2):
        super().__init__()
        layers = []
        for i in range(4):
            layers += [nn.Linear(250 if i == 0 else 100, 100), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(100, 100) for _ in range(tasks))

    def forward(self, x):
        h = self.trunk(x)
        return [head(h) for head in self.heads]


def _toy_data(sigmas, n, gen):
    """f_i(x) = sigma_i * tanh((B + eps_i) x), B ~ N(0, 10), eps_i ~ N(0, 3.5), x ~ N(0, 0.01^2)."""
    B = torch.randn(100, 250, generator=gen) * 10
    eps = [torch.randn(100, 250, generator=gen) * 3.5 for _ in sigmas]
    x = torch.randn(n, 250, generator=gen) * 0.01
    return x, [s * torch.tanh(x @ (B + e).T) for s, e in zip(sigmas, eps)]


def _train(method: str, steps: int = 1500):
    gen = torch.Generator().manual_seed(0)
    sigmas = (1.0, 100.0)
    x, ys = _toy_data(sigmas, 1200, gen)
    xtr, xte = x[:1000], x[1000:]
    torch.manual_seed(0)
    model = _Toy()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    balancer = GradNormBalancer(2, alpha=0.12, lr=0.025)
    mse = nn.functional.mse_loss
    with torch.no_grad():
        init = [float(mse(p, y[1000:])) for p, y in zip(model(xte), ys)]
    for step in range(steps):
        idx = torch.randint(0, 1000, (100,), generator=gen)
        losses = [mse(p, y[:1000][idx]) for p, y in zip(model(xtr[idx]), ys)]
        opt.zero_grad()
        if method == "gradnorm":
            balancer.backward(losses, list(model.trunk[-2].parameters()))
        else:
            sum(losses).backward()
        opt.step()
    with torch.no_grad():
        final = [float(mse(p, y[1000:])) for p, y in zip(model(xte), ys)]
    normalised = sum(f / i for f, i in zip(final, init))
    return balancer.w.detach().tolist(), normalised


def test_gradnorm_toy_example():
    weights, gn_loss = _train("gradnorm")
    _, eq_loss = _train("equal")
    assert weights[0] > weights[1]  # the sigma = 1 task ends with the larger weight
    assert sum(weights) == pytest.approx(2.0, abs=1e-4)  # renormalised to the task count
    assert gn_loss < eq_loss  # lower normalised test loss than equal weighting


def test_pcgrad_projects_only_conflicts():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    out = project_conflicting([g1, g2], torch.Generator().manual_seed(0))
    # g1 -> g1 - (-1/2) g2 = (0.5, 0.5); g2 -> g2 - (-1/1) g1 = (0, 1)
    assert torch.allclose(out, torch.tensor([0.5, 1.5]))
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    assert torch.allclose(project_conflicting([a, b]), a + b)  # no conflict: plain sum


@pytest.mark.parametrize("strategy", ["gradnorm", "uncertainty", "dwa", "pcgrad",
                                      # torchjd weighted / unweighted aggregator, after-step update,
                                      # log-transformed losses, seeded random weights
                                      "upgrad", "graddrop", "famo", "db-mtl", "rlw"])
def test_joint_strategies_train(write_suite, registry, strategy):
    text = TINY_SUITE.replace("strategy: [equal, sequential]", f"strategy: [{strategy}]").replace(
        "steps: 2", "steps: 6").replace("profile: {", "profile: {runtimes: [], ")
    cell = expand(load_suite(write_suite(text)), registry)[0]
    rec = run_cell(cell, registry, False)
    assert rec["status"] == "ok", rec.get("reason")
    assert all(0 <= rec["metrics"][k] <= 1 for k in ("det/mAP", "seg/mIoU", "cls/Top-1"))
    traj = rec["extra"]["task_weights"]
    assert len(traj) == 6 and set(traj[0]) == {"det", "seg", "cls"}
    assert rec["extra"]["step_s"] > 0
    if strategy not in ("uncertainty", "dwa", "famo", "rlw"):  # these compute no per-task gradients
        assert all(-1 <= c <= 1 for c in rec["extra"]["grad_cosine"])


@pytest.mark.parametrize("strategy", ["equal", "uncertainty"])
def test_joint_strategies_on_a_model_sharing_nothing(write_suite, registry, strategy):
    text = TINY_SUITE.replace("name: unified-onehead", "name: dual-backbone").replace(
        "strategy: [equal, sequential]", f"strategy: [{strategy}]").replace(
        "steps: 2", "steps: 10").replace("profile: {", "profile: {runtimes: [], ")
    rec = run_cell(expand(load_suite(write_suite(text)), registry)[0], registry, False)
    assert rec["status"] == "ok", rec.get("reason")
    assert not (rec.get("extra") or {}).get("grad_cosine")  # nothing shared: no conflict to measure


@pytest.mark.parametrize("option,params", [("lwf", "{temperature: 2, weight: 1}"), ("ewc", "{weight: 100, batches: 2}"),
                                           ("replay", "{batches: 2}"), ("freeze", "[backbone]")])
def test_sequential_mitigations(write_suite, registry, option, params):
    text = TINY_SUITE.replace("strategy: [equal, sequential]",
                              f"strategy: [{{name: sequential, params: {{{option}: {params}}}}}]").replace(
        "profile: {", "profile: {runtimes: [], ")
    rec = run_cell(expand(load_suite(write_suite(text)), registry)[0], registry, False)
    assert rec["status"] == "ok", rec.get("reason")
    assert [s["task"] for s in rec["stages"]] == ["seg", "det", "cls"] and "BWT" in rec["metrics"]
    if option != "freeze":
        first = [r for r in rec["history"] if r["stage"] == "seg"]
        later = [r for r in rec["history"] if r["stage"] != "seg"]
        assert not any(f"seg/{option}" in r for r in first)
        assert all(any(k.endswith(f"/{option}") for k in r) for r in later)
        assert all(v >= 0 for r in later for k, v in r.items() if k.endswith(f"/{option}"))
    assert rec["extra"]["mitigations"] == [option]


def test_sequential_stage_lr_mult(write_suite, registry):
    """Each stage's optimiser starts from ``fixed.optimizer.lr`` times its own multiplier (the
    history records the rate of the rest group, after warm-up and schedule)."""
    strategies = "[sequential, {name: sequential, label: scaled, params: {stage_lr_mult: [1.0, 0.5, 0.25]}}]"
    text = TINY_SUITE.replace("strategy: [equal, sequential]", f"strategy: {strategies}").replace(
        "profile: {", "profile: {runtimes: [], ")
    plain, scaled = (run_cell(c, registry, False) for c in expand(load_suite(write_suite(text)), registry))
    assert plain["status"] == scaled["status"] == "ok", (plain.get("reason"), scaled.get("reason"))
    for stage, mult in zip(["seg", "det", "cls"], [1.0, 0.5, 0.25]):
        lrs = [(a["lr"], b["lr"]) for a, b in zip(plain["history"], scaled["history"]) if a["stage"] == stage]
        assert lrs and all(b == pytest.approx(a * mult, rel=1e-12) for a, b in lrs)


def test_freeze_keeps_frozen_batchnorm_statistics():
    from types import SimpleNamespace

    from mtbench.strategies.continual import Freeze

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
    Freeze(["0", "1"]).after_stage(SimpleNamespace(model=model), "seg")
    before = model[1].running_mean.clone(), model[3].running_mean.clone()
    model.train()
    model(torch.randn(2, 3, 8, 8) + 5)
    assert not any(p.requires_grad for p in [*model[0].parameters(), *model[1].parameters()])
    assert not model[1].training and torch.equal(model[1].running_mean, before[0])  # frozen: eval statistics
    assert model[3].training and not torch.equal(model[3].running_mean, before[1])  # trainable: still tracks


def test_single_task_and_delta_m(write_suite, registry, tmp_path):
    from mtbench.executors.local import run_local
    from mtbench.metrics.delta_m import delta_m
    from mtbench.report import build_frame
    from mtbench.results import ResultStore

    assert delta_m({"seg/mIoU": 0.6, "cls/Top-1": 0.5}, {"seg": {"seg/mIoU": 0.5}, "cls": {"cls/Top-1": 0.5}}) == \
        pytest.approx(10.0)
    strategies = "[equal, {name: single-task, label: single-det, params: {task: det}}, " \
                 "{name: single-task, label: single-seg, params: {task: seg}}, " \
                 "{name: single-task, label: single-cls, params: {task: cls}}]"
    text = TINY_SUITE.replace("strategy: [equal, sequential]", f"strategy: {strategies}").replace(
        "profile: {", "profile: {runtimes: [], ")
    cells = expand(load_suite(write_suite(text)), registry)
    recs = run_local(cells, registry, ResultStore(tmp_path, "tiny"), show_progress=False, echo=lambda s: None)
    assert [r["status"] for r in recs] == ["ok"] * 4
    assert set(recs[2]["metrics"]) == {"seg/mIoU"}  # a single-task cell is evaluated on its task only
    assert set(recs[2]["overfit"]["tasks"]) == {"seg"}  # ... and overfit-one-batch checks only that task
    assert set(recs[0]["overfit"]["tasks"]) == {"det", "seg", "cls"}
    frame = build_frame(recs, [])
    assert frame["delta-m (%)"].notna().tolist() == [True, False, False, False]


def _jacobian(ctx, batches, params):
    """Per-task gradients ``(T, P)`` of a fresh forward on the same batches (the toy model is deterministic)."""
    from mtbench.strategies.joint import flat_grad
    return torch.stack([flat_grad(ctx.task_loss(t, b)["total"], params) for t, b in batches.items()])


# least-squares weights recorded: GradDrop masks coordinates, DB-MTL adds earlier steps' gradients
# (its moving average), ConFIG forms no weights (its update does lie in the span)
_NOT_IN_SPAN = {"graddrop", "db-mtl", "config"}


@pytest.mark.parametrize("name", sorted(set(get_registry(load_entrypoints=False).names("strategy"))
                                        - {"sequential", "single-task", "equal"}))
def test_recorded_weights_are_the_applied_ones(name):
    """Over 3 steps, the shared parameters' gradient of each step is ``sum_i w_i grad L_i`` with
    the ``w`` recorded for that step (loss weighting: every parameter's gradient)."""
    from mtbench.strategies.checks import toy_context
    ctx = toy_context(dtype=torch.float64, steps=3)
    strategy = get_registry(load_entrypoints=False).create("strategy", name)
    strategy.setup(ctx)
    streams = {t: ctx.batches(t) for t in ctx.tasks}
    shared = ctx.model.shared_parameters()
    for step in range(3):
        batches = {t: next(streams[t]) for t in ctx.tasks}
        ctx.model.zero_grad(set_to_none=True)
        strategy.train_step(ctx, batches, step)
        w = torch.tensor([strategy.task_weights[step][t] for t in ctx.tasks], dtype=torch.float64)
        applied = torch.cat([p.grad.reshape(-1) for p in shared])
        J = _jacobian(ctx, batches, shared)
        if name in _NOT_IN_SPAN:  # least-squares weights: w @ J is the update's projection on the span
            assert torch.allclose(J @ (w @ J), J @ applied, rtol=1e-6, atol=1e-12), name
        else:
            assert torch.allclose(applied, w @ J, rtol=1e-8, atol=1e-12), name
        with torch.no_grad():  # move the model as a step would, so the next step differs
            for p in ctx.model.parameters():
                p -= 0.05 * p.grad if p.grad is not None else 0.0
        strategy.after_step(ctx, batches, step)


def test_uncertainty_and_gradnorm_record_the_step_s_weights():
    from mtbench.strategies.checks import toy_context
    reg = get_registry(load_entrypoints=False)
    for name, first in (("uncertainty", 0.5), ("gradnorm", 1.0)):  # 0.5 exp(-0); GradNorm's w start at 1
        ctx = toy_context(steps=2)
        strategy = reg.create("strategy", name)
        rec = strategy.fit(ctx)
        traj = rec.extra["task_weights"]
        assert len(traj) == 2 and all(v == pytest.approx(first) for v in traj[0].values())
        assert traj[1] != traj[0]  # the update shows in the next step's weights


def test_pcgrad_draws_only_from_the_cell_seed():
    """The projection order comes from a generator seeded from the cell's seed: unrelated draws
    from torch's global generator change nothing, and PCGrad draws nothing from it."""
    from mtbench.strategies.checks import toy_context
    runs = []
    for global_seed in (1, 2):
        ctx = toy_context(steps=4)
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        rec = get_registry(load_entrypoints=False).create("strategy", "pcgrad").fit(ctx)
        assert torch.equal(torch.get_rng_state(), before)
        runs.append((rec.extra["task_weights"], [p.detach().clone() for p in ctx.model.parameters()]))
    assert runs[0][0] == runs[1][0] and all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_at_least_15_joint_methods_each_documented():
    """`mtbench plugins` lists >= 15 joint methods; each factory's docstring cites its paper (a
    year; not the fixed-weight baseline) and names every parameter it takes, with its default."""
    import inspect
    import re

    from mtbench.strategies.joint import JointStrategy
    reg = get_registry(load_entrypoints=False)
    joint = []
    for name in reg.names("strategy"):
        if name in ("single-task", "sequential"):
            continue
        factory = reg.get("strategy", name).factory
        strategy = factory()
        assert isinstance(strategy, JointStrategy), name
        joint.append(name)
        doc = inspect.getdoc(factory) or ""
        assert name == "equal" or re.search(r"(19|20)\d\d", doc), f"{name}: no paper in its docstring"
        for pname, p in inspect.signature(factory).parameters.items():
            assert pname in doc, f"{name}: parameter {pname} undocumented"
            if isinstance(p.default, (int, float)):  # the default's value appears (1e-3 = 0.001)
                numbers = {float(x) for x in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", doc)}
                assert float(p.default) in numbers, (name, pname, p.default)
            elif isinstance(p.default, str):
                assert p.default in doc, (name, pname, p.default)
    assert len(joint) >= 15, joint


@pytest.mark.parametrize("method", [m.name for m in METHODS])
def test_torchjd_strategy_update_is_its_aggregators_own(method):
    """Each torchjd-backed strategy's shared update is what its aggregator returns on the same
    Jacobian (same random draws): a ``weighting`` attribute is used only where the aggregator is
    exactly ``weighting(J) @ J`` (ConFIG's is its preference vector's sum weighting, and using it
    had made ConFIG plain summation)."""
    import types

    import torchjd.aggregation as agg

    m = next(x for x in METHODS if x.name == method)
    strategy = JacobianDescent(m)
    strategy.tasks = ["det", "seg", "cls"]
    strategy.init_state(types.SimpleNamespace(device=torch.device("cpu"), dtype=torch.float64))
    strategy.cpu_gen, strategy.device_gen = torch.Generator().manual_seed(3), None
    ref = JacobianDescent(m)
    ref.tasks = strategy.tasks
    ref.init_state(types.SimpleNamespace(device=torch.device("cpu"), dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    J = torch.randn(3, 40, generator=g, dtype=torch.float64)
    J[1] -= 1.5 * J[0]  # conflicting gradients, unequal norms
    d, w = strategy.combine(J, 0)
    torch.manual_seed(3)
    expect = ref.aggregator(J)
    assert torch.allclose(d, expect, atol=1e-10), (d - expect).abs().max()
    assert (w is not None) == isinstance(ref.aggregator, agg.WeightedAggregator)
    if method == "config":
        assert not torch.allclose(d, J.sum(0))
