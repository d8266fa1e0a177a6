"""Bad data and bad ``metrics coco`` inputs: one line naming the file, a documented exit code,
no traceback (issue 11; the table is the README's "Errors and exit codes", data rows).

- ``mtbench run`` on a suite whose data is broken: the cell fails with the loader's one-line
  reason (exit 1, a failed cell), naming the file and, for an annotation, its id;
- ``mtbench metrics coco`` on a broken ground truth or detections file: exit 2 (invalid input).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtbench.cli import main
from tests._coco_files import suite_text, write_coco, write_voc

def _edit(path: Path, fn) -> Path:
    """Rewrite a JSON file after ``fn`` changed its parsed content in place."""
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
    return path


def _ann(data: dict, **changes) -> None:
    data["annotations"][0].update(changes)


# ---- broken data sets, run through `mtbench run` (exit 1: the cell failed) -----------------
# each: (tmp root) -> (dataset name, params, file the message must name, further text it must hold)

def _coco(root: Path, val_fn=None, params: str = "{path: tiny_coco}"):
    labels = write_coco(root) / "val" / "labels.json"
    if val_fn:
        val_fn(labels)
    return "coco", params, labels


DATA_CASES = {
    "coco labels not JSON": lambda r: (*_coco(r, lambda p: p.write_text("{broken")), "line 1 column 2"),
    "coco labels a JSON list": lambda r: (*_coco(r, lambda p: p.write_text("[]")), "top level is a JSON array"),
    "coco labels without annotations": lambda r: (*_coco(r, lambda p: _edit(p, lambda d: d.pop("annotations"))),
                                                  "no 'annotations' list"),
    "annotation of an unknown image": lambda r: (*_coco(r, lambda p: _edit(p, lambda d: _ann(d, image_id=99))),
                                                 "annotation(s) 1 name image ids"),
    "annotation of an unknown category": lambda r: (*_coco(r, lambda p: _edit(p, lambda d: _ann(d, category_id=7))),
                                                    "annotation(s) 1 name category ids"),
    "category name not a string": lambda r: (*_coco(r, lambda p: _edit(
        p, lambda d: d["categories"][0].update(name={"en": "box"}))), "category 1 has a name that is not a string"),
    "bbox not 4 numbers": lambda r: (*_coco(r, lambda p: _edit(p, lambda d: _ann(d, bbox="10,10,5,5"))),
                                     "annotation 1 has bbox"),
    "duplicated annotation ids": lambda r: (*_coco(r, lambda p: _edit(p, lambda d: _ann(d, id=2))),
                                            "annotation id(s) 2 appear more than once"),
    "negative width, invalid_boxes error": lambda r: (*_coco(
        r, lambda p: _edit(p, lambda d: _ann(d, bbox=[10, 10, -5, 8])), "{path: tiny_coco, invalid_boxes: error}"),
        "annotation(s) 1: box width or height <= 0"),
    "coco val split without annotations": lambda r: (*_coco(r, lambda p: _edit(p, lambda d: d.update(annotations=[]))),
                                                     "no non-crowd annotation"),
    "coco train split without annotations": lambda r: _coco_train_empty(r),
    "coco val split of crowd boxes only": lambda r: (*_coco(r, lambda p: _edit(
        p, lambda d: [a.update(iscrowd=1) for a in d["annotations"]])), "no non-crowd annotation"),
    "coco val split without images": lambda r: (*_coco(r, lambda p: _edit(
        p, lambda d: d.update(images=[], annotations=[]))), "lists no images"),
    "broken image file": lambda r: _broken_image(r),
    "missing image file": lambda r: _missing_image(r),
    "mask class out of range": lambda r: _voc_mask(r, lambda m: m.__setitem__((0, 0), 50), "class indices [50]"),
    "mask of another size": lambda r: _voc_mask(r, lambda m: m[:16], "is 32x16 pixels but its image"),
}


def _coco_train_empty(root: Path):
    labels = write_coco(root) / "train" / "labels.json"
    _edit(labels, lambda d: d.update(annotations=[]))
    return "coco", "{path: tiny_coco}", labels, "nothing to train a detector on"


def _broken_image(root: Path):
    base = write_coco(root)
    victim = base / "val" / "data" / "000001.png"
    victim.write_bytes(b"not a png")
    return "coco", "{path: tiny_coco}", victim, "cannot read image"


def _missing_image(root: Path):
    base = write_coco(root)
    victim = base / "val" / "data" / "000002.png"
    victim.unlink()
    return "coco", "{path: tiny_coco}", victim, "image file not found"


def _voc_mask(root: Path, change, text: str):
    base = write_voc(root)
    victim = base / "val" / "0.png"
    mask = np.array(Image.open(victim))
    changed = change(mask)
    Image.fromarray(mask if changed is None else np.ascontiguousarray(changed)).save(victim)
    return "voc", "{path: tiny_voc}", victim, text


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_run_on_bad_data(case, tmp_path, capsys):
    dataset, params, named, text = DATA_CASES[case](tmp_path / "data")
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite_text("bad-data", tmp_path / "data", "seg" if dataset == "voc" else "det", dataset, params))
    code = main(["--no-entrypoints", "run", str(suite), "--results", str(tmp_path / "results"), "--no-progress"])
    out = capsys.readouterr()
    text_all = out.out + out.err
    failed = [line for line in text_all.splitlines() if "FAILED: DataError:" in line]
    assert code == 1 and len(failed) == 1, text_all
    assert str(named) in failed[0] and text in failed[0], failed[0]
    assert "Traceback" not in text_all


# ---- broken `metrics coco` inputs (exit 2: invalid input) ---------------------------------

def _files(root: Path) -> tuple[Path, Path]:
    gt = write_coco(root, n={"val": 4}) / "val" / "labels.json"
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
            for a in json.loads(gt.read_text())["annotations"]]
    dt = root / "dt.json"
    dt.write_text(json.dumps(dets))
    return gt, dt


def _broken(which: int, change):
    """A builder: the good files with ``change`` applied to the GT (0) or the detections (1)."""
    def build(root):
        files = _files(root)
        change(files[which])
        return (*files, files[which])
    return build


def _gt(change):
    return _broken(0, change)


def _dt(change):
    return _broken(1, change)


COCO_CASES = {
    "gt not JSON": (_gt(lambda p: p.write_text('{"images": [')), "cannot parse annotation file"),
    "gt not UTF-8": (_gt(lambda p: p.write_bytes(b'{"images": "\xff\xfe"}')), "cannot read annotation file"),
    "gt a JSON list": (_gt(lambda p: p.write_text("[]")), "not COCO instances JSON"),
    "gt without categories": (_gt(lambda p: _edit(p, lambda d: d.pop("categories"))), "no 'categories' list"),
    "gt category name not a string": (_gt(lambda p: _edit(p, lambda d: d["categories"][0].update(name=["box"]))),
                                      "category 1 has a name that is not a string"),
    "gt annotation without area": (_gt(lambda p: _edit(p, lambda d: d["annotations"][2].pop("area"))),
                                    "annotation 3 has no 'area'"),
    "dt an object": (_dt(lambda p: p.write_text("{}")), "objects, not a JSON object"),
    "dt missing": (_dt(lambda p: p.unlink()), "detections file not found"),
    "dt of unknown images": (_dt(lambda p: _edit(p, lambda d: d.append({**d[0], "image_id": 77}))),
                             "1 detection(s) name image ids that are not in"),
    "dt without score": (_dt(lambda p: _edit(p, lambda d: d[1].pop("score"))), "detection #1 is"),
    "dt bbox of 3 numbers": (_dt(lambda p: _edit(p, lambda d: d[0].update(bbox=[1, 2, 3]))), "detection #0 is"),
}


@pytest.mark.parametrize("case", list(COCO_CASES))
def test_metrics_coco_on_bad_input(case, tmp_path, capsys):
    build, text = COCO_CASES[case]
    gt, dt, named = build(tmp_path)
    code = main(["metrics", "coco", "--gt", str(gt), "--dt", str(dt)])
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and out.out == "", out.err
    assert str(named) in lines[0] and text in lines[0], lines[0]
    assert "Traceback" not in out.err


def test_metrics_coco_imports_neither_torch_nor_torchvision(tmp_path):
    """A separate interpreter, as the user runs it: the modules loaded after a full evaluation."""
    import subprocess
    import sys
    gt, dt = _files(tmp_path)
    code = ("import sys; from mtbench.cli import main; rc = main(['metrics', 'coco', '--gt', sys.argv[1], "
            "'--dt', sys.argv[2]]); print(rc, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code, str(gt), str(dt)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


# ---- split lists and class folders, at the loader -----------------------------------------

@pytest.mark.parametrize("content,text", [(b"", "lists no image ids"), (b"\n  \n", "lists no image ids"),
                                          (b"a\nb\n\xe9\xe9\n", ":3: not UTF-8 text")])
def test_split_list_that_is_empty_or_not_text_is_named(tmp_path, content, text):
    from mtbench.data.base import read_id_list
    from mtbench.errors import DataError

    listing = tmp_path / "val.txt"
    listing.write_bytes(content)
    with pytest.raises(DataError, match=text) as err:
        read_id_list(listing, "split list")
    assert str(listing) in str(err.value)
    listing.write_text(" a \n\nb\n")
    assert read_id_list(listing, "split list") == ["a", "b"]


def test_empty_train_class_folder_is_refused_and_changes_the_fingerprint(tmp_path):
    from mtbench.data.imagefolder import ImageFolderClassification
    from mtbench.errors import DataError
    from mtbench.identity import FingerprintCache, data_fingerprint

    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "cls" / split / c).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "cls" / split / c / "0.png")
    cache = FingerprintCache(tmp_path / "fp.json")
    before = data_fingerprint(tmp_path / "cls", cache)
    assert len(ImageFolderClassification(tmp_path, "cls", "train", 32, train=True)) == 2
    (tmp_path / "cls" / "train" / "c").mkdir()
    with pytest.raises(DataError, match="has no images") as err:
        ImageFolderClassification(tmp_path, "cls", "train", 32, train=True)
    assert str(tmp_path / "cls" / "train" / "c") in str(err.value)
    assert data_fingerprint(tmp_path / "cls", cache) != before  # an empty folder is part of the data
    (tmp_path / "cls" / "train" / "c").rmdir()
    # hidden folders and files (.ipynb_checkpoints, macOS ._x.png) are neither read nor fingerprinted
    (tmp_path / "cls" / "train" / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cls" / "train" / "a" / "._1.png")
    (tmp_path / "cls" / "train" / ".extra").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cls" / "train" / ".extra" / "0.png")
    ds = ImageFolderClassification(tmp_path, "cls", "train", 32, train=True)
    assert len(ds) == 2 and ds.info.class_names == ("a", "b")
    assert data_fingerprint(tmp_path / "cls", cache) == before


def test_a_data_set_without_items_is_refused_naming_it(tmp_path):
    """The backstop for a plugin loader that returns an empty split without saying why."""
    from mtbench.errors import DataError
    from mtbench.runner import datasets

    class Empty:
        def __len__(self):
            return 0

    class Registry:
        def create(self, kind, name, **kw):
            return Empty()

    cfg = {"data_root": str(tmp_path), "fixed": {"image_size": 32},
           "tasks": {"det": {"dataset": "my-coco", "params": {"path": "x"}}}}
    with pytest.raises(DataError, match=r"task det: dataset 'my-coco' \(\{'path': 'x'\}\) has no val items under"):
        datasets(cfg, Registry(), "val")


def test_coco_ap_without_ground_truth_is_undefined_not_a_score():
    from mtbench.metrics.coco_eval import coco_stats
    from mtbench.metrics.detection import DetectionMAP

    gt = {"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [],
          "categories": [{"id": 1, "name": "box"}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9}]
    assert (coco_stats(gt, []) == -1).all() and (coco_stats(gt, dets) == -1).all()  # pycocotools' "undefined"
    metric = DetectionMAP(gt)
    metric.dets = dets
    with pytest.raises(ValueError, match="COCO AP is undefined"):
        metric.compute()
