"""Export stored results to experiment trackers: ``--tracker mlflow`` / ``--tracker tensorboard``
(optional extra ``pip install mtbench[tracking]``: mlflow-skinny, tensorboard).

One tracker run per cell record, written after the cells are stored (``mtbench run``) or from
a stored run (``mtbench report RUN --tracker ...``), so an export never changes a result:

- **params**: the cell's resolved config, flattened to dotted keys (``fixed.budget.epochs``;
  lists and empty mappings as JSON text);
- **per-step curves**: every numeric key of the loss history (``det/total``, ``det/cls`` ...)
  at its ``step``, the task weights (``task_weight/<task>``) and gradient cosine
  (``grad_cosine``) a strategy stored, at their step index;
- **final metrics** with their 95 % CIs: each metric ``m`` of ``record["metrics"]`` and
  ``m_ci_low`` / ``m_ci_high``; numeric profile figures as ``profile/<key>`` (with their CIs).
  MLflow's file store keeps a metric as a file at its name's path, so a name that is also the
  folder of others (``det/num_pos`` beside ``det/num_pos/P4``) is exported as ``<name>/all``
  (:func:`exported`);
- **provenance** as tags: ``mtbench.hash``, ``mtbench.status``, ``mtbench.suite``,
  ``mtbench.label``, ``mtbench.overrides``, every key of ``record["env"]`` (``env.<key>``) and of
  ``record["provenance"]`` when a record has one; unknown keys are exported, never required;
- **artifacts** (MLflow): the cell's JSON and the run's reports that exist (``results.md``,
  ``results.csv``, ``report.md``, the HTML report folder ``html/``). TensorBoard has no
  artifacts: the config and provenance go in as text, the config also as hparams.

MLflow: ``MLFLOW_TRACKING_URI`` when set, else the local file store ``./mlruns`` (MLflow 3 keeps
that store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``: mtbench
sets that for its own calls only when it chose ``./mlruns`` itself); experiment = suite name,
run name = cell label. TensorBoard: one log folder per cell, ``<run folder>/tensorboard/<hash>``
(``torch.utils.tensorboard.SummaryWriter``; final figures at the last step).
"""

from __future__ import annotations

import json
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path

from mtbench.errors import MtbenchError

TRACKERS = ("mlflow", "tensorboard")
REPORT_FILES = ("results.md", "results.csv", "report.md")
_BAD_NAME = re.compile(r"[^\w\-. :/]")  # MLflow: alphanumerics, _ - . space : /


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def flat_params(config: dict, prefix: str = "") -> dict[str, str]:
    """``{"fixed.budget.epochs": "6", ...}``: a nested config as dotted keys and text values."""
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_params(v, key + "."))
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v, default=str)
    return out


def final_metrics(rec: dict) -> dict[str, float]:
    """Every final figure of a record and its CI ends: ``seg/mIoU``, ``seg/mIoU_ci_low``,
    ``profile/latency_ms``, ``profile/latency_ms_ci_high`` ... (names made tracker-safe)."""
    out = {}
    for key, v in (rec.get("metrics") or {}).items():
        if _number(v):
            out[key] = float(v)
            ci = (rec.get("ci") or {}).get(key)
            if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_number(c) for c in ci):
                out[f"{key}_ci_low"], out[f"{key}_ci_high"] = float(ci[0]), float(ci[1])
    prof = rec.get("profile") or {}
    for key, v in prof.items():
        if _number(v) and not key.endswith("_ci"):
            out[f"profile/{key}"] = float(v)
            ci = prof.get(f"{key}_ci")
            if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_number(c) for c in ci):
                out[f"profile/{key}_ci_low"], out[f"profile/{key}_ci_high"] = float(ci[0]), float(ci[1])
    return {_BAD_NAME.sub("_", k): v for k, v in out.items()}


def curves(rec: dict) -> dict[str, list[tuple[int, float]]]:
    """Per-step series of a record: loss history keys at their ``step``, ``task_weight/<task>``
    and ``grad_cosine`` at their index."""
    out: dict[str, list[tuple[int, float]]] = {}
    for i, row in enumerate(rec.get("history") or []):
        step = int(row.get("step", i))
        for k, v in row.items():
            if k != "step" and _number(v):
                out.setdefault(_BAD_NAME.sub("_", k), []).append((step, float(v)))
    extra = rec.get("extra") or {}
    for i, weights in enumerate(extra.get("task_weights") or []):
        for t, w in weights.items():
            if _number(w):
                out.setdefault(f"task_weight/{t}", []).append((i, float(w)))
    for i, c in enumerate(extra.get("grad_cosine") or []):
        if _number(c):
            out.setdefault("grad_cosine", []).append((i, float(c)))
    return out


