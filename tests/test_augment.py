"""fixed.augment (mtbench.data.augment, torchvision.transforms.v2): targets move with the image on
known inputs, the default reproduces the hand-written flip of earlier versions bit for bit, items
do not depend on the worker count, and the suite schema checks the options."""

from __future__ import annotations

import pytest
import torch

from mtbench.data.augment import DEFAULT, Augmentation, build, refusals
from mtbench.data.synthetic import SyntheticTask
from mtbench.errors import SuiteError
from mtbench.tasks.classification import Classification
from mtbench.tasks.detection import Detection
from mtbench.tasks.segmentation import Segmentation
from tests.test_data_loading import _epoch, _same

S = 64
RICH = {"hflip": 0.5, "scale": (0.25, 0.6), "ratio": None,
        "color": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}}
#: brightness only: it scales each channel, so the lit channel of a box stays the lit one
BRIGHT = {**RICH, "color": {"brightness": 0.4}}
CROP = {"hflip": 0.5, "scale": (0.25, 0.25), "ratio": (1.0, 1.0), "color": None}


def _two_boxes():
    """Box A (label 0) lit in channel 0, box B (label 1) in channel 1, on black."""
    image = torch.zeros(3, S, S, dtype=torch.uint8)
    image[0, 4:14, 4:14] = 255
    image[1, 40:60, 44:60] = 255
    target = {"boxes": torch.tensor([[4.0, 4, 14, 14], [44, 40, 60, 60]]), "labels": torch.tensor([0, 1]),
              "image_id": 1, "scale": (1.0, 1.0)}
    return image, target


