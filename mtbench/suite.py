"""Suite files: load (strict YAML), validate (pydantic, strict), expand.

A suite is plain YAML (:mod:`mtbench.strict_yaml`: no repeated keys, no aliases, at most
1 MiB of UTF-8); see ``suites/compare.yaml`` for a commented example. Validation has three
passes, all before anything runs, and every error names file, line and key path:

1. the schema (typos such as ``bach_size`` fail; batch sizes and image sizes are bounded;
   the suite name is one safe folder name) and the references inside the suite
   (:func:`check_references`: gates name metrics its tasks report, ``losses`` its tasks);
2. the registry (:func:`check_registry`): every plugin name exists, every ``params`` key is a
   parameter of that plugin's factory and its value fits the annotation, cross-references
   such as ``sequential``'s ``order`` name the suite's tasks, and the data folders exist;
3. :func:`expand` turns the matrix into :class:`Cell` objects, each a fully resolved config
   with its identities (:mod:`mtbench.identity`: training, evaluation/profile); an
   ``exclude`` that matches no cell, an ``include`` that adds none and a suite of 0 cells
   are errors.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mtbench.data.augment import refusals
from mtbench.errors import PluginError, SuiteError, did_you_mean, fail
from mtbench.identity import FingerprintCache, data_fingerprint, evaluation_hash, legacy_hash, plugin_fingerprint, \
    training_hash
from mtbench.metrics import metric_names
from mtbench.plugins import Registry
from mtbench.strict_yaml import load_yaml

#: a task name; checked against the registered tasks (:func:`check_registry`), not the schema
TaskName = str
LEVELS = ("P2", "P3", "P4", "P5", "multi")
AXES = ("architecture", "loss", "level", "strategy", "seed")
GATE_RE = re.compile(r"^\s*(?P<metric>[\w/\-@\[\].:]+)\s*(?P<op><=|>=|<|>|==)\s*(?P<value>[-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}$")
MAX_BATCH = 4096  # images per batch; more is a typo (1e8) that would fail inside torch
MAX_IMAGE_SIZE = 8192  # pixels


def _check_level(v: str) -> str:
    if v not in LEVELS:
        raise ValueError(f"level {v!r} is not one of {', '.join(LEVELS)}")
    return v


Level = Annotated[str, AfterValidator(_check_level)]


def _check_gate(g: str) -> str:
    if not GATE_RE.match(g):
        raise ValueError(f"gate {g!r} is not 'METRIC OP NUMBER' (OP one of < <= > >= ==)")
    return g  # its metric is checked against the suite's tasks by check_references


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
    seed: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field(default_factory=lambda: [0], min_length=1)
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
    """The optimizer and schedule: registered names (``mtbench_register_optimizers`` /
    ``mtbench_register_schedules``; built-ins :mod:`mtbench.optimizers`), checked against the
    registry (:func:`check_registry`)."""

    name: str = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    backbone_lr_mult: float = Field(1.0, gt=0)
    schedule: str = "cosine"
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


class CheckpointEvery(_Strict):
    """How often a cell saves its training state (:mod:`mtbench.checkpoint`): exactly one of
    ``steps``, ``epochs`` (of the largest train split) or ``minutes``. Not part of any identity:
    a resumed cell trains as an uninterrupted one."""

    steps: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    minutes: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> "CheckpointEvery":
        if sum(v is not None for v in (self.steps, self.epochs, self.minutes)) != 1:
            raise ValueError("give exactly one of 'steps', 'epochs' or 'minutes'")
        return self


def _ordered_pair(v: tuple[float, float] | None) -> tuple[float, float] | None:
    if v is not None and not 0 < v[0] <= v[1]:
        raise ValueError(f"give [low, high] with 0 < low <= high, got {list(v)}")
    return v


class ColorJitter(_Strict):
    """:class:`torchvision.transforms.v2.ColorJitter`: each factor drawn from ``[max(0, 1 - x), 1 + x]``
    (``hue``: a shift in ``[-x, x]`` of the colour wheel, at most 0.5); 0 leaves that property."""

    brightness: float = Field(0.0, ge=0)
    contrast: float = Field(0.0, ge=0)
    saturation: float = Field(0.0, ge=0)
    hue: float = Field(0.0, ge=0, le=0.5)


class Augment(_Strict):
    """Training augmentation (:mod:`mtbench.data.augment`, torchvision.transforms.v2):
    ``hflip`` the probability of a horizontal flip (default 0.5, as in earlier versions);
    ``scale: [lo, hi]`` a random resized crop of ``lo``..``hi`` of the image's area back to the input
    size (scale jitter; off by default), of aspect ``ratio: [lo, hi]`` (default ``[3/4, 4/3]``);
    ``color`` a colour jitter (off by default). Part of the training identity when not at the default."""

    hflip: float = Field(0.5, ge=0, le=1)
    scale: Annotated[tuple[float, float] | None, AfterValidator(_ordered_pair)] = None
    ratio: Annotated[tuple[float, float] | None, AfterValidator(_ordered_pair)] = None
    color: ColorJitter | None = None

    @field_validator("scale")
    @classmethod
    def _area(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[1] > 1:
            raise ValueError(f"scale is a fraction of the image's area, at most 1, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _ratio_needs_scale(self) -> "Augment":
        if self.ratio is not None and self.scale is None:
            raise ValueError("'ratio' shapes the crop of 'scale'; give 'scale' too")
        return self


class Ema(_Strict):
    """An exponential moving average of the weights (:class:`mtbench.strategies.base.TrainContext`, timm's ``ModelEmaV3``),
    the model evaluated, profiled and saved: ``decay`` per optimiser step; ``warmup`` (timm's
    ``use_warmup``): the decay at step t is ``min(decay, 1 - (1 + t) ** (-2/3))``, so a short run's
    average is not dominated by its random start. Part of the training identity when set."""

    decay: float = Field(0.9998, gt=0, lt=1)
    warmup: bool = True


class Fixed(_Strict):
    """Parameters every cell shares.

    Data loading (:mod:`mtbench.data.cache`, :mod:`mtbench.data.loading`; not part of the cell
    hash, as they change how fast items arrive, not which): ``cache`` ``none | ram | disk``
    (``ram`` holds at most ``cache_ram_gib``, default 25 % of the memory available when the
    cell starts); ``num_workers`` DataLoader worker processes (unset: in-process with the
    global-RNG flip of earlier versions; any number, 0 included, seeds each item's
    augmentation so results do not depend on it, and that choice is hashed);
    ``pin_memory``, ``persistent_workers`` as in :class:`torch.utils.data.DataLoader`.

    Numerics of training (:class:`mtbench.strategies.base.TrainContext`; part of the training
    identity when not at their defaults): ``precision`` ``fp32 | bf16 | fp16``, the dtype
    :func:`torch.autocast` runs training's forward passes and losses in (fp16 with a
    :class:`torch.amp.GradScaler`, so only strategies that declare ``grad_scaling`` may use it:
    :func:`check_precision`); evaluation and profiling stay fp32. ``channels_last``: model and
    training batches in :data:`torch.channels_last` memory format. ``augment`` (:class:`Augment`)
    and ``ema`` (:class:`Ema`, unset: none): what is trained on, and which weights are the model."""

    image_size: int = Field(gt=0, le=MAX_IMAGE_SIZE)
    batch_size: int = Field(gt=0, le=MAX_BATCH)
    eval_batch_size: int | None = Field(None, gt=0, le=MAX_BATCH)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    budget: Budget
    threads: int | None = Field(None, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    grad_clip: float | None = Field(10.0, gt=0)
    cache: Literal["none", "ram", "disk"] = "ram"
    cache_ram_gib: float | None = Field(None, gt=0)
    num_workers: int | None = Field(None, ge=0)
    pin_memory: bool = False
    persistent_workers: bool = False
    checkpoint_every: CheckpointEvery = Field(default_factory=lambda: CheckpointEvery(minutes=5))
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    augment: Augment = Field(default_factory=Augment)
    ema: Ema | None = None

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
    """How cells are measured; ``runtimes`` beyond PyTorch eager: registered names (built-ins
    ``onnx``, ``compile``: :mod:`mtbench.profiling.runtimes`; ``mtbench_register_runtimes``).

    Every latency (batch 1) and FPS (suite batch) series, in every runtime, takes at least
    ``latency_repeats`` / ``fps_repeats`` samples (and at least 6, the fewest with a 95 %
    interval of the median), then goes on, checking every 10 samples, until the relative
    half-width of the p50's 95 % interval is at most ``latency_ci_target`` (0.02 = +-2 %),
    or the series has been timed for ``latency_max_s`` seconds, or has
    ``latency_max_repeats`` samples; the record says which (``latency_stop``, ``fps_stop``).
    ``latency_max_s: 0`` takes exactly the minimum. See :mod:`mtbench.profiling.latency`.

    ``cudnn_benchmark``: :data:`torch.backends.cudnn.benchmark` while a CUDA cell is profiled
    (cuDNN picks the fastest convolution algorithms for the fixed input shapes; no effect on
    CPU); the record's ``profile.cudnn_benchmark`` says whether it was applied.

    ``runtime_metrics``: re-compute the val metrics with every runtime's outputs (one extra
    pass over the val splits per runtime; :func:`mtbench.evaluation.runtime_val`), stored per
    runtime as ``val`` with the delta vs eager float32. Off by default: the pass costs about
    what the cell's own evaluation costs, per runtime, outside the harness budget.
    ``calibration_images``: train images int8 runtimes calibrate on
    (:func:`mtbench.profiling.deploy.calibration_images`).
    """

    runtimes: list[str] = Field(default_factory=lambda: ["onnx"])  # registered runtimes (check_registry)
    latency_warmup: int = Field(5, ge=0)
    latency_repeats: int = Field(30, gt=0)  # minimum samples of a batch-1 latency series
    fps_repeats: int = Field(5, gt=0)  # minimum samples of an FPS series
    latency_ci_target: float = Field(0.02, gt=0, lt=1)  # relative half-width of the p50's 95 % CI
    latency_max_s: float = Field(0.5, ge=0)  # seconds of timed sampling per series (latency, FPS) and runtime
    latency_max_repeats: int = Field(1000, gt=0)  # samples per series at most
    cudnn_benchmark: bool = False
    runtime_metrics: bool = False
    calibration_images: int = Field(32, gt=0)

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

    name: str  # the results folder's name: one safe path component (_safe_name)
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

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        """Results go to ``<results>/<name>``: one path component, no ``..``, no ``/``."""
        if not SAFE_NAME.match(v):
            raise ValueError(f"name {v!r} must be a plain folder name: letters, digits, '_', '-', '.', "
                             f"not starting with '.' (results go to <results>/<name>)")
        return v


# --- loading with line numbers ------------------------------------------------------------

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
    if isinstance(line, str):  # a field a --set replaced (load_suite)
        return f"{path}: {line}: {'.'.join(keys) or '<top>'}"
    return f"{path}:{line}: {'.'.join(keys) or '<top>'}" if line else f"{path}: {'.'.join(keys)}"


def _schema_errors(exc: ValidationError) -> list[tuple[tuple, str]]:
    """(location, message) of each schema error, in the suite's words."""
    return [(err["loc"], "unknown field (typo?)" if err["type"] == "extra_forbidden"
             else err["msg"].removeprefix("Value error, ")) for err in exc.errors()]


