"""The Jittor port (plugins/mtbench-jittor) against the PyTorch Gold-YOLO through ``mtbench parity``.

Skipped unless Jittor imports under numpy < 2 (its requirement; README, "Parity"). The first
run compiles Jittor's kernels (minutes); they are cached under ``~/.cache/jittor``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.jittor
mj = pytest.importorskip("mtbench_jittor", reason="pip install --no-deps -e ./plugins/mtbench-jittor")
gold = pytest.importorskip("mtbench_gold_yolo", reason="pip install -e ./plugins/mtbench-gold-yolo")
if int(np.__version__.split(".")[0]) >= 2:
    pytest.skip(f"Jittor needs numpy < 2 (numpy {np.__version__} here)", allow_module_level=True)
try:
    mj.import_jittor()  # sets Jittor's CPU environment first
except ImportError:
    pytest.skip("jittor is not installed", allow_module_level=True)

from mtbench.parity import (Options, Setup, Transfer, build_side, load_batches, open_dataset, parse_spec,  # noqa: E402
                            run_parity)
from mtbench.plugins import get_registry  # noqa: E402
from mtbench.profiling.latency import StopRule  # noqa: E402

QUICK = Options(steps=2, batch_size=2, warmup=1, timing=StopRule(max_s=0.0))
SIZE = 128


@pytest.fixture(scope="module")
def setup():
    reg = get_registry()
    ds = open_dataset(reg, parse_spec("synthetic[num_images=4]"), "det", SIZE)
    return Setup(reg, ds.info, image_size=SIZE), load_batches(ds, 2, 2, 0)


def _sides(setup, b="jittor:gold-yolo[n]"):
    s, _ = setup
    a = build_side(parse_spec("gold-yolo[n]"), s)
    return a, build_side(parse_spec(b), s, reference=a)


def test_names_map_one_to_one(setup):
    a, b = _sides(setup)
    assert b.load(a.state()) == Transfer()
    assert a.parameters() == b.parameters()  # every trainable tensor, same name and shape


def test_port_matches_pytorch(setup):
    a, b = _sides(setup)
    rep = run_parity(a, b, setup[1], QUICK)
    assert all(r["diff"] == 0 for r in rep["params"])
    assert all(r["rel"] < 1e-4 for r in rep["outputs"]), rep["outputs"]
    loss = {r["component"]: r for r in rep["loss"]}
    assert loss["num_pos"]["a"] == loss["num_pos"]["b"] > 0
    assert loss["total"]["rel"] < 1e-3
    c = rep["curves"]  # lockstep: A's gates of each step offered to B, and every call of B matched to A's
    assert len(c["b"]) == 2 and c["gated"] and c["unmatched_b"] == [0, 0]


def test_sgd_step_matches_torch(setup):
    """jt.optim.SGD moves the weights as torch.optim.SGD does (lr 0.01, momentum 0.9) on the same
    gradients, three steps: the optimisers are not where the curves part."""
    a, b = _sides(setup)
    state = a.state()
    b.load(state)
    rs = np.random.RandomState(0)
    grads = {n: rs.randn(*shape).astype(np.float32) for n, shape in a.parameters().items()}
    a.start_training(0.01, 0.9)
    b.start_training(0.01, 0.9)
    tp, jp = dict(a.model.named_parameters()), b._trainable()
    for _ in range(3):  # a loss whose gradient is ``grads`` exactly
        a.opt.zero_grad()
        sum((tp[n] * torch.from_numpy(g)).sum() for n, g in grads.items()).backward()
        a.opt.step()
        b.opt.step(sum((jp[n] * b.jt.array(g)).sum() for n, g in grads.items()))
    sa, sb = a.state(), b.state()
    for n in grads:
        np.testing.assert_allclose(sb[n] - state[n], sa[n] - state[n], rtol=0,
                                   atol=1e-5 * np.abs(sa[n] - state[n]).max(), err_msg=n)


class ThinPort(mj.JittorSide):
    """A broken Jittor port: the low-GD fusion's hidden width 64 instead of 96."""

    def __init__(self, side):
        from mtbench_jittor import gold_yolo as g
        neck = side.model.neck
        c, out = neck.low_ifm[0][0].in_channels, neck.low_ifm[-1][0].out_channels
        neck.low_ifm = g.nn.Sequential(g.silu_conv(c, 64), *(g.RepVGGBlock(64, 64) for _ in range(3)),
                                       g.silu_conv(64, out))
        super().__init__("jittor:thin", side.model, side.loss, side.strides)


def test_broken_port_channels(setup):
    a, b = _sides(setup)
    rep = run_parity(a, ThinPort(b), setup[1], Options(steps=1, batch_size=2, warmup=1, timing=StopRule(max_s=0.0)))
    fails = "\n".join(rep["failures"])
    assert "params: neck.low_ifm" in fails and "weights: neck.low_ifm.0.0.weight" in fails
    assert "forward: det/P3" in fails and "params: backbone" not in fails


