"""Backbone names checked before anything trains (``mtbench validate`` and ``run``).

An architecture whose factory takes a ``backbone`` parameter builds it with timm
(:class:`mtbench.models.blocks.Backbone`) unless the value is the factory's own default (a
model may name its own backbone there, e.g. ``yolo-mtl``'s ``csp``). A name timm does not know
(``timm.is_model``, which accepts pretrained tags such as ``resnet18.a1_in1k``) would fail the
cell only when it starts; here it is one line with the file, line and the closest timm name
(``timm.list_models``).
"""

from __future__ import annotations

import inspect

from mtbench.errors import SuiteError, did_you_mean, fail


def check_backbones(loaded, registry) -> None:
    """Check every ``matrix.architecture[i].params.backbone`` of a loaded suite
    (:class:`mtbench.suite.LoadedSuite`) against timm's model list.

    :raises SuiteError: each name timm does not know (file:line, the architecture, a suggestion).
    """
    import timm

    problems = []
    for i, entry in enumerate(loaded.suite.matrix.architecture):
        if isinstance(entry, str) or not isinstance(entry.params.get("backbone"), str):
            continue
        name = entry.params["backbone"]
        takes = inspect.signature(registry.get("model", entry.name).factory).parameters
        if "backbone" not in takes or name == takes["backbone"].default or timm.is_model(name):
            continue
        problems.append(f"  {loaded.where('matrix', 'architecture', i, 'params', 'backbone')}: backbone {name!r} "
                        f"of {entry.name!r} is not a timm model.{did_you_mean(name, timm.list_models())} "
                        f"(list them: python -c \"import timm; print(timm.list_models('*{name[:4]}*'))\")")
    fail(f"invalid suite {loaded.path}:", problems, SuiteError)
