"""The pluggy PluginManager and the Registry it fills.

Nothing here runs at import. :func:`get_registry` builds a plugin manager, registers
the built-in plugin modules (as pytest registers its own), loads third-party plugins
from the entry-point group ``mtbench`` unless told not to, and collects every
registration hook's specs into one :class:`Registry`.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import inspect
import os
import re
import sys
import traceback
import typing
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import pluggy
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.errors import PydanticUserError

from mtbench import __version__, hookspecs
from mtbench.errors import PluginError, did_you_mean

PROJECT = "mtbench"
hookimpl = pluggy.HookimplMarker(PROJECT)

KINDS = ("task", "metric", "model", "loss", "strategy", "dataset", "diagnostic", "optimizer", "schedule", "runtime",
         "executor")
PLURAL = {"task": "tasks", "metric": "metrics", "model": "models", "loss": "losses", "strategy": "strategies", "dataset": "datasets",
          "diagnostic": "diagnostics", "optimizer": "optimizers", "schedule": "schedules", "runtime": "runtimes",
          "executor": "executors"}
#: factory arguments mtbench passes itself (hookspecs), never a suite's ``params``
RESERVED = {"model": {"tasks", "level"}, "dataset": {"task", "split", "root", "image_size"},
            "loss": {"num_classes", "class_names"}, "strategy": set(), "task": set(), "diagnostic": set(), "metric": {"dataset"},
            "optimizer": {"params", "lr", "weight_decay", "momentum"}, "schedule": set(),
            "runtime": {"model", "image_size", "batch_size", "device", "warmup", "repeats", "fps_repeats", "rule"},
            "executor": {"cells", "registry", "store", "force", "show_progress", "options"}}
_HOOK_OF_KIND = {
    "task": "mtbench_register_tasks",
    "metric": "mtbench_register_metrics",
    "model": "mtbench_register_models",
    "loss": "mtbench_register_losses",
    "strategy": "mtbench_register_strategies",
    "dataset": "mtbench_register_datasets",
    "diagnostic": "mtbench_register_diagnostics",
    "optimizer": "mtbench_register_optimizers",
    "schedule": "mtbench_register_schedules",
    "runtime": "mtbench_register_runtimes",
    "executor": "mtbench_register_executors",
}

#: Built-in tasks and diagnostics: importable without torch (readers of stored results use them,
#: :func:`reader_registry`).
READER_PLUGINS = ("mtbench.tasks.detection", "mtbench.tasks.segmentation", "mtbench.tasks.classification",
                  "mtbench.diagnostics.checks")
#: Built-in plugin modules, registered through the same hooks as third-party ones.
BUILTIN_PLUGINS = READER_PLUGINS + (
    "mtbench.metrics.detection",
    "mtbench.metrics.segmentation",
    "mtbench.metrics.classification",
    "mtbench.optimizers",
    "mtbench.profiling.runtimes",
    "mtbench.profiling.deploy",
    "mtbench.executors.local",
    "mtbench.executors.ray",
    "mtbench.models.unified_onehead",
    "mtbench.models.dual_backbone",
    "mtbench.models.yolo_mtl",
    "mtbench.losses.detection",
    "mtbench.losses.segmentation",
    "mtbench.losses.classification",
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
)


@dataclass(frozen=True)
class Spec:
    """One registered thing: what a registration hook returns.

    :param kind: ``task``, ``model``, ``loss``, ``strategy`` or ``dataset``.
    :param name: the name suites use, e.g. ``unified-onehead``.
    :param factory: callable building the object (signature per kind, see hookspecs).
    :param summary: one line shown by ``mtbench plugins``.
    :param task: for losses and metrics the task they serve; for datasets the only task they
        serve (``None`` = several tasks).
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
    """Every registered spec by kind and name; the factories suites resolve names with.

    ``clashes``: ``(kind, key) -> [Entry, ...]`` for names registered by more than one plugin
    (``mtbench plugins`` lists them; using such a name is an error naming every source).
    ``broken``: plugins that failed to load, skipped (``"plugin 'x' (dist ver): Error: ..."``).
    ``disabled``: distributions or entry points left out on request (``-p no:NAME``).
    """

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    clashes: dict[tuple[str, str], list[Entry]] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    _tasks: dict[str, Any] = field(default_factory=dict, repr=False)

    def add(self, entry: Entry) -> None:
        """Add one entry; a second registration of the same kind and name is recorded as a clash
        (:attr:`clashes`), which :meth:`get` refuses to resolve.

        :raises PluginError: an unknown kind.
        """
        spec = entry.spec
        if spec.kind not in KINDS:
            raise PluginError(
                f"plugin {entry.plugin!r} registered kind {spec.kind!r}; known kinds: {', '.join(KINDS)}"
            )
        bucket = self.entries[spec.kind]
        key = self.key(spec)
        if key in bucket:
            self.clashes.setdefault((spec.kind, key), [bucket[key]]).append(entry)
            return
        bucket[key] = entry

    def clash_message(self, kind: str, key: str) -> str:
        """``strategy 'x' is registered twice: by P (dist ver) and by Q (dist ver); ...``."""
        both = " and by ".join(f"{e.plugin} ({e.distribution} {e.version})" for e in self.clashes[(kind, key)])
        dists = [e.distribution for e in self.clashes[(kind, key)] if e.distribution != PROJECT]
        hint = f"; leave one out with -p no:{dists[-1]}, or uninstall or rename one" if dists else \
            "; uninstall or rename one"
        return f"{kind} {key!r} is registered twice: by {both}{hint}"

    def warnings(self) -> list[str]:
        """One line per plugin skipped because it failed to load and per name clash (what
        ``mtbench`` prints as warnings before a command)."""
        return [f"{b}; skipped" for b in self.broken] + [self.clash_message(k, n) for k, n in self.clashes]

    @staticmethod
    def key(spec: Spec) -> str:
        """Registry key: ``task/name`` for losses and metrics (``seg/ce`` and ``cls/ce`` differ), else the name."""
        return f"{spec.task}/{spec.name}" if spec.kind in ("loss", "metric") else spec.name

    def loss_key(self, task: str, name: str) -> str:
        """The key of loss ``name`` for ``task``; accepts ``name`` or ``task/name``.

        :raises PluginError: unknown loss for that task, listing the task's losses.
        """
        key = name if "/" in name else f"{task}/{name}"
        if key.split("/", 1)[0] != task or key not in self.entries["loss"]:
            known = [k.split("/", 1)[1] for k in self.names("loss", f"{task}/*")]
            raise PluginError(f"unknown {task} loss {name!r}.{did_you_mean(name, known)} "
                              f"Known {task} losses: {', '.join(known)}{self._broken_note()}")
        if ("loss", key) in self.clashes:
            raise PluginError(self.clash_message("loss", key))
        return key

    def task(self, name: str):
        """The :class:`mtbench.tasks.Task` registered as ``name`` (built once per registry).

        :raises PluginError: unknown task; the message lists the known ones.
        """
        if name not in self._tasks:
            self._tasks[name] = self.create("task", name)
        return self._tasks[name]

    def tasks(self) -> dict[str, Any]:
        """Every registered task, ``{name: Task}``, in registration order (built-ins first)."""
        return {name: self.task(name) for name in self.entries["task"]}

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Sorted registered names of ``kind`` matching the glob ``pattern``."""
        return sorted(n for n in self.entries[kind] if fnmatch.fnmatch(n, pattern))

    def origin(self, kind: str, name: str) -> str:
        """``plugin kind 'name' (distribution version)``: how messages name a plugin's object."""
        entry = self.entries.get(kind, {}).get(name)
        return f"plugin {kind} {name!r}" + (f" ({entry.distribution} {entry.version})" if entry else "")

    def get(self, kind: str, name: str) -> Spec:
        """Return the spec ``name`` of ``kind``.

        :raises PluginError: unknown name (the message lists the known ones and the plugins
            that failed to load), or a name two plugins registered (naming both).
        """
        if (kind, name) in self.clashes:
            raise PluginError(self.clash_message(kind, name))
        try:
            return self.entries[kind][name].spec
        except KeyError:
            known = self.names(kind)
            raise PluginError(
                f"unknown {kind} {name!r}.{did_you_mean(name, known)} Known {PLURAL[kind]}: {', '.join(known)}"
                f"{self._broken_note()}"
            ) from None

    def blame(self, exc: BaseException, used: Iterable[tuple[str, str]]) -> str | None:
        """Which of the ``used`` plugins (``(kind, name)`` pairs: a cell's model, losses,
        strategy, datasets) raised ``exc``: the one owning the innermost traceback frame, as
        :meth:`origin` names it; ``None`` when no frame is in a plugin's code.

        A third-party plugin owns every file of its top-level package; a built-in plugin only
        its own module (a frame in mtbench's shared code is mtbench's, not the plugin's).
        """
        owners = []
        for kind, name in used:
            entry = self.entries.get(kind, {}).get(name)
            if entry is not None:
                owners.append((_source_of(entry.spec.factory), kind, name))
        frames = [f.f_code.co_filename for f, _ in traceback.walk_tb(exc.__traceback__)]
        for filename in reversed(frames):
            path = os.path.abspath(filename)
            for where, kind, name in owners:
                if where and (path == where or path.startswith(where + os.sep)):
                    return self.origin(kind, name)
        return None

    def _broken_note(self) -> str:
        return "" if not self.broken else \
            f" (not loaded, and perhaps providing it: {'; '.join(self.broken)})"

    def param_errors(self, kind: str, name: str, params: dict[str, Any],
                     tasks: list[str] | None = None) -> dict[str, str]:
        """What is wrong with a suite's ``params`` for plugin ``name`` of ``kind``, before anything
        is built: ``{parameter: problem}`` (empty when nothing is).

        Checked against the factory's signature: a name it does not take (unless it takes
        ``**kwargs``), a required parameter left out, and each value against the parameter's
        annotation (a pydantic ``TypeAdapter``, lax mode: an int where a float is annotated and a
        list for a tuple pass; a quoted number where a number is meant does not). Then, when the
        factory has one, its ``param_problems(tasks=..., **params)`` (cross-references such as
        ``sequential``'s ``order`` naming the suite's tasks; see :mod:`mtbench.hookspecs`).
        Annotations that do not resolve at run time are not checked.
        """
        factory = self.get(kind, name).factory
        errors = call_problems(factory, params, f"{kind} {name!r}", RESERVED[kind])
        check = getattr(factory, "param_problems", None)
        if inspect.isclass(factory) and "param_problems" not in vars(factory):
            check = None  # a base class's check: this subclass may take other parameters
        if check is not None and not errors:
            errors.update(check(tasks=list(tasks or []), **params))
        return errors

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Build ``name`` of ``kind`` with ``params`` (``create_model`` in timm's sense)."""
        return self.get(kind, name).factory(**params)

    def create_loss(self, key: str, info, **params: Any) -> Any:
        """Build loss ``key`` (``task/name``) for a task whose labels ``info``
        (:class:`mtbench.data.base.TaskInfo`) describes: ``num_classes`` always, ``class_names`` to
        a factory that takes it (e.g. ``cls/kd``, which maps them onto a teacher's classes)."""
        return self.create("loss", key, **loss_labels(self.get("loss", key).factory, info), **params)

    def create_model(self, name: str, **params: Any) -> Any:
        return self.create("model", name, **params)

    def list_models(self, pattern: str = "*") -> list[str]:
        return self.names("model", pattern)


def loss_labels(factory: Callable, info) -> dict[str, Any]:
    """The label facts mtbench passes a loss factory (``RESERVED["loss"]``): ``num_classes``, and
    ``class_names`` (a tuple) when the factory takes a parameter of that name."""
    out: dict[str, Any] = {"num_classes": info.num_classes}
    if "class_names" in inspect.signature(factory).parameters:
        out["class_names"] = tuple(info.class_names)
    return out


def call_problems(factory: Callable, params: dict[str, Any], owner: str,
                  reserved: Iterable[str] = ()) -> dict[str, str]:
    """Why ``factory(**params)`` would be a mistake, from its signature alone: ``{parameter:
    problem}`` for a name it does not take (unless it takes ``**kwargs``), a required parameter
    left out, and a value that does not fit the parameter's annotation (:func:`_type_problem`).
    ``owner`` names the factory in the messages (``"strategy 'sequential'"``); ``reserved``
    parameters are the harness's to pass, not the suite's. Used by
    :meth:`Registry.param_errors` and for a plugin's nested options (``sequential``'s ``ewc``).
    """
    sig = inspect.signature(factory)
    takes = {n: p for n, p in sig.parameters.items()
             if n not in reserved and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    errors = {}
    if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        errors.update({k: f"unknown parameter {k!r} for {owner}; its parameters: "
                          f"{', '.join(takes) or '(none)'}" for k in params if k not in takes})
    errors.update({n: f"{owner} needs parameter {n!r}" for n, p in takes.items()
                   if p.default is p.empty and n not in params})
    hints = _annotations(factory)
    for k, v in params.items():
        if k in takes and k in hints and k not in errors:
            problem = _type_problem(hints[k], v)
            if problem:
                errors[k] = f"parameter {k!r} of {owner}: {problem} (got {_short(v)})"
    return errors


def _source_of(factory: Callable) -> str | None:
    """The file (built-in plugin module) or package folder (third-party) a factory comes from."""
    module = sys.modules.get(getattr(factory, "__module__", "") or "")
    if module is None or not getattr(module, "__file__", None):
        return None
    top = sys.modules.get(module.__name__.split(".")[0])
    if module.__name__.startswith(PROJECT + ".") or top is None or not getattr(top, "__file__", None):
        return os.path.abspath(module.__file__)
    top_file = os.path.abspath(top.__file__)
    return os.path.dirname(top_file) if os.path.basename(top_file) == "__init__.py" else top_file


def _annotations(factory: Callable) -> dict[str, Any]:
    """The factory's parameter annotations, resolved (``Annotated`` constraints kept), or {}."""
    try:
        return typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory,
                                     include_extras=True)
    except Exception:  # noqa: BLE001 - e.g. a name imported only under TYPE_CHECKING: names are still checked
        return {}


_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE]\d+")  # PyYAML (YAML 1.1): a str, not a float


