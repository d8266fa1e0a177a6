"""Dataset loaders on ../shared/data (via MTBENCH_DATA), synthetic data, and bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mtbench.data.base import collate
from mtbench.errors import DataError


@pytest.mark.parametrize("task,name,n_train,n_val,classes", [
    ("det", "coco", 240, 60, 76), ("seg", "voc", 240, 60, 21), ("cls", "imagefolder", 240, 60, 10)])
def test_real_loaders(registry, data_root, task, name, n_train, n_val, classes):
    for split, n in (("train", n_train), ("val", n_val)):
        ds = registry.create("dataset", name, task=task, split=split, root=data_root, image_size=128)
        assert len(ds) == n and ds.info.num_classes == classes
        img, tgt = ds[0]
        assert img.dtype == torch.float32 and img.shape == (3, 128, 128) and 0 <= img.min() and img.max() <= 1
        images, targets = collate([ds[0], ds[1]])
        assert images.shape == (2, 3, 128, 128)
        if task == "det":
            assert tgt["boxes"].dtype == torch.float32 and tgt["boxes"].shape[1] == 4
            assert tgt["labels"].dtype == torch.int64 and (tgt["labels"] < classes).all()
            assert (tgt["boxes"] >= 0).all() and (tgt["boxes"] <= 128 + 1e-3).all()
        elif task == "seg":
            assert tgt.dtype == torch.int64 and tgt.shape == (128, 128)
            assert set(tgt.unique().tolist()) <= set(range(21)) | {255}
        else:
            assert tgt.dtype == torch.int64 and tgt.shape == ()


def test_coco_val_categories_are_matched_by_name(registry, data_root):
    """The mini COCO files number categories differently per split; names must decide."""
    val = registry.create("dataset", "coco", task="det", split="val", root=data_root, image_size=128)
    raw = json.loads((data_root / "mini_coco_det/val/labels.json").read_text())
    name_of = {c["id"]: c["name"] for c in raw["categories"]}
    gt = val.coco_gt()
    by_id = {a["id"]: a for a in gt["annotations"]}
    for a in raw["annotations"][:50]:
        assert val.info.class_names[by_id[a["id"]]["category_id"] - 1] == name_of[a["category_id"]]


def test_synthetic_is_deterministic_and_consistent(registry):
    a = registry.create("dataset", "synthetic", task="det", split="val", root=None, image_size=64)
    b = registry.create("dataset", "synthetic", task="det", split="val", root=None, image_size=64)
    seg = registry.create("dataset", "synthetic", task="seg", split="val", root=None, image_size=64)
    ia, ta = a.load(3)
    ib, tb = b.load(3)
    assert torch.equal(ia, ib) and torch.equal(ta["boxes"], tb["boxes"])
    _, mask = seg.load(3)
    for box, lab in zip(ta["boxes"], ta["labels"]):  # every box holds pixels of some shape class
        x0, y0, x1, y1 = box.int().tolist()
        assert (mask[y0:y1, x0:x1] > 0).any()
    assert len(a.coco_gt()["images"]) == len(a)


def test_broken_image_names_file(registry, data_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_root / "imagenette_160", root / "imagenette_160")
    victim = next((root / "imagenette_160/val").glob("*/*.JPEG"))
    victim.write_bytes(b"not a jpeg")
    ds = registry.create("dataset", "imagefolder", task="cls", split="val", root=root, image_size=64)
    idx = [i for i, (p, _) in enumerate(ds.samples) if p == victim][0]
    with pytest.raises(DataError, match=f"cannot read image {victim}"):
        ds[idx]


def test_missing_mask_names_file(registry, data_root, tmp_path):
    root = tmp_path / "data" / "mini_voc_seg" / "val"
    root.mkdir(parents=True)
    for p in sorted((data_root / "mini_voc_seg/val").glob("*"))[:4]:
        shutil.copy(p, root / p.name)
    (root / "extra_image.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="mask file not found: .*extra_image.png"):
        registry.create("dataset", "voc", task="seg", split="val", root=tmp_path / "data", image_size=64)


def test_missing_root_says_how_to_fix(registry, tmp_path):
    with pytest.raises(DataError, match="set MTBENCH_DATA"):
        registry.create("dataset", "coco", task="det", split="val", root=tmp_path, image_size=64)


def test_bad_annotation_names_file(registry, data_root, tmp_path):
    base = tmp_path / "mini_coco_det"
    for split in ("train", "val"):
        (base / split).mkdir(parents=True)
        shutil.copy(data_root / "mini_coco_det" / split / "labels.json", base / split / "labels.json")
    (base / "val" / "labels.json").write_text("{broken")
    with pytest.raises(DataError, match="cannot parse annotation file .*val/labels.json"):
        registry.create("dataset", "coco", task="det", split="val", root=tmp_path, image_size=64)
