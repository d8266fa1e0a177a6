"""The two sides of ``mtbench parity`` (see :mod:`mtbench.parity`): the :class:`Side` adapter
contract, the PyTorch eager / ``torch.compile`` and ONNX Runtime sides, spec parsing, and
the data both sides are fed."""

from __future__ import annotations

import copy
import importlib.metadata
import inspect
import os
import re
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
import yaml

from mtbench.errors import MtbenchError, PluginError
from mtbench.parity.gates import record_gates

ENTRY_POINT_GROUP = "mtbench.frameworks"
RUNTIMES = ("onnx", "compile")
_SPEC = re.compile(r"^(?:(?P<fw>[A-Za-z][\w-]*):)?(?P<name>[A-Za-z][\w.-]*)(?:\[(?P<params>.*)\])?$")


class ParityError(MtbenchError):
    """A parity spec or option that cannot be used (exit 2)."""


@dataclass
class Transfer:
    """What a :meth:`Side.load` could not take: names (in PyTorch naming) it lacks, names it
    did not expect, and ``(name, shape given, own shape)`` of the ones that did not fit."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)


def transfer(own: dict[str, tuple], state: dict[str, np.ndarray], assign: Callable[[str, np.ndarray], Any]
             ) -> Transfer:
    """Weight transfer by name: ``assign(name, array)`` for every name of ``own`` (name -> shape)
    that ``state`` has with the same shape; the rest is reported."""
    out = Transfer(missing=sorted(set(own) - set(state)), unexpected=sorted(set(state) - set(own)))
    for n, shape in own.items():
        if n in state and tuple(state[n].shape) != tuple(shape):
            out.mismatched.append((n, tuple(state[n].shape), tuple(shape)))
        elif n in state:
            assign(n, state[n])
    return out


Targets = list[dict[str, np.ndarray]]  # per image {"boxes": float32 (M, 4) xyxy pixels, "labels": int64 (M,)}


class Side(Protocol):
    """The adapter contract of one implementation (what a ``mtbench.frameworks`` entry point returns).

    Arrays are numpy; images ``float32 (B, 3, S, S)`` in [0, 1]; names of parameters are the
    PyTorch model's ``state_dict`` names (the adapter maps its own names to them).
    """

    label: str

    def parameters(self) -> dict[str, tuple[int, ...]] | None:
        """Trainable parameter name -> shape, or None when it has none to show (a runtime)."""

    def state(self) -> dict[str, np.ndarray]:
        """Parameters and buffers (BatchNorm statistics) as float32 arrays."""

    def load(self, state: dict[str, np.ndarray]) -> Transfer:
        """Take the weights of ``state`` (every name and shape that fits) and say what did not."""

    def forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Eval-mode raw outputs, named ``task/level`` (``det/P3``) in the model's order."""

    def loss_and_grads(self, x: np.ndarray, targets: Targets, gates: dict[str, list[np.ndarray]] | None = None
                       ) -> tuple[dict[str, float], dict[str, np.ndarray]] | None:
        """Train-mode loss components (``total`` included) and the gradient of ``total`` per
        parameter, without a step; None when the side cannot train (a runtime). With ``gates``
        (``{module name: [int8 pieces per call]}``, :func:`mtbench.parity.gates.record_gates`),
        those activation modules take the given pieces instead of their own; a side without
        :meth:`gates` may omit the argument."""

    def gates(self) -> dict[str, list[tuple[np.ndarray, float | None]]] | None:
        """Optional: the input of every ``ReLU`` / ``ReLU6`` module in the last
        :meth:`loss_and_grads` (``{module name: [(array, upper kink), ...]}``, calls in order;
        :mod:`mtbench.parity.gates`), or None when the side does not record them."""

    def start_training(self, lr: float, momentum: float) -> None:
        """A fresh SGD optimiser (learning rate ``lr``, momentum ``momentum``, no weight decay,
        momentum buffers empty) over the trainable parameters, for the :meth:`train_step` calls after it."""

    def train_step(self, x: np.ndarray, targets: Targets, gates=None) -> dict[str, float] | None:
        """One train-mode SGD step on one batch: the loss components (``total`` included) before
        its update, or None when the side cannot train (a runtime). ``gates`` as in
        :meth:`loss_and_grads`, also a :data:`mtbench.parity.gates.Force` (lockstep training,
        :class:`mtbench.parity.gates.ImposeRounding`); :meth:`gates` then gives this pass's inputs."""


