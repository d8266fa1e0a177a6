"""``mtbench parity``: PyTorch against PyTorch (identical, a broken copy, a dead assigner, ONNX
Runtime), spec parsing, and the command's exit codes. The Jittor side: plugins/mtbench-jittor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtbench.cli import main
from mtbench.losses.detection import VarifocalLoss
from mtbench.parity import (Options, ParityError, Setup, build_side, load_batches, open_dataset, parity, parse_spec,
                            run_parity)
from mtbench.parity.compare import compare_curves, compare_grads, curve_ok, grad_modules, judge, module_of, rel_diff
from mtbench.parity.gates import ImposeRounding, compare_gates, pieces
from mtbench.errors import PluginError
from mtbench.plugins import Spec, get_registry, hookimpl
from mtbench.profiling.latency import StopRule

gold = pytest.importorskip("mtbench_gold_yolo", reason="pip install -e ./plugins/mtbench-gold-yolo (README set-up)")

QUICK = Options(steps=2, batch_size=2, warmup=1, timing=StopRule(max_s=0.0))
DATA = "synthetic[num_images=4]"


class ThinLowIFM(gold.GoldYOLO):
    """A broken port: the low-GD fusion's hidden width 64 instead of 96 (one layer's channels)."""

    def __init__(self, tasks, level="P3", size="n"):
        super().__init__(tasks, level, size)
        c = self.neck.low_ifm[0][0].in_channels
        out = self.neck.low_ifm[-1][0].out_channels
        self.neck.low_ifm = torch.nn.Sequential(gold.silu_conv(c, 64), *(gold.RepVGGBlock(64, 64) for _ in range(3)),
                                                gold.silu_conv(64, out))


class NoPositives(VarifocalLoss):
    """A broken assigner: no location is ever positive."""

    def assign(self, d, i, boxes, labels, pred_boxes):
        n = d.points.shape[0]
        return torch.full((n,), -1, dtype=torch.long), torch.zeros(n), 0


class _Broken:
    @hookimpl
    def mtbench_register_models(self):
        return [Spec("model", "gold-yolo-thin", ThinLowIFM, "test: gold-yolo with one layer's channels changed")]

    @hookimpl
    def mtbench_register_losses(self):
        return [Spec("loss", "varifocal-nopos", NoPositives, "test: varifocal with no positives", task="det")]


@pytest.fixture(scope="module")
def registry():
    return get_registry(extra_plugins=[_Broken()])


def _run(registry, b, a="gold-yolo[n]", opts=QUICK):
    return parity(a, b, registry, data=DATA, image_size=64, opts=opts)


def test_parse_spec():
    s = parse_spec("jittor:gold-yolo[n,reg_max=16]")
    assert (s.framework, s.name, s.positional, s.params) == ("jittor", "gold-yolo", ("n",), {"reg_max": 16})
    assert parse_spec("compile").framework == "runtime" and parse_spec("runtime:onnx").name == "onnx"
    assert parse_spec("gold-yolo").framework == "torch"
    for bad in ("runtime:tensorrt", "gold yolo", "a:b:c"):
        with pytest.raises(ParityError):
            parse_spec(bad)


def test_rel_diff_and_helpers():
    assert rel_diff(0.0, 0.0) == 0.0 and rel_diff(0.0, 2.0) == 1.0
    assert rel_diff(np.array([1.0, -4.0]), np.array([1.0, -3.0])) == pytest.approx(0.25)
    assert module_of("neck.low_ifm.0.0.weight", 2) == "neck.low_ifm"
    c = compare_curves([{"total": 1.0}, {"total": 1.0}, {"total": 1.0}],
                       [{"total": 1.0}, {"total": 1.001}, {"total": 1.5}], 1e-2)
    assert c["diverged_at"] == 2 and curve_ok(c) is False
    c = compare_curves([{"total": 1.0}] * 3, [{"total": 1.0}, {"total": 1.0}, {"total": 1.5}], 1e-2,
                       [{"total": 1.0}, {"total": 1.2}, {"total": 1.0}])
    assert (c["diverged_at"], c["float64_diverged_at"], curve_ok(c)) == (2, 1, True)  # float32 noise got there first


def test_float64_floor():
    """A gradient that is float noise on both sides (0 in exact arithmetic) passes; a wrong one fails."""
    ga = {"conv.bias": np.array([1e-7, -2e-7]), "conv.weight": np.array([0.5, 1.0])}
    gb = {"conv.bias": np.array([-1e-7, 1e-7]), "conv.weight": np.array([0.5, 0.7])}
    g64 = {"conv.bias": np.array([0.0, 1e-12]), "conv.weight": np.array([0.5, 1.0 + 1e-7])}
    rows = judge(compare_grads(ga, gb), "param", 1e-3, compare_grads(ga, g64), 10.0)
    ok = {r["param"]: r["ok"] for r in rows}
    assert ok == {"conv.bias": True, "conv.weight": False}
    (m,) = grad_modules(rows, 1)
    assert m["worst"] == "conv.weight" and not m["ok"] and m["limit"] == 1e-3
    assert judge(compare_grads(ga, gb), "param", 1e-3, None, 10.0)[0]["ok"] is False  # no floor: tolerance only


def test_identical_models_agree(registry):
    rep = _run(registry, "gold-yolo[size=n]")
    assert rep["failures"] == []
    assert all(r["diff"] == 0 for r in rep["params"]) and rep["params"][-1]["a"] > 5e6
    assert [r["output"] for r in rep["outputs"]] == ["det/P3", "det/P4", "det/P5"]
    assert {r["component"] for r in rep["loss"]} >= {"cls", "box", "total", "num_pos"}
    assert rep["curves"]["diverged_at"] is None and len(rep["curves"]["a"]) == 2
    assert len(rep["timing"]) == 2 and all(r["latency_ms"] > 0 and r["fps"] > 0 for r in rep["timing"])


def test_changed_channels_reported(registry):
    rep = _run(registry, "gold-yolo-thin[n]")
    fails = "\n".join(rep["failures"])
    thin = {r["module"]: r for r in rep["params"]}["neck.low_ifm"]
    assert thin["diff"] < 0, thin
    assert "params: neck.low_ifm" in fails and "weights: neck.low_ifm.0.0.weight given" in fails
    assert "forward: det/P3" in fails  # weights that did not transfer change the outputs
    assert "params: backbone" not in fails  # only the broken module is named


def test_assigner_without_positives_reported(registry):
    rep = _run(registry, "gold-yolo[n,loss=varifocal-nopos]")
    loss = {r["component"]: r for r in rep["loss"]}
    assert loss["num_pos"]["a"] > 0 and loss["num_pos"]["b"] == 0 and not loss["num_pos"]["ok"]
    assert loss["box"]["b"] == 0 and not loss["box"]["ok"]
    fails = "\n".join(rep["failures"])
    assert "loss: num_pos" in fails and "(0 in B only)" in fails
    assert "grads:" in fails and "curve:" in fails
    assert not any(f.startswith(("params", "forward", "weights")) for f in rep["failures"])  # the model is fine


def test_onnx_runtime_side(registry):
    pytest.importorskip("onnxruntime")
    rep = _run(registry, "runtime:onnx")
    assert rep["failures"] == [], rep["failures"]
    assert all(r["rel"] < 1e-4 for r in rep["outputs"]) and "loss" not in rep and rep["params"] == []
    assert "inference only" in rep["not_compared"]


def test_command_exit_codes(tmp_path, capsys):
    out = tmp_path / "parity.json"
    args = ["parity", "gold-yolo[n]", "gold-yolo[n]", "--data", DATA, "--image-size", "64", "--batch-size", "2",
            "--steps", "1", "--json", str(out)]
    assert main(args) == 0
    assert "every check within tolerance" in capsys.readouterr().out
    assert json.loads(out.read_text())["failures"] == []
    assert main(["parity", "gold-yolo[n]", "jittor-x:gold-yolo[n]", "--data", DATA]) == 2
    assert "no framework 'jittor-x' installed" in capsys.readouterr().err
    assert main(["parity", "gold-yolo[n]", "gold-yolo[n,loss=no-such-loss]", "--data", DATA]) == 2


def test_jittor_refuses_numpy2(monkeypatch, capsys):
    """Jittor 1.3 reads Python floats as garbage under numpy 2: the adapter refuses to build there."""
    mj = pytest.importorskip("mtbench_jittor", reason="pip install --no-deps -e ./plugins/mtbench-jittor")
    monkeypatch.setattr(mj.np, "__version__", "2.4.6")
    assert main(["parity", "gold-yolo[n]", "jittor:gold-yolo[n]", "--data", DATA]) == 2
    assert "numpy < 2" in capsys.readouterr().err
    with pytest.raises(PluginError, match="no Jittor port of model 'yolo-mtl'"):
        parity("gold-yolo[n]", "jittor:yolo-mtl", get_registry(), data=DATA)


def test_gate_pieces_and_flips():
    """The piece PyTorch's backward gates on (x > 0; ReLU6: 0 < x < 6); a flip is rounding when the
    two inputs are within the tolerance of the module's largest |x|."""
    assert pieces(np.array([-1.0, 0.0, 1e-9, 5.0, 6.0, 7.0]), 6.0).tolist() == [0, 0, 1, 1, 2, 2]
    assert pieces(np.array([-1e-9, 0.0, 7.0]), None).tolist() == [0, 0, 1]
    a = {"act": [(np.array([4.0, 1e-6, -2.0]), None)], "same": [(np.array([1.0]), None)]}
    near = {"act": [(np.array([4.0, -1e-6, -2.0]), None)], "same": [(np.array([1.0]), None)]}
    (row,) = compare_gates(a, near, 1e-4)  # "same" did not flip: no row
    assert (row["module"], row["flipped"], row["elements"], row["ok"]) == ("act", 1, 3, True)
    assert row["kink_dist_a"] == pytest.approx(1e-6) and row["rel"] == pytest.approx(5e-7)
    (far,) = compare_gates(a, {**near, "act": [(np.array([4.0, -1.0, -2.0]), None)]}, 1e-4)
    assert not far["ok"] and far["rel"] == pytest.approx(0.25)
    one_side = compare_gates(a, {"act": near["act"]}, 1e-4)[-1]  # recorded in A only
    assert one_side == {"module": "same", "elements": None, "flipped": None, "kink_dist_a": None, "rel": None,
                        "limit": 1e-4, "ok": False}


