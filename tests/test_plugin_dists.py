"""The plugin distributions under plugins/ (installed by the README's set-up): gold-yolo, point-heatmap."""

from __future__ import annotations

import importlib.metadata as md

import pytest
import torch

from mtbench.data.base import TaskInfo
from mtbench.plugins import get_registry
from mtbench.profiling.complexity import count_flops, count_params

pytest.importorskip("mtbench_gold_yolo", reason="pip install -e ./plugins/mtbench-gold-yolo (README set-up)")
pytest.importorskip("mtbench_point_heatmap", reason="pip install -e ./plugins/mtbench-point-heatmap (README set-up)")

DET80 = {"det": TaskInfo("det", 80, ())}
POINTS = {"points": TaskInfo("points", 1, ("Target",))}
#: Gold-YOLO paper (NeurIPS 2023, Table 1): params (M), FLOPs (G) at 640 px, 80 classes
PAPER = {"n": (5.6, 12.1), "s": (21.5, 46.0)}


@pytest.fixture(scope="module")
def full_registry():
    return get_registry(load_entrypoints=True)


def test_listed_with_their_distributions(full_registry):
    gold = full_registry.entries["model"]["gold-yolo"]
    heat = full_registry.entries["model"]["point-heatmap"]
    assert gold.distribution == "mtbench-gold-yolo" and heat.distribution == "mtbench-point-heatmap"
    assert md.version("mtbench-gold-yolo") == gold.version


@pytest.mark.parametrize("size", ["n", "s"])
def test_gold_yolo_matches_its_paper_reference(full_registry, size):
    """The plugin's own reference figures (paper Table 1: 640 px, 80 classes) hold within their 1 %
    tolerance for a cell at another size and class count: the model is rebuilt at the paper's
    conditions (deployed, RepVGG re-parameterised) and measured there."""
    from mtbench.diagnostics.reference import reference_figures
    from mtbench.profiling.reference import reference_entries
    factory = full_registry.get("model", "gold-yolo").factory
    cfg = {"architecture": {"name": "gold-yolo", "params": {"size": size}}, "level": "P3", "fixed": {"image_size": 128}}
    (ref,) = reference_entries(cfg, factory, {"det": 3}, {"params_m": 1.0, "flops_g": 1.0})
    print(f"gold-yolo-{size}: {ref['measured']} (paper {ref['expected']})")
    assert ref["expected"] == dict(zip(("params_m", "flops_g"), PAPER[size]))
    assert ref["conditions"] == {"image_size": 640, "tasks": {"det": 80}, "level": "P3"}
    assert reference_figures({"profile": {"reference": [ref]}}) == []
    ported = {**ref, "measured": {"params_m": PAPER[size][0] * 1.014, "flops_g": PAPER[size][1]}}  # the seeds' port
    (found,) = reference_figures({"profile": {"reference": [ported]}})
    assert found.severity == "error" and found.evidence["relative"] == pytest.approx(0.014)
    assert factory.reference_figures(size=size, reg_max=3) == []  # not the paper's model


def test_gold_yolo_shapes_and_fuse_parity(full_registry):
    model = full_registry.create_model("gold-yolo", tasks={"det": TaskInfo("det", 5, ())}, level="P3").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)["det"]
        after = model.fuse()(x)["det"]
    assert model.strides["det"] == [8, 16, 32]
    assert [tuple(t.shape) for t in before] == [(2, 5 + 4 + 1, 64 // s, 64 // s) for s in (8, 16, 32)]
    assert max(float((a - b).abs().max()) for a, b in zip(before, after)) < 1e-4
    dets = model.decode("det", after, 64, use_quality=False)
    assert len(dets) == 2


def test_gold_yolo_rejects_other_tasks_and_levels(full_registry):
    with pytest.raises(ValueError, match="task 'det' only"):
        full_registry.create_model("gold-yolo", tasks=POINTS, level="P3")
    with pytest.raises(ValueError, match="level must be P3"):
        full_registry.create_model("gold-yolo", tasks=DET80, level="P4")


@pytest.mark.parametrize("level,stride", [("P2", 4), ("P3", 8), ("P4", 16), ("multi", 4)])
def test_point_heatmap_shapes(full_registry, level, stride):
    model = full_registry.create_model("point-heatmap", tasks=POINTS, level=level, neck_channels=8).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))["points"]
    assert model.strides == {"points": stride} and out.shape == (2, 3, 64 // stride, 64 // stride)
    preds = model.decode("points", out, 64)
    assert len(preds) == 2 and set(preds[0]) == {"points", "scores"} and preds[0]["points"].shape[1] == 2


def test_point_heatmap_single_level_is_truncated(full_registry):
    """P2 stops the backbone at stride 4; multi runs it to stride 16 and fuses down."""
    p2 = full_registry.create_model("point-heatmap", tasks=POINTS, level="P2")
    multi = full_registry.create_model("point-heatmap", tasks=POINTS, level="multi")
    assert p2.backbone.strides == [4] and multi.backbone.strides == [4, 8, 16]
    assert count_params(p2)["params"] < count_params(multi)["params"]


def test_gold_yolo_exports_to_onnx_with_parity(full_registry):
    """The GD neck's pooling exports (adaptive pooling with traced sizes does not)."""
    from mtbench.profiling.runtimes import measure_onnx

    model = full_registry.create_model("gold-yolo", tasks={"det": TaskInfo("det", 5, ())}, level="P3").fuse()
    out = measure_onnx(model, 128, 2, torch.device("cpu"), warmup=1, repeats=3, fps_repeats=1)
    assert out["parity_max_abs"] < 1e-4, out


def test_bundled_plugins_pass_mtbench_testing(full_registry):
    """The checks a plugin author runs in their own CI (:mod:`mtbench.testing`), on ours."""
    from mtbench.testing import check_model
    check_model(full_registry.get("model", "gold-yolo").factory, tasks=("det",), level="P3", size="n")