def _type_problem(annotation: Any, value: Any) -> str | None:
    """Why ``value`` does not fit ``annotation`` (pydantic's words), or None."""
    try:
        adapter = TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except (PydanticUserError, TypeError):
        return None  # a type pydantic cannot check (a model class with its own config): not checked
    try:
        out = adapter.validate_python(value)
    except ValidationError as exc:
        found = [(_value_path(value, err["loc"]), err["msg"]) for err in exc.errors()]
        deep = [f"{msg} at {'.'.join(map(str, at))}" for at, msg in found if at]
        return deep[0] if deep else " or ".join(dict.fromkeys(msg for _, msg in found))
    if isinstance(value, str) and isinstance(out, (int, float)):
        if _YAML11_EXPONENT.fullmatch(value.strip()):
            return (f"YAML reads {value} (an exponent without its sign) as a string: write "
                    f"{value.lower().replace('e', 'e+')} or {float(value)!r}")
        return f"a quoted {type(out).__name__} (write it without quotes)"
    if isinstance(value, bool) and not isinstance(out, bool):
        return f"a boolean where {type(out).__name__} is expected (YAML reads unquoted yes/no/on/off as booleans)"
    return None


def _value_path(value: Any, loc: tuple) -> list:
    """The keys/indices of a pydantic error location that exist in ``value`` (a union's member
    names, e.g. ``constrained-int``, are not part of where the value is)."""
    path = []
    for part in loc:
        if isinstance(value, dict) and part in value or isinstance(value, list) and isinstance(part, int) \
                and part < len(value):
            path.append(part)
            value = value[part]
    return path


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _distribution_of(pm: pluggy.PluginManager, plugin: object) -> tuple[str, str]:
    for plug, dist in pm.list_plugin_distinfo():
        if plug is plugin:
            return dist.project_name, dist.version
    return PROJECT, f"{__version__} (built-in)"


