"""Suite files: load (``yaml.safe_load`` semantics), validate (pydantic, strict), expand.

A suite is plain YAML; see ``suites/compare.yaml`` for a commented example. Validation has
two passes, both before anything runs: the schema (typos such as ``bach_size`` fail, every
error names the key path and line), then the registry (every plugin name exists, every
``params`` key is a parameter of that plugin's factory). :func:`expand` turns the matrix
into :class:`Cell` objects, each a fully resolved config with a stable hash.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mtbench.errors import PluginError, SuiteError
from mtbench.metrics import HIGHER_IS_BETTER
from mtbench.plugins import Registry

TaskName = Literal["det", "seg", "cls", "points"]
LEVELS = ("P2", "P3", "P4", "P5", "multi")
AXES = ("architecture", "loss", "level", "strategy", "seed")
UNHASHED = ("checks", "uncertainty", "delta_m", "expect")  # config sections that do not change what is trained or measured
GATE_RE = re.compile(r"^\s*(?P<metric>[\w/\-@\[\].:]+)\s*(?P<op><=|>=|<|>|==)\s*(?P<value>[-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$")
DEFAULT_LOSSES = {"det": "fcos", "seg": "ce", "cls": "ce", "points": "focal-heatmap"}


def _check_level(v: str) -> str:
    if v not in LEVELS:
        raise ValueError(f"level {v!r} is not one of {', '.join(LEVELS)}")
    return v


Level = Annotated[str, AfterValidator(_check_level)]


def _check_gate(g: str) -> str:
    m = GATE_RE.match(g)
    if not m:
        raise ValueError(f"gate {g!r} is not 'METRIC OP NUMBER' (OP one of < <= > >= ==)")
    if m["metric"] not in HIGHER_IS_BETTER and "/" not in m["metric"]:
        raise ValueError(f"gate {g!r}: unknown metric {m['metric']!r}; known: {', '.join(HIGHER_IS_BETTER)}")
    return g


Gate = Annotated[str, AfterValidator(_check_gate)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskData(_Strict):
    """Where one task's data comes from: a registered dataset and its parameters."""

    dataset: str
    params: dict[str, Any] = Field(default_factory=dict)


class Named(_Strict):
    """A plugin choice with parameters: ``{name, label?, params?}`` (a bare string also works)."""

    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def display(self) -> str:
        return self.label or self.name


class Expect(_Strict):
    """Reference figures the suite states for an architecture entry: ``params_m`` (millions of
    parameters) and/or ``flops_g`` (GFLOPs per image) of the deployed model at the cell's image
    size and classes, within a relative ``tolerance`` (default 1 %). A mismatch is an error
    finding (``reference-figures``) that invalidates the figure. Not part of the cell hash."""

    params_m: float | None = Field(None, gt=0)
    flops_g: float | None = Field(None, gt=0)
    tolerance: float = Field(0.01, gt=0, lt=1)

    @model_validator(mode="after")
    def _some(self) -> "Expect":
        if self.params_m is None and self.flops_g is None:
            raise ValueError("give params_m and/or flops_g")
        return self


class Architecture(Named):
    """An architecture entry: a plugin choice plus optional reference figures (``expect``)."""

    expect: Expect | None = None


class Matrix(_Strict):
    """The axes crossed into cells, plus ``include`` (extra sub-matrices) and ``exclude``."""

    architecture: list[Union[str, Architecture]] = Field(min_length=1)
    loss: list[Union[str, dict[TaskName, Union[str, Named]]]] = Field(default_factory=lambda: [{}], min_length=1)
    level: list[Level] = Field(min_length=1)
    strategy: list[Union[str, Named]] = Field(min_length=1)
    seed: list[int] = Field(default_factory=lambda: [0], min_length=1)
    include: list[dict[str, Any]] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("include", "exclude")
    @classmethod
    def _axes_only(cls, v: list[dict]) -> list[dict]:
        for entry in v:
            unknown = set(entry) - set(AXES)
            if unknown:
                raise ValueError(f"unknown axis {sorted(unknown)}; axes are {', '.join(AXES)}")
        return v


