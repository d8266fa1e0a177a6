"""A model whose outputs contradict its declarations fails before its first training step,
naming the plugin (distribution, version), the task and expected vs got."""

from __future__ import annotations

import pytest
import torch

import mtbench.executors.local as local
from mtbench.models.contract import ContractError, check_model
from mtbench.plugins import Spec, get_registry, hookimpl
from mtbench.results import ResultStore
from mtbench.suite import expand, load_suite
from tests.conftest import TINY_SUITE


def _onehead(**params):
    return get_registry(load_entrypoints=False).create_model("unified-onehead", **params)


def wrong_stride(**params):
    model = _onehead(**params)
    model.strides["det"] = model.strides["det"] // 2  # declares P3, its det head sits at P4
    return model


def wrong_classes(**params):
    model = _onehead(**params)
    forward = model.forward

    def padded(x):
        out = forward(x)
        return {**out, "cls": torch.cat([out["cls"], out["cls"][:, :5]], 1)}  # 5 classes too many

    model.forward = padded
    return model


def missing_task(**params):
    model = _onehead(**params)
    forward = model.forward
    model.forward = lambda x: {k: v for k, v in forward(x).items() if k != "cls"}
    return model


def raising(**params):
    raise RuntimeError("CUDA kernel image not found for this backbone")


class _Broken:
    @hookimpl
    def mtbench_register_models(self):
        return [Spec("model", name, fn, f"test: {name}") for name, fn in
                (("wrong-stride", wrong_stride), ("wrong-classes", wrong_classes), ("missing-task", missing_task),
                 ("raising", raising))]


class _NoTraining(Exception):
    pass


@pytest.mark.parametrize("name,says", [
    ("wrong-stride", "task det: map 0 has shape (2, 8, 4, 4), expected (batch 2, ch, 8, 8) for its declared stride 8 "
                     "at 64 px"),
    ("wrong-classes", "task cls: logits of shape (2, 6), expected (2, 3) for the declared 3 classes"),
    ("missing-task", "task cls: no output (forward returned ['det', 'seg'])"),
])
def test_contract_mismatch_fails_the_cell_before_training(name, says, write_suite, tmp_path, monkeypatch):
    registry = get_registry(load_entrypoints=False, extra_plugins=[_Broken()])
    text = TINY_SUITE.replace("name: unified-onehead", f"name: {name}").replace("strategy: [equal, sequential]",
                                                                               "strategy: [equal]")
    cells = expand(load_suite(write_suite(text)), registry)

    def no_training(*a, **k):
        raise _NoTraining("the contract check must fail first")

    monkeypatch.setattr("mtbench.runner.overfit_one_batch", no_training)
    rec = local.run_local(cells, registry, ResultStore(tmp_path, "tiny"), show_progress=False, echo=lambda s: None)[0]
    assert rec["status"] == "failed" and rec["reason"].startswith("plugin model ")
    entry = registry.entries["model"][name]
    assert f"model {name!r} ({entry.distribution} {entry.version}): " in rec["reason"]
    assert says in rec["reason"], rec["reason"]


def test_builtin_architectures_keep_the_contract(registry):
    from mtbench.data.base import TaskInfo
    tasks = {"det": TaskInfo("det", 3, ("a", "b", "c")), "seg": TaskInfo("seg", 4, tuple("abcd")),
             "cls": TaskInfo("cls", 5, tuple("abcde"))}
    for name, params in [("unified-onehead", {"backbone": "mobilenetv3_small_100", "neck_channels": 16}),
                         ("dual-backbone", {"backbone": "mobilenetv3_small_100", "neck_channels": 16}),
                         ("yolo-mtl", {"backbone": "csp", "size": "n"})]:
        for level in ("P3", "P4"):
            model = registry.create_model(name, tasks=tasks, level=level, **params)
            check_model(model, 64, torch.device("cpu"))
    with pytest.raises(ContractError, match="task det"):
        check_model(wrong_stride(tasks=tasks, level="P4", backbone="mobilenetv3_small_100", neck_channels=16),
                    64, torch.device("cpu"))


def test_a_factory_that_raises_is_named_with_its_distribution(write_suite, tmp_path):
    registry = get_registry(load_entrypoints=False, extra_plugins=[_Broken()])
    text = TINY_SUITE.replace("name: unified-onehead", "name: raising").replace("strategy: [equal, sequential]",
                                                                               "strategy: [equal]")
    cells = expand(load_suite(write_suite(text)), registry)
    rec = local.run_local(cells, registry, ResultStore(tmp_path, "tiny"), show_progress=False, echo=lambda s: None)[0]
    entry = registry.entries["model"]["raising"]
    assert rec["status"] == "failed"
    assert rec["reason"] == (f"plugin model 'raising' ({entry.distribution} {entry.version}) failed to build: "
                             "RuntimeError: CUDA kernel image not found for this backbone")
    assert "raising" in rec["traceback"]  # the plugin's own frame is kept in the record

