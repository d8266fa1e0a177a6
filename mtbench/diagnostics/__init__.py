"""Checks that flag results that are not what they seem, and bind the outcome.

Each check is a pure function ``check(record) -> list[Finding]`` over a stored cell
record (so ``mtbench doctor`` can re-examine old results). They run on every cell after
it finishes; findings go into the record's ``diagnostics``. Each finding names the metric
keys it invalidates (:mod:`.binding`): the table marks those numbers (``†`` + legend, CSV
``flags``), gates on them read ``not meaningful``, and ``mtbench run`` exits 3 (suspect
result) on a not-meaningful gate or an ``error`` finding.

| check | flags | invalidates |
|---|---|---|
| ``overfit-one-batch`` | before the run, a copy trained on 2 fixed images per task (10 % of the budget's steps per task, 4 to 40) kept > 80 % of its loss above the floor (cannot learn), or is < 5 % better on its batch than on the same batch with the images rolled (ignores its input) (:mod:`.overfit`); a warning when the trained task beats its measured chance on every score | the task's metrics (none when refuted) |
| ``dead-loss`` | a loss component exactly 0 or missing in >= 25 % of a stage's steps (or all of the last 20), a declared component never reported, the assigner's positives absent in >= 25 % of the steps; constant over the last 20 (warning) | the task's metrics |
| ``positive-ratio`` | dense-head positives : negatives per level below 1 : 1000 in >= 25 % of the steps (error when some had none) | the task's metrics (error) |
| ``chance-level`` | a score whose CI overlaps its measured chance level's CI (float32-safe point rule for old records) (:mod:`.chance_level`) | the score; forgetting/BWT from a stage score at chance |
| ``divergence`` | NaN/inf or 100x loss growth (the cell failed; step and learning rate given) | - |
| ``gradient-conflict`` | mean cosine between task gradients on shared parameters below 0 | - |
| ``task-weight-collapse`` | a learned task weight at ~0 (< 0.1 % of the mean, error) or at <= 1:50 of the largest for >= 25 % of the steps (warning) (:mod:`.weights`) | the starved task's metrics |
| ``implausible-speed`` | FLOPs x FPS above the device's measured matmul peak, or latency without warm-up/sync | ``fps``, latencies |
| ``reference-figures`` | params/FLOPs off the suite's ``expect`` or the plugin's paper figures by more than the tolerance (:mod:`.reference`) | ``params_m``/``flops_g`` |
| ``dropped-annotations`` | a loader dropped boxes nothing can match (degenerate, wholly outside the image) from training and evaluation alike; file, reasons, annotation ids (warning) (:mod:`.data`) | - |
| ``no-uncertainty`` | a task's headline score has no 95 % CI (fewer than 2 val images, or undefined on a bootstrap resample); the split's image count (warning) (:mod:`.uncertainty`) | - |
"""

from __future__ import annotations

from mtbench.diagnostics.binding import Finding
from mtbench.diagnostics.checks import CHECKS, diagnose, rediagnose

__all__ = ["CHECKS", "Finding", "diagnose", "rediagnose"]
