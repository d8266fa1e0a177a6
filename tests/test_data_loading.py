"""fixed.cache (none / ram / disk) and fixed.num_workers: same items whatever the mode or worker count."""

from __future__ import annotations

import pytest
import torch

from mtbench.data.augment import Augmentation
from mtbench.data.base import TaskDataset, collate, model_input
from mtbench.data.cache import DiskCache, NoCache, RamBudget, RamCache, item_bytes, make_cache, warm
from mtbench.data.loading import BatchBuffers, SeededSampler, train_loader
from mtbench.data.synthetic import SyntheticTask
from mtbench.errors import DataError
from tests._coco_files import write_coco


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _coco(tmp_path, registry, split="train"):
    write_coco(tmp_path, n={"train": 6, "val": 3})
    return registry.create("dataset", "coco", task="det", split=split, root=tmp_path, image_size=64, path="tiny_coco")


def _epoch(ds, workers, seed=3):
    loader = train_loader(ds, 4, torch.Generator().manual_seed(seed), num_workers=workers)
    return [batch for _ in range(2) for batch in loader]  # two epochs: the second draws new seeds


@pytest.mark.parametrize("task", ["det", "seg"])
def test_same_items_with_0_1_2_workers(task):
    ds = SyntheticTask(task, "train", 64, 12)
    runs = {w: _epoch(ds, w) for w in (0, 1, 2)}
    assert _same(runs[0], runs[1]) and _same(runs[0], runs[2])
    assert not _same(runs[0][:3], runs[0][3:])  # epoch 2 is another order/flip draw, not a replay


def test_worker_batches_cross_as_one_block_per_target_key():
    ds = SyntheticTask("det", "train", 64, 8)
    worker, in_process = (next(iter(train_loader(ds, 4, torch.Generator().manual_seed(0), num_workers=w)))
                          for w in (1, 0))
    for key in ("boxes", "labels"):
        assert len({t[key].untyped_storage().data_ptr() for t in worker[1]}) == 1
        assert len({t[key].untyped_storage().data_ptr() for t in in_process[1]}) == 4
    assert _same(worker, in_process)


_ALL_AUGMENTS = {"hflip": 0.5, "scale": [0.3, 1.0], "ratio": None,
                 "color": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}}


@pytest.mark.parametrize("task", ["seg", "det"])
def test_worker_batches_cross_compact_and_arrive_as_the_items_served(task):
    ds = SyntheticTask(task, "train", 64, 8)
    ds.set_augment(_ALL_AUGMENTS)  # crop, flip and colour jitter: all of them run before the conversion
    keys = list(train_loader(ds, 4, torch.Generator().manual_seed(0), num_workers=0).sampler)
    served = [collate([ds[k] for k in keys[i:i + 4]]) for i in (0, 4)]
    for workers in (0, 2):
        loader = train_loader(ds, 4, torch.Generator().manual_seed(0), num_workers=workers)
        assert _same(list(loader), served)
    images, targets = next(iter(loader.loader))  # what crossed from the workers
    assert images.dtype == torch.uint8 and served[0][0].dtype == torch.float32
    if task == "seg":
        assert targets.dtype == torch.uint8 and served[0][1].dtype == torch.int64


def test_model_input_divides_as_the_items_always_did():
    values = torch.arange(256, dtype=torch.uint8)
    floats, _ = model_input(values, None)
    assert torch.equal(floats, values.float().div(255.0)) and floats.dtype == torch.float32


#: every way a consumer can keep a batch's memory (a replay buffer keeps batches in a list)
_HOLDERS = {"the tensor": lambda x: x, "a view": lambda x: x[0], "a detach": lambda x: x.detach(),
            "a numpy array": lambda x: x.numpy(), "a DLPack capsule": torch.utils.dlpack.to_dlpack,
            "its storage": lambda x: x.untyped_storage(), "a replay list": lambda x: [(x, None)],
            "an autograd graph": lambda x: (x.requires_grad_() ** 2).sum()}


