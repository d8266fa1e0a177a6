"""COCO box AP recomputed on a resample of val images, from per-image matches.

``pycocotools.cocoeval.COCOeval.evaluate`` matches detections to ground truth image by
image (``evalImgs``: per image and category, each detection's match at the 10 IoU
thresholds .50:.05:.95, its ignore flag, and the ground truth's ignore flags).
``accumulate`` then pools those per-image records over the images of the split; AP only
depends on the split through that pooling. :func:`per_image_matches` keeps the records
(area range ``all``, ``maxDets`` 100: the numbers behind mAP@[.5:.95] and AP50) and
:func:`ap_from_matches` pools them over any multiset of images, as ``accumulate`` does
(score order with a stable sort, precision envelope, 101-point interpolated recall),
so a bootstrap resample of images needs no re-matching. On the identity resample it
equals pycocotools' mAP and AP50 (tested).
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np

IOU_THRS = np.linspace(0.5, 0.95, 10)
REC_THRS = np.linspace(0.0, 1.00, 101)
MAX_DETS = 100


def per_image_matches(gt: dict, dets: list[dict]) -> dict[str, list]:
    """Per-image COCO matches (pycocotools ``evaluate``), as per-sample columns.

    :param gt: COCO instances dict; its images, in ``images`` order, are the samples.
    :param dets: ``[{"image_id", "category_id", "bbox" xywh pixels, "score"}]``.
    :return: columns of length N (images): ``image_id``; ``gt`` = ``[[category_id, non-ignored
        ground-truth boxes], ...]``; ``dets`` = ``[[category_id, score, match_bits,
        ignore_bits], ...]`` for the first 100 detections per category by score, where bit t
        of ``match_bits`` / ``ignore_bits`` is the detection's match / ignore flag at IoU
        threshold t (.50, .55, ... .95).
    """
    image_ids = [int(img["id"]) for img in gt["images"]]
    cols: dict[str, list] = {"image_id": image_ids, "gt": [[] for _ in image_ids], "dets": [[] for _ in image_ids]}
    if not gt.get("annotations") and not dets:
        return cols
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    row = {i: k for k, i in enumerate(image_ids)}
    bits = 1 << np.arange(len(IOU_THRS))
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = json.loads(json.dumps({"info": {}, "licenses": [], **gt}))
        cg.createIndex()
        cd = cg.loadRes(json.loads(json.dumps(dets))) if dets else COCO()
        if not dets:
            cd.dataset = {"images": gt["images"], "annotations": [], "categories": gt["categories"]}
            cd.createIndex()
        ev = COCOeval(cg, cd, "bbox")
        ev.params.areaRng, ev.params.areaRngLbl = [ev.params.areaRng[0]], ["all"]
        ev.evaluate()
    for e in ev.evalImgs:
        if e is None or e["maxDet"] != MAX_DETS:
            continue
        k = row[e["image_id"]]
        n_gt = int(np.sum(np.asarray(e["gtIgnore"]) == 0))
        if n_gt:
            cols["gt"][k].append([int(e["category_id"]), n_gt])
        m = np.asarray(e["dtMatches"])[:, :MAX_DETS] > 0
        ig = np.asarray(e["dtIgnore"])[:, :MAX_DETS].astype(bool)
        for d, score in enumerate(e["dtScores"][:MAX_DETS]):
            cols["dets"][k].append([int(e["category_id"]), float(score), int(bits[m[:, d]].sum()),
                                    int(bits[ig[:, d]].sum())])
    return cols


def _ap(tps: np.ndarray, fps: np.ndarray, npig: int) -> np.ndarray:
    """AP at each IoU threshold of one category (``float64 (T,)``) from its cumulative true and
    false positives in score order (``(D, T)``), as ``accumulate`` does: recall, precision, the
    precision envelope, precision at the 101 recall thresholds (0 past the last recall)."""
    out = np.zeros(tps.shape[1])
    if not len(tps):
        return out
    rc = tps / npig
    pr = tps / (fps + tps + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1], axis=0)[::-1]  # precision envelope, per threshold
    last = len(pr) - 1
    for t in range(tps.shape[1]):
        inds = np.searchsorted(rc[:, t], REC_THRS, side="left")
        out[t] = np.where(inds <= last, pr[np.minimum(inds, last), t], 0.0).mean()
    return out


_FLAT_CACHE: dict[int, tuple] = {}


def _flat(cols: dict) -> tuple:
    """The ragged per-image columns as arrays, per category with ground truth: its detections
    in ``accumulate``'s order (score descending, stable over images in split order), their
    image, and their true / false positive flags per IoU threshold (``float64 (D, T)``), plus
    the per-image non-ignored ground-truth counts ``(N, C)``. Cached per columns object: a
    bootstrap calls :func:`ap_from_matches` hundreds of times on the same columns."""
    key = id(cols["dets"])
    hit = _FLAT_CACHE.get(key)
    if hit is not None and hit[0] is cols["dets"]:
        return hit[1]
    n = len(cols["dets"])
    img = np.repeat(np.arange(n), [len(d) for d in cols["dets"]])
    arr = np.asarray([r for d in cols["dets"] for r in d], dtype=np.float64).reshape(-1, 4)
    bits = 1 << np.arange(len(IOU_THRS))
    match = (arr[:, 2].astype(np.int64)[:, None] & bits) > 0
    ignore = (arr[:, 3].astype(np.int64)[:, None] & bits) > 0
    cats = sorted({int(c) for g in cols["gt"] for c, _ in g})
    gt = np.zeros((n, len(cats)), dtype=np.int64)
    col = {c: j for j, c in enumerate(cats)}
    for i, g in enumerate(cols["gt"]):
        for c, cnt in g:
            gt[i, col[int(c)]] += int(cnt)
    per_cat = []
    for c in cats:
        rows = np.flatnonzero(arr[:, 0].astype(np.int64) == c)
        rows = rows[np.argsort(-arr[rows, 1], kind="mergesort")]
        per_cat.append((img[rows], (match[rows] & ~ignore[rows]).astype(np.float64),
                        (~match[rows] & ~ignore[rows]).astype(np.float64)))
    flat = (per_cat, gt)
    if len(_FLAT_CACHE) > 8:
        _FLAT_CACHE.clear()
    _FLAT_CACHE[key] = (cols["dets"], flat)
    return flat


def ap_from_matches(cols: dict, index: np.ndarray) -> dict[str, float]:
    """``det/mAP`` (mAP@[.5:.95]) and ``det/AP50`` over the images ``index`` (repeats allowed).

    The images' records are pooled as ``accumulate`` pools them (an image drawn twice counts
    twice). Categories without non-ignored ground truth in the resample are left out (COCO's
    -1); with none left, both are 0.0 (nothing to recall).

    An image drawn ``k`` times puts ``k`` adjacent copies of each of its detections in the
    score order; the curve is evaluated at the end of each run of copies only, with the
    cumulative counts weighted by ``k``. That is exact, not an approximation: recall first
    reaches a threshold on a true positive, where precision rises along the run of copies, so
    the precision envelope there equals its value at the run's end; inside a run of false
    positives precision only falls below the point before it (tested against pycocotools on
    resamples with repeated images).
    """
    per_cat, gt = _flat(cols)
    w = np.bincount(np.asarray(index, dtype=np.int64), minlength=len(cols["dets"]))
    npig = w @ gt
    if not (npig > 0).any():
        return {"det/mAP": 0.0, "det/AP50": 0.0}
    aps = []
    for (img_c, tp_c, fp_c), n in zip(per_cat, npig):
        if n == 0:
            continue
        k = w[img_c]
        drawn = k > 0
        kk = k[drawn].astype(np.float64)[:, None]
        aps.append(_ap(np.cumsum(kk * tp_c[drawn], axis=0), np.cumsum(kk * fp_c[drawn], axis=0), int(n)))
    aps = np.array(aps)
    return {"det/mAP": float(aps.mean()), "det/AP50": float(aps[:, 0].mean())}
