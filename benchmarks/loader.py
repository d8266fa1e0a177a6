"""Loader benchmark: mtbench's data sets (each ``fixed.cache`` mode, 0 / 2 workers) beside a plain
torchvision ``CocoDetection`` / ``ImageFolder`` + ``DataLoader`` loop, on generated data on disk.

    python benchmarks/loader.py                         # 1k, 5k, 20k images, COCO + ImageFolder
    python benchmarks/loader.py --sizes 1000,5000 --layouts coco --workers 0,2 --loaders torchvision,none,disk

Data (generated once, reused): ``--data`` (default: the user cache folder's ``mtbench/bench``, outside
the repository). ``jpegs/`` holds ``max(--sizes)`` JPEGs of COCO's typical size (640 x 360..480,
quality 90, about 150 KB: a smooth random scene plus sensor-like noise); ``coco_<n>/train/data`` and
``imagefolder_<n>/train/<class>`` hard-link the first ``n`` of them; ``labels.json`` holds 1-13
boxes per image (COCO averages 7.3) over 80 categories.

Every configuration runs in its own process (so peak memory is its own): one pass over the
split (``--epochs`` passes for ``ram`` / ``disk``, whose first pass fills the cache) (shuffled, batch ``--batch``, resized to ``--image-size`` pixels, float32 in
[0, 1], random horizontal flip) with ``torch.set_num_threads(1)``. Reported per configuration:
images/s of each epoch and the peak resident memory of the process plus its workers during
the epochs, sampled every 50 ms: RSS (a page shared copy-on-write counts once per process) and
PSS (it counts once in all); ``base_mib`` is the RSS after building the data set, before the
first epoch, and ``build_s`` includes filling a ``ram`` cache before workers start. The ``disk``
cache is written to a fresh folder under ``--data`` and deleted after its run.

``disk`` epochs in one process (second epoch vs first without the machine's drift between
processes): ``--rounds R`` runs the ``disk`` configurations' epochs R times in their process,
deleting the cached files before each round; ``--cold`` adds to each round one more epoch after
the cache files are written out and dropped from the page cache (``posix_fadvise(DONTNEED)``,
their pages only), i.e. the second epoch as it is when the cache does not fit in the memory the
machine leaves to its page cache. Each round prints ``fill / warm [/ cold]`` images/s.
``--persistent`` keeps the workers between epochs (``persistent_workers``, what
``fixed.persistent_workers: true`` does in training); without it, each epoch's time includes
its workers' start.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import platformdirs
import psutil
from PIL import Image

NUM_CLASSES_COCO, NUM_CLASSES_FOLDER = 80, 10


def _jpeg(i: int, noise: np.ndarray, path: Path) -> None:
    rng = np.random.default_rng(i)
    h = int(rng.choice([360, 427, 480]))
    low = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    scene = np.asarray(Image.fromarray(low).resize((640, h), Image.BICUBIC), dtype=np.int16)
    y, x = rng.integers(0, noise.shape[0] - h), rng.integers(0, noise.shape[1] - 640)
    img = np.clip(scene + noise[y:y + h, x:x + 640], 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, "JPEG", quality=90)


def generate(root: Path, sizes: list[int]) -> None:
    """Write the JPEG pool and every layout that is missing (see the module docstring)."""
    pool = root / "jpegs"
    pool.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).normal(0, 14, (960, 1280, 3)).astype(np.int16)
    n_max, t0 = max(sizes), time.perf_counter()
    for i in range(n_max):
        p = pool / f"{i:06d}.jpg"
        if not p.is_file():
            _jpeg(i, noise, p)
            if i % 2000 == 0:
                print(f"  generated {i}/{n_max} JPEGs ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    for n in sizes:
        _coco_layout(root / f"coco_{n}", pool, n)
        _folder_layout(root / f"imagefolder_{n}", pool, n)


def _link_all(pool: Path, n: int, dest_of) -> None:
    for i in range(n):
        dest = dest_of(i)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(pool / f"{i:06d}.jpg", dest)


def _coco_layout(base: Path, pool: Path, n: int) -> None:
    labels = base / "train" / "labels.json"
    if labels.is_file():
        return
    _link_all(pool, n, lambda i: base / "train" / "data" / f"{i:06d}.jpg")
    rng = random.Random(n)
    images, anns = [], []
    for i in range(n):
        w, h = Image.open(pool / f"{i:06d}.jpg").size
        images.append({"id": i + 1, "file_name": f"{i:06d}.jpg", "width": w, "height": h})
        for _ in range(rng.randint(1, 13)):
            bw, bh = rng.uniform(8, w / 2), rng.uniform(8, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": rng.randint(1, NUM_CLASSES_COCO),
                         "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                         "area": round(bw * bh, 2), "iscrowd": 0})
    cats = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in range(1, NUM_CLASSES_COCO + 1)]
    tmp = labels.with_suffix(".tmp")
    tmp.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    tmp.replace(labels)


def _folder_layout(base: Path, pool: Path, n: int) -> None:
    _link_all(pool, n, lambda i: base / "train" / f"c{i % NUM_CLASSES_FOLDER}" / f"{i:06d}.jpg")


class _PeakRss:
    """Peak RSS and PSS (bytes) of this process plus its children, sampled every 50 ms while
    running (PSS splits a page shared by k processes k ways, so copy-on-write sharing shows)."""

    def __init__(self):
        self.peak = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            rss = pss = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    m = p.memory_full_info()
                except psutil.Error:
                    continue
                rss, pss = rss + m.rss, pss + m.pss
            self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _collate(batch):
    import torch
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def _loader(args):
    """The DataLoader of one configuration."""
    import torch
    from torch.utils.data import DataLoader

    base, seed = Path(args.data) / f"{args.layout}_{args.n}", 0
    if args.loader == "torchvision":
        from torchvision import datasets, transforms
        tf = transforms.Compose([transforms.Resize((args.image_size, args.image_size)),
                                 transforms.RandomHorizontalFlip(), transforms.ToTensor()])
        if args.layout == "coco":
            ds = datasets.CocoDetection(str(base / "train" / "data"), str(base / "train" / "labels.json"), transform=tf)
        else:
            ds = datasets.ImageFolder(str(base / "train"), transform=tf)
        return DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers, collate_fn=_collate,
                          generator=torch.Generator().manual_seed(seed),
                          persistent_workers=args.persistent and args.workers > 0)
    from mtbench.data.coco import CocoDetection
    from mtbench.data.imagefolder import ImageFolderClassification
    from mtbench.data.loading import train_loader
    if args.layout == "coco":
        ds = CocoDetection(Path(args.data), base.name, "train", args.image_size, train=True)
    else:
        ds = ImageFolderClassification(Path(args.data), base.name, "train", args.image_size, train=True)
    ds.set_cache(args.mode)
    return train_loader(ds, args.batch, torch.Generator().manual_seed(seed), num_workers=args.workers,
                        persistent_workers=args.persistent)


def _child(args) -> dict:
    import torch
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    loader = _loader(args)
    build_s = time.perf_counter() - t0
    base_mib = psutil.Process().memory_info().rss / 2**20
    disk = args.loader == "mtbench" and args.mode == "disk"
    cache = Path(os.environ.get("MTBENCH_CACHE", "."))
    rounds = []
    with _PeakRss() as peak:
        for r in range(args.rounds if disk else 1):
            for path in _cache_files(cache) if r else ():
                path.unlink()
            epochs = [_rate(loader) for _ in range(args.epochs)]
            if disk and args.cold:
                _drop_from_page_cache(cache)
                epochs.append(_rate(loader))
            rounds.append(epochs)
    return {"build_s": build_s, "base_mib": base_mib, "peak_mib": peak.peak / 2**20,
            "peak_pss_mib": peak.peak_pss / 2**20, "images_per_s": rounds[0], "rounds": rounds}


def _epoch(loader) -> tuple[int, float]:
    """Images and seconds of one pass over ``loader``."""
    t, n = time.perf_counter(), 0
    for images, _targets in loader:
        n += images.shape[0]
    return n, time.perf_counter() - t


def _rate(loader) -> float:
    n, dt = _epoch(loader)
    return n / dt


def _cache_files(folder: Path) -> list[Path]:
    """A ``disk`` cache's item files under ``folder`` (images ``.npy``, targets ``.safetensors``)."""
    return [*folder.rglob("*.npy"), *folder.rglob("*.safetensors")]