def output_names(model) -> list[str]:
    """``task/P<k>`` (or ``task``) per raw output of a :class:`~mtbench.models.base.MultiTaskModel`,
    tasks sorted, levels finest first (the order of :func:`mtbench.profiling.runtimes.flat_tensors`)."""
    from mtbench.models.dense import level_name
    names = []
    for task in sorted(model.tasks):
        s = model.strides[task]
        names.extend([f"{task}/{level_name(v)}" for v in s] if isinstance(s, (list, tuple)) else [task])
    return names


def numpy_targets(targets: list[dict]) -> Targets:
    """Detection targets of a collated batch as float32 boxes / int64 labels arrays."""
    return [{"boxes": np.asarray(t["boxes"], np.float32).reshape(-1, 4), "labels": np.asarray(t["labels"], np.int64)}
            for t in targets]


def _floats(parts: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in parts.items()}


def _impose(x: torch.Tensor, p: np.ndarray, upper: float | None) -> torch.Tensor:
    """``x`` on piece 1, the constant of pieces 0 and 2 elsewhere (:func:`mtbench.parity.gates.pieces`)."""
    p = torch.from_numpy(p).to(x.device)
    return torch.where(p == 1, x, (p == 2).to(x.dtype) * (upper or 0.0))


class TorchSide:
    """A PyTorch model (eager, or under ``torch.compile`` when ``compiled``) and its loss for ``task``."""

    def __init__(self, label: str, model: torch.nn.Module, loss: torch.nn.Module, task: str = "det",
                 compiled: bool = False):
        self.label, self.model, self.loss, self.task = label, model, loss, task
        self.call = torch.compile(model) if compiled else model
        self.names = output_names(model)

    def parameters(self):
        return {n: tuple(p.shape) for n, p in self.model.named_parameters() if p.requires_grad}

    def state(self):
        return {n: t.detach().cpu().float().numpy().copy() for n, t in self.model.state_dict().items()
                if t.is_floating_point()}

    def load(self, state):
        own = {n: t for n, t in self.model.state_dict().items() if t.is_floating_point()}
        with torch.no_grad():
            return transfer({n: t.shape for n, t in own.items()}, state,
                            lambda n, a: own[n].copy_(torch.from_numpy(np.ascontiguousarray(a))))

    def float64(self) -> "TorchSide":
        """A float64 twin (a copy of the model in double precision, eager): the reference for
        how far float32 rounding alone moves every figure (:mod:`mtbench.parity`)."""
        twin = TorchSide(f"{self.label} float64", copy.deepcopy(self.model).double(), self.loss, self.task)
        twin.dtype = torch.float64
        return twin

    dtype = torch.float32

    def _input(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.dtype)

    def _raw(self, x: np.ndarray):
        return self.call(self._input(x))[self.task]

    def forward(self, x):
        self.model.eval()
        with torch.no_grad():
            out = self.call(self._input(x))
        from mtbench.profiling.runtimes import flat_tensors
        return {n: t.numpy() for n, t in zip(self.names, flat_tensors(out))}

    def _components(self, x, targets) -> dict[str, torch.Tensor]:
        tt = [{"boxes": torch.from_numpy(t["boxes"]), "labels": torch.from_numpy(t["labels"])} for t in targets]
        return self.loss(self._raw(x), tt, stride=self.model.strides[self.task])

    def _pass(self, x, targets, gates) -> dict[str, torch.Tensor]:
        """Train-mode loss components with gradients of ``total`` in ``.grad`` (activation gates
        recorded, and imposed where ``gates`` says, in eager mode)."""
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        compiled = self.call is not self.model
        if compiled and gates:
            raise ParityError(f"{self.label}: activation gates cannot be imposed under torch.compile")
        with (nullcontext({}) if compiled else record_gates(self.model.named_modules(), "forward",
                                                           lambda t: t.detach().clone(), _impose, gates,
                                                           lambda t: t.cpu().numpy())) as rec:
            parts = self._components(x, targets)
        self._gates = None if compiled else rec
        parts["total"].backward()
        return parts

    def loss_and_grads(self, x, targets, gates=None):
        parts = self._pass(x, targets, gates)
        grads = {n: p.grad.numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape), np.float32)
                 for n, p in self.model.named_parameters() if p.requires_grad}
        return _floats(parts), grads

    _gates = None

    def gates(self):
        if self._gates is None:
            return None
        return {n: [(t.cpu().numpy(), upper) for t, upper in calls] for n, calls in self._gates.items()}

    def start_training(self, lr, momentum):
        self.opt = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad], lr=lr, momentum=momentum)

    def train_step(self, x, targets, gates=None):
        parts = self._pass(x, targets, gates)
        self.opt.step()
        return _floats(parts)


