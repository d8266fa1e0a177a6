"""The metric contract: per-sample records, so every metric can be recomputed on a resample.

A metric accumulates a split and keeps, per val image, the sufficient statistics its value
is a function of (torchmetrics' ``update``/``compute`` split, plus the per-image records a
bootstrap needs). Built-in and plugin metrics implement the same three methods:

- ``update(preds, targets) -> None``: one batch (shapes per task: DESIGN.md);
- ``samples() -> dict[str, list]``: JSON-ready per-image columns, each of length ``N``
  (the split's images, in evaluation order); a column entry may itself be a list (e.g.
  per-class intersections ``int (C,)`` of one image);
- ``reduce(samples, index) -> dict[str, float]`` (static): the metric values on the
  images ``index`` (``int64 (M,)``, indices into the columns, repeats allowed: a bootstrap
  resample). ``compute()`` is ``reduce(samples(), arange(N))``, so the point estimate and
  every resample go through the same code.

Uncertainty (:func:`bootstrap_ci`): percentile bootstrap over val images (Efron &
Tibshirani, 1993), ``scipy.stats.bootstrap`` with a seeded generator, so a CI is
reproducible; paired differences (:func:`paired_bootstrap_ci`) resample the same image
indices for both runs.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 200
DEFAULT_LEVEL = 0.95

Samples = dict[str, list]
Reducer = Callable[[Samples, np.ndarray], dict[str, float]]


class SampleMetric(Protocol):
    """What every metric implements (see the module docstring)."""

    def update(self, preds: Any, targets: Any) -> None: ...

    def samples(self) -> Samples: ...

    @staticmethod
    def reduce(samples: Samples, index: np.ndarray) -> dict[str, float]: ...

    def compute(self) -> dict[str, float]: ...


class SampleMetricBase:
    """Mixin: ``compute()`` and ``num_samples`` from ``samples()`` and ``reduce``."""

    def compute(self) -> dict[str, float]:
        s = self.samples()
        return self.reduce(s, np.arange(num_samples(s)))


def num_samples(samples: Samples) -> int:
    """Number of images ``N`` in a samples dict (the length of its columns; 0 when empty).

    :raises ValueError: columns of different lengths.
    """
    lengths = {len(v) for v in samples.values()}
    if len(lengths) > 1:
        raise ValueError(f"per-sample columns have different lengths: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def _as_arrays(samples: Samples) -> dict[str, np.ndarray | list]:
    """Regular columns as arrays (fast indexing); ragged ones (per-image lists of different
    lengths, e.g. detections) stay lists."""
    out = {}
    for k, v in samples.items():
        try:
            out[k] = v if isinstance(v, np.ndarray) else np.asarray(v)
        except ValueError:
            out[k] = v
        if isinstance(out[k], np.ndarray) and out[k].dtype == object:
            out[k] = v
    return out


def full_value(reduce: Reducer, samples: Samples) -> dict[str, float]:
    """The metrics ``reduce`` computes on every image once (the identity resample): the value
    itself, equal to the metric's ``compute()`` (each built-in metric's tests check it)."""
    return reduce(_as_arrays(samples), np.arange(num_samples(samples)))


def bootstrap_ci(reduce: Reducer, samples: Samples, keys: list[str] | None = None,
                 resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0,
                 method: str = "percentile") -> dict[str, tuple[float, float]]:
    """Bootstrap confidence intervals of the metrics ``reduce`` computes, over images.

    :param reduce: a metric's ``reduce(samples, index)``.
    :param samples: the metric's per-image columns (``N`` images).
    :param keys: which metrics to give an interval (default: all ``reduce`` returns).
    :param resamples: bootstrap resamples (default 200).
    :param level: confidence level (0.95 = 95 % CI).
    :param seed: seeds the resampling, so the same records give the same CI.
    :param method: ``percentile`` or ``BCa`` (scipy; BCa re-evaluates N jackknife subsets).
    :return: ``{metric: (low, high)}`` in the metric's units; a metric whose value is the
        same on every resample gets a zero-width interval; empty when ``N < 2``.
    """
    data = _as_arrays(samples)
    n = num_samples(samples)
    if n < 2:
        return {}
    keys = keys or list(reduce(data, np.arange(n)))

    def statistic(index):
        vals = reduce(data, np.asarray(index, dtype=np.int64))
        return np.array([float(vals.get(k, np.nan)) for k in keys])

    return _intervals(statistic, n, keys, resamples, level, seed, method)


def paired_bootstrap_ci(reduce: Reducer, new: Samples, base: Samples, keys: list[str],
                        resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0
                        ) -> dict[str, tuple[float, float]]:
    """CI of ``metric(new) - metric(base)`` resampling the SAME images in both runs.

    Both sample dicts must describe the same val images in the same order (same split,
    same evaluation order), as two runs of one suite do.

    :raises ValueError: the two runs have a different number of images.
    :return: ``{metric: (low, high)}`` of the change, in the metric's units.
    """
    a, b = _as_arrays(new), _as_arrays(base)
    n = num_samples(new)
    if n != num_samples(base):
        raise ValueError(f"paired bootstrap needs the same images: {n} vs {num_samples(base)}")
    if n < 2:
        return {}

    def statistic(index):
        idx = np.asarray(index, dtype=np.int64)
        va, vb = reduce(a, idx), reduce(b, idx)
        return np.array([float(va.get(k, np.nan)) - float(vb.get(k, np.nan)) for k in keys])

    return _intervals(statistic, n, keys, resamples, level, seed, "percentile")


def _intervals(statistic: Callable[..., np.ndarray], n: int | tuple[int, ...], keys: list[str], resamples: int,
               level: float, seed: int, method: str) -> dict[str, tuple[float, float]]:
    """``scipy.stats.bootstrap`` over image indices ``0..n-1`` of a vector ``statistic`` (one
    value per key); a key whose value is the same on every resample (scipy: NaN bounds) gets a
    zero-width interval; a key without a finite value, or undefined (NaN) on some resample, gets
    none (its percentiles would be NaN, not a measured zero width). With a tuple ``n`` (several
    val splits, e.g. one per task), each split's indices are resampled independently and passed
    to ``statistic`` as separate arguments (scipy's multi-sample bootstrap)."""
    ns = (n,) if isinstance(n, int) else tuple(n)
    data = tuple(np.arange(k) for k in ns)
    res = stats.bootstrap(data, statistic, n_resamples=resamples, confidence_level=level,
                          method=method, vectorized=False, random_state=np.random.default_rng(seed))
    lo, hi = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    undefined = np.isnan(np.atleast_2d(res.bootstrap_distribution)).any(axis=-1)
    point = statistic(*data)
    return {k: ((float(low), float(high)) if np.isfinite(low) and np.isfinite(high) else (float(p), float(p)))
            for k, low, high, p, nan in zip(keys, lo, hi, point, undefined) if np.isfinite(p) and not nan}


def resampler(entry: dict) -> tuple[Callable[[np.ndarray], dict[str, float]], int]:
    """A stored samples entry (:func:`sample_entry`) as ``(score, N)``: ``score(index)`` is the
    metric's ``reduce`` over the images at ``index`` (int64 ``(M,)``, repeats allowed) and ``N``
    its number of images.

    :raises ValueError: see :func:`reducer_of`.
    """
    reduce, data = reducer_of(entry), _as_arrays(entry["columns"])
    return (lambda index: reduce(data, np.asarray(index, dtype=np.int64))), num_samples(entry["columns"])


def split_bootstrap_ci(statistic: Callable[..., np.ndarray], ns: tuple[int, ...], keys: list[str],
                       resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0
                       ) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CIs of a vector ``statistic(index_1, ..., index_k)`` (one value per
    key) of several val splits with ``ns`` images, each resampled independently (a task's own
    split), the same resample of a split going to every score computed from it (e.g. one task's
    scores after each stage of sequential training: paired across stages).

    :return: ``{key: (low, high)}``, rules as :func:`bootstrap_ci`'s; empty when a split has
        fewer than 2 images.
    """
    if not ns or min(ns) < 2:
        return {}
    return _intervals(statistic, tuple(ns), keys, resamples, level, seed, "percentile")


def sample_entry(metric: object) -> dict:
    """How a record stores a metric's samples: ``{"metric": "module:Class", "columns": samples}``.

    The class path lets ``compare`` and ``doctor`` find ``reduce`` again, for plugin metrics too.
    """
    cls = type(metric)
    return {"metric": f"{cls.__module__}:{cls.__qualname__}", "columns": metric.samples()}


def reducer_of(entry: dict) -> Reducer:
    """The ``reduce`` of a stored samples entry (see :func:`sample_entry`).

    :raises ValueError: the class cannot be imported (plugin not installed) or has no ``reduce``.
    """
    import importlib
    module, _, name = entry["metric"].partition(":")
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj.reduce
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load metric {entry['metric']!r} to recompute it: {exc}") from None
