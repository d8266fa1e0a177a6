"""Parity of mtbench's strategies with LibMTL 1.1.5's weighting methods (the peer library).

Same float64 toy model (a shared trunk, one head per task), same per-task batches, same losses;
both sides take the same plain SGD step from their own gradients, in lockstep, and their
shared gradients, head gradients and task weights are compared at every step (1 or 20 steps).
Where LibMTL follows a different design, the test names it and its paper, and checks what
does agree.

LibMTL's weighting modules are loaded by path (see ``tests/_libmtl.py``); its gradient
buffers are created with the default dtype, so the comparisons run under float64 default.
"""

from __future__ import annotations

import copy
import types

import pytest
import torch

from mtbench.plugins import get_registry
from mtbench.strategies.checks import ToyLoss, toy_context
from tests._libmtl import bind

REGISTRY = get_registry(load_entrypoints=False)
LR = 0.05


def _peer(name: str, model, tasks, shared=lambda m: m.trunk):
    """LibMTL's ``name`` bound to ``model``; ``shared(model)``: the module LibMTL treats as shared."""
    return bind(name, model, tasks, lambda: list(shared(model).parameters()))


@pytest.fixture(autouse=True)
def _float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _grads(model) -> tuple[torch.Tensor, torch.Tensor]:
    flat = lambda ps: torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel()) for p in ps])
    return flat(model.trunk.parameters()), flat(model.heads.parameters())


def lockstep(name: str, peer_name: str, steps: int, tasks=("det", "seg", "cls"), params=None, peer_kwargs=None,
             before_peer=None, after_peer=None, peer_model=None):
    """Run mtbench's ``name`` and LibMTL's ``peer_name`` side by side for ``steps`` steps.

    :return: per step ``{"ours": (shared, heads), "peer": (shared, heads), "w": ours, "w_peer": LibMTL's}``.
    """
    ctx = toy_context(tuple(tasks), dtype=torch.float64, steps=steps, batches=4)
    strategy = REGISTRY.create("strategy", name, **(params or {}))
    strategy.setup(ctx)
    twin = peer_model or copy.deepcopy(ctx.model)
    peer, module = _peer(peer_name, twin, tasks)
    streams = {t: ctx.batches(t) for t in ctx.tasks}
    loss = ToyLoss()
    out = []
    for step in range(steps):
        batches = {t: next(streams[t]) for t in ctx.tasks}
        ctx.model.zero_grad(set_to_none=True)
        strategy.train_step(ctx, batches, step)
        twin.zero_grad(set_to_none=True)
        losses = torch.stack([loss(twin(b[0])[t], b[1])["total"] for t, b in batches.items()])
        if before_peer:
            before_peer(peer, module, step, losses)
        w_peer = peer.backward(losses, **(peer_kwargs or {}))
        if after_peer:
            after_peer(peer, step)
        w = getattr(strategy, "task_weights", None)
        out.append({"ours": _grads(ctx.model), "peer": _grads(twin), "losses": losses.detach(),
                    "w": torch.tensor([w[step][t] for t in tasks]) if w else None,
                    "w_peer": None if w_peer is None else torch.as_tensor(w_peer, dtype=torch.float64)})
        with torch.no_grad():
            for m in (ctx.model, twin):
                for p in m.parameters():
                    if p.grad is not None:
                        p -= LR * p.grad
        strategy.after_step(ctx, batches, step)
    return out


def _close(a, b, tol=1e-6):
    return torch.allclose(a, b, rtol=tol, atol=tol * 1e-3)


def assert_same(rows, weights=True, tol=1e-6):
    for i, r in enumerate(rows):
        for part, a, b in zip(("shared", "heads"), r["ours"], r["peer"]):
            assert _close(a, b, tol), f"step {i} {part}: max |diff| {float((a - b).abs().max()):.3g}"
        if weights:
            assert _close(r["w"], r["w_peer"], tol), f"step {i} weights {r['w']} vs {r['w_peer']}"


def test_strategy_parity_equal():
    assert_same(lockstep("equal", "EW", 20), weights=False)  # equal records no weights (they are fixed)