def _pin(side, module: str, value: float):
    """Sets the first input element of ``module`` of ``side``'s model to ``value`` (the gradient
    passes through unchanged)."""
    def hook(mod, args):
        x = args[0]
        delta = torch.zeros_like(x).flatten()
        delta[0] = value - x.flatten()[0].detach()
        return (x + delta.view_as(x),)
    dict(side.model.named_modules())[module].register_forward_pre_hook(hook)


@pytest.mark.parametrize("b_value", [-1e-6, -1.0])
def test_gate_flip_reported(registry, b_value):
    """An element that lies at a ReLU's kink in A (+1e-6) and just below it in B (-1e-6) is float
    rounding: B's gradients are judged with A's gates imposed, and pass. Far below (-1) it is a
    difference of the port: named as such, and the gradients are judged as they are."""
    ds = open_dataset(registry, parse_spec(DATA), "det", 64)
    setup = Setup(registry, ds.info, image_size=64)
    a = build_side(parse_spec("gold-yolo[n]"), setup)
    b = build_side(parse_spec("gold-yolo[n]"), setup, reference=a)
    _pin(a, "neck.rep_n5.3.act", 1e-6)  # the last ReLU (the heads use SiLU): no flip downstream of it
    _pin(b, "neck.rep_n5.3.act", b_value)
    rep = run_parity(a, b, load_batches(ds, 2, 2, 0), Options(steps=2, batch_size=2, warmup=1,
                                                               timing=StopRule(max_s=0.0)))
    assert rep["gates_compared"]["modules"] == 55
    (row,) = rep["gates"]
    assert (row["module"], row["flipped"]) == ("neck.rep_n5.3.act", 1)
    assert row["kink_dist_a"] == pytest.approx(1e-6, rel=0.1)
    assert "grad_modules_gated" in rep
    fails = "\n".join(rep["failures"])
    c = rep["curves"]  # lockstep training: the same rule at every step
    assert c["gated"] and c["unmatched_b"] == [0, 0]
    if b_value == -1e-6:
        assert row["ok"] and all(m["ok"] for m in rep["grad_modules_gated"])
        assert not any(f.startswith(("gates", "grads")) for f in rep["failures"]), fails
        assert (c["imposed_b"][0], c["beyond_b"][0]) == (1, 0)  # the rounding flip imposed, nothing else
        assert c["imposed_b"][1] >= 1  # and again at the next step (others may flip beyond rounding by then)
    else:
        assert not row["ok"] and "gates: neck.rep_n5.3.act 1 of 1024 inputs on another piece" in fails
        assert "(A gates imposed on B)" not in fails
        assert (c["imposed_b"][0], c["beyond_b"][0]) == (0, 1) and c["beyond_rel_b"][0] > 1e-4  # left as it is


def test_impose_rounding_only():
    """Lockstep gating takes A's piece where an input flipped within rounding, keeps B's own
    where it flipped beyond, and counts both."""
    ga = {"act": [(np.array([4.0, 1e-6, -2.0, 1e-6]), None)]}
    force = ImposeRounding(ga, 1e-4)
    p = force("act", 0, lambda: np.array([4.0, -1e-6, -2.0, -1.0]), None)
    assert p.tolist() == [1, 1, 0, 0]  # element 1 (rounding) imposed, element 3 (beyond) its own
    assert (force.imposed, force.beyond) == ({"act": 1}, {"act": 1})
    assert force.beyond_rel == pytest.approx((1 + 1e-6) / 4)
    assert force("act", 0, lambda: np.array([4.0, 2e-6, -2.0, 1.0]), None) is None  # no flip: own output
    assert force("other", 0, lambda: np.zeros(2), None) is None and force.unmatched == ["other[0]"]