class Optimizer(_Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    backbone_lr_mult: float = Field(1.0, gt=0)
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(0, ge=0)


class Budget(_Strict):
    """Training length per task: ``epochs`` over each task's train split, or ``steps``.

    Joint strategies take that many steps with one batch of every task per step;
    sequential strategies give each stage (task) that many.
    """

    epochs: float | None = Field(None, gt=0)
    steps: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> "Budget":
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give exactly one of 'epochs' or 'steps'")
        return self


class Fixed(_Strict):
    """Parameters every cell shares."""

    image_size: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    eval_batch_size: int | None = Field(None, gt=0)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    budget: Budget
    threads: int | None = Field(None, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    grad_clip: float | None = Field(10.0, gt=0)

    @field_validator("image_size")
    @classmethod
    def _mult32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"image_size must be a multiple of 32 pixels, got {v}")
        return v


class Checks(_Strict):
    """Diagnostics that need work before the run (:mod:`mtbench.diagnostics.overfit`).

    ``overfit_one_batch``: ``auto`` (every cell) runs it on ``overfit_images`` images per task
    for ``overfit_share`` of the budget's steps per trained task (at least 4, at most
    ``overfit_steps``); ``on`` runs exactly ``overfit_steps``; ``off`` skips it.
    ``harness_share``: the harness's own work (that check, CIs + chance levels, profiling) is
    held to this share of the cell's training time by cutting profiling's timed sampling to
    what is left (each timing series keeps its minimum samples; the record's ``harness`` says
    what it cost). Not part of the cell hash: checks do not change what is trained."""

    overfit_one_batch: Literal["auto", "on", "off"] = "auto"
    overfit_steps: int = Field(40, gt=0)
    overfit_lr: float = Field(0.01, gt=0)  # AdamW, constant; a memorisation test, not the suite's schedule
    overfit_images: int = Field(2, ge=2)   # per task, pairwise different targets (the input-use test needs 2)
    overfit_share: float = Field(0.1, gt=0, le=1)
    harness_share: float = Field(0.15, gt=0, le=10)  # budget of overfit check + CIs + profiling / training time

    @field_validator("overfit_one_batch", mode="before")
    @classmethod
    def _yaml_bool(cls, v):
        """YAML 1.1 reads an unquoted ``on``/``off`` as a boolean."""
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


class Profile(_Strict):
    """How cells are measured; ``runtimes`` beyond PyTorch eager: ``onnx``, ``compile``.

    Every latency (batch 1) and FPS (suite batch) series, in every runtime, takes at least
    ``latency_repeats`` / ``fps_repeats`` samples (and at least 6, the fewest with a 95 %
    interval of the median), then goes on, checking every 10 samples, until the relative
    half-width of the p50's 95 % interval is at most ``latency_ci_target`` (0.02 = +-2 %),
    or the series has been timed for ``latency_max_s`` seconds, or has
    ``latency_max_repeats`` samples; the record says which (``latency_stop``, ``fps_stop``).
    ``latency_max_s: 0`` takes exactly the minimum. See :mod:`mtbench.profiling.latency`.
    """

    runtimes: list[Literal["onnx", "compile"]] = Field(default_factory=lambda: ["onnx"])
    latency_warmup: int = Field(5, ge=0)
    latency_repeats: int = Field(30, gt=0)  # minimum samples of a batch-1 latency series
    fps_repeats: int = Field(5, gt=0)  # minimum samples of an FPS series
    latency_ci_target: float = Field(0.02, gt=0, lt=1)  # relative half-width of the p50's 95 % CI
    latency_max_s: float = Field(0.5, ge=0)  # seconds of timed sampling per series (latency, FPS) and runtime
    latency_max_repeats: int = Field(1000, gt=0)  # samples per series at most

    @model_validator(mode="after")
    def _max_above_min(self) -> "Profile":
        low = max(self.latency_repeats, self.fps_repeats)
        if self.latency_max_repeats < low:
            raise ValueError(f"latency_max_repeats ({self.latency_max_repeats}) is below the minimum number of "
                             f"samples (latency_repeats / fps_repeats = {low}); raise it or lower those")
        return self


class Uncertainty(_Strict):
    """How sure each figure is: bootstrap over val images (:mod:`mtbench.metrics.base`).
    Not part of the cell hash: it changes how results are summarised, not what is trained."""

    resamples: int = Field(200, ge=50)
    level: float = Field(0.95, gt=0.5, lt=1.0)
    method: Literal["percentile", "BCa"] = "percentile"


class Suite(_Strict):
    """A whole suite file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    data_root: str | None = None
    tasks: dict[TaskName, TaskData] = Field(min_length=1)
    losses: dict[TaskName, Union[str, Named]] = Field(default_factory=dict)
    matrix: Matrix
    fixed: Fixed
    profile: Profile = Field(default_factory=Profile)
    checks: Checks = Field(default_factory=Checks)
    uncertainty: Uncertainty = Field(default_factory=Uncertainty)
    gates: list[Gate] = Field(default_factory=list)
    #: delta-m convention (mtbench.metrics.delta_m): ``headline`` = one metric per task
    #: (Maninis et al. 2019), ``all`` = every metric of a task (LibMTL count_improvement).
    #: Not part of the cell hash: it changes the table, not what is trained.
    delta_m: Literal["headline", "all"] = "headline"


# --- loading with line numbers ------------------------------------------------------------

def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every key path in a composed YAML node tree to its 1-based line."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            p = path + (k.value,)
            out[p] = k.start_mark.line + 1
            _line_index(v, p, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_index(v, path + (i,), out)
    return out


def _line_of(lines: dict[tuple, int], loc: tuple) -> int | None:
    loc = tuple(int(x) if isinstance(x, str) and x.isdigit() else x for x in loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _where(path: Path, lines: dict, loc: tuple) -> str:
    # pydantic adds the union member's type name ("str", "Named") to loc; drop those
    keys = [str(x) for x in loc if not (isinstance(x, str) and (x in ("str", "Named", "Architecture") or x.startswith(("dict[", "function-"))))]
    line = _line_of(lines, tuple(k for k in loc if k not in ("str", "Named", "Architecture")))
    return f"{path}:{line}: {'.'.join(keys) or '<top>'}" if line else f"{path}: {'.'.join(keys)}"


@dataclass
class LoadedSuite:
    suite: Suite
    path: Path
    lines: dict[tuple, int]

    def where(self, *loc) -> str:
        return _where(self.path, self.lines, tuple(loc))


def load_suite(path: str | Path) -> LoadedSuite:
    """Read and schema-validate a suite file.

    :raises SuiteError: unreadable file, invalid YAML, or a schema error; the message names
        the file, line and key path of every problem.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SuiteError(f"cannot read suite {path}: {exc.strerror}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a YAML mapping, got {type(data).__name__}")
    lines = _line_index(node)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (typo?)"
            msgs.append(f"  {_where(path, lines, err['loc'])}: {msg}")
        raise SuiteError(f"invalid suite {path}:\n" + "\n".join(dict.fromkeys(msgs))) from None
    return LoadedSuite(suite, path, lines)


# --- registry checks and expansion -----------------------------------------------------

def _named(v: str | Named) -> Named:
    return Named(name=v) if isinstance(v, str) else v


def _check_params(loaded: LoadedSuite, registry: Registry, kind: str, key: str, params: dict, loc: tuple) -> None:
    factory = registry.get(kind, key).factory
    sig = inspect.signature(factory)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    reserved = {"model": {"tasks", "level"}, "dataset": {"task", "split", "root", "image_size"},
                "loss": {"num_classes"}}.get(kind, set())
    allowed = [n for n in sig.parameters if n not in reserved]
    for k in params:
        if k not in allowed:
            raise SuiteError(f"{loaded.where(*loc, k)}: unknown parameter {k!r} for {kind} {key!r}; "
                             f"its parameters: {', '.join(allowed) or '(none)'}")


def _loss_entry(registry: Registry, tasks: list[str], entry: str | dict, loaded: LoadedSuite, i: int
                ) -> dict[str, Named]:
    """Task -> loss choice (``name`` = registry key ``task/name``) of one ``matrix.loss`` entry."""
    if isinstance(entry, dict):
        out = {}
        for t, n in entry.items():
            n = _named(n)
            out[t] = Named(name=registry.loss_key(t, n.name), label=n.label, params=n.params)
        return out
    if "/" in entry:
        task = entry.split("/", 1)[0]
        return {task: Named(name=registry.loss_key(task, entry))}
    owners = [t for t in tasks if f"{t}/{entry}" in registry.entries["loss"]]
    if len(owners) != 1:
        known = registry.names("loss")
        what = "is ambiguous (write task/name)" if owners else "is not a loss of this suite's tasks"
        raise SuiteError(f"{loaded.where('matrix', 'loss', i)}: loss {entry!r} {what}; known losses: {', '.join(known)}")
    return {owners[0]: Named(name=f"{owners[0]}/{entry}")}


def _loss_label(chosen: dict[str, Named]) -> str:
    return "+".join(sorted(n.label or n.name for n in chosen.values())) if chosen else "default"


def check_registry(loaded: LoadedSuite, registry: Registry) -> None:
    """Check every plugin name and parameter of the suite against ``registry``.

    :raises SuiteError: unknown name (listing the known ones) or parameter, with file and line.
    """
    s = loaded.suite

    def guard(loc: tuple, fn):
        try:
            return fn()
        except PluginError as exc:
            raise SuiteError(f"{loaded.where(*loc)}: {exc}") from None

    for task, td in s.tasks.items():
        spec = guard(("tasks", task, "dataset"), lambda: registry.get("dataset", td.dataset))
        if spec.task not in (None, task):
            raise SuiteError(f"{loaded.where('tasks', task, 'dataset')}: dataset {td.dataset!r} serves "
                             f"task {spec.task!r}, not {task!r}")
        _check_params(loaded, registry, "dataset", td.dataset, td.params, ("tasks", task, "params"))
    for task, choice in s.losses.items():
        choice = _named(choice)
        key = guard(("losses", task), lambda: registry.loss_key(task, choice.name))
        _check_params(loaded, registry, "loss", key, choice.params, ("losses", task, "params"))
    for i, a in enumerate(s.matrix.architecture):
        a = _named(a)
        guard(("matrix", "architecture", i), lambda: registry.get("model", a.name))
        _check_params(loaded, registry, "model", a.name, a.params, ("matrix", "architecture", i, "params"))
    for i, st in enumerate(s.matrix.strategy):
        st = _named(st)
        guard(("matrix", "strategy", i), lambda: registry.get("strategy", st.name))
        _check_params(loaded, registry, "strategy", st.name, st.params, ("matrix", "strategy", i, "params"))
    for i, entry in enumerate(s.matrix.loss):
        chosen = guard(("matrix", "loss", i), lambda: _loss_entry(registry, list(s.tasks), entry, loaded, i))
        for task, n in chosen.items():
            loc = ("matrix", "loss", i, task, "params") if isinstance(entry, dict) else ("matrix", "loss", i)
            _check_params(loaded, registry, "loss", n.name, n.params, loc)


@dataclass
class Cell:
    """One resolved matrix cell: everything needed to run it, and its stable hash."""

    suite: str
    label: str
    axes: dict[str, str]
    config: dict[str, Any]
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        hashed = {k: v for k, v in self.config.items() if k not in UNHASHED}
        blob = json.dumps(hashed, sort_keys=True, default=str).encode()
        self.hash = hashlib.sha256(blob).hexdigest()[:12]


def resolve_data_root(suite: Suite, suite_path: Path) -> str | None:
    """``data_root`` from the suite (relative to the suite file), else ``$MTBENCH_DATA``, else None."""
    if suite.data_root:
        p = Path(os.path.expandvars(suite.data_root))
        return str((suite_path.parent / p).resolve() if not p.is_absolute() else p)
    env = os.environ.get("MTBENCH_DATA")
    return str(Path(env).resolve()) if env else None


def _matches(value: Any, axis_value: tuple[str, Any]) -> bool:
    label, raw = axis_value
    if isinstance(value, (str, int)) and str(value) == label:
        return True
    if isinstance(raw, Named) and isinstance(value, str) and value == raw.name:
        return True
    return value == raw


def expand(loaded: LoadedSuite, registry: Registry) -> list[Cell]:
    """Cross the matrix axes, add ``include`` sub-matrices, drop ``exclude`` matches.

    ``include`` entries fix some axes and cross the rest over the matrix's values;
    ``exclude`` entries drop every cell whose axes match all their keys (by label or name).
    Cells are de-duplicated by hash, keeping the first.
    """
    check_registry(loaded, registry)
    s = loaded.suite
    tasks = list(s.tasks)
    axis_values: dict[str, list[tuple[str, Any]]] = {
        "architecture": [(_named(a).display, _named(a)) for a in s.matrix.architecture],
        "loss": [],
        "level": [(lv, lv) for lv in s.matrix.level],
        "strategy": [(_named(x).display, _named(x)) for x in s.matrix.strategy],
        "seed": [(str(x), x) for x in s.matrix.seed],
    }
    for i, entry in enumerate(s.matrix.loss):
        chosen = _loss_entry(registry, tasks, entry, loaded, i)
        axis_values["loss"].append((_loss_label(chosen), chosen))

    def normalise(entry: dict, where: str) -> dict[str, list]:
        out = {}
        for ax in AXES:
            if ax not in entry:
                out[ax] = axis_values[ax]
                continue
            v = entry[ax]
            hits = [av for av in axis_values[ax] if _matches(v, av)]
            if not hits and where == "include":
                if ax == "loss":
                    chosen = _loss_entry(registry, tasks, v, loaded, 0)
                    hits = [(_loss_label(chosen), chosen)]
                elif ax in ("architecture", "strategy"):
                    kls = Architecture if ax == "architecture" else Named
                    nv = kls.model_validate(v) if isinstance(v, dict) else Named(name=v)
                    kind = "model" if ax == "architecture" else "strategy"
                    try:
                        registry.get(kind, nv.name)
                    except PluginError as exc:
                        raise SuiteError(f"{loaded.where('matrix', 'include')}: {exc}") from None
                    hits = [(nv.display, nv)]
                else:
                    hits = [(str(v), v)]
            out[ax] = hits
        return out

    combos = [dict(zip(AXES, c)) for c in itertools.product(*(axis_values[a] for a in AXES))]
    for entry in s.matrix.include:
        n = normalise(entry, "include")
        combos += [dict(zip(AXES, c)) for c in itertools.product(*(n[a] for a in AXES))]
    for entry in s.matrix.exclude:
        combos = [c for c in combos if not all(_matches(entry[ax], c[ax]) for ax in entry)]

    data_root = resolve_data_root(s, loaded.path)
    fixed = s.fixed.model_dump()
    cells, seen = [], set()
    for c in combos:
        arch, strat = c["architecture"][1], c["strategy"][1]
        choice = {t: _named(s.losses.get(t, DEFAULT_LOSSES[t])) for t in tasks}
        choice = {t: Named(name=registry.loss_key(t, n.name), params=n.params) for t, n in choice.items()}
        choice.update({t: n for t, n in c["loss"][1].items() if t in tasks})
        losses = {t: n.name for t, n in choice.items()}
        loss_params = {t: n.params for t, n in choice.items() if n.params}
        config = {
            "tasks": {t: td.model_dump() for t, td in s.tasks.items()},
            "data_root": data_root,
            "architecture": {"name": arch.name, "params": arch.params},
            "losses": losses,
            **({"loss_params": loss_params} if loss_params else {}),  # absent when empty: hashes stay
            "level": c["level"][1],
            "strategy": {"name": strat.name, "params": strat.params},
            "seed": c["seed"][1],
            "fixed": fixed,
            "profile": s.profile.model_dump(),
            "checks": s.checks.model_dump(),
            "uncertainty": s.uncertainty.model_dump(),
            "delta_m": s.delta_m,
            **({"expect": arch.expect.model_dump()} if getattr(arch, "expect", None) else {}),
        }
        axes = {ax: c[ax][0] for ax in AXES}
        label = "|".join(axes[ax] for ax in AXES[:-1]) + f"|s{axes['seed']}"
        cell = Cell(s.name, label, axes, config)
        if cell.hash not in seen:
            seen.add(cell.hash)
            cells.append(cell)
    return cells
