"""Reference figures: the parameter count and FLOPs an architecture claims, and what it measures.

Two sources, both compared by the ``reference-figures`` diagnostic
(:mod:`mtbench.diagnostics.reference`):

- **the suite**: an architecture entry may state ``expect: {params_m, flops_g, tolerance}``
  (millions of parameters, GFLOPs per image, relative tolerance). It is the suite author's
  claim about *this* cell, so it is compared with the cell's own profile (deployed model,
  the suite's image size and classes).
- **the plugin**: a model factory may offer ``reference_figures(**params) -> list[dict]``
  (a classmethod of the model class, or an attribute of the factory function), each entry
  ``{"source": str, "params_m": float, "flops_g": float, "tolerance": float,
  "conditions": {"image_size": int, "tasks": {task: num_classes}, "level"?: str}}``: the
  figures a paper reports under its own conditions (Gold-YOLO n: 5.6 M / 12.1 GFLOPs at
  640 px, 80 COCO classes, det only). Either figure may be omitted; return ``[]`` for
  parameters the paper did not report. A reference applies to the cell directly when the
  cell matches its conditions (image size, tasks and classes); otherwise the same
  architecture with the same parameters is rebuilt at the reference's conditions and
  measured there (params and FLOPs only; deployed, i.e. ``fuse()``-d when it can be), so
  a port is checked against its paper whatever the suite's image size and classes.
"""

from __future__ import annotations

import copy

import torch

from mtbench.data.base import TaskInfo
from mtbench.profiling.complexity import count_flops, count_params

FIGURES = ("params_m", "flops_g")


def plugin_references(factory, params: dict) -> list[dict]:
    """The factory's own reference figures for ``params`` (``[]`` when it has none)."""
    fn = getattr(factory, "reference_figures", None)
    return list(fn(**params)) if callable(fn) else []


def measure_at(factory, params: dict, conditions: dict, level: str) -> dict[str, float]:
    """``{"params_m", "flops_g"}`` of ``factory(**params)`` built at ``conditions`` (CPU, deployed)."""
    tasks = {t: TaskInfo(t, n, tuple(str(i) for i in range(n))) for t, n in conditions["tasks"].items()}
    with torch.random.fork_rng():  # building and measuring leave the cell's random state alone
        model = factory(tasks=tasks, level=conditions.get("level", level), **params)
        if hasattr(model, "fuse"):
            model = copy.deepcopy(model).fuse()
        flops = count_flops(model, conditions["image_size"])
    return {"params_m": count_params(model)["params"] / 1e6, "flops_g": flops}


def _matches(conditions: dict, image_size: int, tasks: dict[str, int], level: str) -> bool:
    return (conditions.get("image_size") == image_size and dict(conditions.get("tasks", {})) == tasks
            and conditions.get("level", level) == level)


def reference_entries(config: dict, factory, tasks: dict[str, int], profile: dict) -> list[dict]:
    """Expected vs measured figures of one cell, for the ``reference-figures`` check.

    :param config: the cell's resolved config (``expect``, ``architecture``, ``level``, ``fixed``).
    :param factory: the architecture's registered factory.
    :param tasks: task -> number of classes of the cell.
    :param profile: the cell's profile (``params_m``, ``flops_g`` of the deployed model).
    :return: ``[{"source", "expected": {figure: value}, "measured": {figure: value},
        "tolerance", "conditions"}]``; ``conditions`` is ``"cell"`` when measured on the cell.
    """
    own = {k: profile.get(k) for k in FIGURES}
    out = []
    expect = config.get("expect")
    if expect:
        out.append({"source": "suite (architecture expect)", "conditions": "cell", "tolerance": expect["tolerance"],
                    "expected": {k: expect[k] for k in FIGURES if expect.get(k) is not None}, "measured": own})
    arch, level, size = config["architecture"], config["level"], config["fixed"]["image_size"]
    for ref in plugin_references(factory, arch["params"]):
        cond = ref["conditions"]
        at_cell = _matches(cond, size, tasks, level)
        measured = own if at_cell else measure_at(factory, arch["params"], cond, level)
        out.append({"source": ref["source"], "conditions": "cell" if at_cell else cond,
                    "tolerance": ref.get("tolerance", 0.01),
                    "expected": {k: ref[k] for k in FIGURES if ref.get(k) is not None}, "measured": measured})
    return out
