"""``no-uncertainty``: a task's headline score stored without its 95 % confidence interval.

A score without its uncertainty cannot be ranked (README, "What the numbers mean"): the bootstrap over
the val images (:func:`mtbench.metrics.base.bootstrap_ci`) gives none when the split has fewer
than 2 images, or when the metric is undefined (NaN) on some resample (e.g. a resample without
any target). The finding says which, with the split's image count; it is a warning and
invalidates nothing (the point value is still what was measured). Records stored before
intervals existed (no ``record["uncertainty"]``) and failed cells are not checked.
"""

from __future__ import annotations

from mtbench.diagnostics.binding import Finding
from mtbench.metrics import headlines
from mtbench.metrics.base import num_samples


def no_uncertainty(rec: dict) -> list[Finding]:
    """Headline scores without a 95 % CI (fewer than 2 val images, or undefined on a resample)."""
    if rec.get("status") != "ok" or "uncertainty" not in rec:
        return []
    metrics, cis, samples = rec.get("metrics") or {}, rec.get("ci") or {}, rec.get("samples") or {}
    out = []
    for task, key in headlines([rec]).items():
        if key not in metrics or key in cis:
            continue
        entry = samples.get(task)
        n = num_samples(entry["columns"]) if isinstance(entry, dict) and "columns" in entry else None
        why = ("no per-image samples stored" if n is None else
               f"its val split has {n} image(s); a bootstrap needs at least 2" if n < 2 else
               f"{key} is undefined on some bootstrap resample of its {n} val images")
        out.append(Finding("no-uncertainty", "warning",
                           f"{key} = {metrics[key]:.4g} has no 95 % CI ({why}): it cannot be ranked",
                           {"metric": key, "val_images": n}))
    return out
