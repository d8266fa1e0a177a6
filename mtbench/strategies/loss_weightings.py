"""Loss weightings beyond DWA and uncertainty, through torchjd's scalarizers where it has them.

Each combines the task losses ``L`` ``(T,)`` into one scalar ``S`` (see
:mod:`mtbench.strategies.weighting`: the weight recorded per step is ``dS/dL_i`` as applied).

- ``rlw``: Random Loss Weighting (Lin et al., "Reasonable Effectiveness of Random Weighting:
  A Litmus Test for Multi-Task Learning", TMLR 2022, arXiv:2111.10603): ``S = sum_i w_i L_i``,
  ``w = softmax(z)``, ``z ~ N(0, I)`` drawn afresh each step from a generator seeded from the
  cell's seed (torchjd ``scalarization.Random``; LibMTL's ``RLW`` with ``dist=Normal``). No parameters.
- ``gls``: Geometric Loss Strategy (Chennupati et al., "MultiNet++", CVPR Workshops 2019):
  ``S = (prod_i L_i)^(1/T)`` (torchjd ``GeometricMean``), so ``w_i = S / (T L_i)``. No parameters.
- ``imtl-l``: the loss-balancing half of IMTL (Liu et al., "Towards Impartial Multi-task
  Learning", ICLR 2021): ``S = sum_i exp(s_i) L_i - s_i``, ``s_i`` learned (start 0) by their
  own Adam (torchjd ``IMTLL``). Parameter ``lr`` (default: the suite's learning rate).
- ``famo``: Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023):
  ``S = c sum_i z_i log(L_i + eps)``, ``z = softmax(xi)``, ``c = 1 / sum_i z_i / (L_i + eps)``
  (constant), so ``w_i = c z_i / (L_i + eps)``; after the optimiser step the losses are
  recomputed on the same batches (one extra forward per task, no gradient, model in train
  mode as in the official code) and ``xi`` takes an Adam step along the change of
  ``log L`` (torchjd ``FAMO``, adapted from the official code). Parameters ``lr`` 0.025,
  ``weight_decay`` 1e-3 (the paper's Algorithm 2 and LibMTL). Losses must stay > 0.
"""

from __future__ import annotations

import inspect

import torch

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.joint import drawing_from
from mtbench.strategies.weighting import LossWeighting


class Scalarized(LossWeighting):
    """A torchjd scalarizer as a loss weighting.

    :param scalarizer: torchjd ``scalarization`` class name.
    :param learned: whether the scalarizer's parameters are learned by this strategy's Adam.
    :param weight_lr: that Adam's learning rate (default: the suite's).
    :param kwargs: the scalarizer's own arguments (besides ``shape``).
    """

    def __init__(self, scalarizer: str, learned: bool = False, weight_lr: float | None = None, **kwargs):
        self.scalarizer_name, self.learned, self.weight_lr, self.kwargs = scalarizer, learned, weight_lr, kwargs

    def init_state(self, ctx):
        import torchjd.scalarization as sc  # imported on use: `import mtbench` stays light
        cls = getattr(sc, self.scalarizer_name)
        args = (len(self.tasks),) if "shape" in inspect.signature(cls).parameters else ()
        self.scalarizer = cls(*args, **self.kwargs).to(device=ctx.device, dtype=ctx.dtype)
        self.cpu_gen, self.device_gen = ctx.generator(device=torch.device("cpu")), ctx.generator()

    def own_parameters(self):
        return list(self.scalarizer.parameters()) if self.learned else []

    def scalarize(self, losses, step):
        with drawing_from(self.cpu_gen, self.device_gen):
            return self.scalarizer(losses)


def rlw() -> Scalarized:
    """``rlw``: Random Loss Weighting (Lin et al., TMLR 2022, arXiv:2111.10603); softmax of
    standard normal draws each step, from the cell's seed. No parameters."""
    return Scalarized("Random")


def gls() -> Scalarized:
    """``gls``: Geometric Loss Strategy (Chennupati et al., CVPR Workshops 2019), the geometric
    mean of the task losses. No parameters."""
    return Scalarized("GeometricMean")


def imtl_l(lr: float | None = None) -> Scalarized:
    """``imtl-l``: IMTL's loss balance (Liu et al., ICLR 2021), ``sum exp(s_i) L_i - s_i``.

    :param lr: Adam learning rate of the ``s_i`` (default: the suite's learning rate).
    """
    return Scalarized("IMTLL", learned=True, weight_lr=lr)


for _make in (rlw, gls, imtl_l):  # factories of a LossWeighting: fp16 loss scaling is correct (suite.check_precision)
    _make.grad_scaling = True


class FAMO(Scalarized):
    """``famo``: Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023).

    :param lr: Adam learning rate of the task logits (default 0.025, the paper's).
    :param weight_decay: their weight decay (default 1e-3, the paper's Algorithm 2 and LibMTL).
    """

    def __init__(self, lr: float = 0.025, weight_decay: float = 1e-3):
        super().__init__("FAMO", lr=lr, weight_decay=weight_decay)

    def after_step(self, ctx, batches, step):
        with torch.no_grad():
            self.scalarizer.update(torch.stack([ctx.task_loss(t, batches[t])["total"] for t in self.tasks]))


@hookimpl
def mtbench_register_strategies():
    return [
        Spec("strategy", "rlw", rlw, "Random Loss Weighting (Lin et al., TMLR 2022) via torchjd"),
        Spec("strategy", "gls", gls, "Geometric Loss Strategy (Chennupati et al., CVPRW 2019) via torchjd"),
        Spec("strategy", "imtl-l", imtl_l, "IMTL-L loss balance (Liu et al., ICLR 2021) via torchjd"),
        Spec("strategy", "famo", FAMO, "FAMO (Liu et al., NeurIPS 2023) via torchjd; lr=0.025, weight_decay=1e-3"),
    ]
