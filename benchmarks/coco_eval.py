"""Time ``mtbench metrics coco`` against pycocotools, each as a whole process, on the same files.

    python benchmarks/coco_eval.py [--images 5000] [--dets-per-image 100] [--repeats 3] [--seed 0]

Generates (seeded, in a temporary folder) a COCO instances ground truth of ``--images`` images
(80 categories, 1 + Poisson(6) boxes an image, areas log-uniform over COCO's small/medium/large
ranges, 1 % crowd) and a detections list of ``--dets-per-image`` detections an image: each
ground-truth box found with probability 0.85 (jittered by 10 % of its size, the wrong category
one time in ten), the rest false positives; scores uniform in [0.4, 1] for the found boxes, [0, 0.6] for
the false positives. Then runs, ``--repeats`` times and
interleaved:

- ``python -m mtbench metrics coco --gt GT --dt DT`` (faster-coco-eval behind mtbench's checks);
- a pycocotools script: ``COCO(GT)``, ``loadRes(DT)``, ``evaluate``, ``accumulate``, ``summarize``.

Each time is a whole process (interpreter start, imports, JSON parsing, evaluation, printing);
the ratio is given for the best and the median of the repeats (on a shared machine the best
is the least disturbed). The 12 stats of both must agree to 1e-6 (the script exits 1 if not).
Prints both times and their ratio (the target of issue 11 is mtbench >= 5x faster).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PYCOCOTOOLS = """\
import sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1])
    ev = COCOeval(gt, gt.loadRes(sys.argv[2]), "bbox")
    ev.evaluate(); ev.accumulate(); ev.summarize()
for v in ev.stats:
    print(f"{v:.6f}")
"""


def make_files(folder: Path, n_images: int, dets_per_image: int, seed: int) -> tuple[Path, Path, int, int]:
    """Write ``gt.json`` and ``dt.json`` under ``folder``; return their paths and the box counts."""
    rng = np.random.default_rng(seed)
    cats = [{"id": i + 1, "name": f"class_{i + 1}", "supercategory": "thing"} for i in range(80)]
    images, anns, dets = [], [], []
    for img_id in range(1, n_images + 1):
        w, h = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": w, "height": h})
        found = []
        for _ in range(1 + rng.poisson(6)):
            area = float(np.exp(rng.uniform(np.log(16), np.log(0.5 * w * h))))
            aspect = float(np.exp(rng.uniform(-1, 1)))
            bw, bh = min(w - 1.0, np.sqrt(area * aspect)), min(h - 1.0, np.sqrt(area / aspect))
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            cat = int(rng.integers(1, 81))
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat, "bbox": [x, y, bw, bh],
                         "area": bw * bh, "iscrowd": int(rng.random() < 0.01)})
            if rng.random() < 0.85:
                j = rng.normal(0, 0.1, 4) * [bw, bh, bw, bh]
                found.append((cat if rng.random() < 0.9 else int(rng.integers(1, 81)), 0.4 + 0.6 * rng.random(),
                              [x + j[0], y + j[1], max(1.0, bw + j[2]), max(1.0, bh + j[3])]))
        for _ in range(max(0, dets_per_image - len(found))):
            bw, bh = float(rng.uniform(4, w / 2)), float(rng.uniform(4, h / 2))
            found.append((int(rng.integers(1, 81)), 0.6 * rng.random(),
                          [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh]))
        for cat, score, box in found[:dets_per_image]:
            dets.append({"image_id": img_id, "category_id": cat, "bbox": [round(float(v), 2) for v in box],
                         "score": round(float(score), 4)})
    gt_path, dt_path = folder / "gt.json", folder / "dt.json"
    gt_path.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": anns,
                                   "categories": cats}))
    dt_path.write_text(json.dumps(dets))
    return gt_path, dt_path, len(anns), len(dets)


def timed(cmd: list[str]) -> tuple[float, list[float]]:
    """Wall seconds of ``cmd`` as a whole process, and the last 12 numbers it printed."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr}")
    values = [float(line.split()[-1]) for line in out.stdout.strip().splitlines()[-12:]]
    return seconds, values


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets-per-image", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gt, dt, n_gt, n_dt = make_files(Path(tmp), args.images, args.dets_per_image, args.seed)
        print(f"{args.images} images, {n_gt} ground-truth boxes, {n_dt} detections "
              f"(gt.json {gt.stat().st_size / 2**20:.1f} MiB, dt.json {dt.stat().st_size / 2**20:.1f} MiB)")
        commands = {"mtbench metrics coco": [sys.executable, "-m", "mtbench", "metrics", "coco", "--gt", str(gt),
                                             "--dt", str(dt)],
                    "pycocotools": [sys.executable, "-c", PYCOCOTOOLS, str(gt), str(dt)]}
        times: dict[str, list[float]] = {k: [] for k in commands}
        stats: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                seconds, stats[name] = timed(cmd)
                times[name].append(seconds)
    ours, ref = stats["mtbench metrics coco"], stats["pycocotools"]
    agree = np.allclose(ours, ref, atol=1e-6, rtol=0)
    print(f"stats agree to 1e-6: {agree} (mAP@[.5:.95] {ours[0]:.6f} vs {ref[0]:.6f}, AP50 {ours[1]:.6f} vs {ref[1]:.6f})")
    for name, ts in times.items():
        print(f"{name:>20s}: best {min(ts):.2f} s of {len(ts)} ({', '.join(f'{t:.2f}' for t in ts)})")
    ours_t, ref_t = times["mtbench metrics coco"], times["pycocotools"]
    print(f"ratio pycocotools / mtbench: {min(ref_t) / min(ours_t):.2f}x (best), "
          f"{float(np.median(ref_t)) / float(np.median(ours_t)):.2f}x (median)")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
