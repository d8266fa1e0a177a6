"""Mask-level points_mask/Pd, Fa, IoU, nIoU against pyirstdmetrics on the same masks.

Reference: ``ProbabilityDetectionAndFalseAlarmRate(distance_threshold=3)`` for Pd / Fa and
``CMMetrics`` with ``IoUHandler`` (``sample_based=False``: IoU, ``True``: nIoU), transcribed
in ``_pyirstdmetrics_ref.py`` (the package pins numpy < 2). Inputs: generated masks (always)
and SIRST val masks at native resolution with perturbed predictions (when MTBENCH_DATA has them).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tests.conftest import POINTS_PLUGIN

pytest.importorskip("mtbench_point_heatmap", reason=POINTS_PLUGIN)
from mtbench_point_heatmap.mask_metrics import PointMaskMetrics  # noqa: E402

ref = pytest.importorskip("tests._pyirstdmetrics_ref", reason="scikit-image (test extra) is needed for the reference")


def reference_values(images: list[tuple[np.ndarray, np.ndarray]], lib=ref) -> dict[str, float]:
    pdfa = lib.ProbabilityDetectionAndFalseAlarmRate(num_bins=1, distance_threshold=3)
    cm = lib.CMMetrics(threshold=0.5, metric_handlers={
        "iou": lib.IoUHandler(with_dynamic=False, with_binary=True, sample_based=False),
        "niou": lib.IoUHandler(with_dynamic=False, with_binary=True, sample_based=True)})
    for pred, gt in images:
        prob, mask = pred.astype(np.float64), gt.astype(bool)
        pdfa.update(prob, mask)
        cm.update(prob, mask)
    r, c = pdfa.get(), cm.get()
    return {"points_mask/Pd": float(r["probability_detection"][0]), "points_mask/Fa": float(r["false_alarm"][0]),
            "points_mask/IoU": float(c["iou"]["binary"]), "points_mask/nIoU": float(c["niou"]["binary"])}


def ours(images: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    m = PointMaskMetrics()
    for pred, gt in images:
        m.add_image(pred, gt)
    return m.compute()


def perturb(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible segmentation: each target kept (shifted 0-2 px, at times up to 5, sometimes dilated) or missed, plus false blobs."""
    labels, n = ndimage.label(gt, structure=np.ones((3, 3)))
    pred = np.zeros_like(gt)
    for k in range(1, n + 1):
        if rng.random() < 0.2:
            continue
        reach = 5 if rng.random() < 0.25 else 2  # mostly near (a hit), sometimes up to 4 px away (often a miss)
        blob = np.roll(labels == k, (int(rng.integers(-reach, reach + 1)), int(rng.integers(-reach, reach + 1))),
                       axis=(0, 1))
        pred |= ndimage.binary_dilation(blob) if rng.random() < 0.3 else blob
    for _ in range(int(rng.integers(0, 4))):
        r, c = int(rng.integers(0, gt.shape[0] - 3)), int(rng.integers(0, gt.shape[1] - 3))
        pred[r:r + int(rng.integers(1, 4)), c:c + int(rng.integers(1, 4))] = True
    return pred


def generated_masks(n: int = 40, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Non-square masks with 0-4 small targets (single pixels, diagonal pairs, discs)."""
    rng = np.random.default_rng(seed)
    images = []
    yy, xx = np.mgrid[:48, :64]
    for _ in range(n):
        gt = np.zeros((48, 64), bool)
        for _ in range(int(rng.integers(0, 5))):
            r, c = rng.uniform(3, 45), rng.uniform(3, 61)
            kind = rng.integers(0, 3)
            if kind == 0:
                gt[int(r), int(c)] = True
            elif kind == 1:
                gt[int(r), int(c)] = gt[int(r) + 1, int(c) + 1] = True  # 8-connected only
            else:
                gt |= (yy - r) ** 2 + (xx - c) ** 2 <= rng.uniform(1, 6)
        images.append((perturb(gt, rng), gt))
    return images


def test_mask_metrics_match_pyirstdmetrics_on_generated_masks():
    images = generated_masks()
    got, want = ours(images), reference_values(images)
    assert 0.3 < want["points_mask/Pd"] < 0.95 and want["points_mask/Fa"] > 0  # a non-trivial fixture
    assert got == pytest.approx(want, abs=1e-12)


def test_mask_metrics_match_pyirstdmetrics_on_sirst_val(data_root):
    from PIL import Image

    base = data_root / "sirst"
    ids = [s for s in (base / "splits" / "val.txt").read_text().split() if s]
    rng = np.random.default_rng(1)
    images = []
    for stem in ids:
        gt = np.asarray(Image.open(base / "masks" / f"{stem}_pixels0.png").convert("L")) > 127
        images.append((perturb(gt, rng), gt))
    got, want = ours(images), reference_values(images)
    assert len(images) == 85 and 0.3 < want["points_mask/Pd"] < 0.95
    assert got == pytest.approx(want, abs=1e-12)


def test_resampled_values_match_the_reference_on_those_images():
    images = generated_masks(12, seed=3)
    m = PointMaskMetrics()
    for pred, gt in images:
        m.add_image(pred, gt)
    idx = np.array([1, 1, 4, 7, 7, 7, 11])
    assert m.reduce(m.samples(), idx) == pytest.approx(reference_values([images[i] for i in idx]), abs=1e-12)


def test_transcription_matches_the_installed_package():
    pkg = pytest.importorskip("py_irstd_metrics", reason="pyirstdmetrics not installed (it pins numpy < 2)")
    images = generated_masks(20, seed=5)
    assert reference_values(images) == reference_values(images, lib=pkg)
