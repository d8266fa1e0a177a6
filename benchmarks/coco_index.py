"""Indexing a COCO 2017 train-sized instances file: time and memory of mtbench's COCO loader.

    python benchmarks/coco_index.py [--images 118287] [--annotations 860001] [--data DIR]

Generates (once, into ``--data``, default the user cache folder's ``mtbench/bench_index``) an
``instances_train2017.json``-sized file in the ``dataset: coco`` layout: ``--images`` images
(640 x 480), ``--annotations`` boxes over 80 categories, each with a 50-coordinate polygon
``segmentation`` as COCO's have (so the file is about as large, ~450 MB, and as slow to parse),
and one hard link per image to a single small JPEG (the loader checks that every file exists).
Then, in a fresh process, builds ``mtbench.data.coco.CocoDetection`` on it and prints: the
seconds to parse the JSON, to check its structure, and to build the data set in all; the peak
resident memory (``ru_maxrss``) while doing so; the resident memory once built (the parsed JSON
freed); and the bytes the data set keeps for its annotations (numpy arrays + file names).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import platformdirs
import psutil


def generate(base: Path, n_images: int, n_anns: int) -> Path:
    split = base / "train"
    labels = split / "labels.json"
    if labels.is_file():
        return labels
    (split / "data").mkdir(parents=True, exist_ok=True)
    from PIL import Image
    for k in range(n_images // 60_000 + 1):  # ext4 allows 65,000 links to one file
        Image.new("RGB", (640, 480), (90, 120, 150)).save(base / f"one{k}.jpg")
    rng = random.Random(0)
    images = []
    for i in range(n_images):
        name = f"{i + 1:012d}.jpg"
        images.append({"license": 1, "file_name": name, "coco_url": "", "height": 480, "width": 640,
                       "date_captured": "2013-11-14 17:02:52", "flickr_url": "", "id": i + 1})
        if not (split / "data" / name).exists():
            os.link(base / f"one{i // 60_000}.jpg", split / "data" / name)
    anns = []
    for k in range(n_anns):
        w, h = rng.uniform(4, 320), rng.uniform(4, 240)
        x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
        poly = [round(v, 2) for _ in range(25) for v in (rng.uniform(x, x + w), rng.uniform(y, y + h))]
        anns.append({"segmentation": [poly], "area": round(w * h, 2), "iscrowd": 0,
                     "image_id": rng.randint(1, n_images), "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                     "category_id": rng.randint(1, 80), "id": k + 1})
    cats = [{"supercategory": "thing", "id": c, "name": f"class{c}"} for c in range(1, 81)]
    tmp = labels.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump({"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats}, f)
    tmp.replace(labels)
    return labels


def _child(data: Path) -> dict:
    import numpy as np

    from mtbench.data import coco, coco_json
    from mtbench.data.coco import CocoDetection
    timings: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            out = fn(*a, **kw)
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t
            return out
        return wrapper

    coco_json.read_json = timed("parse_s", coco_json.read_json)
    coco.read_instances = timed("read_and_check_s", coco.read_instances)
    rss0 = psutil.Process().memory_info().rss
    t = time.perf_counter()
    ds = CocoDetection(data.parent, data.name, "train", 320, train=True)
    build_s = time.perf_counter() - t
    gc.collect()
    kept = sum(v.nbytes for v in ds.anns.values()) + ds.image_ids.nbytes + ds.image_wh.nbytes
    kept += sum(sys.getsizeof(f) for f in ds.file_names) + sys.getsizeof(ds.file_names)
    return {"images": len(ds), "annotations": int(ds.anns["start"][-1]), "build_s": build_s,
            "parse_s": timings["parse_s"], "check_s": timings["read_and_check_s"] - timings["parse_s"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mib": rss0 / 2**20, "rss_after_mib": psutil.Process().memory_info().rss / 2**20,
            "kept_mib": kept / 2**20, "first_item_boxes": int(ds.load(0)[1]["boxes"].shape[0]) if len(ds) else 0,
            "numpy": np.__version__}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=118_287)
    ap.add_argument("--annotations", type=int, default=860_001)
    ap.add_argument("--data", default=str(Path(platformdirs.user_cache_dir("mtbench")) / "bench_index"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(Path(args.child))))
        return
    base = Path(args.data) / f"coco_{args.images}_{args.annotations}"
    t = time.perf_counter()
    labels = generate(base, args.images, args.annotations)
    print(f"{labels} ({labels.stat().st_size / 2**20:.0f} MiB; ready in {time.perf_counter() - t:.0f} s)")
    out = subprocess.run([sys.executable, __file__, "--child", str(base)], check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{r['images']} images, {r['annotations']} annotations: built in {r['build_s']:.1f} s "
          f"(JSON parse {r['parse_s']:.1f} s, structure checks {r['check_s']:.1f} s, the rest "
          f"{r['build_s'] - r['parse_s'] - r['check_s']:.1f} s); peak RSS {r['peak_rss_mib']:.0f} MiB "
          f"(before {r['rss_before_mib']:.0f}), after {r['rss_after_mib']:.0f} MiB; annotations kept: "
          f"{r['kept_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
