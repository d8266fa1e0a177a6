"""Command-line overrides of suite fields: ``--set KEY=VALUE`` (repeatable, on ``run`` and
``validate``), the habit of Hydra/OmegaConf ``key=value``, Ultralytics ``epochs=3`` and
MMEngine ``--cfg-options``.

``KEY`` is a dotted path into the suite (``fixed.batch_size``, ``fixed.optimizer.lr``,
``tasks.det.params.num_images``, ``matrix.seed``); ``VALUE`` is read as YAML
(``yaml.safe_load``: ``2`` is an int, ``1e-3`` a float, ``[0, 1]`` a list, ``null`` None).
Two shorthands name the training length, because a budget holds exactly one of them:
``fixed.epochs=N`` and ``fixed.steps=N`` replace ``fixed.budget`` with ``{epochs: N}`` /
``{steps: N}``.

A key is checked against the suite schema (:class:`mtbench.suite.Suite`) before it is
applied: an unknown key is one error line naming it and the closest known key. The value is
then validated with the rest of the suite, and an error in it names the ``--set`` it came
from instead of a line of the file. The overrides are recorded in every cell's config
(``config["overrides"]``); they change a cell's hash exactly when they change its resolved,
hashed config (``fixed.*``, ``profile.*``, data, matrix), not when they change only how
results are summarised (``checks``, ``uncertainty``, ``delta_m``).
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from mtbench.errors import SuiteError, did_you_mean

#: shorthand key -> (the field it replaces, the key inside it)
SHORTHANDS = {"fixed.epochs": (("fixed", "budget"), "epochs"), "fixed.steps": (("fixed", "budget"), "steps")}


@dataclass(frozen=True)
class Override:
    """One ``--set KEY=VALUE``: ``text`` as typed, ``path`` the field it replaces, ``value``
    what it is replaced with (YAML-parsed)."""

    text: str
    path: tuple[str, ...]
    value: Any


def _models(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold directly (``X``, ``X | None``, ``Union[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _models(a)]
    return []


def _mapping_values(annotation) -> list[type[BaseModel]]:
    """The models a ``dict[K, V]`` field holds as values (``tasks: dict[TaskName, TaskData]``)."""
    if typing.get_origin(annotation) is dict:
        return _models(typing.get_args(annotation)[1])
    return []


def known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of ``model``'s fields, nested models included (``fixed.optimizer.lr``),
    and the shorthands: what an unknown key is matched against for a suggestion."""
    keys = list(SHORTHANDS) if not prefix else []
    for name, info in model.model_fields.items():
        keys.append(prefix + name)
        for sub in _models(info.annotation):
            keys += known_keys(sub, f"{prefix}{name}.")
        for sub in _mapping_values(info.annotation):
            keys += known_keys(sub, f"{prefix}{name}.<key>.")
    return keys


def _check_key(models: list[type[BaseModel]], path: tuple[str, ...], done: tuple[str, ...], text: str,
               known: list[str]) -> None:
    """Walk ``path`` through the schema (``done``: the part already walked); a mapping of
    models (``tasks``) takes any key and goes on in its value model; below a free-form field
    (a dict of parameters, a list, a plain value) anything goes and the later validation
    judges it.

    :raises SuiteError: a key the schema does not have, with the closest known key.
    """
    if not path:
        return
    fields = {name: info for m in models for name, info in m.model_fields.items()}
    key = ".".join((*done, *path))
    if path[0] not in fields:
        where = ".".join(done) or "the suite"
        raise SuiteError(f"--set {text}: unknown key {key!r} (no field {path[0]!r} in {where})."
                         f"{did_you_mean(key, known)}")
    ann, rest = fields[path[0]].annotation, path[1:]
    if _models(ann):
        _check_key(_models(ann), rest, (*done, path[0]), text, known)
    elif _mapping_values(ann) and rest:
        _check_key(_mapping_values(ann), rest[1:], (*done, path[0], rest[0]), text,
                   [k.replace("<key>", rest[0]) for k in known])


def parse(text: str, schema: type[BaseModel]) -> Override:
    """One ``KEY=VALUE`` checked against ``schema`` (the suite model).

    :raises SuiteError: no ``=``, an empty key, a value that is not YAML, or a key the schema
        does not have (one line, with a suggestion).
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SuiteError(f"--set {text}: expected KEY=VALUE, e.g. --set fixed.epochs=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise SuiteError(f"--set {text}: the value is not YAML ({str(exc).splitlines()[0]})") from None
    if key in SHORTHANDS:
        field, inner = SHORTHANDS[key]
        return Override(text, field, {inner: value})
    path = tuple(key.split("."))
    _check_key([schema], path, (), text, known_keys(schema))
    return Override(text, path, value)


def apply(data: dict, overrides: list[Override]) -> dict:
    """A copy of the suite's YAML data with every override applied in order (a later one wins;
    missing parents are created as mappings).

    :raises SuiteError: an override that goes through a value that is not a mapping.
    """
    out = copy.deepcopy(data)
    for o in overrides:
        node = out
        for part in o.path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SuiteError(f"--set {o.text}: {part!r} is not a mapping in the suite, cannot set below it")
        node[o.path[-1]] = copy.deepcopy(o.value)
    return out
