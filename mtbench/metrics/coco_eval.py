"""The 12 standard COCO bbox stats, of in-memory results or of files (``mtbench metrics coco``).

Computed by faster-coco-eval (its stats are identical to pycocotools' and it is several
times faster); ``backend="pycocotools"`` runs the reference implementation. This module
imports neither torch nor torchvision, so ``mtbench metrics coco`` starts in a fraction of
a second.

Files keep pycocotools' exact semantics, which is the contract of ``metrics coco``: same
files, same 12 numbers. What pycocotools would silently mis-score or crash on is checked
first (:func:`check_files`):

- refused (:class:`~mtbench.errors.DataError`, one line naming the file): a GT that is not
  COCO instances JSON (:func:`mtbench.data.coco_json.read_instances`, which also refuses
  category names that are not strings and duplicated ids), detections that are not a JSON
  list (``{}`` would otherwise score 12 zeros) or an entry without ``image_id``,
  ``category_id``, ``bbox`` (4 numbers) and ``score``, detections whose image ids are not in
  the GT;
- warned (kept, as pycocotools keeps them): GT boxes nothing can match (not finite, width
  or height <= 0, wholly outside the image; a suite run drops them from training and
  evaluation alike), GT annotations naming an image or category the GT does not list, and
  detections of categories the GT does not list (pycocotools ignores both).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from mtbench.data.coco_json import box_problems, id_list, json_type, read_instances, read_json, unknown_references
from mtbench.errors import DataError

COCO_STATS = ("mAP@[.5:.95]", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")
DET_KEYS = ("image_id", "category_id", "bbox", "score")


def coco_stats(gt: dict, dets: list[dict], backend: str = "faster-coco-eval") -> np.ndarray:
    """The 12 COCO bbox stats of ``dets`` against ``gt`` (neither is modified).

    :param gt: COCO instances dict (``images``, ``annotations``, ``categories``).
    :param dets: ``[{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}]``.
    :return: ``float64 (12,)`` in ``COCO_STATS`` order; with no detections all AP/AR are 0
        (no prediction recalls nothing) rather than an error, unless ``gt`` has no non-crowd
        box either: then all are -1, pycocotools' "undefined".
    """
    return _evaluate(json.loads(json.dumps(gt)), json.loads(json.dumps(dets)), backend)


def _evaluate(gt: dict, dets: list[dict], backend: str) -> np.ndarray:
    """:func:`coco_stats` on dicts it may modify (the evaluators add keys to them)."""
    if not dets:
        undefined = not any(not a.get("iscrowd", 0) for a in gt.get("annotations", []))
        return np.full(12, -1.0) if undefined else np.zeros(12)
    gt = {"info": {}, "licenses": [], **gt}
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
            cg = COCO()
            cg.dataset = gt
            cg.createIndex()
            ev = COCOeval(cg, cg.loadRes(dets), "bbox")
        else:
            from faster_coco_eval import COCO, COCOeval_faster
            cg = COCO(gt)
            ev = COCOeval_faster(cg, cg.loadRes(dets), "bbox", print_function=lambda *a: None)
        ev.evaluate(); ev.accumulate(); ev.summarize()
    return np.asarray(ev.stats[:12], dtype=np.float64)


def check_files(gt_path: Path, dt_path: Path) -> tuple[dict, list[dict], list[str]]:
    """Read and check a GT instances JSON and a detections JSON (module docstring).

    :return: ``(gt, dets, warnings)``: the parsed files, unchanged, and one-line warnings.
    :raises DataError: a refused input; one line naming the file.
    """
    gt = read_instances(gt_path, annotation_keys=("area", "iscrowd"))
    warnings = []
    problems = box_problems(gt)
    if problems:
        n = sum(len(ids) for ids in problems.values())
        what = "; ".join(f"{r}: annotation ids {id_list(ids)}" for r, ids in problems.items())
        warnings.append(f"{gt_path}: {n} ground-truth box(es) no detection can match ({what}); kept, as "
                        "pycocotools keeps them (a suite run drops them from training and evaluation alike)")
    for what, ids in unknown_references(gt).items():
        if ids:
            warnings.append(f"{gt_path}: annotation(s) {id_list(ids)} name {what} ids the file does not list; "
                            "pycocotools ignores them")
    dets = read_json(dt_path, "detections file")
    if not isinstance(dets, list):
        raise DataError(f"{dt_path}: detections must be a JSON list of {{{', '.join(DET_KEYS)}}} objects, "
                        f"not a JSON {json_type(dets)}")
    bad = next((i for i, d in enumerate(dets) if not _is_detection(d)), None)
    if bad is not None:
        raise DataError(f"{dt_path}: detection #{bad} is {json.dumps(dets[bad])[:120]}; expected an object with "
                        f"{', '.join(DET_KEYS)} (bbox [x, y, width, height] and score numbers)")
    images = {im["id"] for im in gt["images"]}
    unknown = sorted({d["image_id"] for d in dets} - images, key=str)
    if unknown:
        n = sum(d["image_id"] not in images for d in dets)
        raise DataError(f"{dt_path}: {n} detection(s) name image ids that are not in {gt_path}: {id_list(unknown)}")
    cats = {c["id"] for c in gt["categories"]}
    stray = sorted({d["category_id"] for d in dets} - cats, key=str)
    if stray:
        warnings.append(f"{dt_path}: detections of category ids {id_list(stray)}, which {gt_path} does not list; "
                        "pycocotools ignores them")
    return gt, dets, warnings


_NUMBER = (int, float)  # exact JSON number types (a bool is not a number here)
_DET_KEY_SET = frozenset(DET_KEYS)


def _is_detection(d) -> bool:
    """An object with the 4 keys, a 4-number ``bbox`` and a number ``score`` (500k checked in ~0.3 s)."""
    return (type(d) is dict and _DET_KEY_SET <= d.keys() and type(b := d["bbox"]) is list and len(b) == 4
            and type(b[0]) in _NUMBER and type(b[1]) in _NUMBER and type(b[2]) in _NUMBER and type(b[3]) in _NUMBER
            and type(d["score"]) in _NUMBER)


def coco_stats_files(gt_path: Path, dt_path: Path, backend: str = "faster-coco-eval"
                     ) -> tuple[np.ndarray, list[str]]:
    """The 12 stats (:data:`COCO_STATS` order) of a detections JSON list against a GT instances
    JSON, and the checks' warnings (:func:`check_files`).

    :raises DataError: a refused input, naming the file.
    """
    gt, dets, warnings = check_files(Path(gt_path), Path(dt_path))
    return _evaluate(gt, dets, backend), warnings
