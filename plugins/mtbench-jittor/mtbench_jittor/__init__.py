"""``jittor``: Jittor implementations for ``mtbench parity`` (entry-point group ``mtbench.frameworks``).

``mtbench parity gold-yolo[n] jittor:gold-yolo[n]`` compares the PyTorch plugin
(plugins/mtbench-gold-yolo) with its Jittor port (:mod:`mtbench_jittor.gold_yolo`), trained
with the Jittor port of ``det/varifocal`` (:mod:`mtbench_jittor.det_loss`) and
``jt.optim.SGD``, one :meth:`JittorSide.train_step` at a time.

Weight name mapping (PyTorch ``state_dict`` <-> Jittor parameters): the port mirrors the
PyTorch module tree attribute for attribute, and Jittor names a parameter, as PyTorch does,
by the dotted path of attributes and ``Sequential`` / ``ModuleList`` indices, so the mapping
is the identity on every name; PyTorch's integer ``num_batches_tracked`` buffers have no
Jittor counterpart and are not transferred (:func:`to_torch_name` states the rule, and
:meth:`JittorSide.load` reports every name or shape that does not fit). Jittor's trainable
parameters are its Vars that are not ``stop_grad`` (BatchNorm statistics and the input
normalisation are ``stop_grad``, as they are buffers in PyTorch). Activation gates
(:mod:`mtbench.parity.gates`) are recorded on Jittor's ``ReLU`` / ``ReLU6`` modules, named as
PyTorch's; Jittor's ``relu`` passes the gradient where ``x > 0`` and its max pooling sends a
window's gradient to the first maximum in scan order, as PyTorch's do (tests).

Environment: importing Jittor is deferred to the first side built (``import mtbench_jittor``
has no side effects). Unless set already, ``nvcc_path=""`` (CPU), ``use_mkl=0`` (its oneDNN
download is not reachable offline) and ``log_silent=1`` are set first. Jittor 1.3.x needs
numpy < 2 (as its metadata says): with numpy 2 it silently reads Python floats and float64
arrays as garbage (``jt.zeros(3)`` returns uninitialised memory; measured with numpy 2.4.6),
so a side refuses to build under numpy 2.
"""

from __future__ import annotations

import os

import numpy as np

from mtbench.parity.gates import record_gates
from mtbench.parity.sides import ImplSpec, bind_positional, transfer

MODELS = ("gold-yolo",)
LOSSES = ("varifocal",)


def to_torch_name(jittor_name: str) -> str:
    """The PyTorch ``state_dict`` name of a Jittor parameter of the port: the same dotted path."""
    return jittor_name


def import_jittor():
    """Import Jittor for CPU use (module docstring); returns the module.

    :raises RuntimeError: numpy >= 2. :raises ImportError: Jittor is not installed.
    """
    for key, value in (("nvcc_path", ""), ("use_mkl", "0"), ("log_silent", "1")):
        os.environ.setdefault(key, value)
    if int(np.__version__.split(".")[0]) >= 2:
        raise RuntimeError(f"Jittor 1.3.x computes wrong numbers with numpy {np.__version__} (it needs numpy < 2); "
                           f"run the Jittor side in an environment with numpy<2 (README, 'Parity')")
    import jittor
    return jittor


class JittorSide:
    """A Jittor model and loss behind the :class:`mtbench.parity.sides.Side` contract."""

    def __init__(self, label: str, model, loss, strides: list[int]):
        import jittor as jt
        self.jt, self.label, self.model, self.loss, self.strides = jt, label, model, loss, strides

    def _vars(self) -> dict:
        return {to_torch_name(n): v for n, v in self.model.named_parameters()}

    def _trainable(self) -> dict:
        return {n: v for n, v in self._vars().items() if not v.is_stop_grad()}

    def parameters(self):
        return {n: tuple(v.shape) for n, v in self._trainable().items()}

    def state(self):
        return {n: v.numpy().astype(np.float32) for n, v in self._vars().items()}

    def load(self, state):
        own = self._vars()
        out = transfer({n: v.shape for n, v in own.items()}, state,
                       lambda n, a: own[n].update(self.jt.array(np.ascontiguousarray(a, np.float32))))
        self.jt.sync_all()
        return out

    def _names(self):
        from mtbench.models.dense import level_name
        return [f"det/{level_name(s)}" for s in self.strides]

    def forward(self, x):
        self.model.eval()
        with self.jt.no_grad():
            out = self.model(self.jt.array(x))
            return {n: o.numpy() for n, o in zip(self._names(), out)}

    def _step(self, x, targets):
        parts, counts = self.loss(self.model(self.jt.array(x)), targets, self.strides)
        return parts, counts

    @staticmethod
    def _floats(parts, counts):
        return {**{k: float(v.item()) for k, v in parts.items()}, **counts}

    def _pass(self, x, targets, gates):
        """Train-mode loss components and assigner counts, activation gates recorded (and
        imposed where ``gates`` says; a :data:`~mtbench.parity.gates.Force` reads an input's
        values, which runs the graph up to it)."""
        self.model.train()
        with record_gates(self.model.named_modules(), "execute", lambda v: v, self._impose, gates,
                          lambda v: v.numpy()) as rec:
            parts, counts = self._step(x, targets)
        self._gates = rec
        return parts, counts

    def loss_and_grads(self, x, targets, gates=None):
        parts, counts = self._pass(x, targets, gates)
        params = self._trainable()
        grads = self.jt.grad(parts["total"], list(params.values()))
        return self._floats(parts, counts), {n: g.numpy() for n, g in zip(params, grads)}

    _gates = None

    def gates(self):
        if self._gates is None:
            return None
        return {n: [(v.numpy(), upper) for v, upper in calls] for n, calls in self._gates.items()}

    def _impose(self, x, p, upper):
        """``x`` on piece 1, the constant of pieces 0 and 2 elsewhere (:func:`mtbench.parity.gates.pieces`)."""
        return self.jt.ternary(self.jt.array(p == 1), x, self.jt.array((p == 2).astype(np.float32) * (upper or 0.0)))

    def start_training(self, lr, momentum):
        self.opt = self.jt.optim.SGD(list(self._trainable().values()), lr=lr, momentum=momentum)

    def train_step(self, x, targets, gates=None):
        parts, counts = self._pass(x, targets, gates)
        self.opt.step(parts["total"])
        return self._floats(parts, counts)


def side(spec: ImplSpec, num_classes: int, loss: str = "varifocal", loss_params: dict | None = None) -> JittorSide:
    """The ``mtbench.frameworks`` entry point: a :class:`JittorSide` for ``spec`` (``gold-yolo[n]``).

    :raises ValueError: a model or loss that has no Jittor port, unknown parameters.
    :raises RuntimeError: numpy >= 2 (see the module docstring).
    """
    if spec.name not in MODELS:
        raise ValueError(f"no Jittor port of model {spec.name!r}; ported: {', '.join(MODELS)}")
    if loss.split("/")[-1] not in LOSSES:
        raise ValueError(f"no Jittor port of det loss {loss!r}; ported: {', '.join(LOSSES)}")
    import_jittor()
    from mtbench_jittor.det_loss import VarifocalLoss
    from mtbench_jittor.gold_yolo import GoldYOLO
    params = bind_positional(spec, GoldYOLO.__init__, {"self", "num_classes"})
    model = GoldYOLO(num_classes, **params)
    return JittorSide(spec.text, model, VarifocalLoss(num_classes, **(loss_params or {})), GoldYOLO.strides)
