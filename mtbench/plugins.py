"""The pluggy PluginManager and the Registry it fills.

Nothing here runs at import. :func:`get_registry` builds a plugin manager, registers
the built-in plugin modules (as pytest registers its own), loads third-party plugins
from the entry-point group ``mtbench`` unless told not to, and collects every
registration hook's specs into one :class:`Registry`.
"""

from __future__ import annotations

import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from mtbench import __version__, hookspecs
from mtbench.errors import PluginError, did_you_mean

PROJECT = "mtbench"
hookimpl = pluggy.HookimplMarker(PROJECT)

KINDS = ("model", "loss", "strategy", "dataset")
PLURAL = {"model": "models", "loss": "losses", "strategy": "strategies", "dataset": "datasets"}
_HOOK_OF_KIND = {
    "model": "mtbench_register_models",
    "loss": "mtbench_register_losses",
    "strategy": "mtbench_register_strategies",
    "dataset": "mtbench_register_datasets",
}

#: Built-in plugin modules, registered through the same hooks as third-party ones.
BUILTIN_PLUGINS = (
    "mtbench.models.unified_onehead",
    "mtbench.models.dual_backbone",
    "mtbench.models.yolo_mtl",
    "mtbench.losses.detection",
    "mtbench.losses.segmentation",
    "mtbench.losses.classification",
    "mtbench.losses.points",
    "mtbench.strategies.equal",
    "mtbench.strategies.sequential",
    "mtbench.strategies.gradnorm",
    "mtbench.strategies.uncertainty",
    "mtbench.strategies.dwa",
    "mtbench.strategies.pcgrad",
    "mtbench.strategies.jacobian",
    "mtbench.strategies.loss_weightings",
    "mtbench.strategies.db_mtl",
    "mtbench.strategies.single_task",
    "mtbench.data.synthetic",
    "mtbench.data.coco",
    "mtbench.data.voc",
    "mtbench.data.imagefolder",
    "mtbench.data.sirst",
)


@dataclass(frozen=True)
class Spec:
    """One registered thing: what a registration hook returns.

    :param kind: ``model``, ``loss``, ``strategy`` or ``dataset``.
    :param name: the name suites use, e.g. ``unified-onehead``.
    :param factory: callable building the object (signature per kind, see hookspecs).
    :param summary: one line shown by ``mtbench plugins``.
    :param task: for losses the task they serve; for datasets the only task they serve
        (``None`` = several tasks).
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    summary: str = ""
    task: str | None = None


@dataclass
class Entry:
    """A spec plus where it came from (plugin name, distribution and version)."""

    spec: Spec
    plugin: str
    distribution: str
    version: str


@dataclass
class Registry:
    """Every registered spec by kind and name; the factories suites resolve names with."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def add(self, entry: Entry) -> None:
        """Add one entry; a second registration of the same kind and name is an error."""
        spec = entry.spec
        if spec.kind not in KINDS:
            raise PluginError(
                f"plugin {entry.plugin!r} registered kind {spec.kind!r}; known kinds: {', '.join(KINDS)}"
            )
        bucket = self.entries[spec.kind]
        key = self.key(spec)
        if key in bucket:
            first = bucket[key]
            raise PluginError(
                f"{spec.kind} {spec.name!r} is registered twice: by {first.plugin} "
                f"({first.distribution} {first.version}) and by {entry.plugin} "
                f"({entry.distribution} {entry.version}); uninstall or rename one"
            )
        bucket[key] = entry

    @staticmethod
    def key(spec: Spec) -> str:
        """Registry key: ``task/name`` for losses (``seg/ce`` and ``cls/ce`` differ), else the name."""
        return f"{spec.task}/{spec.name}" if spec.kind == "loss" else spec.name

    def loss_key(self, task: str, name: str) -> str:
        """The key of loss ``name`` for ``task``; accepts ``name`` or ``task/name``.

        :raises PluginError: unknown loss for that task, listing the task's losses.
        """
        key = name if "/" in name else f"{task}/{name}"
        if key.split("/", 1)[0] != task or key not in self.entries["loss"]:
            known = [k.split("/", 1)[1] for k in self.names("loss", f"{task}/*")]
            raise PluginError(f"unknown {task} loss {name!r}.{did_you_mean(name, known)} "
                              f"Known {task} losses: {', '.join(known)}")
        return key

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Sorted registered names of ``kind`` matching the glob ``pattern``."""
        return sorted(n for n in self.entries[kind] if fnmatch.fnmatch(n, pattern))

    def get(self, kind: str, name: str) -> Spec:
        """Return the spec ``name`` of ``kind``.

        :raises PluginError: unknown name; the message lists the known ones.
        """
        try:
            return self.entries[kind][name].spec
        except KeyError:
            known = self.names(kind)
            raise PluginError(
                f"unknown {kind} {name!r}.{did_you_mean(name, known)} Known {PLURAL[kind]}: {', '.join(known)}"
            ) from None

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Build ``name`` of ``kind`` with ``params`` (``create_model`` in timm's sense)."""
        return self.get(kind, name).factory(**params)

    def create_model(self, name: str, **params: Any) -> Any:
        return self.create("model", name, **params)

    def list_models(self, pattern: str = "*") -> list[str]:
        return self.names("model", pattern)


def _distribution_of(pm: pluggy.PluginManager, plugin: object) -> tuple[str, str]:
    for plug, dist in pm.list_plugin_distinfo():
        if plug is plugin:
            return dist.project_name, dist.version
    return PROJECT, f"{__version__} (built-in)"


def get_plugin_manager(
    load_entrypoints: bool = True, extra_plugins: Iterable[object] = ()
) -> pluggy.PluginManager:
    """Build the plugin manager: built-ins, then entry points (group ``mtbench``), then extras.

    :param load_entrypoints: load third-party plugins from installed distributions; tests
        switch this off for isolation.
    :param extra_plugins: plugin objects or modules to register as well (tests, notebooks).
    :raises PluginError: a plugin fails to import or register.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for modname in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(modname), name=modname)
    if load_entrypoints:
        try:
            pm.load_setuptools_entrypoints(PROJECT)
        except Exception as exc:  # a broken third-party distribution
            raise PluginError(f"loading plugins from entry-point group {PROJECT!r} failed: {exc}") from exc
    for plugin in extra_plugins:
        pm.register(plugin)
    return pm


def get_registry(load_entrypoints: bool = True, extra_plugins: Iterable[object] = ()) -> Registry:
    """Build a fresh :class:`Registry` from every registered plugin.

    :raises PluginError: duplicate names, unknown kinds, a hook that does not return specs.
    """
    pm = get_plugin_manager(load_entrypoints, extra_plugins)
    registry = Registry()
    for kind, hook_name in _HOOK_OF_KIND.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            dist, version = _distribution_of(pm, impl.plugin)
            specs = impl.function() or []
            for spec in specs:
                if not isinstance(spec, Spec) or spec.kind != kind:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: {hook_name} must return Spec(kind={kind!r}, ...) "
                        f"objects, got {spec!r}"
                    )
                registry.add(Entry(spec, impl.plugin_name, dist, version))
    return registry