def _lit_box(channel: torch.Tensor) -> torch.Tensor | None:
    """xyxy (continuous pixels) of the pixels above 127, None when there are none."""
    ys, xs = torch.nonzero(channel > 127, as_tuple=True)
    if not len(xs):
        return None
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def test_boxes_follow_crop_flip_and_colour_and_their_labels_stay_theirs():
    det = Detection()
    pipe = build(BRIGHT, det, S)
    dropped = clipped = 0
    for seed in range(40):
        image, target = _two_boxes()
        torch.manual_seed(seed)
        out, t = Augmentation.apply(pipe, det, image, target)
        assert out.dtype == torch.uint8 and out.shape == (3, S, S) and type(t["boxes"]) is torch.Tensor
        assert len(t["boxes"]) == len(t["labels"]) and t["image_id"] == 1
        dropped += len(t["boxes"]) < 2
        for box, label in zip(t["boxes"], t["labels"].tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            assert w >= 1 and h >= 1 and box.min() >= 0 and box.max() <= S  # clipped, not degenerate
            clipped += bool(box[0] == 0 or box[1] == 0 or box[2] == S or box[3] == S)
            lit = _lit_box(out[label])
            assert lit is not None and torch.allclose(box, lit, atol=2.5), (seed, box, lit)
    assert dropped and clipped  # the crops did cut boxes and drop some


def test_a_crop_drops_boxes_it_leaves_and_keeps_rows_aligned():
    det = Detection()
    pipe = build(CROP, det, S)
    kept_sets = set()
    for seed in range(30):
        image, target = _two_boxes()
        torch.manual_seed(seed)
        out, t = Augmentation.apply(pipe, det, image, target)
        kept_sets.add(tuple(t["labels"].tolist()))
        for label in (0, 1):  # a box whose pixels are gone is gone from the target
            if _lit_box(out[label]) is None:
                assert label not in t["labels"].tolist()
    assert {(0,), (1,)} <= kept_sets or () in kept_sets


def test_mask_follows_the_image():
    seg = Segmentation()
    pipe = build(BRIGHT, seg, S)
    image = torch.zeros(3, S, S, dtype=torch.uint8)
    image[:, 10:40, 20:50] = 255
    mask = torch.zeros(S, S, dtype=torch.int64)
    mask[10:40, 20:50] = 2
    mask[0:3] = 255  # ignore stays ignore (nearest)
    for seed in range(20):
        torch.manual_seed(seed)
        out, m = Augmentation.apply(pipe, seg, image.clone(), mask.clone())
        assert m.dtype == torch.int64 and set(m.unique().tolist()) <= {0, 2, 255}
        v = out.float().mean(0)
        lit = v > v.max() / 2
        agree = ((m == 2) == lit) | (m == 255)
        assert agree.float().mean() > 0.95  # the rest: a pixel at the edges (bilinear image, nearest mask)
        assert torch.allclose(_lit_box((m == 2).float() * 255), _lit_box(lit.float() * 255), atol=1.0)


def test_points_follow_crop_and_flip(points_registry):
    points = points_registry.task("points")
    pipe = build(RICH, points, S)
    image = torch.zeros(3, S, S, dtype=torch.uint8)
    image[:, 20:30, 40:50] = 255
    mask = torch.zeros(S, S, dtype=torch.uint8)
    mask[20:30, 40:50] = 1
    target = {"points": torch.tensor([[45.0, 25.0]]), "boxes": torch.tensor([[40.0, 20, 50, 30]]), "mask": mask,
              "image_id": 1, "scale": (1.0, 1.0)}
    kept = 0
    for seed in range(30):
        torch.manual_seed(seed)
        out, t = Augmentation.apply(pipe, points, image.clone(), dict(target))
        lit = _lit_box(out.float().mean(0))
        assert len(t["points"]) <= 1 and t["mask"].dtype == torch.uint8
        for p in t["points"]:
            kept += 1
            centre = (lit[:2] + lit[2:]) / 2
            if lit[0] > 0 and lit[1] > 0 and lit[2] < S and lit[3] < S:  # not cut: its centre is the point
                assert torch.allclose(p, centre, atol=1.0), (seed, p, centre)
    assert kept


@pytest.mark.parametrize("seeded", [False, True])
def test_the_default_is_the_old_hand_written_flip_bit_for_bit(seeded, points_registry):
    """The flip of earlier versions: a coin torch.rand(()) < 0.5 (global generator, or one seeded
    with the item's seed), boxes x -> W - x, masks mirrored, points x -> W - x."""
    def old(task, image, target, seed):
        coin = torch.rand((), generator=torch.Generator().manual_seed(seed)) if seeded else torch.rand(())
        if not coin < 0.5:
            return image, target
        if task == "det":
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = S - target["boxes"][:, [2, 0]]
            return image.flip(-1), {**target, "boxes": boxes}
        if task == "seg":
            return image.flip(-1), target.flip(-1)
        if task == "points":
            pts = target["points"].clone()
            pts[:, 0] = S - pts[:, 0]
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = S - target["boxes"][:, [2, 0]]
            return image.flip(-1), {**target, "points": pts, "boxes": boxes, "mask": target["mask"].flip(-1)}
        return image.flip(-1), target

    g = torch.Generator().manual_seed(0)
    samples = {t: SyntheticTask(t, "train", S, 4).load(1) for t in ("det", "seg", "cls")}
    pts = torch.rand(50, 2, generator=g) * S
    samples["points"] = (samples["det"][0], {"points": pts, "boxes": torch.cat([pts - 1.3, pts + 2.1], 1),
                                             "mask": (torch.rand(S, S, generator=g) > 0.5).to(torch.uint8),
                                             "image_id": 1, "scale": (1.0, 1.0)})
    flips = set()
    for task, (image, target) in samples.items():  # task rules from the active registry (installed plugins)
        aug = Augmentation(DEFAULT, task, S)
        for k in range(8):
            torch.manual_seed(k)
            want = old(task, image, target, k)
            after_old = torch.rand(())
            torch.manual_seed(k)
            got = aug(image, target, k if seeded else None)
            assert _same(got, want), (task, k)
            assert torch.equal(torch.rand(()), after_old)  # the same draws from the global generator
            flips.add(not torch.equal(got[0], image))
    assert flips == {True, False}


@pytest.mark.parametrize("task", ["det", "seg", "cls"])
def test_rich_augmentation_items_are_the_same_with_0_1_2_workers(task):
    ds = SyntheticTask(task, "train", S, 12)
    ds.set_augment(RICH)
    runs = {w: _epoch(ds, w) for w in (0, 1, 2)}
    assert _same(runs[0], runs[1]) and _same(runs[0], runs[2])
    plain = SyntheticTask(task, "train", S, 12)
    assert not _same(runs[0], _epoch(plain, 0))  # the options did change the items


def test_a_task_whose_target_cannot_move_is_refused_by_name(write_suite, registry, monkeypatch):
    from mtbench.suite import expand, load_suite

    class Counting(Classification):
        follows = frozenset({"flip"})  # a count survives a flip, not a crop

    assert refusals({**DEFAULT, "hflip": 0.0, "color": {"brightness": 0.2}}, {"cls": Counting()}) == []
    assert refusals(DEFAULT, {"cls": Counting()}) == []
    (why,) = refusals({**DEFAULT, "scale": (0.5, 1.0)}, {"cls": Counting(), "det": Detection()})
    assert "task 'cls'" in why and "crop" in why
    monkeypatch.setattr(Segmentation, "follows", frozenset())
    with pytest.raises(SuiteError, match=r"suite\.yaml:\d+.*fixed\.augment.*task 'seg'"):
        expand(load_suite(write_suite()), registry)
    path = write_suite()
    path.write_text(path.read_text().replace("fixed:\n", "fixed:\n  augment: {hflip: 0}\n"))
    assert expand(load_suite(path), registry)


def test_a_task_written_to_the_old_flip_contract_is_refused_not_left_unflipped():
    """A plugin task that still defines ``flip_target`` (the contract before transforms.v2) would
    see its image flipped and its target not: a suite that flips or crops refuses it, naming it."""
    class OldMasks(Segmentation):
        def flip_target(self, target, width):
            return target.flip(-1)

    (why,) = refusals(DEFAULT, {"seg": OldMasks(), "det": Detection()})
    assert "task 'seg' defines flip_target" in why and "Task.to_tv" in why
    assert refusals({**DEFAULT, "hflip": 0.0}, {"seg": OldMasks()}) == []


@pytest.mark.parametrize("text, says", [
    ("{scale: [0.8, 0.5]}", "0 < low <= high"),
    ("{scale: [0.5, 1.5]}", "at most 1"),
    ("{ratio: [0.75, 1.33]}", "give 'scale' too"),
    ("{hflip: 1.5}", "less than or equal to 1"),
    ("{flip: 0.5}", "flip"),
    ("{color: {brightnes: 0.2}}", "brightnes"),
])
def test_bad_augment_options_fail_with_file_and_line(write_suite, text, says):
    from mtbench.suite import load_suite
    path = write_suite()
    path.write_text(path.read_text().replace("fixed:\n", f"fixed:\n  augment: {text}\n"))
    with pytest.raises(SuiteError, match=r"suite\.yaml:\d+") as err:
        load_suite(path)
    assert says in str(err.value) and "augment" in str(err.value)


def test_augment_is_in_the_identity_only_when_not_the_default(write_suite, registry):
    from mtbench.suite import expand, load_suite

    def cell(extra: str):
        path = write_suite()
        path.write_text(path.read_text().replace("fixed:\n", "fixed:\n" + extra))
        return expand(load_suite(path), registry)[0]

    plain = cell("")
    assert plain.config["fixed"]["augment"] == DEFAULT  # recorded in the cell config
    assert cell("  augment: {hflip: 0.5}\n").hash == plain.hash
    rich = {cell(f"  augment: {a}\n").hash for a in ("{hflip: 0}", "{scale: [0.5, 1]}", "{color: {hue: 0.1}}")}
    assert len(rich) == 3 and plain.hash not in rich
    workers = cell("  num_workers: 2\n").hash
    assert workers not in {plain.hash} | rich
    assert cell("  num_workers: 2\n  augment: {hflip: 0}\n").hash not in {plain.hash, workers} | rich
