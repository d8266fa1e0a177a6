"""The plugin contract: documented hooks, entry-point discovery, duplicate names, no import side effects."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import textwrap

import pytest

from mtbench import hookspecs
from mtbench.errors import PluginError
from mtbench.plugins import get_plugin_manager, Spec, get_registry, hookimpl


HOOKS = [f for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("mtbench_")]


def test_hooks_found():
    assert {"mtbench_register_tasks", "mtbench_register_models", "mtbench_register_losses",
            "mtbench_register_strategies", "mtbench_register_datasets"} <= {f.__name__ for f in HOOKS}


@pytest.mark.parametrize("fn", HOOKS, ids=lambda f: f.__name__)
def test_every_hook_is_documented(fn):
    """Each hook: a summary, when it is called and what it returns (datasette's test_docs)."""
    doc = inspect.getdoc(fn) or ""
    assert len(doc) > 80 and ":return:" in doc and "Called" in doc, f"{fn.__name__} is not documented"


@pytest.mark.parametrize("fn", HOOKS, ids=lambda f: f.__name__)
def test_every_hook_has_a_builtin_example(fn):
    """The core implements each hook itself (built-ins are plugins), so every hook has a worked
    example a plugin author can read."""
    from mtbench.plugins import BUILTIN_PLUGINS, get_plugin_manager
    impls = getattr(get_plugin_manager(load_entrypoints=False).hook, fn.__name__).get_hookimpls()
    assert [i for i in impls if i.plugin_name in BUILTIN_PLUGINS], f"no built-in plugin implements {fn.__name__}"


def test_builtins_registered(registry):
    assert registry.list_models() == ["dual-backbone", "unified-onehead", "yolo-mtl"]
    assert registry.names("task") == ["cls", "det", "seg"]  # points: plugins/mtbench-point-heatmap
    assert registry.names("loss") == ["cls/ce", "cls/kd", "det/fcos", "det/focal", "det/varifocal", "det/yolo", "seg/ce",
                                      "seg/ce+dice", "seg/dice"]
    assert registry.names("strategy") == ["aligned-mtl", "cagrad", "config", "db-mtl", "dualproj", "dwa", "equal",
                                         "fairgrad", "famo", "gls", "graddrop", "gradnorm", "gradvac", "imtl-g",
                                         "imtl-l", "mgda", "nash-mtl", "pcgrad", "rlw", "sequential", "single-task",
                                         "uncertainty", "upgrad"]
    assert set(registry.names("dataset")) == {"coco", "voc", "imagefolder", "synthetic"}
    entry = registry.entries["model"]["unified-onehead"]
    assert entry.distribution == "mtbench"


class _Duplicate:
    @hookimpl
    def mtbench_register_strategies(self):
        return [Spec("strategy", "equal", object, "a clash")]


def test_duplicate_name_names_both_sources():
    registry = get_registry(load_entrypoints=False, extra_plugins=[_Duplicate()])
    assert [e.spec.summary for e in registry.clashes[("strategy", "equal")]][1] == "a clash"
    with pytest.raises(PluginError) as exc:
        registry.get("strategy", "equal")
    msg = str(exc.value)
    assert "strategy 'equal' is registered twice" in msg and "mtbench.strategies.equal" in msg
    registry.get("strategy", "pcgrad")  # other names still resolve


def test_unknown_name_lists_known(registry):
    with pytest.raises(PluginError, match=r"unknown model 'unified-one-head'\. Did you mean 'unified-onehead'\?"):
        registry.get("model", "unified-one-head")


def _installed(tmp_path, monkeypatch, dist_name: str, version: str, ep_name: str, module: str) -> None:
    """A distribution ``dist_name`` ``version`` with entry point ``ep_name = module`` in group
    ``mtbench``, visible to importlib.metadata (a dist-info folder on sys.path)."""
    dist = tmp_path / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[mtbench]\n{ep_name} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


def test_plugin_from_entry_point(tmp_path, monkeypatch):
    """A third-party distribution found through the ``mtbench`` entry-point group."""
    (tmp_path / "mtb_testplug.py").write_text(textwrap.dedent('''
        from mtbench.plugins import Spec, hookimpl
        from mtbench.strategies.equal import Equal

        @hookimpl
        def mtbench_register_strategies():
            return [Spec("strategy", "test-equal", Equal, "test plugin")]
    '''))
    _installed(tmp_path, monkeypatch, "mtb-testplug", "1.2.3", "testplug", "mtb_testplug")
    reg = get_registry(load_entrypoints=True)
    entry = reg.entries["strategy"]["test-equal"]
    assert (entry.distribution, entry.version) == ("mtb-testplug", "1.2.3")
    assert "test-equal" not in get_registry(load_entrypoints=False).names("strategy")


def test_import_has_no_side_effects():
    code = "import sys, mtbench, mtbench.plugins; print('torch' in sys.modules, 'mtbench.models.unified_onehead' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_plugin_that_fails_to_load_is_named_and_skipped(tmp_path, monkeypatch):
    (tmp_path / "mtb_brokenplug.py").write_text("import a_module_that_is_not_installed\n")
    _installed(tmp_path, monkeypatch, "mtb-brokenplug", "0.3.2", "brokenplug", "mtb_brokenplug")
    registry = get_registry(load_entrypoints=True)  # the others load
    says = ("plugin 'brokenplug' (mtb-brokenplug 0.3.2) failed to load (mtb_brokenplug): "
            "ModuleNotFoundError: No module named 'a_module_that_is_not_installed'")
    assert registry.warnings() == [f"{says}; skipped"]
    registry.get("strategy", "equal")
    with pytest.raises(PluginError) as exc:  # a suite that needs a name it might have provided is told why
        registry.get("model", "broken-net")
    assert "unknown model 'broken-net'" in str(exc.value) and says in str(exc.value)
    with pytest.raises(PluginError, match="failed to load"):
        get_plugin_manager(load_entrypoints=True, broken=None)


class _OneSpec:
    @hookimpl
    def mtbench_register_strategies(self):
        return Spec("strategy", "lonely", object, "a Spec, not a list")


class _Raising:
    @hookimpl
    def mtbench_register_losses(self):
        raise KeyError("num_classes")


@pytest.mark.parametrize("plugin,says", [
    (_OneSpec(), "mtbench_register_strategies must return a list of Spec objects, got Spec (wrap a single Spec in"),
    (_Raising(), "mtbench_register_losses raised KeyError: 'num_classes'"),
])
def test_a_broken_hook_is_named(plugin, says):
    with pytest.raises(PluginError) as exc:
        get_registry(load_entrypoints=False, extra_plugins=[plugin])
    assert str(exc.value).startswith("plugin '") and says in str(exc.value)
