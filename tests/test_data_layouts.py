"""Full-size data set layouts (issue 14): COCO 2017, VOC 2012, ImageNet folders with the 1k
index, the SIRST family. Each is tested on a tiny fixture built in a tmp dir from
../shared/data in that layout (links to the real files; nothing committed), read against
the same images read through the mini layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtbench.data.coco import CocoDetection
from mtbench.data.imagefolder import ImageFolderClassification
from mtbench.data.voc import VocSegmentation
from mtbench.errors import DataError

SIZE = 64


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def _same_items(a, b, indices=(0, 1, -1)) -> None:
    assert len(a) == len(b) and a.info == b.info
    for i in indices:
        (ia, ta), (ib, tb) = a.load(i % len(a)), b.load(i % len(b))
        assert torch.equal(ia, ib)
        if isinstance(ta, dict):
            assert ta.keys() == tb.keys()
            for k in ta:
                assert torch.equal(ta[k], tb[k]) if isinstance(ta[k], torch.Tensor) else ta[k] == tb[k], k
        else:
            assert torch.equal(ta, tb)


def test_coco2017_layout_is_detected_and_reads_as_the_mini_one(data_root, tmp_path):
    mini = data_root / "mini_coco_det"
    for split in ("train", "val"):
        _link(mini / split / "labels.json", tmp_path / "annotations" / f"instances_{split}2017.json")
        _link(mini / split / "data", tmp_path / f"{split}2017")
    for split in ("train", "val"):
        full = CocoDetection(tmp_path.parent, tmp_path.name, split, SIZE, train=False)  # layout auto
        assert full.ann_file.name == f"instances_{split}2017.json" and full.image_dir.name == f"{split}2017"
        _same_items(full, CocoDetection(data_root, "mini_coco_det", split, SIZE, train=False))
        assert full.coco_gt() == CocoDetection(data_root, "mini_coco_det", split, SIZE, train=False).coco_gt()
    with pytest.raises(DataError, match="labels.json"):  # asked for mini where there is none
        CocoDetection(tmp_path.parent, tmp_path.name, "val", SIZE, train=False, layout="mini")
    with pytest.raises(DataError, match="layout must be one of"):
        CocoDetection(tmp_path.parent, tmp_path.name, "val", SIZE, train=False, layout="coco2014")


def test_voc2012_layout_reads_the_split_lists(data_root, tmp_path):
    mini, voc = data_root / "mini_voc_seg", tmp_path / "VOCdevkit" / "VOC2012"
    for split in ("train", "val"):
        ids = sorted(p.stem for p in (mini / split).glob("*.jpg"))
        for i in ids:
            _link(mini / split / f"{i}.jpg", voc / "JPEGImages" / f"{i}.jpg")
            _link(mini / split / f"{i}.png", voc / "SegmentationClass" / f"{i}.png")
        (voc / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    for split in ("train", "val"):
        for path in (tmp_path.name, f"{tmp_path.name}/VOCdevkit/VOC2012"):  # the devkit's parent or VOC2012 itself
            full = VocSegmentation(tmp_path.parent, path, split, SIZE, train=False)
            assert full.image_dir == voc / "JPEGImages"
            _same_items(full, VocSegmentation(data_root, "mini_voc_seg", split, SIZE, train=False))
    (voc / "SegmentationClass" / f"{ids[0]}.png").unlink()
    with pytest.raises(DataError, match=f"mask file not found: .*{ids[0]}.png"):
        VocSegmentation(tmp_path.parent, tmp_path.name, "val", SIZE, train=False, layout="voc2012")


def test_imagenet_folders_take_the_1k_index(data_root, tmp_path):
    src = data_root / "imagenette_160"
    for split in ("train", "val"):
        for wnid in ("n01440764", "n03888257"):
            _link(src / split / wnid, tmp_path / split / wnid)
    ds = ImageFolderClassification(tmp_path.parent, tmp_path.name, "val", SIZE, train=False, class_index="imagenet-1k")
    assert ds.info.num_classes == 1000 and ds.info.class_names[701] == "n03888257"
    labels = {int(ds.load(i)[1]) for i in range(len(ds))}
    assert labels == {0, 701}
    sorted_ds = ImageFolderClassification(tmp_path.parent, tmp_path.name, "val", SIZE, train=False)
    assert sorted_ds.info.num_classes == 2 and {int(sorted_ds.load(i)[1]) for i in range(len(sorted_ds))} == {0, 1}
    _link(src / "val" / "n02102040", tmp_path / "val" / "not_a_wnid")
    with pytest.raises(DataError, match="not among ImageNet-1k WordNet ids"):
        ImageFolderClassification(tmp_path.parent, tmp_path.name, "val", SIZE, train=False, class_index="imagenet-1k")


# --- the SIRST family (points plugin) ----------------------------------------------------

def _sirst_fixture(data_root: Path, root: Path, layout: str) -> None:
    """``root`` in ``layout`` from ../shared/data/sirst: its train and val ids as the layout's lists."""
    from mtbench_point_heatmap.sirst import LAYOUTS

    src, lay = data_root / "sirst", LAYOUTS[layout]
    for split in ("train", "val"):
        ids = (src / "splits" / f"{split}.txt").read_text().split()
        (root / lay.splits[split]).parent.mkdir(parents=True, exist_ok=True)
        (root / lay.splits[split]).write_text("\n".join(ids) + "\n")
        for i in ids:
            _link(src / "images" / f"{i}.png", root / lay.images.format(id=i))
            _link(src / "masks" / f"{i}_pixels0.png", root / lay.mask.format(id=i))
            if lay.xml:
                _link(src / "masks" / f"{i}.xml", root / lay.xml.format(id=i))


@pytest.mark.parametrize("layout", ["sirst", "nudt-sirst", "irstd-1k"])
def test_sirst_family_layouts_read_as_the_mini_one(data_root, tmp_path, layout):
    sirst = pytest.importorskip("mtbench_point_heatmap.sirst")
    _sirst_fixture(data_root, tmp_path, layout)
    for split in ("train", "val"):
        full = sirst.SirstPoints(tmp_path.parent, tmp_path.name, split, SIZE, train=False)  # layout auto
        mini = sirst.SirstPoints(data_root, "sirst", split, SIZE, train=False)
        assert full.layout_name == layout and len(full) == len(mini)
        for i in (0, 1, len(mini) - 1):
            (ia, ta), (ib, tb) = full.load(i), mini.load(i)
            assert torch.equal(ia, ib) and torch.equal(ta["points"], tb["points"]) and torch.equal(ta["mask"], tb["mask"])
            if sirst.LAYOUTS[layout].xml:
                assert torch.equal(ta["boxes"], tb["boxes"])
            else:  # boxes of the mask's components: one per target, around its centroid
                x, y = ta["points"].T
                b = ta["boxes"]
                assert len(b) == len(ta["points"]) and bool(((b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])).all())


def test_sirst_without_a_known_layout_says_what_it_looked_for(tmp_path):
    sirst = pytest.importorskip("mtbench_point_heatmap.sirst")
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="no SIRST-family layout found .*idx_427/trainval.txt"):
        sirst.SirstPoints(tmp_path.parent, tmp_path.name, "train", SIZE, train=False)
    with pytest.raises(DataError, match="layout must be auto or one of"):
        sirst.SirstPoints(tmp_path.parent, tmp_path.name, "train", SIZE, train=False, layout="sirst-v2")