def test_strategy_parity_dwa():
    """LibMTL's DWA reads the per-epoch mean losses from its trainer's ``train_loss_buffer``:
    filled here from the peer's own losses, an epoch = 4 steps (the toy loaders' length)."""
    history: list[torch.Tensor] = []

    def before(peer, module, step, losses):
        history.append(losses.detach())
        peer.epoch = step // 4
        means = [torch.stack(history[4 * e:4 * e + 4]).mean(0) for e in range(peer.epoch)]
        peer.train_loss_buffer = torch.stack(means, 1).numpy() if means else None

    rows = lockstep("dwa", "DWA", 20, params={"temperature": 2.0}, peer_kwargs={"T": 2.0}, before_peer=before)
    assert_same(rows)
    assert not _close(rows[-1]["w"], torch.ones(3))  # the weights did move away from 1


def test_strategy_parity_uncertainty():
    """Same initial log-variance (LibMTL's -0.5); both learn it with Adam at the same rate."""
    opts = {}

    def after(peer, step):
        opts.setdefault("adam", torch.optim.Adam([peer.loss_scale], lr=0.01)).step()
        peer.loss_scale.grad = None  # LibMTL's trainer zeroes it with the model's optimiser

    rows = lockstep("uncertainty", "UW", 20, params={"init": -0.5}, after_peer=after)
    assert_same(rows)  # weights: both 0.5 * exp(-s) as applied


def test_strategy_parity_pcgrad():
    """3 tasks with the same projection orders: LibMTL's ``random.shuffle`` replaced by draws
    from a generator seeded like mtbench's (the cell's seed, 0)."""
    gen = torch.Generator().manual_seed(0)

    def before(peer, module, step, losses):
        module.random = types.SimpleNamespace(shuffle=lambda xs: xs.__setitem__(
            slice(None), torch.randperm(len(xs), generator=gen).tolist()))

    rows = lockstep("pcgrad", "PCGrad", 20, before_peer=before)
    assert_same(rows)  # weights: LibMTL returns the effective weights too
    assert any((r["w"] != 1).any() for r in rows)  # some projections happened


def test_strategy_parity_gradnorm_objective_gradient():
    """The gradient of GradNorm's own objective ``sum_i |G_i - mean(G) r_i^alpha|`` (targets
    constant) with respect to the task weights, on the same last shared layer, the same losses
    and the same reference losses L_i(0), chained through LibMTL's parameterisation.

    Design differences (named, not compared): LibMTL parameterises ``w = T softmax(s)`` and
    trains with equal weights for the whole first epoch (``epoch >= 1``); mtbench follows
    Chen et al., ICML 2018, Algorithm 1: ``w`` itself, renormalised to sum to T after each
    update, from the first step. So the trajectories differ after this gradient.
    """
    tasks = ("det", "seg", "cls")
    ctx = toy_context(tasks, dtype=torch.float64, steps=1)
    strategy = REGISTRY.create("strategy", "gradnorm", alpha=1.5)
    strategy.setup(ctx)
    batches = {t: next(ctx.batches(t)) for t in tasks}
    twin = copy.deepcopy(ctx.model)
    losses = torch.stack([ctx.task_loss(t, b)["total"] for t, b in batches.items()]).detach()
    reference = losses * torch.tensor([1.5, 0.8, 1.1])  # L_i(0): r_i != 1, so alpha matters
    strategy.balancer.initial = reference
    strategy.train_step(ctx, batches, 0)
    ours_w = strategy.balancer.w.grad  # d objective / d w at w = 1

    peer, _ = _peer("GradNorm", twin, tasks, shared=lambda m: m.trunk[2])
    peer.epoch, peer.train_loss_buffer = 1, reference.numpy()[:, None]
    twin_losses = torch.stack([ToyLoss()(twin(b[0])[t], b[1])["total"] for t, b in batches.items()])
    peer.backward(twin_losses, alpha=1.5)
    s = peer.loss_scale.detach()
    jac = torch.autograd.functional.jacobian(lambda v: len(tasks) * torch.softmax(v, -1), s)  # w = T softmax(s) = 1
    assert _close(jac.T @ ours_w, peer.loss_scale.grad, 1e-9)
    assert ours_w.abs().sum() > 0