def _drop_from_page_cache(folder: Path) -> None:
    """Write ``folder``'s cache files to disk and drop them from the page cache (their pages only)."""
    for path in _cache_files(folder):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _interleaved(args) -> dict:
    """torchvision vs mtbench (``--mode``) in one process, in turn, so load that drifts on a shared
    machine falls on both alike. 0 workers: a batch of each in turn, each batch timed. With
    workers: whole epochs in turn (``--epochs`` rounds of torchvision then mtbench; two loaders'
    workers never run at once), each timed from ``iter()`` (the workers' start, as in training
    without ``persistent_workers``) to its last batch. ``ratios``: mtbench / torchvision per round."""
    import torch
    torch.set_num_threads(1)
    loaders = {}
    for loader in ("torchvision", "mtbench"):
        args.loader = loader
        loaders[loader] = _loader(args)
    seconds, images = {k: 0.0 for k in loaders}, {k: 0 for k in loaders}
    if args.workers == 0:
        iters = {k: iter(v) for k, v in loaders.items()}
        while iters:
            for name in list(iters):
                t = time.perf_counter()
                batch = next(iters[name], None)
                if batch is None:
                    del iters[name]
                    continue
                seconds[name] += time.perf_counter() - t
                images[name] += batch[0].shape[0]
        rounds = []
    else:
        rounds = []
        for _ in range(args.epochs):
            ips = {}
            for name, loader in loaders.items():
                n, dt = _epoch(loader)
                images[name], seconds[name], ips[name] = images[name] + n, seconds[name] + dt, n / dt
            rounds.append(ips["mtbench"] / ips["torchvision"])
    ips = {k: images[k] / seconds[k] for k in seconds}
    return {"images_per_s": ips, "ratio": ips["mtbench"] / ips["torchvision"], "ratios": rounds}


