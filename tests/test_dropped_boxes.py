"""Boxes nothing can match: dropped from training and evaluation alike, counted, warned (issue 11).

A COCO ground-truth box with negative width used to be dropped from training but kept in the
evaluation ground truth, where no detection can match it: perfect detections scored mAP 0.505
instead of 1.0. ``metrics coco`` keeps pycocotools' semantics (it is its contract) but warns.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import mtbench.plugins
from mtbench.cli import main
from mtbench.data.coco import CocoDetection
from mtbench.data.coco_json import DEGENERATE, OUTSIDE, TOO_SMALL
from mtbench.errors import DataError
from mtbench.metrics.coco_eval import COCO_STATS, coco_stats
from mtbench.metrics.detection import DetectionMAP
from tests import _coco_files
from tests._coco_files import suite_text, write_coco

BAD = {"train": [{"image_id": 3, "bbox": [5, 5, -3, 4]}], "val": [{"image_id": 2, "bbox": [10, 10, -5, 8]}]}


def _perfect(gt: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in gt["annotations"] if a["bbox"][2] > 0]


def test_negative_width_box_is_dropped_from_training_and_evaluation(tmp_path):
    write_coco(tmp_path, extra=BAD)
    train = CocoDetection(tmp_path, "tiny_coco", "train", 64, train=False)
    val = CocoDetection(tmp_path, "tiny_coco", "val", 64, train=False)
    assert train.dropped == {"file": str(train.ann_file), "count": 1, "reasons": {DEGENERATE: 1}, "ids": {DEGENERATE: [9]}}
    assert val.dropped["count"] == 1 and val.dropped["ids"] == {DEGENERATE: [5]}
    assert len(train.load(2)[1]["boxes"]) == 1  # image 3 keeps only its real box
    gt = val.coco_gt()
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 3, 4]
    metric = DetectionMAP(gt)
    metric.dets = _perfect(gt)
    assert metric.compute()["det/mAP"] == 1.0
    raw = json.loads((tmp_path / "tiny_coco/val/labels.json").read_text())
    kept = coco_stats(raw, _perfect(raw), backend="pycocotools")[0]
    assert kept < 0.9  # what the kept box did to perfect detections: the bug this fixes


@pytest.mark.parametrize("bbox,reason", [([60, 60, 10, 10], None), ([64, 10, 5, 5], OUTSIDE),
                                         ([-9, 10, 8, 5], OUTSIDE), ([10, 10, 0.5, 6], TOO_SMALL),
                                         ([10, 10, 6, 0], DEGENERATE)])
def test_box_policy(tmp_path, bbox, reason):
    """Partly outside is kept as it is; wholly outside, below ``min_box`` or empty is dropped."""
    write_coco(tmp_path, extra={"val": [{"image_id": 1, "bbox": bbox}]})
    val = CocoDetection(tmp_path, "tiny_coco", "val", 64, train=False)
    assert val.dropped["reasons"] == ({reason: 1} if reason else {})
    assert len(val.coco_gt()["annotations"]) == (4 if reason else 5)


def test_invalid_boxes_error_refuses_naming_file_and_id(tmp_path):
    write_coco(tmp_path, extra=BAD)
    with pytest.raises(DataError, match=r"tiny_coco/val/labels.json: annotation\(s\) 5: box width or height <= 0"):
        CocoDetection(tmp_path, "tiny_coco", "val", 64, train=False, invalid_boxes="error")


def test_metrics_coco_equals_pycocotools_and_warns(tmp_path, capsys):
    base = write_coco(tmp_path, extra=BAD)
    gt_path = base / "val/labels.json"
    raw = json.loads(gt_path.read_text())
    (tmp_path / "dt.json").write_text(json.dumps(_perfect(raw)))
    assert main(["metrics", "coco", "--gt", str(gt_path), "--dt", str(tmp_path / "dt.json")]) == 0
    out = capsys.readouterr()
    printed = [float(line.split()[1]) for line in out.out.strip().splitlines()]
    np.testing.assert_allclose(printed, coco_stats(raw, _perfect(raw), backend="pycocotools"), atol=1e-6, rtol=0)
    assert len(printed) == len(COCO_STATS) and printed[0] < 0.9
    warning = [line for line in out.err.splitlines() if "warning" in line]
    assert len(warning) == 1 and str(gt_path) in warning[0] and "annotation ids 5" in warning[0]


def test_suite_run_scores_as_if_the_box_were_absent(tmp_path, monkeypatch, capsys):
    """Acceptance: the same suite on the data with and without the negative-width boxes (a
    detector that finds the rectangles exactly): the same mAP (1.0), and the dropped counts stored."""
    real = mtbench.plugins.get_registry
    monkeypatch.setattr(mtbench.plugins, "get_registry",
                        lambda load_entrypoints=True, extra_plugins=(), disable=(): real(False, [_coco_files, *extra_plugins]))
    records, outputs = {}, {}
    for name, extra in (("with-bad-box", BAD), ("clean", None)):
        root = tmp_path / name
        write_coco(root, extra=extra)
        suite = tmp_path / f"{name}.yaml"
        suite.write_text(suite_text(name, root, "det", "coco", "{path: tiny_coco}", model="bright-box-oracle",
                                    label="oracle", batch_size=4, steps=2))
        results = tmp_path / "results"
        main(["--no-entrypoints", "run", str(suite), "--results", str(results), "--no-progress", "--allow-suspect"])
        outputs[name] = capsys.readouterr().out
        records[name] = json.loads((results / name / "results.json").read_text())["cells"][0]
    bad, clean = records["with-bad-box"], records["clean"]
    assert bad["status"] == clean["status"] == "ok"
    assert bad["metrics"]["det/mAP"] == clean["metrics"]["det/mAP"] == 1.0
    assert bad["metrics"]["det/AP50"] == clean["metrics"]["det/AP50"] == 1.0
    dropped = bad["data"]["dropped"]["det"]
    assert (dropped["train"], dropped["val"]) == (1, 1) and dropped["reasons"]["val"] == {DEGENERATE: 1}
    assert dropped["ids"]["val"] == {DEGENERATE: [5]} and dropped["files"]["val"].endswith("tiny_coco/val/labels.json")
    assert clean["data"] == {"dropped": {}}
    finding = [f for f in bad["diagnostics"] if f["check"] == "dropped-annotations"]
    assert len(finding) == 1 and finding[0]["severity"] == "warning" and not finding[0]["invalidates"]
    warning = [line for line in outputs["with-bad-box"].splitlines() if "warning: det: boxes dropped" in line]
    assert len(warning) == 1 and "1 in val" in warning[0] and "annotation ids 5 in" in warning[0]
    assert "warning" not in outputs["clean"]