@pytest.mark.parametrize("holder", _HOLDERS)
def test_a_batch_buffer_is_handed_out_again_only_when_nothing_holds_it(holder):
    buffers, shape = BatchBuffers(), torch.Size((2, 3, 4))
    first = buffers.empty(shape).fill_(1.0)
    first_ptr, held = first.data_ptr(), _HOLDERS[holder](first)
    del first
    second = buffers.empty(shape)
    second_ptr = second.data_ptr()
    assert second_ptr != first_ptr  # held: a new buffer, the holder's values stay
    del held, second
    assert buffers.empty(shape).data_ptr() in {first_ptr, second_ptr}  # held by nothing: reused


def test_an_epoch_serves_the_items_whether_or_not_its_batches_are_kept():
    ds = SyntheticTask("seg", "train", 64, 24)
    keys = list(train_loader(ds, 4, torch.Generator().manual_seed(0), num_workers=0).sampler)
    served = [collate([ds[k] for k in keys[i:i + 4]]) for i in range(0, len(keys), 4)]
    for workers in (0, 2):
        loader = train_loader(ds, 4, torch.Generator().manual_seed(0), num_workers=workers)
        kept = []
        for step, batch in enumerate(loader):  # compared as it comes, then every other one kept
            assert _same(batch, served[step])
            kept += [(step, batch)] if step % 2 else []
        assert all(_same(batch, served[step]) for step, batch in kept)


def test_a_uint8_mask_is_augmented_as_its_int64_form():
    ds = SyntheticTask("seg", "train", 64, 4)
    aug = Augmentation(_ALL_AUGMENTS, "seg", 64)
    for index in range(4):
        image, mask = ds.load(index)
        assert mask.dtype == torch.uint8
        for seed in range(6):
            (a_img, a_mask), (b_img, b_mask) = aug(image, mask, seed), aug(image, mask.long(), seed)
            assert torch.equal(a_img, b_img) and b_mask.dtype == torch.int64 and torch.equal(a_mask.long(), b_mask)


def test_disk_cache_folder_follows_the_item_format(tmp_path, monkeypatch):
    from mtbench.data import cache
    monkeypatch.setenv("MTBENCH_CACHE", str(tmp_path))
    folders = []
    for fmt in (cache.FORMAT, cache.FORMAT - 1):
        monkeypatch.setattr(cache, "FORMAT", fmt)
        ds = SyntheticTask("seg", "train", 64, 4)
        ds.set_cache("disk")
        folders.append(ds.cache.folder)
    assert folders[0] != folders[1]


def test_seeded_item_is_a_function_of_index_and_seed(tmp_path, registry):
    ds = _coco(tmp_path, registry)
    flips = set()
    for seed in range(8):
        a, b = ds[(2, seed)], ds[(2, seed)]
        assert _same(a, b)
        flips.add(bool(torch.equal(a[0], ds.load(2)[0].float() / 255)))
    assert flips == {True, False}  # the seed decides the flip, both outcomes occur


def test_seeded_sampler_keeps_the_shuffle_order():
    base = list(torch.utils.data.RandomSampler(range(10), generator=torch.Generator().manual_seed(0)))
    seeded = list(SeededSampler(torch.utils.data.RandomSampler(range(10), generator=torch.Generator().manual_seed(0)),
                                5))
    assert [i for i, _ in seeded] == base and len({s for _, s in seeded}) == 10


@pytest.mark.parametrize("mode", ["none", "ram", "disk"])
def test_cache_modes_serve_the_same_items(tmp_path, registry, monkeypatch, mode):
    monkeypatch.setenv("MTBENCH_CACHE", str(tmp_path / "cache"))
    ref = _coco(tmp_path, registry, "val")
    ds = _coco(tmp_path, registry, "val")
    ds.set_cache(mode)
    for _ in range(2):  # first read fills the cache, second reads it back
        for i in range(len(ds)):
            assert _same(ds[i], ref[i]) and _same(ds.cache.get(i, ds.load), ref.load(i))
    if mode == "disk":
        folder = ds.cache.folder
        assert isinstance(ds.cache, DiskCache) and len(list(folder.glob("*.npy"))) == len(list(folder.glob("*.safetensors"))) == len(ds)
    assert type(ds.cache) is {"none": NoCache, "ram": RamCache, "disk": DiskCache}[mode]


