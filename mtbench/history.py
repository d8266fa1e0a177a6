"""Metric history across commits, asv-``publish`` style: ``mtbench history RUN...``.

Each ``RUN`` is the result folder (or ``results.json``) of one suite at one commit, given
oldest first (the order of the commits; a CI job keeps one folder per commit, README "History
in CI"). A run's commit is the ``env.commit`` its cells recorded (:func:`mtbench.runner.environment`),
else the folder's name.

Per cell (matched across runs as :func:`mtbench.compare.compare` matches them: config hash,
else label) and per tracked figure (each task's headline metric, :func:`mtbench.metrics.headlines`,
and batch-1 latency), the page draws the value over commits with its 95 % CI as a band, and
marks a **regression at the commit where it became significant**: walking the commits in order,
each is compared with a reference commit (the first one to start with) by
:func:`mtbench.compare.compare` (paired bootstrap CI of the change when both runs stored
per-image samples of the same seed, else the unpaired CI from both values' CIs). A change whose
CI excludes 0 in the worse direction (:func:`mtbench.metrics.higher_is_better`) is a regression
at that commit; a significant change either way makes that commit the new reference, so a
slow drift is marked where its sum first leaves the noise, and a lasting drop is marked once,
not again at every later commit. Latency CIs are within-run (one timing series): a latency
regression says so. The table of the latest run sits beside the plots.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from mtbench.metrics import headlines, higher_is_better
from mtbench.report import ci_of, load_records
from mtbench.errors import ResultFileError

#: figures followed over commits besides each task's headline metric: (key, record path)
TIMING = ("latency_ms", ("profile", "latency_ms"))


@dataclass
class Run:
    """One commit's results: ``commit`` (``env.commit`` of its cells, else the folder name)."""

    path: Path
    records: list[dict]
    commit: str = field(init=False)

    def __post_init__(self) -> None:
        commits = [(r.get("env") or {}).get("commit") for r in self.records]
        commits = [c for c in commits if c]
        folder = self.path if self.path.is_dir() else self.path.parent
        self.commit = max(set(commits), key=commits.count) if commits else folder.name


def load_runs(paths: list[str | Path]) -> list[Run]:
    """The runs of ``paths`` in the given order (oldest first).

    :raises ResultFileError: a path that is not a result folder / file, or holds no cell.
    """
    runs = []
    for p in map(Path, paths):
        records = load_records(p)
        if not records:
            raise ResultFileError(f"{p}: no cell results in it (expected a run folder or its results.json)")
        runs.append(Run(p, records))
    return runs


def tracked(runs: list[Run]) -> list[tuple[str, tuple]]:
    """``(figure key, record path)`` of every headline metric some cell reports, then latency."""
    records = [r for run in runs for r in run.records]
    keys = [k for k in headlines(records).values() if any(k in (r.get("metrics") or {}) for r in records)]
    return [(k, ("metrics", k)) for k in keys] + [TIMING]


def _value(rec: dict | None, path: tuple) -> float | None:
    node = rec
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node) \
        else None


def series(runs: list[Run]) -> dict[tuple[str, str], list[tuple[float | None, tuple | None]]]:
    """``{(cell label, figure): [(value, CI) per run]}`` (None where a run lacks the cell or the
    figure); cells are the latest run's, matched in earlier runs by hash, else label."""
    from mtbench.compare import match_cells
    out = {}
    latest = runs[-1].records
    for run in runs:
        pairs = {id(b): n for b, n in match_cells(run.records, latest)}
        for rec in latest:
            r = pairs.get(id(rec))
            for key, path in tracked(runs):
                v = _value(r, path) if r is not None and r.get("status") == "ok" else None
                out.setdefault((rec["label"], key), []).append((v, ci_of(r, path) if v is not None else None))
    return out


def regressions(runs: list[Run]) -> list[dict]:
    """Every regression, at the commit where it became significant (module docstring).

    :return: dicts ``commit``, ``index`` (of the run), ``reference`` (the commit compared with),
        ``cell``, ``metric``, ``before``, ``after``, ``change``, ``change CI``, ``ci`` (kind).
    """
    from mtbench.compare import compare
    keys = [k for k, _ in tracked(runs)]
    higher = higher_is_better([r for run in runs for r in run.records])
    ref: dict[tuple[str, str], int] = {}
    cache: dict[tuple[int, int], list[dict]] = {}
    found = []
    for i in range(1, len(runs)):
        for cell in (r["label"] for r in runs[i].records):
            for key in keys:
                j = ref.setdefault((cell, key), 0)
                if (i, j) not in cache:
                    frame, _ = compare(runs[i].records, runs[j].records, [])
                    cache[i, j] = frame.to_dict(orient="records") if len(frame) else []
                row = next((x for x in cache[i, j] if x["metric"] == key and x["cell"] == cell), None)
                if row is None or row["significant"] != "yes":
                    continue
                ref[cell, key] = i
                worse = (row["change"] < 0) == higher.get(key, True)
                if worse:
                    found.append({"commit": runs[i].commit, "index": i, "reference": runs[j].commit, "cell": cell,
                                  "metric": key, "before": row["baseline"], "after": row["new"],
                                  "change": row["change"], "change CI": row["change CI"], "ci": row["ci"]})
    return found


