"""LibMTL 1.1.5's weighting methods, loaded for comparison (tests/test_strategy_parity.py,
benchmarks/strategies_step.py).

LibMTL 1.1.5's package ``__init__`` imports ``torchvision.models.utils`` (removed from
torchvision), so ``import LibMTL`` fails: its weighting modules are loaded by path under a
stub package (its code, unchanged). :func:`bind` attaches one to a model as LibMTL's trainer
does (``rep_grad=False``); its shared-parameter ``zero_grad`` keeps zero tensors, as torch 2's
default (``None``) breaks LibMTL's ``_reset_grad``, which writes into ``param.grad.data``.
LibMTL creates its gradient buffers with torch's default dtype.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Callable

import torch


def libmtl_weighting(name: str) -> types.ModuleType:
    """The module ``LibMTL/weighting/<name>.py`` (its class is ``module.<name>``)."""
    root = Path(importlib.util.find_spec("LibMTL").submodule_search_locations[0]) / "weighting"
    stubs = ("LibMTL", "LibMTL.weighting", "LibMTL.weighting.abstract_weighting")
    saved = {k: sys.modules.get(k) for k in stubs}
    try:
        for pkg in stubs[:2]:
            sys.modules[pkg] = types.ModuleType(pkg)
        mods = {}
        for mod in ("abstract_weighting", name):
            spec = importlib.util.spec_from_file_location(f"LibMTL.weighting.{mod}", root / f"{mod}.py")
            mods[mod] = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mods[mod]
            spec.loader.exec_module(mods[mod])
        return mods[name]
    finally:
        for k, v in saved.items():
            sys.modules.pop(k, None) if v is None else sys.modules.__setitem__(k, v)
        sys.modules.pop(f"LibMTL.weighting.{name}", None)


def bind(name: str, model: torch.nn.Module, tasks, shared: Callable[[], list], device=None):
    """LibMTL's ``name`` weighting bound to ``model``; ``shared()`` lists the parameters LibMTL
    treats as shared. Returns ``(weighting, its module)``; call ``weighting.backward(losses, **kw)``."""
    module = libmtl_weighting(name)

    class Peer(getattr(module, name)):
        def __init__(self):
            super().__init__()
            self.net, self.task_num, self.task_name = model, len(tasks), list(tasks)
            self.device, self.rep_grad, self.epoch = device or torch.device("cpu"), False, 0

        def get_share_params(self):
            return iter(shared())

        def zero_grad_share_params(self):
            for p in shared():
                if p.grad is not None:
                    p.grad.detach_().zero_()

    peer = Peer()
    peer.init_param()
    return peer, module
