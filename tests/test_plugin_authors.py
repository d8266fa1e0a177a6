"""What a plugin author meets: mtbench.testing's checks, failures that name the plugin, name
clashes listed instead of blocking, ``-p no:NAME``, ``--fail-fast``."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtbench.cli import main
from mtbench.plugins import get_registry
from mtbench.strategies.equal import Equal
from mtbench.strategies.joint import JointStrategy
from mtbench.testing import PluginContractError, check_loss, check_model, check_strategy
from tests.conftest import REPO, TINY_SUITE

MNV3 = {"backbone": "mobilenetv3_small_100", "neck_channels": 16}


# -- mtbench.testing --------------------------------------------------------------------------
def test_builtin_plugins_pass_the_checks(registry):
    check_model(registry.get("model", "unified-onehead").factory, level="P4", **MNV3)
    check_loss(registry.get("loss", "det/fcos").factory, "det")
    check_loss(registry.get("loss", "cls/ce").factory, "cls", label_smoothing=0.1)
    for name in ("equal", "pcgrad", "gradnorm", "rlw"):
        check_strategy(registry.get("strategy", name).factory)


def test_check_model_names_the_stride_mismatch(registry):
    def wrong_stride(**params):
        model = registry.create_model("unified-onehead", **params)
        model.strides["det"] //= 2
        return model

    with pytest.raises(PluginContractError, match=r"model 'wrong_stride': task det: map 0 has shape \(2, 8, 4, 4\), "
                                                  r"expected \(batch 2, ch, 8, 8\) for its declared stride 8"):
        check_model(wrong_stride, level="P4", **MNV3)


def test_check_model_names_undeclared_infos(registry):
    def no_infos(**params):
        model = registry.create_model("unified-onehead", **params)
        del model.infos
        return model

    with pytest.raises(PluginContractError, match="does not set 'infos'"):
        check_model(no_infos, level="P4", **MNV3)


def test_check_loss_catches_an_assigner_without_positives(registry):
    fcos = registry.get("loss", "det/fcos").factory

    def no_positives(num_classes):
        loss = fcos(num_classes=num_classes)
        forward = loss.forward

        def silent(raw, targets, stride):
            empty = [{**t, "boxes": t["boxes"][:0], "labels": t["labels"][:0]} for t in targets]
            return forward(raw, empty, stride=stride)  # the assigner sees no boxes: 0 positives

        loss.forward = silent
        return loss

    with pytest.raises(PluginContractError, match="num_pos is 0 on a batch with objects"):
        check_loss(no_positives, "det")


class GlobalRandom(JointStrategy):
    """Random loss weights drawn from torch's global generator (the mistake the check catches)."""

    def backward(self, ctx, losses, step):
        w = torch.softmax(torch.randn(len(losses)), 0).to(ctx.dtype)
        sum(wi * l for wi, l in zip(w, losses.values())).backward()


class Float32State(Equal):
    def setup(self, ctx):
        self.scale = torch.ones(len(ctx.tasks))  # float32 whatever the model's dtype


@pytest.mark.parametrize("factory,says", [
    (GlobalRandom, "two runs with the same seed trained different parameters"),
    (Float32State, "state not on the context's device/dtype: strategy.scale: cpu torch.float32"),
])
def test_check_strategy_catches_seed_and_dtype_mistakes(factory, says):
    with pytest.raises(PluginContractError, match=says):
        check_strategy(factory)


# -- a third-party distribution -------------------------------------------------------------
PLUGIN = '''
from mtbench.plugins import Spec, hookimpl
from mtbench.losses.classification import ClsCE

class Exploding(ClsCE):
    def forward(self, raw, targets, stride=None):
        raise RuntimeError("shape mismatch in my_loss line 1\\nsecond line")

def onehead(**params):
    from mtbench.plugins import get_registry
    return get_registry(load_entrypoints=False).create_model("unified-onehead", **params)

@hookimpl
def mtbench_register_models():
    return [Spec("model", "{model}", onehead, "a model")]

@hookimpl
def mtbench_register_losses():
    return [Spec("loss", "exploding", Exploding, "raises", task="cls")]
'''


def _dist(root, name: str, version: str, module: str, model: str) -> None:
    """A distribution ``name`` ``version`` with entry point ``module`` in group ``mtbench``."""
    (root / f"{module}.py").write_text(PLUGIN.replace("{model}", model).replace("exploding", f"exploding-{module}"))
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[mtbench]\n{module} = {module}\n")


