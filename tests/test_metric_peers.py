"""Peer tests: mtbench's metrics against the reference implementations their names promise,
on the same inputs.

- forgetting / BWT: Avalanche (``avalanche-lib``, installed by the ``test`` extra) and the
  published formulas, Chaudhry et al. 2018's as its authors' code computes it
  (facebookresearch/agem ``utils/utils.py::compute_fgt``, transcribed below);
- delta-m: LibMTL's ``count_improvement`` (``LibMTL``, installed by the ``test`` extra);
- mIoU: MMSegmentation's ``IoUMetric`` (transcribed below: mmseg/mmcv do not install
  beside this torch);
- COCO mAP vs pycocotools: ``tests/test_metrics.py``.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mtbench.errors import MetricError
from mtbench.metrics import headlines, higher_is_better
from mtbench.metrics.delta_m import attach_delta_m, delta_m, delta_m_terms
from mtbench.metrics.forgetting import forgetting
from mtbench.metrics.segmentation import SegmentationMIoU
from mtbench.plugins import get_registry, use_registry

README = Path(__file__).resolve().parents[1] / "README.md"
TASKS = ["seg", "det", "cls"]


# --- references --------------------------------------------------------------------------

def _avalanche():
    with warnings.catch_warnings():  # qpsolvers warns at import that no QP solver is installed
        warnings.simplefilter("ignore")
        from avalanche.evaluation import functional
        from avalanche.evaluation.metrics import BWT
    return functional.forgetting, BWT


def _libmtl_count_improvement():
    """LibMTL's own ``count_improvement``, loaded from the installed ``LibMTL/utils.py``.

    ``import LibMTL`` fails with torchvision >= 0.13 (LibMTL 1.1.5's package ``__init__``
    imports ``torchvision.models.utils``, since removed), so the module file is loaded
    directly; the function is LibMTL's code, unchanged.
    """
    spec = importlib.util.find_spec("LibMTL")
    path = Path(spec.submodule_search_locations[0]) / "utils.py"
    mod_spec = importlib.util.spec_from_file_location("_libmtl_utils", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.count_improvement


def _compute_fgt(data: np.ndarray) -> float:
    """Average forgetting at the T-th task, Chaudhry et al. 2018 (RWalk), eq. (4), as its
    authors compute it: transcribed from facebookresearch/agem ``utils/utils.py::compute_fgt``
    (commit 1ef4c10). ``data[l, i]``: accuracy on task i after training task l (T x T)."""
    num_tasks = data.shape[0]
    T = num_tasks - 1
    fgt = 0.0
    for i in range(T):
        fgt += np.max(data[:T, i]) - data[T, i]
    return fgt / float(num_tasks - 1)


def _bwt_paper(acc: np.ndarray) -> float:
    """BWT, Lopez-Paz & Ranzato 2017, eq. (3): ``1/(T-1) sum_{i<T} R[T,i] - R[i,i]``.

    (Their code, facebookresearch/GradientEpisodicMemory ``metrics/metrics.py``, prints
    ``(R[T-1] - diag(R)).mean()`` over all T tasks, the last one's 0 included: the paper's
    value times (T-1)/T; mtbench follows the paper.)"""
    T = acc.shape[0]
    return float(np.mean([acc[T - 1, i] - acc[i, i] for i in range(T - 1)]))


def _mmseg_intersect_and_union(pred_label, label, num_classes, ignore_index):
    """Transcribed from open-mmlab/mmsegmentation ``mmseg/evaluation/metrics/iou_metric.py``
    (commit 01c9623), ``IoUMetric.intersect_and_union``."""
    mask = (label != ignore_index)
    pred_label = pred_label[mask]
    label = label[mask]

    intersect = pred_label[pred_label == label]
    area_intersect = torch.histc(intersect.float(), bins=(num_classes), min=0, max=num_classes - 1).cpu()
    area_pred_label = torch.histc(pred_label.float(), bins=(num_classes), min=0, max=num_classes - 1).cpu()
    area_label = torch.histc(label.float(), bins=(num_classes), min=0, max=num_classes - 1).cpu()
    area_union = area_pred_label + area_label - area_intersect
    return area_intersect, area_union, area_pred_label, area_label


def _mmseg_miou(preds, labels, num_classes, ignore_index=255) -> float:
    """``IoUMetric.compute_metrics`` for ``iou_metrics=['mIoU']``: areas summed over the
    split, then ``total_area_to_metrics`` (IoU = intersect / union, NaN for a class with an
    empty union) and ``np.nanmean`` (same file; without its rounding to 2 decimals of %)."""
    results = [_mmseg_intersect_and_union(p, t, num_classes, ignore_index) for p, t in zip(preds, labels)]
    results = tuple(zip(*results))
    total_area_intersect = sum(results[0])
    total_area_union = sum(results[1])
    iou = (total_area_intersect / total_area_union).numpy()
    with warnings.catch_warnings():  # nanmean of all-NaN warns, as in mmseg
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(iou))


# --- forgetting / BWT ----------------------------------------------------------------------

def _stages(acc: np.ndarray) -> list[dict]:
    """Stages of a sequential run from a T x T accuracy matrix (row l = after stage l)."""
    return [{"task": TASKS[l], "metrics": {headlines()[TASKS[i]]: float(acc[l, i]) for i in range(l + 1)}}
            for l in range(acc.shape[0])]


MATRICES = {
    # rows: after stage seg, det, cls; columns: seg, det, cls (upper triangle: not learned yet)
    "chance-level task": np.array([[0.10, 0, 0], [0.10, 0.40, 0], [0.10, 0.30, 0.90]]),
    "improve-then-drop": np.array([[0.50, 0, 0], [0.70, 0.40, 0], [0.40, 0.45, 0.90]]),
    "0.8 -> 0.1": np.array([[0.80, 0, 0], [0.50, 0.60, 0], [0.10, 0.60, 0.70]]),
    "zero score": np.array([[0.00, 0, 0], [0.00, 0.30, 0], [0.00, 0.00, 0.50]]),
    "improves": np.array([[0.20, 0, 0], [0.30, 0.40, 0], [0.35, 0.50, 0.60]]),
}


def _random_matrices(n: int = 20, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.tril(rng.uniform(0.05, 1.0, size=(t, t))) for t in rng.integers(2, 4, size=n)]


@pytest.mark.parametrize("acc", list(MATRICES.values()) + _random_matrices(), ids=list(MATRICES) +
                         [f"random{i}" for i in range(20)])
def test_forgetting_and_bwt_vs_published_and_avalanche(acc):
    av_forgetting, AvBWT = _avalanche()
    tasks = TASKS[: acc.shape[0]]
    out = forgetting(_stages(acc), headlines())
    T = acc.shape[0]
    av = av_forgetting(acc)  # [time, experience]: acc right after its own stage - acc then
    av_bwt = AvBWT()
    for i in range(T - 1):
        av_bwt.update(i, float(acc[i, i]), initial=True)
        av_bwt.update(i, float(acc[T - 1, i]))
    for i, task in enumerate(tasks[:-1]):
        best = acc[i:T - 1, i].max()
        assert out[f"BWT/{task}"] == pytest.approx(-av[T - 1, i], abs=1e-12)
        assert out[f"BWT/{task}"] == pytest.approx(av_bwt.result_key(i), abs=1e-12)
        assert out[f"forgetting/{task}"] == pytest.approx(best - acc[T - 1, i], abs=1e-12)
        # Chaudhry's forgetting is never below Avalanche's (drop from the just-learned score)
        assert out[f"forgetting/{task}"] >= av[T - 1, i] - 1e-12
        if best == acc[i, i]:
            assert out[f"forgetting/{task}"] == pytest.approx(av[T - 1, i], abs=1e-12)
        assert out[f"forgetting_rel/{task}"] == (pytest.approx((best - acc[T - 1, i]) / best) if best > 0 else None)
        assert f"forgetting/{tasks[-1]}" not in out  # the last task has no later stage
    assert out["forgetting"] == pytest.approx(_compute_fgt(acc), abs=1e-12)
    assert out["BWT"] == pytest.approx(_bwt_paper(acc), abs=1e-12)
    assert out["BWT"] == pytest.approx(np.mean([-av[T - 1, i] for i in range(T - 1)]), abs=1e-12)
    rels = [out[f"forgetting_rel/{t}"] for t in tasks[:-1] if out[f"forgetting_rel/{t}"] is not None]
    assert out["forgetting_rel_n"] == len(rels)
    assert out["forgetting_rel"] == (pytest.approx(np.mean(rels)) if rels else None)


def test_forgetting_named_cases():
    f = forgetting(_stages(MATRICES["0.8 -> 0.1"]), headlines())
    assert f["forgetting/seg"] == pytest.approx(0.7) and f["forgetting_rel/seg"] == pytest.approx(0.875)
    assert f["BWT/seg"] == pytest.approx(-0.7)
    assert f["forgetting/det"] == pytest.approx(0.0) and f["forgetting_rel/det"] == pytest.approx(0.0)

    # improve-then-drop: the drop is measured from the best earlier score (0.7), not the
    # just-learned one (0.5); BWT still reads 0.4 - 0.5; det improved: negative forgetting
    f = forgetting(_stages(MATRICES["improve-then-drop"]), headlines())
    assert f["forgetting/seg"] == pytest.approx(0.3) and f["forgetting_rel/seg"] == pytest.approx(0.3 / 0.7)
    assert f["BWT/seg"] == pytest.approx(-0.1)
    assert f["forgetting/det"] == pytest.approx(-0.05) and f["BWT/det"] == pytest.approx(0.05)

    # a task at chance throughout: nothing to forget, nothing forgotten
    f = forgetting(_stages(MATRICES["chance-level task"]), headlines())
    assert f["forgetting/seg"] == 0 and f["forgetting_rel/seg"] == 0 and f["BWT/seg"] == 0

    # a task learned to 0: in every column; its relative value is None and the mean says so
    f = forgetting(_stages(MATRICES["zero score"]), headlines())
    assert f["forgetting/seg"] == 0 and f["BWT/seg"] == 0 and f["forgetting_rel/seg"] is None
    assert f["forgetting"] == pytest.approx((0 + 0.3) / 2) and f["BWT"] == pytest.approx((0 - 0.3) / 2)
    assert f["forgetting_rel"] == pytest.approx(1.0) and f["forgetting_rel_n"] == 1
    only_zero = forgetting(_stages(np.array([[0.0, 0], [0.0, 0.5]])), headlines())
    assert only_zero["forgetting_rel"] is None and only_zero["forgetting_rel_n"] == 0
    assert only_zero["forgetting"] == 0 and only_zero["BWT"] == 0


def test_forgetting_errors():
    stages = _stages(MATRICES["improves"])
    del stages[2]["metrics"]["seg/mIoU"]
    with pytest.raises(MetricError, match=r"seg/mIoU after stage 2 \(cls\)"):
        forgetting(stages, headlines())
    with pytest.raises(MetricError, match="lower-is-better"):
        forgetting(_stages(MATRICES["improves"]), {**headlines(), "seg": "latency_ms"})
    assert forgetting(_stages(MATRICES["improves"])[:1], headlines()) == {}


# --- delta-m -------------------------------------------------------------------------------

def _libmtl_args(metrics, single, keys_of):
    base = {t: [single[t][k] for k in keys_of(t)] for t in single}
    new = {t: [metrics[k] for k in keys_of(t)] for t in single}
    weight = {t: [int(higher_is_better()[k]) for k in keys_of(t)] for t in single}  # LibMTL: 1 = higher is better
    return base, new, weight


def _random_cell(rng) -> tuple[dict, dict]:
    keys = {"det": ["det/AP50", "det/mAP"], "seg": ["seg/mIoU"], "cls": ["cls/Top-1"],
            "points": ["points/F1", "points/FA_per_image", "points/Pd", "points/Pd_FA_AUC", "points/precision"]}
    tasks = [t for t in keys if rng.random() < 0.7] or ["points"]
    single = {t: {k: float(rng.uniform(0.01, 1.0)) for k in keys[t]} for t in tasks}
    metrics = {k: float(rng.uniform(0.0, 1.0)) for t in tasks for k in keys[t]}
    metrics["forgetting"] = 0.3  # not a task's metric: never part of delta-m
    return metrics, single


@pytest.fixture
def with_points():
    """The installed plugins' tasks (``points``, a task with a lower-is-better metric, from
    plugins/mtbench-point-heatmap) are known."""
    with use_registry(get_registry()):
        yield


@pytest.mark.parametrize("seed", range(10))
def test_delta_m_vs_libmtl_count_improvement(seed, with_points):
    count_improvement = _libmtl_count_improvement()
    metrics, single = _random_cell(np.random.default_rng(seed))
    all_keys = lambda t: sorted(single[t])  # noqa: E731
    ref_all = count_improvement(*_libmtl_args(metrics, single, all_keys))
    assert delta_m(metrics, single, "all") == pytest.approx(100 * ref_all, rel=1e-9)
    ref_head = count_improvement(*_libmtl_args(metrics, single, lambda t: [headlines()[t]]))
    assert delta_m(metrics, single, "headline") == pytest.approx(100 * ref_head, rel=1e-9)


def test_delta_m_conventions_and_zero_baseline(with_points):
    single = {"det": {"det/mAP": 0.2, "det/AP50": 0.4}, "points": {"points/F1": 0.5, "points/FA_per_image": 1e-5}}
    metrics = {"det/mAP": 0.3, "det/AP50": 0.4, "points/F1": 0.5, "points/FA_per_image": 2e-5}
    # headline: det mAP +50 %, points F1 0 % -> +25 %; all: det (50 + 0) / 2, points (0 - 100) / 2
    assert delta_m(metrics, single, "headline") == pytest.approx(25.0)
    assert delta_m(metrics, single, "all") == pytest.approx((25.0 - 50.0) / 2)
    # a zero baseline: its term is None (LibMTL would divide by zero), stored, left out of the mean
    single["det"]["det/AP50"] = 0.0
    terms = delta_m_terms(metrics, single, "all")
    assert terms["det"] == {"det/AP50": None, "det/mAP": pytest.approx(0.5)}
    assert delta_m(metrics, single, "all") == pytest.approx((50.0 - 50.0) / 2)
    with pytest.raises(MetricError, match="not one of headline, all"):
        delta_m(metrics, single, "every")
    # only registered metrics (with a direction) are scores: counters such as det/num_dets are not
    terms = delta_m_terms({**metrics, "det/num_dets": 90.0}, {"det": {"det/mAP": 0.2, "det/num_dets": 100.0}}, "all")
    assert list(terms["det"]) == ["det/mAP"]


def test_attach_delta_m_records_its_convention():
    def rec(strategy, params, metrics, conv=None):
        config = {"architecture": {"name": "a", "params": {}}, "losses": {}, "level": "P3", "seed": 0,
                  "strategy": {"name": strategy, "params": params}, **({"delta_m": conv} if conv else {})}
        return {"status": "ok", "config": config, "metrics": dict(metrics)}

    singles = [rec("single-task", {"task": "det"}, {"det/mAP": 0.2, "det/AP50": 0.4}),
               rec("single-task", {"task": "seg"}, {"seg/mIoU": 0.5})]
    joint = rec("equal", {}, {"det/mAP": 0.3, "det/AP50": 0.2, "seg/mIoU": 0.5}, conv="all")
    old = rec("pcgrad", {}, {"det/mAP": 0.3, "det/AP50": 0.2, "seg/mIoU": 0.5})  # stored before the option
    records = singles + [joint, old]
    attach_delta_m(records)
    assert joint["delta_m_convention"] == "all" and joint["metrics"]["delta_m"] == pytest.approx(0.0)
    assert old["delta_m_convention"] == "headline" and old["metrics"]["delta_m"] == pytest.approx(25.0)
    assert set(joint["delta_m_terms"]["det"]) == {"det/mAP", "det/AP50"}
    attach_delta_m(records, "headline")  # the suite's option, when given, decides
    assert joint["delta_m_convention"] == "headline" and joint["metrics"]["delta_m"] == pytest.approx(25.0)
    assert "delta_m_convention" not in singles[0]

    from mtbench.report import build_frame
    for i, r in enumerate(records):
        r.update(label=f"c{i}", hash=f"h{i}")
    joint["metrics"].update(forgetting=0.1, forgetting_rel=0.25)
    frame = build_frame(records, [], delta_m="all")
    assert frame["delta-m convention"].fillna("-").tolist() == ["-", "-", "all", "all"]
    assert frame["delta-m (%)"].tolist()[2:] == [pytest.approx(0.0)] * 2
    assert frame["forgetting (rel)"].tolist()[2] == 0.25


# --- mIoU ------------------------------------------------------------------------------------

def _masks(rng, n, c, h=12, w=10, ignore=0.1):
    preds = [torch.from_numpy(rng.integers(0, c, size=(h, w))) for _ in range(n)]
    labels = []
    for _ in range(n):
        t = rng.integers(0, c, size=(h, w))
        t[rng.random((h, w)) < ignore] = 255
        labels.append(torch.from_numpy(t))
    return preds, labels


def _ours(preds, labels, c) -> float:
    m = SegmentationMIoU(num_classes=c)
    for p, t in zip(preds, labels):
        m.update(p[None], t[None])
    return m.compute()["seg/mIoU"]


@pytest.mark.parametrize("seed", range(8))
def test_miou_vs_mmseg_random(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 22))
    preds, labels = _masks(rng, int(rng.integers(1, 5)), c)
    assert _ours(preds, labels, c) == pytest.approx(_mmseg_miou(preds, labels, c), abs=1e-6)


def _edge_cases():
    z = torch.zeros(6, 6, dtype=torch.int64)
    half = z.clone()
    half[:, 3:] = 1
    ignored = half.clone()
    ignored[:2] = 255
    return {
        # classes 2..4 absent from both prediction and ground truth: left out (nan-mean)
        "absent classes": ([half], [half], 5),
        # class 2 predicted but never in the ground truth: IoU 0, counted
        "predicted only": ([torch.where(half == 1, 2, half)], [half], 3),
        # class 1 in the ground truth, never predicted: IoU 0, counted
        "missed class": ([z], [half], 2),
        # 255 pixels ignored whatever is predicted there
        "ignore 255": ([torch.where(ignored == 255, 1, half)], [ignored], 2),
        # one confusion matrix over images, not a mean of per-image IoUs
        "split-level": ([half, z], [half, half], 2),
        "one class everywhere": ([z], [z], 4),
    }


@pytest.mark.parametrize("case", list(_edge_cases()))
def test_miou_vs_mmseg_edge_cases(case):
    preds, labels, c = _edge_cases()[case]
    assert _ours(preds, labels, c) == pytest.approx(_mmseg_miou(preds, labels, c), abs=1e-6)


# --- the README's table of metrics ---------------------------------------------------------

def _readme_metric_rows() -> set[str]:
    text = README.read_text()
    m = re.search(r"^## Metrics and their references\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert m, "README.md has no '## Metrics and their references' section"
    rows = [line for line in m.group(1).splitlines() if line.startswith("| `")]
    return {name for line in rows for name in re.findall(r"`([^`]+)`", line.split("|")[1])}


def test_every_registered_metric_has_a_readme_row():
    """Every metric the core declares (task-free ones and the built-in tasks'; a plugin task
    documents its own) needs a README row stating its definition, reference implementation and test."""
    documented = _readme_metric_rows()
    with use_registry(get_registry(load_entrypoints=False)):
        missing = sorted(set(higher_is_better()) - documented)
    assert not missing, f"metrics without a row in README 'Metrics and their references': {missing}"