@dataclass
class LoadedSuite:
    suite: Suite
    path: Path
    lines: dict[tuple, int | str]  # key path -> line; "--set KEY=VALUE" for a field an override replaced
    overrides: list[str] = field(default_factory=list)  # the --set texts applied, in order

    def where(self, *loc) -> str:
        return _where(self.path, self.lines, tuple(loc))


def load_suite(path: str | Path, overrides: list[str] = ()) -> LoadedSuite:
    """Read (strict YAML, :mod:`mtbench.strict_yaml`) and schema-validate a suite file, with
    ``--set KEY=VALUE`` ``overrides`` applied (:mod:`mtbench.overrides`), and check the
    references inside it (:func:`check_references`).

    :raises SuiteError: unreadable, too large or non-UTF-8 file, invalid YAML (repeated keys,
        aliases included), an unknown override key, a schema error or a dangling reference; the
        message names the file, line (or the ``--set`` it came from) and key path of every
        problem (at most 20 lines, then how many more).
    """
    from mtbench.overrides import apply, parse

    path = Path(path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a YAML mapping, got {type(data).__name__}")
    try:
        parsed = [parse(text, Suite) for text in overrides]
    except SuiteError as exc:
        raise SuiteError(f"{path}: {exc}") from None
    data = apply(data, parsed)
    for o in parsed:  # errors in a replaced field name its --set, not the file's old line
        lines = {k: v for k, v in lines.items() if k[:len(o.path)] != o.path}
        lines[o.path] = f"--set {o.text}"
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        _fail(path, list(dict.fromkeys(f"{_where(path, lines, loc)}: {msg}" for loc, msg in _schema_errors(exc))))
    loaded = LoadedSuite(suite, path, lines, [o.text for o in parsed])
    check_references(loaded)
    return loaded


# --- registry checks and expansion -----------------------------------------------------

def _named(v: str | Named) -> Named:
    return Named(name=v) if isinstance(v, str) else v


def _fail(path: Path, problems: list[str]) -> None:
    """Raise one :class:`SuiteError` for ``problems`` (each ``file:line: key: what``), if any."""
    fail(f"invalid suite {path}:", problems, SuiteError)


def _loss_entry(registry: Registry, tasks: list[str], entry: str | dict, loaded: LoadedSuite, loc: tuple
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
        raise SuiteError(f"{loaded.where(*loc)}: loss {entry!r} {what}; known losses: {', '.join(known)}")
    return {owners[0]: Named(name=f"{owners[0]}/{entry}")}


def _loss_label(chosen: dict[str, Named]) -> str:
    return "+".join(sorted(n.label or n.name for n in chosen.values())) if chosen else "default"


def _loss_choice(loaded: LoadedSuite, registry: Registry, entry: str | dict, loc: tuple
                 ) -> tuple[dict[str, Named], list[str]]:
    """A loss-axis entry (``matrix.loss`` or an ``include``'s ``loss``) resolved, and what is
    wrong with it: a task the suite does not have, its parameters (file:line each).

    :raises SuiteError: an unknown, ambiguous or foreign loss name.
    """
    tasks = list(loaded.suite.tasks)
    try:
        chosen = _loss_entry(registry, tasks, entry, loaded, loc)
    except PluginError as exc:
        raise SuiteError(f"{loaded.where(*loc)}: {exc}") from None
    problems = []
    for task, n in chosen.items():
        at = loc + (task,) if isinstance(entry, dict) else loc
        if task not in tasks:
            problems.append(f"  {loaded.where(*at)}: loss {n.name!r} is for task {task!r}, which the suite "
                            f"does not have (tasks: {', '.join(tasks)})")
            continue
        problems += [f"  {loaded.where(*at, 'params', k) if k in n.params else loaded.where(*at)}: {m}"
                     for k, m in registry.param_errors("loss", n.name, n.params, tasks).items()]
    return chosen, problems


def check_references(loaded: LoadedSuite) -> None:
    """Check what the suite refers to inside itself: gates name metrics its tasks report,
    ``losses`` names its tasks, ``include``/``exclude`` give valid levels and
    seeds. (Plugin names and parameters: :func:`check_registry`; ``include``/``exclude``
    matching cells: :func:`expand`.)

    :raises SuiteError: every dangling reference, with file and line.
    """
    s, problems = loaded.suite, []
    known = metric_names(s.tasks)
    for i, gate in enumerate(s.gates):
        metric = GATE_RE.match(gate)["metric"]
        if metric not in known:
            problems.append(f"  {loaded.where('gates', i)}: gate {gate!r} names metric {metric!r}, which no "
                            f"cell of tasks {', '.join(s.tasks)} reports.{did_you_mean(metric, known)} "
                            f"Known: {', '.join(known)}")
    problems += [f"  {loaded.where('losses', t)}: a loss for task {t!r}, which the suite does not have "
                 f"(tasks: {', '.join(s.tasks)})" for t in s.losses if t not in s.tasks]
    for part in ("include", "exclude"):
        for j, entry in enumerate(getattr(s.matrix, part)):
            if "level" in entry and entry["level"] not in LEVELS:
                problems.append(f"  {loaded.where('matrix', part, j, 'level')}: level {entry['level']!r} is not "
                                f"one of {', '.join(LEVELS)}")
            if "seed" in entry and (not isinstance(entry["seed"], int) or isinstance(entry["seed"], bool)
                                    or not 0 <= entry["seed"] < 2**32):
                problems.append(f"  {loaded.where('matrix', part, j, 'seed')}: seed {entry['seed']!r} is not "
                                f"an integer from 0 to 2**32 - 1")
    _fail(loaded.path, problems)


def _duplicate_labels(loaded: "LoadedSuite", axis_values: dict[str, list[tuple[str, Any]]]) -> list[str]:
    """An axis entry whose label (or name) an earlier entry of the axis has: the table's rows, the
    ``exclude`` matches and ``compare``'s pairing go by label, so the two would be one to them
    (the same value twice would silently be one cell)."""
    problems = []
    for ax, values in axis_values.items():
        first: dict[str, int] = {}
        for i, (label, value) in enumerate(values):
            if label in first:
                same = values[first[label]][1] == value
                problems.append(f"  {loaded.where('matrix', ax, i)}: {ax} {label!r} is also entry {first[label]}"
                                + ("; list it once" if same else "; give each a distinct 'label'"))
            first.setdefault(label, i)
    return problems


def _data_folder(td: TaskData, registry: Registry, root: str | None) -> Path | None:
    """The folder a data set reads (``root/path``), or None for generated data (its loader takes
    no ``path``: files under the data root, :mod:`mtbench.hookspecs`) or a mistyped ``path``."""
    takes = inspect.signature(registry.get("dataset", td.dataset).factory).parameters
    rel = td.params.get("path", takes["path"].default if "path" in takes else inspect.Parameter.empty)
    if rel is inspect.Parameter.empty or not isinstance(rel, str):
        return None
    return Path(root, rel) if root else Path(rel)


def _data_problems(loaded: LoadedSuite, registry: Registry) -> list[str]:
    """Missing data: a data root (``data_root`` / ``MTBENCH_DATA``) that is not a folder, or a
    data set's folder (``root/path``) that is not there (:func:`_data_folder`)."""
    s = loaded.suite
    root = resolve_data_root(s, loaded.path)
    origin = loaded.where("data_root") if s.data_root else f"MTBENCH_DATA={os.environ.get('MTBENCH_DATA')}"
    problems = []
    for task, td in s.tasks.items():
        folder = _data_folder(td, registry, root)
        if folder is None:
            continue  # generated data, or a path already reported as missing / mistyped
        if root and not Path(root).is_dir():
            return [f"  {origin}: data root {root} is not a folder (dataset {td.dataset!r} of task {task!r} "
                    f"reads its files under it)"]
        if not folder.is_dir():
            rel = td.params.get("path", folder.name)
            at = loaded.where("tasks", task, "params", "path") if "path" in td.params else loaded.where("tasks", task)
            problems.append(f"  {at}: {td.dataset} data folder not found: {folder} (set MTBENCH_DATA or the "
                            f"suite's data_root to the folder holding {rel!r})")
    return problems


def check_registry(loaded: LoadedSuite, registry: Registry) -> None:
    """Check every plugin name and parameter of the suite against ``registry``, then the data
    folders its data sets read.

    :raises SuiteError: every unknown name (tasks, plugins; listing the known ones), unknown, missing or
        mistyped parameter or dangling task reference (:meth:`Registry.param_errors`), a
        ``fixed.augment`` that flips or crops a task whose target cannot follow that
        (:func:`mtbench.data.augment.refusals`), missing data folder, with file and line.
    """
    s, tasks, problems = loaded.suite, list(loaded.suite.tasks), []

    def found(loc: tuple, fn):
        """``fn()``, or None with its error recorded at ``loc``."""
        try:
            return fn()
        except PluginError as exc:
            problems.append(f"  {loaded.where(*loc)}: {exc}")
        except SuiteError as exc:
            problems.append(f"  {exc}")
        return None

    def params(kind: str, key: str, given: dict, loc: tuple) -> None:
        problems.extend(f"  {loaded.where(*loc, k) if k in given else loaded.where(*loc)}: {msg}"
                        for k, msg in registry.param_errors(kind, key, given, tasks).items())

    for task, td in s.tasks.items():
        if found(("tasks", task), lambda: registry.get("task", task)) is None:
            continue
        spec = found(("tasks", task, "dataset"), lambda: registry.get("dataset", td.dataset))
        if spec is not None and spec.task not in (None, task):
            problems.append(f"  {loaded.where('tasks', task, 'dataset')}: dataset {td.dataset!r} serves "
                            f"task {spec.task!r}, not {task!r}")
        elif spec is not None:
            params("dataset", td.dataset, td.params, ("tasks", task, "params"))
    for task, choice in s.losses.items():
        choice = _named(choice)
        key = found(("losses", task), lambda: registry.loss_key(task, choice.name))
        if key is not None:
            params("loss", key, choice.params, ("losses", task, "params"))
    opt = s.fixed.optimizer
    found(("fixed", "optimizer", "name"), lambda: registry.get("optimizer", opt.name))
    found(("fixed", "optimizer", "schedule"), lambda: registry.get("schedule", opt.schedule))
    for i, name in enumerate(s.profile.runtimes):
        found(("profile", "runtimes", i), lambda: registry.get("runtime", name))
    for axis, kind in (("architecture", "model"), ("strategy", "strategy")):
        for i, entry in enumerate(getattr(s.matrix, axis)):
            n = _named(entry)
            if found(("matrix", axis, i), lambda: registry.get(kind, n.name)) is not None:
                params(kind, n.name, n.params, ("matrix", axis, i, "params"))
    for i, entry in enumerate(s.matrix.loss):
        problems += (found(("matrix", "loss", i), lambda: _loss_choice(loaded, registry, entry, ("matrix", "loss", i)))
                     or ({}, []))[1]
    known = {t: registry.task(t) for t in tasks if t in registry.tasks()}
    problems += [f"  {loaded.where('fixed', 'augment')}: {why}" for why in refusals(s.fixed.augment.model_dump(), known)]
    if not problems:
        problems += _data_problems(loaded, registry)
    _fail(loaded.path, problems)


@dataclass
class Cell:
    """One resolved matrix cell: everything needed to run it, and its identities
    (:mod:`mtbench.identity`): ``hash`` (training: names its record), ``eval_hash`` (training +
    ``profile``) and ``legacy_hash`` (the scheme-1 hash a result folder made before them used).

    :param identity: what the config does not say about the cell's training: ``{"data": {task:
        fingerprint}, "plugins": {role: "dist==version[+src.hash]"}}`` (:func:`cell_identity`).
    :param suite_sha256: sha256 of the suite file (provenance, not identity).
    """

    suite: str
    label: str
    axes: dict[str, str]
    config: dict[str, Any]
    identity: dict[str, Any] = field(default_factory=dict)
    suite_sha256: str | None = None
    hash: str = field(init=False)
    eval_hash: str = field(init=False)
    legacy_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.hash = training_hash(self.config, self.identity)
        self.eval_hash = evaluation_hash(self.hash, self.config)
        self.legacy_hash = legacy_hash(self.config)


def cell_identity(config: dict, registry: Registry, fingerprints: dict[str, str | None]) -> dict:
    """The training identity's inputs beside the config: the data fingerprint of each task that
    reads files, and the distribution/version of every plugin the cell uses."""
    def plugin(kind: str, key: str) -> str:
        e = registry.entries[kind][key]
        return plugin_fingerprint(e.distribution, e.version)

    plugins = {f"dataset/{t}": plugin("dataset", td["dataset"]) for t, td in config["tasks"].items()}
    plugins |= {f"loss/{t}": plugin("loss", key) for t, key in config["losses"].items()}
    plugins |= {"model": plugin("model", config["architecture"]["name"]),
                "strategy": plugin("strategy", config["strategy"]["name"])}
    return {"data": {t: fp for t, fp in fingerprints.items() if fp}, "plugins": plugins}


def data_fingerprints(suite: Suite, registry: Registry, root: str | None) -> dict[str, str | None]:
    """Per task, the fingerprint of the data folder it reads (None for generated data);
    file hashes cached (:class:`mtbench.identity.FingerprintCache`)."""
    cache, out = FingerprintCache(), {}
    for task, td in suite.tasks.items():
        folder = _data_folder(td, registry, root)
        out[task] = data_fingerprint(folder, cache) if folder is not None and folder.is_dir() else None
    cache.save()
    return out


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


def check_precision(precision: str, strategy: str, registry: Registry) -> str | None:
    """Why ``strategy`` cannot train in ``precision`` (None: it can).

    fp16 training scales the loss (:class:`torch.amp.GradScaler`) so that small gradients do not
    flush to zero; that is correct only for a strategy whose every backward pass goes through
    :meth:`mtbench.strategies.base.TrainContext.backward` and whose gradients are then stepped
    by :meth:`~mtbench.strategies.base.TrainContext.step` (which unscales them). A strategy says
    so with a class attribute ``grad_scaling = True``; one that differentiates the losses
    itself (``torch.autograd.grad``: the gradient-combining methods, GradNorm) would combine
    scaled gradients, so it is refused. bf16 and fp32 need no scaling: always allowed.
    """
    if precision != "fp16" or getattr(registry.get("strategy", strategy).factory, "grad_scaling", False):
        return None
    return (f"fixed.precision fp16 needs a strategy that lets the harness scale its losses (grad_scaling); "
            f"strategy {strategy!r} differentiates them itself. Use precision bf16 (no loss scaling) or fp32.")


def expand(loaded: LoadedSuite, registry: Registry) -> list[Cell]:
    """Cross the matrix axes, add ``include`` sub-matrices, drop ``exclude`` matches.

    ``include`` entries fix some axes and cross the rest over the matrix's values;
    ``exclude`` entries drop every cell whose axes match all their keys (by label or name).
    Cells are de-duplicated by hash, keeping the first.

    :raises SuiteError: what :func:`check_registry` finds; an ``exclude`` entry that matches no
        cell, an ``include`` entry that adds none, a suite of 0 cells, fp16 with a strategy that
        cannot scale its losses (:func:`check_precision`) (file and line each).
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
        chosen = _loss_entry(registry, tasks, entry, loaded, ("matrix", "loss", i))
        axis_values["loss"].append((_loss_label(chosen), chosen))
    _fail(loaded.path, _duplicate_labels(loaded, axis_values))

    def new_value(ax: str, v: Any, loc: tuple) -> tuple[str, Any]:
        """An ``include`` value that is not among the matrix's: checked like a matrix entry."""
        if ax == "loss":
            chosen, problems = _loss_choice(loaded, registry, v, loc)
            _fail(loaded.path, problems)
            return _loss_label(chosen), chosen
        if ax in ("architecture", "strategy"):
            kind = "model" if ax == "architecture" else "strategy"
            try:
                nv = (Architecture if ax == "architecture" else Named).model_validate(v) if isinstance(v, dict) \
                    else Named(name=v)
                problems = registry.param_errors(kind, nv.name, nv.params, tasks)
            except ValidationError as exc:
                _fail(loaded.path, [f"{loaded.where(*loc, *at)}: {msg}" for at, msg in _schema_errors(exc)])
            except PluginError as exc:
                raise SuiteError(f"{loaded.where(*loc)}: {exc}") from None
            _fail(loaded.path, [f"  {loaded.where(*loc, 'params')}: {m}" for m in problems.values()])
            return nv.display, nv
        return str(v), v  # level and seed: checked by check_references

    def normalise(entry: dict, loc: tuple | None) -> dict[str, list]:
        """The axis values an include (``loc`` given) or exclude entry names."""
        out = {}
        for ax in AXES:
            if ax not in entry:
                out[ax] = axis_values[ax]
                continue
            hits = [av for av in axis_values[ax] if _matches(entry[ax], av)]
            out[ax] = hits or ([new_value(ax, entry[ax], loc + (ax,))] if loc else [])
        return out

    combos = [(dict(zip(AXES, c)), None) for c in itertools.product(*(axis_values[a] for a in AXES))]
    for j, entry in enumerate(s.matrix.include):
        n = normalise(entry, ("matrix", "include", j))
        combos += [(dict(zip(AXES, c)), j) for c in itertools.product(*(n[a] for a in AXES))]
    problems = []
    for j, entry in enumerate(s.matrix.exclude):
        kept = [(c, src) for c, src in combos if not all(_matches(entry[ax], c[ax]) for ax in entry)]
        if len(kept) == len(combos):
            problems.append(f"  {loaded.where('matrix', 'exclude', j)}: exclude entry {entry} matches no cell "
                            f"(values are matched by label or name)")
        combos = kept

    data_root = resolve_data_root(s, loaded.path)
    fingerprints = data_fingerprints(s, registry, data_root)
    suite_sha256 = hashlib.sha256(loaded.path.read_bytes()).hexdigest()
    fixed = s.fixed.model_dump()
    cells, seen, added = [], set(), set()
    for c, src in combos:
        arch, strat = c["architecture"][1], c["strategy"][1]
        choice = {t: _named(s.losses.get(t, registry.task(t).default_loss)) for t in tasks}
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
            **({"overrides": list(loaded.overrides)} if loaded.overrides else {}),
            **({"gates": list(s.gates)} if s.gates else {}),
        }
        axes = {ax: c[ax][0] for ax in AXES}
        label = "|".join(axes[ax] for ax in AXES[:-1]) + f"|s{axes['seed']}"
        problem = check_precision(fixed["precision"], strat.name, registry)
        if problem and f"  {loaded.where('fixed', 'precision')}: {problem}" not in problems:
            problems.append(f"  {loaded.where('fixed', 'precision')}: {problem}")
        cell = Cell(s.name, label, axes, config, cell_identity(config, registry, fingerprints), suite_sha256)
        if cell.hash not in seen:
            seen.add(cell.hash)
            cells.append(cell)
            added.add(src)
    problems += [f"  {loaded.where('matrix', 'include', j)}: include entry {entry} adds no cell (each cell it "
                 f"names is already in the matrix, or excluded)"
                 for j, entry in enumerate(s.matrix.include) if j not in added]
    if not cells and not problems:
        problems.append(f"  {loaded.where('matrix')}: the suite expands to 0 cells (exclude removes every one)")
    _fail(loaded.path, problems)
    return cells
