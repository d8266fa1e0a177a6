"""fixed.ema (timm's ModelEmaV3 in TrainContext.step): the averaged model is the one evaluated and
saved, training itself is unchanged, a resumed cell continues the average exactly, and the
option is in the training identity only when set."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mtbench.checkpoint import WEIGHTS
from mtbench.errors import SuiteError
from tests.test_checkpoint import _killed_after, _record, _run, _suite

EMA = "  ema: {decay: 0.9, warmup: false}\n"


def _with(suite, extra: str):
    suite.write_text(suite.read_text().replace("fixed:\n", "fixed:\n" + extra))
    return suite


def _weights(results) -> dict[str, torch.Tensor]:
    (path,) = (results / "tiny" / "cells").glob(f"*/{WEIGHTS}")
    return load_file(str(path))


def test_the_average_is_evaluated_and_saved_while_training_is_unchanged(tmp_path):
    plain, ema = tmp_path / "plain", tmp_path / "ema"
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert _run(_suite(tmp_path / "a", "equal"), plain, "--allow-suspect") in (0, 3)
    assert _run(_with(_suite(tmp_path / "b", "equal"), EMA), ema, "--allow-suspect") in (0, 3)
    a, b = _record(plain), _record(ema)
    assert a["status"] == b["status"] == "ok" and a["hash"] != b["hash"]
    assert a["history"] == b["history"]  # the same raw training: the average draws nothing
    wa, wb = _weights(plain), _weights(ema)
    assert wa.keys() == wb.keys()
    moved = [k for k in wa if wa[k].is_floating_point() and not torch.equal(wa[k], wb[k])]
    assert moved  # the saved (deployed) model is the average, not the raw weights
    assert a["metrics"] != b["metrics"]  # and it is the one evaluated


def test_a_resumed_cell_continues_the_average_exactly(tmp_path, capsys):
    suite = _with(_suite(tmp_path, "equal"), EMA)
    assert _run(suite, tmp_path / "whole", "--allow-suspect") in (0, 3)
    whole = _record(tmp_path / "whole")
    cut = tmp_path / "cut"
    assert _killed_after(suite, cut, 1) == -9
    assert _run(suite, cut, "--allow-suspect") in (0, 3)
    resumed = _record(cut)
    assert resumed["resumed"]["step"] == 1 and resumed["status"] == "ok"
    assert resumed["metrics"] == whole["metrics"] and resumed["history"] == whole["history"]
    assert all(torch.equal(v, _weights(tmp_path / "whole")[k]) for k, v in _weights(cut).items())


def test_warmup_starts_the_average_at_the_model(registry):
    from timm.utils.model_ema import ModelEmaV3

    from mtbench.strategies.base import TrainContext
    model = torch.nn.Linear(3, 2)
    ctx = TrainContext(model=model, tasks=[], loaders={}, losses={}, fixed={"ema": {"decay": 0.99, "warmup": True},
                       "grad_clip": None}, device=torch.device("cpu"), evaluate=lambda ts: {}, progress=None)
    assert isinstance(ctx.ema, ModelEmaV3) and ctx.deployed is ctx.ema.module and not ctx.deployed.training
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    for _ in range(3):
        opt.zero_grad()
        model(torch.ones(4, 3)).sum().backward()
        ctx.step(opt, sched)
    assert ctx.ema_steps == 3
    # timm's warm-up: decay 0 for the first two updates (a copy), then 1 - (1 + 1) ** (-2/3) = 0.37
    assert not torch.equal(ctx.deployed.weight, model.weight)
    assert TrainContext(model=model, tasks=[], loaders={}, losses={}, fixed={}, device=torch.device("cpu"),
                        evaluate=lambda ts: {}, progress=None).deployed is model


@pytest.mark.parametrize("text, says", [("{decay: 1.5}", "less than 1"), ("{decay: 0.99, warm: true}", "warm")])
def test_bad_ema_options_fail_with_file_and_line(write_suite, text, says):
    from mtbench.suite import load_suite
    path = _with(write_suite(), f"  ema: {text}\n")
    with pytest.raises(SuiteError, match=r"suite\.yaml:\d+") as err:
        load_suite(path)
    assert says in str(err.value) and "ema" in str(err.value)


def test_ema_is_in_the_identity_only_when_set(write_suite, registry):
    from mtbench.suite import expand, load_suite
    plain = expand(load_suite(write_suite()), registry)[0].hash
    with_ema = expand(load_suite(_with(write_suite(), EMA)), registry)[0].hash
    assert plain != with_ema
