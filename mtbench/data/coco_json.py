"""COCO instances JSON: read it, check its structure, find the boxes nothing can match.

Shared by the detection loader (:mod:`mtbench.data.coco`) and ``mtbench metrics coco``
(:mod:`mtbench.metrics.coco_eval`); imports neither torch nor PIL. Three kinds of problem,
each reported with the file and the annotation (or image, category) id:

- **structure** (:func:`read_instances`, always refused with :class:`DataError`): a missing,
  unreadable or non-JSON file; no ``images`` / ``annotations`` / ``categories`` list; an
  entry that is not an object or lacks a key pycocotools reads (``id``; an annotation's
  ``image_id``, ``category_id``, ``bbox``); an id that is not an integer; a ``bbox`` that
  is not 4 numbers; a category name that is not a string; an id used twice (pycocotools
  would silently evaluate one annotation in place of the other);
- **references** (:func:`unknown_references`): annotations naming an image id or a
  category id the file does not list (the loader refuses them; pycocotools ignores them);
- **boxes** (:func:`box_problem`): not finite, width or height <= 0, or wholly outside the
  image (no detection can match them), or below the loader's minimum size (``min_box``, a
  policy: such a box is valid COCO). The loader drops them from training *and* from the
  evaluation ground truth alike; ``metrics coco`` keeps them (pycocotools' semantics) and
  warns about the first three.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

import msgspec

from mtbench.errors import DataError

NOT_FINITE = "not finite"
DEGENERATE = "width or height <= 0"
TOO_SMALL = "smaller than min_box"
OUTSIDE = "wholly outside the image"


class _LeanImage(TypedDict, total=False):
    id: Any
    file_name: Any
    width: Any
    height: Any


class _LeanAnnotation(TypedDict, total=False):
    id: Any
    image_id: Any
    category_id: Any
    bbox: Any
    area: Any
    iscrowd: Any


class _LeanInstances(TypedDict, total=False):
    """The keys the detection loader reads; ``segmentation`` polygons (most of a COCO file) are skipped."""

    images: list[_LeanImage]
    annotations: list[_LeanAnnotation]
    categories: list[Any]


def read_json(path: Path, what: str = "annotation file", schema: type | None = None):
    """Parse a JSON file; with ``schema`` (a ``TypedDict``), msgspec decodes only its keys (keys
    it does not name are never turned into Python objects), and a file that does not fit it
    (or holds ``NaN``, which only Python's parser accepts) is parsed in full instead.

    :raises DataError: missing, unreadable, not UTF-8 or not JSON; names the file (and the
        line and column of a syntax error).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        raw = path.read_bytes()
        if schema is not None:
            try:
                return msgspec.json.decode(raw, type=schema)
            except (msgspec.ValidationError, msgspec.DecodeError):
                pass  # Python's parser gives the precise message, or accepts NaN / Infinity
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"cannot parse {what} {path}: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except (UnicodeDecodeError, OSError, RecursionError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from exc


def json_type(value) -> str:
    """The JSON name of a parsed value's type (``object``, ``array``, ``string`` ...), for messages."""
    return {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def id_list(ids: list, limit: int = 10) -> str:
    """``"3, 17, 40"`` or ``"3, 17, ... (25 in all)"``: ids for a one-line message."""
    head = ", ".join(str(i) for i in ids[:limit])
    return head if len(ids) <= limit else f"{head}, ... ({len(ids)} in all)"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_instances(path: Path, image_keys: tuple[str, ...] = (), annotation_keys: tuple[str, ...] = (),
                   lean: bool = False) -> dict:
    """Read and check a COCO instances JSON (structure only; see the module docstring).

    :param image_keys: image keys required beyond ``id`` (the loader needs ``width`` and
        ``height``, which must then be numbers).
    :param annotation_keys: annotation keys required beyond ``id``, ``image_id``,
        ``category_id``, ``bbox`` (``metrics coco`` asks for ``area`` and ``iscrowd``, which
        pycocotools reads).
    :param lean: keep only the keys the detection loader reads (images: ``id``, ``file_name``,
        ``width``, ``height``; annotations: ``id``, ``image_id``, ``category_id``, ``bbox``,
        ``area``, ``iscrowd``; categories whole): a COCO 2017 train file then parses without
        its polygons (:func:`read_json`).
    :return: the parsed dict, unchanged (``lean``: with only those keys).
    :raises DataError: naming the file and the offending entry.
    """
    data = read_json(path, schema=_LeanInstances if lean else None)
    if not isinstance(data, dict):
        raise DataError(f"{path} is not COCO instances JSON: its top level is a JSON {json_type(data)}, not an "
                        "object with 'images', 'annotations' and 'categories' lists")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            what = "no" if key not in data else f"a JSON {json_type(data[key])} as its"
            raise DataError(f"{path} is not COCO instances JSON: it has {what} {key!r} list")
    _check_entries(path, data["images"], "image", ("id", *image_keys))
    for im in data["images"]:
        bad = [k for k in ("width", "height") if k in im and not _is_number(im[k])]
        if bad:
            raise DataError(f"{path}: image {im['id']} has {bad[0]} {json.dumps(im[bad[0]])[:80]}; expected a number")
    _check_entries(path, data["categories"], "category", ("id", "name"))
    for c in data["categories"]:
        if not isinstance(c["name"], str):
            raise DataError(f"{path}: category {c['id']} has a name that is not a string: {json.dumps(c['name'])[:80]}")
    _check_entries(path, data["annotations"], "annotation", ("id", "image_id", "category_id", "bbox", *annotation_keys))
    for a in data["annotations"]:
        box = a["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            raise DataError(f"{path}: annotation {a['id']} has bbox {json.dumps(box)[:80]}; expected "
                            "[x, y, width, height] numbers")
    return data


def _check_entries(path: Path, entries: list, what: str, keys: tuple[str, ...]) -> None:
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise DataError(f"{path}: {what} #{i} is a JSON {json_type(e)}, not an object")
        missing = [k for k in keys if k not in e]
        if missing:
            name = f"{what} {e['id']}" if _is_int(e.get("id")) else f"{what} #{i}"
            raise DataError(f"{path}: {name} has no {', '.join(map(repr, missing))}")
        bad = [k for k in ("id", "image_id", "category_id") if k in e and not _is_int(e[k])]
        if bad:
            raise DataError(f"{path}: {what} #{i} has {bad[0]} {json.dumps(e[bad[0]])[:80]}; expected an integer id")
    dup = [i for i, n in Counter(e["id"] for e in entries).items() if n > 1]
    if dup:
        raise DataError(f"{path}: {what} id(s) {id_list(dup)} appear more than once (ids must be unique)")


def unknown_references(data: dict) -> dict[str, list]:
    """Annotation ids whose ``image_id`` / ``category_id`` is not listed in the file.

    :return: ``{"image": [annotation ids], "category": [annotation ids]}``.
    """
    images = {im["id"] for im in data["images"]}
    cats = {c["id"] for c in data["categories"]}
    return {"image": [a["id"] for a in data["annotations"] if a["image_id"] not in images],
            "category": [a["id"] for a in data["annotations"] if a["category_id"] not in cats]}


def box_problem(bbox: list[float], width: float | None = None, height: float | None = None,
                min_size: float = 0.0) -> str | None:
    """Why a ``[x, y, w, h]`` box (pixels) is dropped, or None when it is kept.

    :param width, height: the image's size in pixels (None: the outside test is skipped).
    :param min_size: boxes with ``0 < w < min_size`` or ``0 < h < min_size`` are too small.
    :return: one of ``NOT_FINITE``, ``DEGENERATE``, ``TOO_SMALL``, ``OUTSIDE`` or None.
    """
    x, y, w, h = bbox
    if not all(math.isfinite(v) for v in bbox):
        return NOT_FINITE
    if w <= 0 or h <= 0:
        return DEGENERATE
    if w < min_size or h < min_size:
        return TOO_SMALL
    if width is not None and height is not None and (x >= width or y >= height or x + w <= 0 or y + h <= 0):
        return OUTSIDE
    return None


def box_problems(data: dict, min_size: float = 0.0) -> dict[str, list]:
    """``{reason: [annotation ids]}`` of every box :func:`box_problem` rejects (images without
    ``width``/``height`` skip the outside test)."""
    size = {im["id"]: (im.get("width"), im.get("height")) for im in data["images"]}
    out: dict[str, list] = {}
    for a in data["annotations"]:
        reason = box_problem(a["bbox"], *size.get(a["image_id"], (None, None)), min_size)
        if reason:
            out.setdefault(reason, []).append(a["id"])
    return out