class OnnxSide:
    """A PyTorch model exported to ONNX (opset 17, dynamic batch) and run by ONNX Runtime (CPU
    provider): inference only. :meth:`load` loads the weights into the PyTorch copy; the next
    :meth:`forward` re-exports."""

    def __init__(self, label: str, model: torch.nn.Module, image_size: int):
        self.label, self.model, self.image_size = label, model, image_size
        self.names, self.session, self._dir = output_names(model), None, tempfile.TemporaryDirectory()

    def parameters(self):
        return None

    def state(self):
        return TorchSide.state(self)

    def load(self, state):
        self.session = None
        return TorchSide.load(self, state)

    def forward(self, x):
        from mtbench.profiling.runtimes import export_onnx, onnx_session
        if self.session is None:
            path = export_onnx(self.model, self.image_size, 1, Path(self._dir.name) / "model.onnx", dynamic_batch=True)
            self.session = onnx_session(path, torch.device("cpu"), torch.get_num_threads())
        return dict(zip(self.names, self.session.run(None, {"images": x})))

    def loss_and_grads(self, x, targets, gates=None):
        return None

    def start_training(self, lr, momentum):
        pass

    def train_step(self, x, targets, gates=None):
        return None


# --------------------------------------------------------------------------- specs and sides

@dataclass(frozen=True)
class ImplSpec:
    """A parsed side spec: ``framework`` (``torch``, ``runtime`` or a plugin framework), ``name``, ``params``."""

    framework: str
    name: str
    params: dict[str, Any]
    positional: tuple[Any, ...] = ()

    @property
    def text(self) -> str:
        inner = ",".join([*map(str, self.positional), *(f"{k}={v}" for k, v in self.params.items())])
        return f"{self.framework}:{self.name}" + (f"[{inner}]" if inner else "")


def parse_spec(text: str) -> ImplSpec:
    """Parse ``[FRAMEWORK:]NAME[[params]]`` (module docstring).

    :raises ParityError: not of that form, or a runtime other than ``onnx`` / ``compile``.
    """
    m = _SPEC.match(text.strip())
    if not m:
        raise ParityError(f"parity spec {text!r}: expected NAME, NAME[params], FRAMEWORK:NAME[params] or "
                          f"runtime:{'|'.join(RUNTIMES)}")
    fw, name = m["fw"] or "torch", m["name"]
    if fw == "torch" and name in RUNTIMES and not m["params"]:
        fw = "runtime"
    if fw == "runtime" and name not in RUNTIMES:
        raise ParityError(f"parity spec {text!r}: unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")
    params, positional = {}, []
    for part in filter(None, (p.strip() for p in (m["params"] or "").split(","))):
        key, eq, value = part.partition("=")
        if eq:
            params[key.strip()] = yaml.safe_load(value)
        else:
            positional.append(yaml.safe_load(part))
    return ImplSpec(fw, name, params, tuple(positional))