def _run_one(args, layout: str, n: int, loader: str, mode: str, workers: int) -> dict:
    cache = Path(args.data) / f"cache_run_{os.getpid()}"
    cmd = [sys.executable, __file__, "--child", "--data", args.data, "--layout", layout, "--n", str(n),
           "--loader", loader, "--mode", mode, "--workers", str(workers),
           "--epochs", str(args.epochs if mode in ("ram", "disk") else 1),
           "--image-size", str(args.image_size), "--batch", str(args.batch), "--rounds", str(args.rounds)]
    cmd += ["--cold"] * args.cold + ["--persistent"] * args.persistent
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env={**os.environ, "MTBENCH_CACHE": str(cache)})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"layout": layout, "images": n, "loader": loader, "cache": mode, "workers": workers,
            **json.loads(out.stdout.strip().splitlines()[-1])}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000,20000", help="comma-separated image counts")
    ap.add_argument("--layouts", default="coco,imagefolder")
    ap.add_argument("--loaders", default="torchvision,none,ram,disk",
                    help="torchvision and/or mtbench with these cache modes, run in this order")
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--data", default=str(Path(platformdirs.user_cache_dir("mtbench")) / "bench"))
    ap.add_argument("--out", help="also write the rows as JSON here")
    ap.add_argument("--interleaved", action="store_true",
                    help="instead: torchvision vs mtbench (first of --loaders' modes) in one process for each "
                         "layout, size and worker count: 0 workers, batches alternated over one epoch each; "
                         "with workers, --epochs rounds of one epoch each, alternated")
    ap.add_argument("--rounds", type=int, default=1, help="disk: repeat its epochs this many times in its process")
    ap.add_argument("--cold", action="store_true",
                    help="disk: one more epoch per round with the cache dropped from the page cache")
    ap.add_argument("--persistent", action="store_true",
                    help="keep the workers between epochs (persistent_workers, fixed.persistent_workers)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--layout", "--n", "--loader", "--mode"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.n, args.workers = int(args.n), int(args.workers)
        print(json.dumps(_child(args)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    generate(Path(args.data), sizes)
    if args.interleaved:
        args.mode = next(m for m in args.loaders.split(",") if m != "torchvision")
        for args.layout in args.layouts.split(","):
            for args.n in sizes:
                for args.workers in workers:
                    r = _interleaved(args)
                    rounds = f" (per round {', '.join(f'{x:.2f}' for x in r['ratios'])})" if r["ratios"] else ""
                    print(f"{args.layout:<11} {args.n:>6} interleaved, {args.workers} workers: torchvision "
                          f"{r['images_per_s']['torchvision']:.0f} img/s, mtbench {args.mode} "
                          f"{r['images_per_s']['mtbench']:.0f} img/s: {r['ratio']:.2f}x{rounds}", flush=True)
        return
    rows = []
    for layout in args.layouts.split(","):
        for n in sizes:
            for w in workers:  # torchvision beside each mode in one run: ratios hold on a shared machine
                for name in args.loaders.split(","):
                    loader, mode = ("torchvision", "-") if name == "torchvision" else ("mtbench", name)
                    row = _run_one(args, layout, n, loader, mode, w)
                    rows.append(row)
                    print(_fmt(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


def _fmt(r: dict) -> str:
    ips = "; ".join(" / ".join(f"{v:.0f}" for v in epochs) for epochs in r.get("rounds", [r["images_per_s"]]))
    return (f"{r['layout']:<11} {r['images']:>6} {r['loader']:<11} {r['cache']:<4} w={r['workers']}  "
            f"img/s per epoch {ips:<11} peak RSS {r['peak_mib']:.0f} MiB, PSS {r['peak_pss_mib']:.0f} "
            f"(base {r['base_mib']:.0f}, "
            f"build {r['build_s']:.1f} s)")


if __name__ == "__main__":
    main()