def _normalise(name: str) -> str:
    """A distribution or entry-point name compared as pip does (case, ``-``/``_``/``.`` alike)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def get_plugin_manager(
    load_entrypoints: bool = True, extra_plugins: Iterable[object] = (), disable: Iterable[str] = (),
    broken: list[str] | None = None, builtins: Iterable[str] = BUILTIN_PLUGINS,
) -> pluggy.PluginManager:
    """Build the plugin manager: built-ins, then entry points (group ``mtbench``), then extras.

    :param load_entrypoints: load third-party plugins from installed distributions; tests
        switch this off for isolation.
    :param extra_plugins: plugin objects or modules to register as well (tests, notebooks).
    :param disable: distribution or entry-point names not to load (pytest's ``-p no:NAME``).
    :param broken: when a list, an entry point that fails to import is skipped and described
        there (``"plugin 'x' (dist ver) failed to load (module): Error: ..."``); when ``None``
        it raises.
    :raises PluginError: a plugin fails to import (``broken`` is None), naming it.
    :param builtins: the built-in plugin modules to register (default all).
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for modname in builtins:
        pm.register(importlib.import_module(modname), name=modname)
    off = {_normalise(n) for n in disable}
    if load_entrypoints:
        for ep in importlib.metadata.entry_points(group=PROJECT):
            dist = getattr(ep, "dist", None)
            if off & {_normalise(ep.name), _normalise(dist.name if dist is not None else "")}:
                continue
            try:  # one entry point at a time, so a broken one is named
                pm.load_setuptools_entrypoints(PROJECT, name=ep.name)
            except Exception as exc:  # a broken third-party distribution
                origin = f" ({dist.name} {dist.version})" if dist is not None else ""
                error = PluginError(f"plugin {ep.name!r}{origin} failed to load ({ep.value}): "
                                    f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
                if broken is None:
                    raise error from exc
                broken.append(str(error))
    for plugin in extra_plugins:
        pm.register(plugin)
    return pm


def installed_plugins() -> list[tuple[str, str]]:
    """``(entry-point name, distribution name)`` of every entry point in group ``mtbench``."""
    return [(ep.name, ep.dist.name if getattr(ep, "dist", None) is not None else "")
            for ep in importlib.metadata.entry_points(group=PROJECT)]


def get_registry(load_entrypoints: bool = True, extra_plugins: Iterable[object] = (),
                 disable: Iterable[str] = (), builtins: Iterable[str] = BUILTIN_PLUGINS) -> Registry:
    """Build a fresh :class:`Registry` from every registered plugin.

    A third-party plugin that fails to import is skipped and listed in ``registry.broken``
    (an unknown name then mentions it); names registered twice are kept apart in
    ``registry.clashes`` and refused when used.

    :param disable: distribution or entry-point names not to load (``-p no:NAME``); a name
        that matches nothing installed is an error listing what is.
    :raises PluginError: unknown kinds, a hook that raises or does not return specs, a
        ``disable`` name that matches no installed plugin.
    """
    disable = list(disable)
    if disable and load_entrypoints:
        installed = installed_plugins()
        names = {_normalise(n) for pair in installed for n in pair if n}
        unknown = [n for n in disable if _normalise(n) not in names]
        if unknown:
            known = sorted({d for _, d in installed if d})
            raise PluginError(f"-p no:{unknown[0]}: no installed plugin distribution or entry point of that name."
                              f"{did_you_mean(unknown[0], known)} Installed: {', '.join(known) or '(none)'}")
    broken: list[str] = []
    registry = _collect(get_plugin_manager(load_entrypoints, extra_plugins, disable, broken, builtins))
    registry.broken, registry.disabled = broken, disable
    return registry


def _collect(pm: pluggy.PluginManager) -> Registry:
    """Every registration hook's specs of ``pm`` in one :class:`Registry`."""
    registry = Registry()
    for kind, hook_name in _HOOK_OF_KIND.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            dist, version = _distribution_of(pm, impl.plugin)
            try:
                specs = impl.function() or []
            except Exception as exc:
                raise PluginError(f"plugin {impl.plugin_name!r} ({dist} {version}): {hook_name} raised "
                                  f"{type(exc).__name__}: {exc}") from exc
            if isinstance(specs, Spec) or not isinstance(specs, (list, tuple)):
                raise PluginError(f"plugin {impl.plugin_name!r} ({dist} {version}): {hook_name} must return a list of "
                                  f"Spec objects, got {type(specs).__name__} (wrap a single Spec in [...])")
            for spec in specs:
                if not isinstance(spec, Spec) or spec.kind != kind:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: {hook_name} must return Spec(kind={kind!r}, ...) "
                        f"objects, got {spec!r}"
                    )
                registry.add(Entry(spec, impl.plugin_name, dist, version))
    return registry


_ACTIVE: ContextVar[Registry | None] = ContextVar("mtbench_registry", default=None)
_DEFAULT: list[Registry] = []
_READER: list[Registry] = []


@contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the one :func:`active_registry` returns inside the ``with`` block (the
    runner and the command line wrap their work in it, so a task's rules come from the plugins
    the run loaded)."""
    token = _ACTIVE.set(registry)
    try:
        yield registry
    finally:
        _ACTIVE.reset(token)


def current_registry() -> Registry | None:
    """The registry of the enclosing :func:`use_registry`, or None outside one."""
    return _ACTIVE.get()


def reader_registry() -> Registry:
    """The registry of the enclosing :func:`use_registry`; outside one, the built-in tasks and
    diagnostics alone (:data:`READER_PLUGINS`, no torch import; built once per process): what
    readers of stored results (``compare``, ``doctor``, ``report``) go by."""
    active = _ACTIVE.get()
    if active is not None:
        return active
    if not _READER:
        _READER.append(_collect(get_plugin_manager(False, (), builtins=READER_PLUGINS)))
    return _READER[0]


def active_registry() -> Registry:
    """The registry of the enclosing :func:`use_registry`; outside one, a registry of every
    installed plugin, built on first use (never at import) and kept for the process.

    Where the core needs a task's rules without being handed a registry (a dataset's augmentation, a
    model's decode, the table's columns), it asks this.
    """
    active = _ACTIVE.get()
    if active is not None:
        return active
    if not _DEFAULT:
        _DEFAULT.append(get_registry())
    return _DEFAULT[0]
