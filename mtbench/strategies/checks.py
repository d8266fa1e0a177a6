"""Conformance checks for strategies, importable so a plugin's CI runs the same ones as ours.

- :func:`owned_tensors`: every tensor a strategy holds (attributes, containers, ``nn.Module``
  parameters and buffers, optimiser state), by attribute path.
- :func:`state_mismatches`: those not on the context's device, or floating-point but not
  in its dtype: a learned weight created on the CPU and multiplied with CUDA losses fails
  with "Expected all tensors to be on the same device", one in float32 beside a float64
  model silently rounds.
- :func:`toy_context`: a :class:`~mtbench.strategies.base.TrainContext` over a tiny shared
  trunk with one linear head per task, on any device and dtype (``meta`` included), so a
  strategy can be set up or trained for a few steps without data or a real model.

``tests/test_strategy_device.py`` runs them on every registered strategy.
"""

from __future__ import annotations

import types

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mtbench.strategies.base import TrainContext

_SKIP = (TrainContext, DataLoader, Dataset, torch.Generator, type, types.FunctionType, types.MethodType,
         types.BuiltinFunctionType, types.ModuleType)


def owned_tensors(obj, path: str = "strategy") -> dict[str, torch.Tensor]:
    """Every tensor reachable from ``obj`` through attributes, dicts, lists, tuples, modules
    (parameters, buffers) and optimisers (state, but for the CPU ``step`` counter torch keeps
    there by design), keyed by a readable path; the training
    context, data loaders and datasets are not the strategy's and are not entered."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def walk(o, p: str) -> None:
        if isinstance(o, torch.Tensor):
            out.setdefault(p, o)
            return
        if id(o) in seen or isinstance(o, _SKIP):
            return
        seen.add(id(o))
        if isinstance(o, torch.optim.Optimizer):
            for i, st in enumerate(o.state.values()):  # "step" is a CPU float32 scalar by torch's design
                walk({k: v for k, v in st.items() if k != "step"}, f"{p}.state[{i}]")
            walk(o.param_groups, f"{p}.param_groups")
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(v, f"{p}[{k!r}]")
        elif isinstance(o, (list, tuple, set)):
            for i, v in enumerate(o):
                walk(v, f"{p}[{i}]")
        elif hasattr(o, "__dict__"):
            for k, v in vars(o).items():
                walk(v, f"{p}.{k}")

    walk(obj, path)
    return out


def state_mismatches(strategy, ctx: TrainContext) -> list[str]:
    """Tensors of ``strategy`` not on ``ctx.device`` or (floating point) not in ``ctx.dtype``;
    ``[]`` when all conform. Each entry names the attribute path, device and dtype.

    A strategy may declare ``host_state``: attribute-name endings of tensors a library keeps on
    the CPU by design and only ever combines with CPU tensors (torchjd's GradVac runs its
    ``(T, T)`` loop on the CPU); those are exempt from the device check, not the dtype check.
    """
    bad = []
    host = tuple(getattr(strategy, "host_state", ()))
    for path, t in owned_tensors(strategy).items():
        on_host = bool(host) and path.endswith(host) and t.device.type == "cpu"
        wrong_device = not on_host and (t.device.type != ctx.device.type or (
            ctx.device.index is not None and t.device.index != ctx.device.index))
        if wrong_device or (t.is_floating_point() and t.dtype != ctx.dtype):
            bad.append(f"{path}: {t.device} {t.dtype} (context: {ctx.device} {ctx.dtype})")
    return bad


class ToyModel(nn.Module):
    """Shared 2-layer trunk (``in_dim`` -> 16 -> 16) + one ``Linear(16, out_dim)`` head per task.

    Input ``(B, in_dim)``; returns ``{task: (B, out_dim)}``; ``strides`` are 1 (no feature map).
    """

    def __init__(self, tasks: tuple[str, ...], in_dim: int = 8, out_dim: int = 3):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(in_dim, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
        self.heads = nn.ModuleDict({t: nn.Linear(16, out_dim) for t in tasks})
        self.strides = {t: 1 for t in tasks}

    def forward(self, x):
        h = self.trunk(x)
        return {t: head(h) for t, head in self.heads.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk[2].parameters())


class ToyLoss(nn.Module):
    """Mean squared error + 0.1 (strictly positive, as log-based weightings need): ``{"total"}``."""

    def forward(self, raw, targets, stride=1):
        return {"total": (raw - targets).pow(2).mean() + 0.1}


def toy_context(tasks: tuple[str, ...] = ("det", "seg", "cls"), device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, steps: int = 3, batches: int = 2, seed: int = 0) -> TrainContext:
    """A training context over :class:`ToyModel` on ``device``/``dtype``: ``batches`` fixed
    ``(4, 8)`` batches per task (different inputs per task, as mtbench's tasks see different
    images), a ``steps``-step budget, AdamW at lr 0.01, no progress bar, no evaluation."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    device = torch.device(device)
    model = ToyModel(tuple(tasks)).to(device=device, dtype=dtype)
    data = {t: [(torch.randn(4, 8, generator=gen, dtype=dtype), torch.randn(4, 3, generator=gen, dtype=dtype))
                for _ in range(batches)] for t in tasks}
    fixed = {"budget": {"steps": steps, "epochs": None}, "grad_clip": None,
             "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9,
                           "backbone_lr_mult": 1.0, "schedule": "constant", "warmup_steps": 0}}
    return TrainContext(model=model, tasks=list(tasks), loaders=data, losses={t: ToyLoss() for t in tasks},
                        fixed=fixed, device=device, evaluate=lambda ts: {}, progress=lambda n, d: range(n), seed=seed)