def test_strategy_parity_mgda_two_tasks():
    """Two tasks: LibMTL solves the min-norm problem in closed form, torchjd by Frank-Wolfe with
    exact line search (exact for two tasks). Where one gradient dominates, LibMTL (as Sener &
    Koltun's code) clamps the weight to 0.999/0.001 instead of 1/0: checked it did not here."""
    rows = lockstep("mgda", "MGDA", 20, tasks=("det", "cls"), peer_kwargs={"mgda_gn": "none"})
    assert all(0.001 < float(r["w_peer"][0]) < 0.999 for r in rows)
    assert_same(rows)


def test_strategy_parity_mgda_three_tasks_solver_tolerance():
    """Three tasks: both run Frank-Wolfe to a stopping tolerance (LibMTL: change < 1e-5, 250
    iterations; mtbench via torchjd: ``epsilon`` 1e-9 here, 10000 iterations), so the shared
    update (the unique min-norm point) agrees to the solvers' tolerance, not to 1e-6."""
    rows = lockstep("mgda", "MGDA", 1, params={"epsilon": 1e-9, "max_iters": 10000}, peer_kwargs={"mgda_gn": "none"})
    ours, peer = rows[0]["ours"][0], rows[0]["peer"][0]
    assert float((ours - peer).norm() / peer.norm()) < 1e-3
    assert float(ours.norm()) <= float(peer.norm()) * (1 + 1e-6)  # ours is at least as close to the minimum norm


def test_strategy_parity_cagrad():
    """CAGrad (Liu et al., NeurIPS 2021, Algorithm 1) with c = 0.5: LibMTL's default ``rescale=1``
    (from the official code) divides the update by 1 + c^2; torchjd (and mtbench) does not, so
    LibMTL runs with ``rescale=0`` here. The inner problem is solved by SLSQP (LibMTL) and by
    Clarabel (torchjd): they agree to the solvers' tolerance."""
    rows = lockstep("cagrad", "CAGrad", 5, params={"c": 0.5}, peer_kwargs={"calpha": 0.5, "rescale": 0})
    for r in rows:  # weights not compared: LibMTL returns its inner w, not the applied weights
        for a, b in zip(r["ours"], r["peer"]):
            assert float((a - b).norm() / b.norm()) < 1e-3  # SLSQP's default ftol 1e-6 bounds LibMTL's w


def test_strategy_parity_gradvac_first_step():
    """GradVac (Wang et al., ICLR 2021), beta = 0.5, two tasks (no order to draw). Step 1 agrees;
    afterwards the designs differ: Algorithm 1 of the paper (and torchjd) updates the cosine
    EMA for every pair at every step, LibMTL 1.1.5 only when it adjusts the gradient."""
    rows = lockstep("gradvac", "GradVac", 1, tasks=("det", "cls"), params={"beta": 0.5}, peer_kwargs={"beta": 0.5})
    assert_same(rows, tol=1e-6)


def test_strategy_parity_graddrop_same_draws():
    """GradDrop (Chen et al., NeurIPS 2020) on one representation: LibMTL applies it to the
    gradient of a positive activation (``rep_grad=True``), mtbench (torchjd's ``GradDrop``) to the
    rows of a Jacobian. With batch 1 and a positive activation LibMTL's sign-weighted batch sum is
    that activation's Jacobian, so both must drop the same entries given the same uniform draws
    (LibMTL: torch's global generator seeded 0; mtbench: a generator seeded from the cell's seed 0).
    mtbench applies it to the shared parameters' Jacobian (no shared activation across tasks
    that see different images)."""
    tasks = ("det", "seg", "cls")
    ctx = toy_context(tasks, dtype=torch.float64)
    strategy = REGISTRY.create("strategy", "graddrop")
    strategy.setup(ctx)
    model = ctx.model
    x, ys = torch.randn(1, 8), {t: torch.randn(1, 3) for t in tasks}
    rep = torch.nn.functional.softplus(model.trunk(x))  # (1, 16), positive

    peer, module = _peer("GradDrop", model, tasks)
    peer.rep_grad, peer.rep = True, rep
    peer.rep_tasks = {t: rep.detach().clone().requires_grad_() for t in tasks}
    losses = torch.stack([(model.heads[t](peer.rep_tasks[t]) - ys[t]).pow(2).mean() for t in tasks])
    seen = []
    rep.register_hook(lambda g: seen.append(g.clone()))  # returns None: the gradient is not replaced
    torch.manual_seed(0)
    peer.backward(losses, leak=0.0)

    J = torch.stack([torch.autograd.grad((model.heads[t](rep) - ys[t]).pow(2).mean(), rep, retain_graph=True)[0][0]
                     for t in tasks])
    d, _ = strategy.combine(J, 0)
    assert _close(d, seen[0][0], 1e-12)
    assert not _close(d, J.sum(0))  # something was dropped