def bind_positional(spec: ImplSpec, factory, reserved: set[str]) -> dict[str, Any]:
    """``spec.params`` with its bare values bound, in order, to ``factory``'s parameters that
    are neither in ``reserved`` nor given by name.

    :raises ParityError: more bare values than such parameters.
    """
    free = [n for n, p in inspect.signature(factory).parameters.items()
            if n not in reserved and n not in spec.params and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if len(spec.positional) > len(free):
        raise ParityError(f"parity spec {spec.text!r}: {len(spec.positional)} bare value(s) but only "
                          f"{len(free)} free parameter(s): {', '.join(free) or '(none)'}")
    return {**dict(zip(free, spec.positional)), **spec.params}


def frameworks() -> dict[str, Any]:
    """The framework adapters installed under entry-point group ``mtbench.frameworks`` (name -> entry point)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


@dataclass
class Setup:
    """What both sides share: the task's classes, the loss (registry name + params), the input size."""

    registry: Any
    task_info: Any
    loss: str = "varifocal"
    loss_params: dict = field(default_factory=dict)
    image_size: int = 128
    seed: int = 0


def build_side(spec: ImplSpec, setup: Setup, reference: Side | None = None, adapters: dict | None = None) -> Side:
    """The :class:`Side` of ``spec``; runtimes wrap a copy of ``reference``'s PyTorch model (and its
    loss). A ``loss=NAME`` in the spec's brackets is the side's loss instead of ``setup.loss``
    (``gold-yolo[n,loss=focal]``; a broken assigner registered as a loss, in the tests).

    :raises ParityError: a runtime without a PyTorch reference, an unknown framework.
    :raises PluginError: an unknown model or loss (the registry's message).
    """
    reg, info = setup.registry, setup.task_info
    loss_name = spec.params.get("loss", setup.loss)
    spec = replace(spec, params={k: v for k, v in spec.params.items() if k != "loss"})
    if spec.framework == "runtime":
        if not isinstance(reference, TorchSide):
            raise ParityError(f"runtime:{spec.name} runs side A's PyTorch model: side A must be a PyTorch model spec")
        model = copy.deepcopy(reference.model)
        if spec.name == "onnx":
            return OnnxSide(spec.text, model, setup.image_size)
        return TorchSide(spec.text, model, reference.loss, info.task, compiled=True)
    if spec.framework == "torch":
        from mtbench.plugins import RESERVED
        params = bind_positional(spec, reg.get("model", spec.name).factory, RESERVED["model"])
        torch.manual_seed(setup.seed)
        model = reg.create_model(spec.name, tasks={info.task: info}, level="P3", **params)
        loss = reg.create_loss(reg.loss_key(info.task, loss_name), info, **setup.loss_params)
        return TorchSide(spec.text, model, loss, info.task)
    adapters = frameworks() if adapters is None else adapters
    if spec.framework not in adapters:
        raise ParityError(f"parity spec {spec.text!r}: no framework {spec.framework!r} installed (entry-point "
                          f"group {ENTRY_POINT_GROUP}; installed: {', '.join(sorted(adapters)) or 'none'}); "
                          f"e.g. pip install -e plugins/mtbench-{spec.framework}")
    factory = adapters[spec.framework]
    factory = factory.load() if hasattr(factory, "load") else factory
    try:
        return factory(spec, num_classes=info.num_classes, loss=loss_name, loss_params=setup.loss_params)
    except MtbenchError:
        raise
    except Exception as exc:
        raise PluginError(f"framework {spec.framework!r} could not build {spec.text!r}: "
                          f"{type(exc).__name__}: {exc}") from exc


def open_dataset(registry, dataset: ImplSpec, task: str, image_size: int):
    """The training split of ``dataset`` (a registered dataset spec, e.g. ``coco[path=mini_coco_det]``)
    for ``task``, files under ``$MTBENCH_DATA``."""
    root = os.environ.get("MTBENCH_DATA")
    return registry.create("dataset", dataset.name, task=task, split="train", root=Path(root) if root else None,
                           image_size=image_size, **dataset.params)


def load_batches(ds, batch_size: int, count: int, seed: int) -> list[tuple[np.ndarray, Targets]]:
    """``count`` batches of dataset ``ds`` shuffled with ``seed`` (cycled when it is shorter);
    images float32 ``(B, 3, S, S)`` in [0, 1], targets as :func:`numpy_targets`."""
    from torch.utils.data import DataLoader

    from mtbench.data.base import collate
    gen = torch.Generator().manual_seed(seed)
    out: list[tuple[np.ndarray, Targets]] = []
    while len(out) < count:
        loader = DataLoader(ds, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=gen,
                            drop_last=len(ds) >= batch_size)
        for images, targets in loader:
            out.append((images.numpy(), numpy_targets(targets)))
            if len(out) == count:
                break
    return out