def plot_history(runs: list[Run], found: list[dict], path: Path) -> Path:
    """One panel per tracked figure: each cell's value over commits with its 95 % CI band, and a
    red triangle at every commit a regression is marked at (SVG or PNG by suffix)."""
    import matplotlib.pyplot as plt

    from mtbench.plots import save_figure

    keys = [k for k, _ in tracked(runs)]
    data = series(runs)
    cells = list(dict.fromkeys(c for c, _ in data))
    fig, axes = plt.subplots(len(keys), 1, figsize=(max(6.0, 0.9 * len(runs) + 3), 2.6 * len(keys) + 0.6),
                             sharex=True, squeeze=False)
    x = list(range(len(runs)))
    for ax, key in zip(axes[:, 0], keys):
        for k, cell in enumerate(cells):
            points = data[(cell, key)]
            ys = [v if v is not None else math.nan for v, _ in points]
            lo = [ci[0] if ci else (v if v is not None else math.nan) for v, ci in points]
            hi = [ci[1] if ci else (v if v is not None else math.nan) for v, ci in points]
            ax.plot(x, ys, marker="o", ms=3, lw=1, color=f"C{k % 10}", label=cell)
            ax.fill_between(x, lo, hi, color=f"C{k % 10}", alpha=0.15, lw=0)
        marks = [f for f in found if f["metric"] == key]
        if marks:
            ax.scatter([f["index"] for f in marks], [f["after"] for f in marks], marker="v", s=70, color="red",
                       zorder=5, label="regression (change CI excludes 0)")
        ax.set_ylabel(key + (" (ms)" if key == TIMING[0] else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xticks(x, [r.commit for r in runs], rotation=45, ha="right", fontsize=7)
    axes[-1, 0].set_xlabel("commit (oldest first)", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="best")
    return save_figure(fig, path)


def write_history(paths: list[str | Path], out_dir: Path, title: str = "mtbench history") -> tuple[Path, list[dict]]:
    """Write the history page (``out_dir/index.html`` + ``history.svg``), self-contained like
    the HTML report (:mod:`mtbench.html_report`). Returns the page and the regressions.

    :raises ResultFileError: a run that cannot be read (see :func:`load_runs`).
    """
    from mtbench.html_report import results_table, write_page

    runs = load_runs(paths)
    found = regressions(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = plot_history(runs, found, out_dir / "history.svg")
    rows = "".join(f"<tr><td class='text'>{html.escape(f['commit'])}</td><td class='text'>{html.escape(f['cell'])}</td>"
                   f"<td class='text'>{html.escape(f['metric'])}</td><td>{f['before']:.6g}</td><td>{f['after']:.6g}</td>"
                   f"<td>{f['change']:+.4g}</td><td>{html.escape(f['change CI'])} ({html.escape(f['ci'])})</td>"
                   f"<td class='text'>{html.escape(f['reference'])}</td></tr>" for f in found)
    head = "".join(f"<th>{h}</th>" for h in ("commit", "cell", "metric", "before", "after", "change",
                                             "change 95 % CI", "compared with"))
    regs = (f"<table id='regressions' class='sortable'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            if found else "<p id='regressions'>No significant regression.</p>")
    if any(f["ci"] == "within-run" for f in found):
        regs += ("<p>A <em>within-run</em> CI is that of one timing series: load on the machine between runs is not "
                 "in it, so re-measure before believing a latency regression.</p>")
    commits = ", ".join(html.escape(r.commit) for r in runs)
    body = (f"<p id='meta'>{len(runs)} runs, oldest first: {commits}</p>"
            f"<section><h2>Regressions</h2>{regs}</section>"
            f"<div class='side'><section><h2>History</h2><figure><img src='{figure.name}' alt='history'></figure>"
            f"</section><section><h2>Latest run ({html.escape(runs[-1].commit)})</h2>"
            f"{results_table(runs[-1].records)}</section></div>")
    return write_page(out_dir, title, body), found
