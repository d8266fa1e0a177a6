"""Jacobian descent through torchjd: one strategy name per aggregator of the shared Jacobian.

torchjd (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv:2406.16232;
PyPI ``torchjd``) implements the gradient-combining family as *aggregators* of the Jacobian
``J`` ``(T, P)`` of the task losses. Each strategy here hands the shared parameters' Jacobian
to one of them (see :mod:`mtbench.strategies.aggregation` for how ``J`` is formed, how the task
heads are trained and which weights are recorded); every random draw an aggregator makes
(GradDrop's masks, GradVac's task order) comes from generators seeded from the cell's seed.

**One name per method** (``strategy: cagrad`` / ``{name: cagrad, params: {c: 0.4}}``), not one
``jd`` strategy with an ``aggregator`` parameter, because a suite's strategy axis is what its
table rows are labelled by and compared across, and because each method then has its own
documented parameters with their defaults that the suite validator checks (a parameter of
one aggregator given to another is an error naming the allowed ones, not a silently
ignored key).

| name | torchjd | paper | parameters (defaults) |
|---|---|---|---|
| ``upgrad`` | ``UPGrad`` | Quinton & Rey, arXiv:2406.16232, 2024 | ``pref_vector`` (null: mean) |
| ``mgda`` | ``MGDA`` | Desideri, C. R. Math. 2012; Sener & Koltun, NeurIPS 2018 (Frank-Wolfe) | ``epsilon`` 0.001, ``max_iters`` 100 |
| ``dualproj`` | ``DualProj`` | Quinton & Rey, arXiv:2406.16232, 2024 | ``pref_vector`` (null: mean) |
| ``imtl-g`` | ``IMTLG`` | Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021 | none |
| ``cagrad`` | ``CAGrad`` | Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021 | ``c`` 0.5, ``norm_eps`` 1e-4 |
| ``nash-mtl`` | ``NashMTL`` | Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022 | ``max_norm`` 1.0, ``update_weights_every`` 1, ``optim_niter`` 20 |
| ``aligned-mtl`` | ``AlignedMTL`` | Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023 | ``pref_vector`` (null), ``scale_mode`` min |
| ``graddrop`` | ``GradDrop`` | Chen et al., "Just Pick a Sign: ... Gradient Sign Dropout", NeurIPS 2020 | ``leak`` (null: 0 for every task) |
| ``gradvac`` | ``GradVac`` | Wang et al., "Gradient Vaccine", ICLR 2021 | ``beta`` 0.5, ``eps`` 1e-8 |
| ``fairgrad`` | ``FairGrad`` | Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024 | ``alpha`` 1.0, ``max_iters`` (null) |
| ``config`` | ``ConFIG`` | Liu, Chu & Thuerey, "ConFIG: Towards Conflict-free Training of PINNs", ICLR 2025 | ``pref_vector`` (null) |

Vector parameters (``pref_vector``, ``leak``) are lists with one float per task, in the
suite's task order. GradDrop applies its sign dropout to the shared parameters' gradients
(the paper applies it at one activation layer; mtbench's tasks see different images in a
step, so there is no shared activation to apply it to).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from mtbench.plugins import Spec, hookimpl
from mtbench.strategies.aggregation import GradientAggregation
from mtbench.strategies.joint import drawing_from


@dataclass(frozen=True)
class Method:
    """One torchjd-backed strategy: its name, torchjd class, paper and parameters with defaults."""

    name: str
    aggregator: str
    paper: str
    params: dict = field(default_factory=dict)


METHODS = (
    Method("upgrad", "UPGrad", "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, arXiv:2406.16232, 2024",
           {"pref_vector": None}),
    Method("mgda", "MGDA", "Desideri, C. R. Math. 2012; Sener & Koltun, NeurIPS 2018",
           {"epsilon": 0.001, "max_iters": 100}),
    Method("dualproj", "DualProj", "Quinton & Rey, arXiv:2406.16232, 2024", {"pref_vector": None}),
    Method("imtl-g", "IMTLG", "Liu et al., Towards Impartial Multi-task Learning, ICLR 2021"),
    Method("cagrad", "CAGrad", "Liu et al., Conflict-Averse Gradient Descent for Multi-task Learning, NeurIPS 2021",
           {"c": 0.5, "norm_eps": 1e-4}),
    Method("nash-mtl", "NashMTL", "Navon et al., Multi-Task Learning as a Bargaining Game, ICML 2022",
           {"max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20}),
    Method("aligned-mtl", "AlignedMTL", "Senushkin et al., Independent Component Alignment for MTL, CVPR 2023",
           {"pref_vector": None, "scale_mode": "min"}),
    Method("graddrop", "GradDrop", "Chen et al., Just Pick a Sign (Gradient Sign Dropout), NeurIPS 2020",
           {"leak": None}),
    Method("gradvac", "GradVac", "Wang et al., Gradient Vaccine, ICLR 2021", {"beta": 0.5, "eps": 1e-8}),
    Method("fairgrad", "FairGrad", "Ban & Ji, Fair Resource Allocation in Multi-Task Learning, ICML 2024",
           {"alpha": 1.0, "max_iters": None}),
    Method("config", "ConFIG", "Liu, Chu & Thuerey, ConFIG, ICLR 2025", {"pref_vector": None}),
)


class JacobianDescent(GradientAggregation):
    """The shared Jacobian aggregated by a torchjd aggregator (see module docstring).

    :param method: which :class:`Method`.
    :param params: the aggregator's parameters (the method's defaults, overridden by the suite).
    """

    host_state = ("['_phi_t']",)  # torchjd's GradVac keeps its (T, T) cosine EMA on the CPU by design

    def __init__(self, method: Method, **params):
        self.method, self.params = method, {**method.params, **params}

    def init_state(self, ctx):
        import torchjd.aggregation as agg  # imported on use: `import mtbench` stays light
        cls = getattr(agg, self.method.aggregator)
        kwargs = {k: torch.tensor(v, device=ctx.device, dtype=ctx.dtype) if isinstance(v, (list, tuple)) else v
                  for k, v in self.params.items() if v is not None}
        if "n_tasks" in inspect.signature(cls).parameters:
            kwargs["n_tasks"] = len(self.tasks)
        self.aggregator = cls(**kwargs).to(device=ctx.device, dtype=ctx.dtype)
        # torchjd's WeightedAggregator is exactly ``weighting(J) @ J``; another aggregator may have a
        # ``weighting`` that is only one ingredient (ConFIG's is its preference vector's sum weighting)
        self.weighted = isinstance(self.aggregator, agg.WeightedAggregator)

    def combine(self, J, step):
        with drawing_from(self.cpu_gen, self.device_gen):
            if not self.weighted:  # GradDrop, ConFIG: no weights; least squares is recorded
                return self.aggregator(J), None
            w = self.aggregator.weighting(J)
            return w @ J, w


def _factory(method: Method):
    """A factory ``(**params) -> JacobianDescent`` whose signature lists the method's parameters
    (the suite validator reads it) and whose docstring gives its paper and defaults."""

    def make(**params) -> JacobianDescent:
        return JacobianDescent(method, **params)

    make.__signature__ = inspect.Signature(
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in method.params.items()])
    defaults = ", ".join(f"{k}={v!r}" for k, v in method.params.items()) or "none"
    make.__name__ = method.name.replace("-", "_")
    make.__doc__ = (f"``{method.name}``: torchjd's ``{method.aggregator}`` over the shared parameters' Jacobian.\n\n"
                    f"Paper: {method.paper}.\n\nParameters (defaults): {defaults}.")
    return make


@hookimpl
def mtbench_register_strategies():
    return [Spec("strategy", m.name, _factory(m), f"{m.aggregator} via torchjd ({m.paper})") for m in METHODS]
