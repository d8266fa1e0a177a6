"""Where a warm ``cache: disk`` epoch spends its time: each piece of an item's and a batch's way,
timed alone in one process, then whole epochs with 0 and 2 workers.

    python benchmarks/disk_epoch.py            # COCO layout of benchmarks/loader.py, 1k images

Uses the generated data of ``benchmarks/loader.py`` (run it first; ``--data`` as there); the disk
cache goes to a fresh folder under it and is deleted after. One torch thread. Printed, in ms an
image: the read of a cached item (``np.load(mmap_mode="c")`` of its image, safetensors read of its
target, and each alone, and ``torch.load`` of the same target saved by ``torch.save``: FORMAT 2's
way), the seeded augmentation in the main process, the per-item seeding as it was (``fork_rng`` +
``torch.manual_seed``) and as it is in the main process and in a worker, the v2 pipeline alone,
``collate`` of ``uint8`` items, the main process's :func:`mtbench.data.base.model_input` into a
fresh batch, into :class:`~mtbench.data.loading.BatchBuffers` (reused, as
:class:`~mtbench.data.loading.CompactLoader` does) and fresh again (load that drifts shows as a gap
between the two fresh readings); then per epoch the images/s, the time to the first batch (the
workers' start) and, with workers, the images/s of the same loader without the conversion.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import platformdirs


def _ms(f, xs) -> float:
    t0 = time.perf_counter()
    for x in xs:
        f(x)
    return (time.perf_counter() - t0) / len(xs) * 1e3


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(platformdirs.user_cache_dir("mtbench")) / "bench"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args(argv)
    cache = Path(args.data) / f"cache_pieces_{os.getpid()}"
    os.environ["MTBENCH_CACHE"] = str(cache)
    import numpy as np
    import torch
    from safetensors import safe_open

    from mtbench.data.base import collate, model_input
    from mtbench.data.coco import CocoDetection
    from mtbench.data.loading import BatchBuffers, train_loader
    torch.set_num_threads(1)
    try:
        ds = CocoDetection(Path(args.data), f"coco_{args.n}", "train", args.image_size, train=True)
        ds.set_cache("disk")
        folder = ds.cache.folder
        idx = list(range(len(ds)))
        items = [ds.cache.get(i, ds.load) for i in idx]  # fills the cache
        for i in idx:  # the targets as FORMAT 2 held them, for comparison
            torch.save(items[i][1], folder / f"{i}.pt")
        task, pipe = ds.augment._pipeline()
        ds.augment(*items[0], 0)  # first call builds the pipeline

        def fork_rng_seeded(i):  # the per-item seeding before: every device's generators, state kept
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(i)

        def kept_state_seeded(i):  # the main process's now: the CPU generator, its state kept
            state = torch.default_generator.get_state()
            torch.default_generator.manual_seed(i)
            torch.default_generator.set_state(state)

        def target(i):
            with safe_open(folder / f"{i}.safetensors", "pt") as f:
                return json.loads(f.metadata()["target"]), [f.get_tensor(k) for k in f.keys()]

        pieces = {"cache read (image + target)": _ms(lambda i: ds.cache.get(i, ds.load), idx),
                  "  of which np.load(mmap) of the image": _ms(
                      lambda i: torch.from_numpy(np.load(folder / f"{i}.npy", mmap_mode="c", allow_pickle=False)), idx),
                  "  of which the target (safetensors)": _ms(target, idx),
                  "  the target by torch.load instead": _ms(
                      lambda i: torch.load(folder / f"{i}.pt", weights_only=True), idx),
                  "seeded augmentation (main process)": _ms(lambda i: ds.augment(*items[i], i), idx),
                  "  fork_rng + manual_seed (before)": _ms(fork_rng_seeded, idx),
                  "  CPU generator, state kept (main)": _ms(kept_state_seeded, idx),
                  "  CPU generator alone (a worker)": _ms(torch.default_generator.manual_seed, idx),
                  "  the v2 pipeline alone": _ms(lambda i: ds.augment.apply(pipe, task, *items[i]), idx)}
        b = args.batch
        batches = [collate([ds.item((i, i)) for i in idx[s:s + b]]) for s in range(0, len(idx) - b + 1, b)]
        pieces["collate"] = _ms(lambda s: collate([items[i] for i in idx[s:s + b]]), range(0, len(idx) - b + 1, b)) / b
        pieces["model_input (main process)"] = _ms(lambda x: model_input(*x), batches) / b
        buffers = BatchBuffers()
        pieces["  into BatchBuffers (CompactLoader)"] = _ms(
            lambda x: model_input(*x, out=buffers.empty(x[0].shape)), batches) / b
        pieces["model_input, fresh batch, again"] = _ms(lambda x: model_input(*x), batches) / b
        for name, ms in pieces.items():
            print(f"{name:36s} {ms:.3f} ms an image")
        for workers in (0, 2):
            loader = train_loader(ds, b, torch.Generator().manual_seed(0), num_workers=workers)
            for _ in range(2):
                t0 = time.perf_counter()
                it = iter(loader)
                n = next(it)[0].shape[0]
                t1 = time.perf_counter()
                n += sum(x[0].shape[0] for x in it)
                dt = time.perf_counter() - t0
                print(f"{workers} workers: {n / dt:.0f} img/s ({n} images in {dt:.2f} s, first batch after {t1 - t0:.2f} s)")
            if workers:
                t0 = time.perf_counter()
                n = sum(x[0].shape[0] for x in loader.loader)
                print(f"{workers} workers, uint8 batches without the conversion: {n / (time.perf_counter() - t0):.0f} img/s")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