def test_broken_port_assigner(setup):
    a, b = _sides(setup)

    class NoPositives(type(b.loss)):
        def assign(self, scores, pred_boxes, points, boxes, labels):
            import jittor as jt
            n = points.shape[0]
            return jt.full((n,), -1, "int32"), jt.zeros((n,))

    b.loss = NoPositives(b.loss.num_classes)
    rep = run_parity(a, b, setup[1], Options(steps=1, batch_size=2, warmup=1, timing=StopRule(max_s=0.0)))
    loss = {r["component"]: r for r in rep["loss"]}
    assert loss["num_pos"]["b"] == 0 < loss["num_pos"]["a"] and loss["box"]["b"] == 0
    fails = "\n".join(rep["failures"])
    assert "loss: num_pos" in fails and "(0 in B only)" in fails
    assert not any(f.startswith(("params", "forward", "weights")) for f in rep["failures"])



def test_loss_port_on_identical_maps(setup):
    """The Jittor det/varifocal on the same dense maps as PyTorch's (80 classes, so ~1e5 class
    terms are summed): components, positives and the gradient w.r.t. the maps agree."""
    import jittor as jt

    from mtbench.losses.detection import VarifocalLoss
    rs = np.random.RandomState(0)
    maps = [rs.randn(2, 85, s, s).astype(np.float32) - np.float32(2.0) for s in (16, 8, 4)]
    _, batches = setup
    targets = batches[0][1]
    tm = [torch.from_numpy(m).requires_grad_() for m in maps]
    lt = VarifocalLoss(80)(tm, [{k: torch.from_numpy(v) for k, v in t.items()} for t in targets], stride=[8, 16, 32])
    lt["total"].backward()
    jm = [jt.array(m) for m in maps]
    lj, counts = mj.side(parse_spec("jittor:gold-yolo[n]"), num_classes=80).loss(jm, targets, [8, 16, 32])
    for k in ("cls", "box", "total"):
        assert float(lj[k].item()) == pytest.approx(float(lt[k]), rel=1e-5), k
    assert counts["num_pos"] == float(lt["num_pos"]) > 0
    for g, t in zip(jt.grad(lj["total"], jm), tm):
        assert np.abs(g.numpy() - t.grad.numpy()).max() <= 1e-5 * np.abs(t.grad.numpy()).max()


def test_max_pool_ties_route_as_pytorch():
    """SimCSPSPPF's chained 5x5 max pools on a 4x4 map, with ties in every window: Jittor sends a
    window's gradient to the same element as PyTorch does (the first maximum in scan order)."""
    import jittor as jt

    from mtbench_jittor.gold_yolo import max_pool5
    rs = np.random.RandomState(0)
    x = rs.randint(0, 4, (2, 8, 4, 4)).astype(np.float32)
    u = rs.randn(2, 32, 4, 4).astype(np.float32)
    t = torch.from_numpy(x).requires_grad_()
    y1 = torch.nn.functional.max_pool2d(t, 5, 1, 2)
    y2 = torch.nn.functional.max_pool2d(y1, 5, 1, 2)
    (torch.cat([t, y1, y2, torch.nn.functional.max_pool2d(y2, 5, 1, 2)], 1) * torch.from_numpy(u)).sum().backward()
    assert len(np.unique(y1.detach().numpy()[0, 0])) < 4  # ties
    j = jt.array(x)
    z1 = max_pool5(j)
    z2 = max_pool5(z1)
    g = jt.grad((jt.concat([j, z1, z2, max_pool5(z2)], 1) * jt.array(u)).sum(), j).numpy()
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=0, atol=1e-5)


def test_gates_recorded_and_imposed_alike(setup):
    """Both sides record the same ReLU/ReLU6 modules with the same shapes; with the same gates
    imposed (one ReLU made linear) their gradients agree, and differ from the free ones."""
    from mtbench.parity.compare import rel_diff
    from mtbench.parity.gates import gate_pieces
    a, b = _sides(setup)
    b.load(a.state())
    x, t = setup[1][0]
    free = a.loss_and_grads(x, t)[1]
    b.loss_and_grads(x, t)
    ga, gb = a.gates(), b.gates()
    assert len(ga) == 55 and list(ga) == list(gb)
    assert all([v.shape for v, _ in ga[n]] == [v.shape for v, _ in gb[n]] for n in ga)
    force = gate_pieces(ga)
    force["neck.rep_p4.3.act"] = [np.ones_like(p) for p in force["neck.rep_p4.3.act"]]
    fa, fb = a.loss_and_grads(x, t, gates=force)[1], b.loss_and_grads(x, t, gates=force)[1]
    name = "neck.rep_p4.0.dense.0.weight"
    assert rel_diff(fa[name], fb[name]) < 1e-3 < rel_diff(fa[name], free[name])
