"""Checks that flag results that are not what they seem.

Each check is a pure function ``check(record) -> list[Finding]`` over a stored cell
record (so ``mtbench doctor`` can re-examine old results). They run on every cell after
it finishes; findings go into the record's ``diagnostics`` and the table's
``diagnostics`` column.

| check | flags |
|---|---|
| ``overfit-one-batch`` | before the run, a copy trained on one fixed batch did not cut its loss above the floor by 90% (:mod:`.overfit`) |
| ``dead-loss`` | a loss component exactly 0 or constant over the last K logged steps (with the positives then) |
| ``positive-ratio`` | dense-head positives : negatives per level below 1 : 1000 |
| ``chance-level`` | a metric not above its chance level; forgetting from a chance-level score is "not meaningful" |
| ``divergence`` | NaN/inf or 100x loss growth (the cell failed; step and learning rate given) |
| ``gradient-conflict`` | mean cosine between task gradients on shared parameters below 0 |
| ``task-weight-collapse`` | a learned task weight (GradNorm, uncertainty, DWA) at ~0 (< 0.1% of the mean weight) at the end or for 10% of the steps |
| ``implausible-speed`` | FLOPs x FPS above the device's measured matmul peak, or latency without warm-up/sync |
"""

from __future__ import annotations

from mtbench.diagnostics.checks import CHECKS, Finding, diagnose

__all__ = ["CHECKS", "Finding", "diagnose"]