def exported(rec: dict) -> tuple[dict[str, list[tuple[int, float]]], dict[str, float]]:
    """``(curves, final metrics)`` of a record under the names the trackers get: a name that is
    the path prefix of another (``det/num_pos`` and ``det/num_pos/P4``) becomes ``<name>/all``."""
    series, finals = curves(rec), final_metrics(rec)
    names = set(series) | set(finals)
    rename = {k: f"{k}/all" for k in names if any(o.startswith(k + "/") for o in names)}
    return ({rename.get(k, k): v for k, v in series.items()}, {rename.get(k, k): v for k, v in finals.items()})


def tags(rec: dict) -> dict[str, str]:
    """Provenance of a record as text tags (every key of ``env`` and ``provenance``)."""
    out = {f"mtbench.{k}": str(rec[k]) for k in ("hash", "status", "suite", "label", "schema_version")
           if rec.get(k) is not None}
    sets = (rec.get("config") or {}).get("overrides")
    if sets:
        out["mtbench.overrides"] = ", ".join(sets)
    if rec.get("reason"):
        out["mtbench.reason"] = str(rec["reason"])[:5000]
    for section in ("env", "provenance"):
        if isinstance(rec.get(section), dict):
            out.update({f"{section}.{k}": json.dumps(v, default=str) if not isinstance(v, str) else v
                        for k, v in rec[section].items()})
    return out


@contextmanager
def _mlflow_store():
    """``MLFLOW_TRACKING_URI``, else ``./mlruns`` with MLflow 3's file-store opt-in set for
    these calls only (restored afterwards)."""
    import mlflow
    if os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])  # over any URI an earlier call set
        yield mlflow
        return
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    mlflow.set_tracking_uri(Path("mlruns").resolve().as_uri())
    try:
        yield mlflow
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def to_mlflow(records: list[dict], run_dir: Path, suite: str) -> str:
    """One MLflow run per record in experiment ``suite``; returns the tracking URI used."""
    with _mlflow_store() as mlflow:
        mlflow.set_experiment(suite)
        for rec in records:
            with mlflow.start_run(run_name=rec.get("label")):
                params = flat_params(rec.get("config") or {})
                for i in range(0, len(params), 100):  # MLflow takes at most 100 params a call
                    mlflow.log_params(dict(list(params.items())[i:i + 100]))
                series, finals = exported(rec)
                for key, points in series.items():
                    for step, v in points:
                        mlflow.log_metric(key, v, step=step)
                mlflow.log_metrics(finals)
                mlflow.set_tags(tags(rec))
                cell = run_dir / "cells" / f"{rec.get('hash')}.json"
                if cell.is_file():
                    mlflow.log_artifact(str(cell))
                for name in REPORT_FILES:
                    if (run_dir / name).is_file():
                        mlflow.log_artifact(str(run_dir / name), artifact_path="report")
                if (run_dir / "html" / "index.html").is_file():
                    mlflow.log_artifacts(str(run_dir / "html"), artifact_path="report/html")
        return mlflow.get_tracking_uri()


def to_tensorboard(records: list[dict], run_dir: Path) -> Path:
    """One TensorBoard log folder per record under ``run_dir/tensorboard/<hash>``; returns the parent."""
    from torch.utils.tensorboard import SummaryWriter

    root = run_dir / "tensorboard"
    for rec in records:
        with SummaryWriter(log_dir=str(root / str(rec.get("hash")))) as w:
            series, finals = exported(rec)
            last = max((s for points in series.values() for s, _ in points), default=0)
            for key, points in series.items():
                for step, v in points:
                    w.add_scalar(key, v, global_step=step)
            for key, v in finals.items():
                w.add_scalar(key, v, global_step=last)
            w.add_text("provenance", "\n".join(f"    {k}: {v}" for k, v in tags(rec).items()))
            w.add_text("config", "    " + json.dumps(rec.get("config") or {}, indent=1, default=str)
                       .replace("\n", "\n    "))
            w.add_hparams(flat_params(rec.get("config") or {}),
                          {f"hparam/{k}": v for k, v in finals.items() if "_ci_" not in k}, run_name=".")
    return root


def export(trackers: list[str], records: list[dict], run_dir: Path, suite: str) -> list[str]:
    """Export ``records`` to each tracker; returns one line per tracker saying where they went.

    :raises MtbenchError: a tracker whose library is not installed (``pip install mtbench[tracking]``).
    """
    lines = []
    for name in dict.fromkeys(trackers):
        try:
            if name == "mlflow":
                lines.append(f"mlflow: {len(records)} run(s) in experiment {suite!r} at {to_mlflow(records, run_dir, suite)}")
            else:
                lines.append(f"tensorboard: {len(records)} run(s) in {to_tensorboard(records, run_dir)} "
                             f"(tensorboard --logdir {run_dir / 'tensorboard'})")
        except ImportError as exc:
            raise MtbenchError(f"--tracker {name}: {exc.name or exc} is not installed; "
                               f"pip install 'mtbench[tracking]'") from None
    return lines