@pytest.fixture
def two_dists(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    _dist(site, "mtb-alpha", "1.0.0", "mtb_alpha", "clash-net")
    _dist(site, "mtb-beta", "2.1.0", "mtb_beta", "clash-net")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


def _cli(site, *args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "mtbench", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_a_clash_is_listed_and_disabling_one_side_lets_run_work(two_dists, tmp_path, write_suite):
    out = _cli(two_dists, "plugins", cwd=tmp_path)
    assert out.returncode == 2
    rows = [ln for ln in out.stdout.splitlines() if "clash-net" in ln]
    assert len(rows) == 2 and all("CLASH" in r for r in rows)
    assert {"mtb-alpha", "mtb-beta"} <= set(" ".join(rows).split())
    assert "model 'clash-net' is registered twice" in out.stderr and "-p no:mtb-beta" in out.stderr

    suite = write_suite(TINY_SUITE.replace("name: unified-onehead", "name: clash-net")
                        .replace("strategy: [equal, sequential]", "strategy: [equal]"))
    blocked = _cli(two_dists, "validate", str(suite), cwd=tmp_path)
    assert blocked.returncode == 2 and "registered twice" in blocked.stderr
    ran = _cli(two_dists, "-p", "no:mtb-beta", "run", str(suite), "--results", str(tmp_path / "r"),
               "--no-progress", "--allow-suspect", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-1500:] + ran.stderr[-1500:]
    assert _cli(two_dists, "--disable-plugin", "mtb_alpha", "validate", str(suite), cwd=tmp_path).returncode == 0


def test_unknown_disable_name_lists_the_installed(two_dists):
    with pytest.raises(Exception, match="no installed plugin distribution or entry point of that name.*mtb-alpha"):
        get_registry(disable=["mtb-gamma"])


def test_exception_in_plugin_code_names_the_plugin_and_fail_fast_stops(two_dists, tmp_path, write_suite, capsys):
    suite = write_suite(TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [equal, pcgrad]")
                        + "losses: {cls: exploding-mtb_alpha}\n")
    code = main(["-p", "no:mtb-beta", "run", str(suite), "--results", str(tmp_path), "--no-progress", "--fail-fast"])
    out = capsys.readouterr().out
    assert code == 1 and "stopped at the first failed cell (--fail-fast): 1 cell(s) not run" in out
    (cell,) = (tmp_path / "tiny" / "cells").glob("*.json")
    rec = json.loads(cell.read_text())
    assert rec["reason"] == ("plugin loss 'cls/exploding-mtb_alpha' (mtb-alpha 1.0.0): RuntimeError: shape mismatch "
                             "in my_loss line 1")
    assert "mtb_alpha.py" in rec["traceback"]
    assert "Traceback" not in capsys.readouterr().err  # one line per failure unless --debug
    main(["--debug", "-p", "no:mtb-beta", "run", str(suite), "--results", str(tmp_path), "--no-progress",
          "--fail-fast", "--retry-failed"])
    err = capsys.readouterr().err
    assert "Traceback" in err and 'mtb_alpha.py", line' in err


def test_pdb_needs_the_local_executor(write_suite, capsys):
    assert main(["run", str(write_suite()), "--pdb", "--executor", "ray"]) == 2
    assert "--pdb needs --executor local" in capsys.readouterr().err


def test_readme_documents_the_plugin_author_options():
    text = (REPO / "README.md").read_text()
    for option in ("--no-entrypoints", "-p no:", "--fail-fast", "--pdb", "mtbench.testing", "new-plugin"):
        assert option in text, option


# -- mtbench new-plugin ----------------------------------------------------------------------
def _child_venv(tmp_path):
    """A fresh venv that sees this environment's packages (a ``site.addsitedir`` .pth), so that
    ``pip install -e`` there installs for real without touching the environment running the tests."""
    import site
    import sysconfig
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    parents = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if os.path.isdir(p)]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in dict.fromkeys(parents))
    (Path(purelib) / "_mtbench_parent_env.pth").write_text(lines)
    return python


def test_new_plugin_installs_and_its_tests_and_suite_pass(tmp_path):
    made = subprocess.run([sys.executable, "-m", "mtbench", "new-plugin", "demo", "--dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    dist = tmp_path / "mtbench-demo"
    python = _child_venv(tmp_path)
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
                          str(dist)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    listed = subprocess.run([str(python), "-m", "mtbench", "plugins"], capture_output=True, text=True, cwd=tmp_path)
    assert "demo-rlw-uniform" in listed.stdout and "mtbench-demo" in listed.stdout
    tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=dist,
                           capture_output=True, text=True)
    assert tests.returncode == 0 and "4 passed" in tests.stdout, tests.stdout[-3000:] + tests.stderr[-2000:]
    run = subprocess.run([str(python), "-m", "mtbench", "run", "suite.yaml", "--results", str(tmp_path / "r"),
                          "--no-progress", "--allow-suspect"], cwd=dist, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "demo-net" in run.stdout