def test_strategy_parity_imtl():
    """IMTL-G's closed form (Liu et al., ICLR 2021): LibMTL's ``IMTL`` is the hybrid (IMTL-L's
    learned loss scales, then IMTL-G); with its scales at their start (0) the scaled losses are
    the raw ones, so at step 1 its update and weights are IMTL-G's. mtbench offers the two halves
    as ``imtl-g`` and ``imtl-l``."""
    assert_same(lockstep("imtl-g", "IMTL", 1))


def test_strategy_parity_rlw_same_draws():
    """RLW (Lin et al., TMLR 2022) with normal draws: LibMTL samples torch's global generator
    (seeded 0 here), mtbench a generator seeded from the cell's seed (0): same weights, 20 steps."""

    def before(peer, module, step, losses):
        if step == 0:
            torch.manual_seed(0)

    rows = lockstep("rlw", "RLW", 20, peer_kwargs={"dist": "Normal"}, before_peer=before)
    assert_same(rows)


def test_strategy_parity_gls():
    """GLS (Chennupati et al., CVPRW 2019): same gradients over 20 steps. LibMTL returns
    ``L_i / (T prod L)`` as its weights; the weight that multiplies L_i in the gradient of
    ``(prod L)^(1/T)`` is ``(prod L)^(1/T) / (T L_i)``, which mtbench records."""
    rows = lockstep("gls", "GLS", 20)
    assert_same(rows, weights=False)
    for r in rows:
        L = r["losses"]
        assert _close(r["w"], L.prod() ** (1 / 3) / (3 * L), 1e-9)


def test_strategy_parity_cagrad_solved_tightly():
    """LibMTL's CAGrad problem (its objective, constraint and update formula, transcribed from
    ``weighting/CAGrad.py``) solved with SLSQP at ``ftol`` 1e-15 instead of its default 1e-6:
    mtbench's (torchjd's Clarabel) update agrees to 1e-5 relative (measured 6.6e-6; the
    remaining gap is the interior-point solver's tolerance and torchjd's ``norm_eps``)."""
    import numpy as np
    from scipy.optimize import minimize

    from mtbench.strategies.joint import flat_grad
    ctx = toy_context(dtype=torch.float64)
    strategy = REGISTRY.create("strategy", "cagrad", c=0.5)
    strategy.setup(ctx)
    J = torch.stack([flat_grad(ctx.task_loss(t, next(ctx.batches(t)))["total"], strategy.shared) for t in ctx.tasks])
    d, _ = strategy.combine(J, 0)
    A, x0 = (J @ J.T).numpy(), np.ones(3) / 3
    c = 0.5 * np.sqrt(A.mean() + 1e-8) + 1e-8
    res = minimize(lambda x: x @ A @ x0 + c * np.sqrt(x @ A @ x + 1e-8), x0, bounds=[(0, 1)] * 3,
                   constraints={"type": "eq", "fun": lambda x: 1 - x.sum()}, options={"ftol": 1e-15})
    gw = torch.from_numpy(res.x) @ J
    peer = J.mean(0) + c / (gw.norm() + 1e-8) * gw
    assert float((d - peer).norm() / peer.norm()) < 1e-5
