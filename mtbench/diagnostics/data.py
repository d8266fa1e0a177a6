"""``dropped-annotations``: annotations a loader left out of training and evaluation alike.

A loader drops a box that nothing can match (not finite, width or height <= 0, wholly
outside its image) or that is below its minimum size (:mod:`mtbench.data.coco_json`) from the
training targets and from the evaluation ground truth together, and the runner stores the
counts in ``record["data"]["dropped"]`` (:func:`mtbench.data.base.dropped_summary`). The
finding is a **warning** that invalidates nothing: the metrics still measure what their names
say, on the boxes that remain; it names the file, the reasons and the annotation ids so the
data can be fixed.
"""

from __future__ import annotations

from mtbench.data.coco_json import id_list
from mtbench.diagnostics.binding import Finding


def dropped_annotations(rec: dict) -> list[Finding]:
    """One warning per task whose loaders dropped annotations (none for older records)."""
    out = []
    for task, d in ((rec.get("data") or {}).get("dropped") or {}).items():
        parts = []
        for split in ("train", "val"):
            if d.get(split):
                reasons = ", ".join(f"{n} {r}" for r, n in d["reasons"][split].items())
                ids = [i for ids in d["ids"][split].values() for i in ids]
                parts.append(f"{d[split]} in {split} ({reasons}; annotation ids {id_list(ids)} in {d['files'][split]})")
        out.append(Finding("dropped-annotations", "warning",
                           f"{task}: boxes dropped from training and evaluation alike: {'; '.join(parts)}",
                           {"train": d.get("train", 0), "val": d.get("val", 0)}))
    return out