@pytest.mark.parametrize("task", ["det", "seg", "cls"])
def test_disk_cache_serves_the_loaded_item(tmp_path, task):
    ds = SyntheticTask(task, "train", 48, 3)
    cache = DiskCache(tmp_path)
    for i in range(3):
        first, again = cache.get(i, ds.load), cache.get(i, ds.load)
        assert _same(first, ds.load(i)) and _same(again, ds.load(i))
    image = again[0]
    image += 1  # copy-on-write pages: the tensor is writable, the file keeps its values
    assert _same(cache.get(2, ds.load), ds.load(2))


@pytest.mark.parametrize("crash_in", [0, 1])  # the target's file (written first), the image's
def test_disk_cache_write_that_fails_leaves_nothing_to_read(tmp_path, monkeypatch, crash_in):
    from mtbench.data import cache as cache_mod

    opened = []

    class HalfThenCrash:  # writes half of the first chunk it is given, then the process "dies"
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(bytes(memoryview(data).cast("B")[: len(memoryview(data).cast("B")) // 2]))
            raise KeyboardInterrupt

    def fake_open(file, *args, **kwargs):
        f = open(file, *args, **kwargs)
        opened.append(f)
        return HalfThenCrash(f) if len(opened) - 1 == crash_in else f

    ds = SyntheticTask("det", "train", 48, 2)
    cache = DiskCache(tmp_path)
    monkeypatch.setattr(cache_mod, "open", fake_open, raising=False)  # the cache module's file opens
    with pytest.raises(KeyboardInterrupt):
        cache.get(0, ds.load)
    monkeypatch.undo()
    assert len(opened) == crash_in + 1
    assert not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob("*.tmp"))
    for _ in range(2):  # a later run writes the item afresh, then reads it back
        assert _same(cache.get(0, ds.load), ds.load(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.npy", "0.safetensors"]


def test_disk_cache_round_trips_nested_targets(tmp_path):
    image = torch.arange(48, dtype=torch.uint8).reshape(3, 4, 4)
    target = {"a": [1, 2.5, 1 / 3, None, True, "s"], 3: (torch.zeros(0, 4), torch.tensor(7), torch.ones(2, 3).T)}
    cache = DiskCache(tmp_path)
    for _ in range(2):
        got = cache.get(0, lambda i: (image, target))
        assert _same(got, (image, target)) and [type(v) for v in got[1]["a"]] == [type(v) for v in target["a"]]


def test_disk_cache_refuses_a_target_it_cannot_store_without_pickle(tmp_path):
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    for target, kind in (({"x": object()}, "object"), ({(1, 2): torch.ones(2)}, "dict")):
        with pytest.raises(DataError, match=f"cannot store a target holding {kind} "):
            DiskCache(tmp_path).get(0, lambda i: (image, target))
    assert not list(tmp_path.iterdir())


def test_disk_cache_folder_follows_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("MTBENCH_CACHE", str(tmp_path))
    folder = {}
    for key, kw in {"a": {}, "a2": {}, "size": {"image_size": 96}, "seed": {"seed": 1}}.items():
        ds = SyntheticTask("det", "train", kw.get("image_size", 64), 4, seed=kw.get("seed", 0))
        ds.set_cache("disk")
        folder[key] = ds.cache.folder
    assert folder["a"] == folder["a2"] and len({folder["a"], folder["size"], folder["seed"]}) == 3


def test_disk_cache_needs_an_identity():
    class Bare(TaskDataset):
        def __len__(self):
            return 1

    with pytest.raises(DataError, match="cache_identity"):
        Bare("cls", 32, False).set_cache("disk")
    with pytest.raises(DataError, match="'none', 'ram' or 'disk'"):
        make_cache("gpu", {})


def test_ram_cache_stays_within_its_budget():
    ds = SyntheticTask("seg", "train", 64, 10)
    one = item_bytes(ds.load(0))
    budget = RamBudget(3 * one + one // 2)
    ds.set_cache("ram", budget)
    for i in range(len(ds)):
        ds[i]
    assert len(ds.cache.items) == 3 and budget.used == 3 * one and budget.full
    assert _same(ds.cache.get(7, ds.load), ds.load(7))  # past the budget: decoded, same item


def test_warm_fills_ram_before_workers(tmp_path):
    ds = SyntheticTask("det", "train", 64, 10)
    ds.set_cache("ram", RamBudget(10**9))
    warm(ds.cache, len(ds), ds.load, threads=2)
    assert sorted(ds.cache.items) == list(range(10))


def test_loader_keys_leave_the_cell_hash(registry, write_suite):
    from mtbench.suite import expand, load_suite

    def cell_hash(extra: str) -> str:
        path = write_suite()
        path.write_text(path.read_text().replace("fixed:\n", "fixed:\n" + extra))
        return expand(load_suite(path), registry)[0].hash

    plain = cell_hash("")
    assert cell_hash("  cache: disk\n  pin_memory: true\n") == plain
    seeded = {cell_hash(f"  num_workers: {n}\n") for n in (0, 2)}
    assert len(seeded) == 1 and plain not in seeded  # per-item seeds train differently from the old draw


def test_a_cell_trains_the_same_with_2_workers_and_a_disk_cache(registry, write_suite, tmp_path, monkeypatch):
    from mtbench.runner import run_cell
    from mtbench.suite import expand, load_suite

    monkeypatch.setenv("MTBENCH_CACHE", str(tmp_path / "cache"))
    records = []
    for extra in ("  num_workers: 0\n  cache: none\n", "  num_workers: 2\n  cache: disk\n  persistent_workers: true\n"):
        path = write_suite()
        path.write_text(path.read_text().replace("fixed:\n", "fixed:\n" + extra).replace("[equal, sequential]",
                                                                                          "[equal]"))
        cell = expand(load_suite(path), registry)[0]
        records.append(run_cell(cell, registry, show_progress=False))
    a, b = records
    assert a["status"] == b["status"] == "ok" and a["hash"] == b["hash"]
    assert a["metrics"] == b["metrics"] and a["history"] == b["history"]
    assert any((tmp_path / "cache").rglob("*.npy"))


def test_lean_coco_read_skips_unread_keys_and_falls_back_for_nan(tmp_path):
    import json
    import math

    from mtbench.data.coco_json import read_instances

    data = {"info": {"year": 2017}, "images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6, "url": "u"}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 2, "bbox": [1, 1, 2, 2], "area": 4,
                             "iscrowd": 0, "segmentation": [[1, 1, 3, 1, 3, 3]]}],
            "categories": [{"id": 2, "name": "box", "supercategory": "thing"}]}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    lean = read_instances(path, lean=True)
    assert "info" not in lean and "segmentation" not in lean["annotations"][0] and "url" not in lean["images"][0]
    assert lean["annotations"][0] == {k: v for k, v in data["annotations"][0].items() if k != "segmentation"}
    assert lean["categories"] == data["categories"]
    path.write_text(json.dumps(data).replace("[1, 1, 2, 2]", "[1, NaN, 2, 2]"))  # only Python's json reads NaN
    assert math.isnan(read_instances(path, lean=True)["annotations"][0]["bbox"][1])


@pytest.mark.parametrize("kw", [{}, {"progressive": True}, {"subsampling": 0}, {"subsampling": 1}, {"quality": 60},
                                {"quality": 100, "subsampling": 0}])
def test_jpeg_decoding_is_pil_bit_for_bit(tmp_path, kw):
    import numpy as np
    from PIL import Image

    from mtbench.data.base import open_image

    rng = np.random.default_rng(0)
    low = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((97, 61), Image.BICUBIC)
    noisy = np.clip(np.asarray(low, dtype=np.int16) + rng.normal(0, 12, (61, 97, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "a.jpg"
    Image.fromarray(noisy).save(path, "JPEG", **kw)
    with Image.open(path) as ref:
        expected = np.asarray(ref.convert("RGB"))
    assert np.array_equal(np.asarray(open_image(path)), expected)
    Image.fromarray(noisy).convert("L").save(path, "JPEG", **kw)  # grey: PIL decodes and converts, as before
    with Image.open(path) as ref:
        assert np.array_equal(np.asarray(open_image(path)), np.asarray(ref.convert("RGB")))
