"""The static HTML report, rendered in headless Chromium; the CI-aware Pareto front; labels
that stay inside their axes; per-cell small multiples."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from mtbench.cli import main
from mtbench.plots import PLOTS, draw_pareto, pareto_front, plot_losses
from tests.conftest import TINY_SUITE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_front_ignores_differences_within_the_ci():
    """The issue's case: two cells of one model whose mAPs differ by 0.0001 (CIs overlap) and
    whose latencies differ 38x (CIs disjoint): the faster one dominates, the front is one point."""
    pts = [(28.0, 0.1331), (1070.0, 0.1332)]
    cis = [((27.0, 29.0), (0.097, 0.196)), ((1000.0, 1100.0), (0.098, 0.197))]
    assert pareto_front(pts) == pts  # without CIs the 0.0001 counts
    assert pareto_front(pts, cis) == [(28.0, 0.1331)]
    # better beyond the CI at a higher cost stays on the front; a tie within both CIs keeps both
    assert pareto_front([(10, 0.5), (20, 0.8)], [((9, 11), (0.45, 0.55)), ((19, 21), (0.75, 0.85))]) == \
        [(10, 0.5), (20, 0.8)]
    assert len(pareto_front([(10, 0.5), (11, 0.49)], [((9, 12), (0.4, 0.6)), ((9, 12), (0.4, 0.6))])) == 2


def _cell(label, h, latency, miou, lat_ci, miou_ci):
    return {"label": label, "hash": h, "status": "ok", "metrics": {"seg/mIoU": miou}, "ci": {"seg/mIoU": miou_ci},
            "profile": {"latency_ms": latency, "latency_ms_ci": lat_ci, "params_m": 1.0}}


def test_pareto_labels_stay_inside_the_axes():
    recs = [_cell(f"c{i}", str(i), lat, m, [lat * 0.9, lat * 1.1], [m - 0.01, m + 0.01])
            for i, (lat, m) in enumerate([(1, 0.0), (1.05, 0.001), (100, 1.0), (99, 0.999), (50, 0.5)])]
    fig = draw_pareto(recs)
    fig.canvas.draw()
    ax = fig.axes[0]
    box = ax.get_window_extent()
    for t in ax.texts:
        ext = t.get_window_extent()
        assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1 and box.y0 - 1 <= ext.y0 and ext.y1 <= box.y1 + 1, \
            t.get_text()
    front = [ln for ln in ax.get_lines() if ln.get_label() == "Pareto front (CI-aware)"][0]
    assert list(front.get_xdata()) == [1, 1.05, 50, 99, 100]  # pairs within their CIs tie: all on the front


def test_loss_curves_are_small_multiples(tmp_path):
    hist = [{"step": i, "seg/total": 1.0 / (i + 1), "cls/total": 2.0 / (i + 1)} for i in range(5)]
    recs = [{"label": f"cell{i}", "hash": str(i), "status": "ok", "history": hist} for i in range(3)]
    import matplotlib.pyplot as plt
    seen = []
    orig = plt.Figure.savefig

    def keep(fig, *a, **k):
        seen.append([(ax.get_title(), len(ax.get_lines())) for ax in fig.axes if ax.get_title()])
        return orig(fig, *a, **k)

    plt.Figure.savefig = keep
    try:
        assert plot_losses(recs, tmp_path / "l.png").is_file()
    finally:
        plt.Figure.savefig = orig
    assert seen == [[("cell0", 2), ("cell1", 2), ("cell2", 2)]]  # one panel per cell, one line per task


@pytest.fixture(scope="module")
def two_cell_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    suite = tmp / "suite.yaml"
    suite.write_text(TINY_SUITE)
    code = main(["--no-entrypoints", "run", str(suite), "--results", str(tmp / "results"), "--no-progress",
                 "--allow-suspect", "--set", "fixed.steps=3", "--set", "gates=['params < 8e6']"])
    assert code == 0
    run = tmp / "results" / "tiny"
    assert main(["report", str(run)]) == 0
    return run


def _chromium(*args, profile) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y "
                                             "chromium; .ci/run installs it)")
def test_html_report_renders_in_chromium(two_cell_run, tmp_path):
    run = two_cell_run
    page = run / "html" / "index.html"
    records = json.loads((run / "results.json").read_text())["cells"]
    assert len(records) == 2
    dom = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "p1").stdout
    # the table: one row per cell, sortable, every cell label in it
    table = re.search(r'<table class="sortable" id="results">(.*?)</table>', dom, re.S).group(1)
    assert table.count("<tr>") == 3 and all(r["label"] in table for r in records)
    assert table.count('<td class="text pass">pass</td>') == 2  # the suite's gate, judged from the stored cells
    # every figure written is on the page and was decoded by the browser
    svgs = sorted(p.name for p in (run / "html").glob("*.svg"))
    assert {"headline_ci.svg", "pareto.svg", "pareto_params.svg", "loss_curves.svg", "stages.svg"} <= set(svgs)
    assert sorted(re.findall(r'<img src="([^"]+)"', dom)) == svgs
    assert f'data-figures-loaded="{len(svgs)}/{len(svgs)}"' in dom
    assert all(f"fig-{name}" in dom for name in PLOTS if f"{name}.svg" in svgs)
    # the findings: every stored finding of every cell is listed
    findings = [f for r in records for f in r.get("diagnostics") or []]
    section = re.search(r'<section id="findings">(.*?)</section>', dom, re.S).group(1)
    assert section.count("<li>") == len(findings) and (findings or "No findings." in section)
    assert all(f["check"] in section and f["message"] in section for f in findings)
    marked = [r for r in records if any(f.get("invalidates") for f in r.get("diagnostics") or [])]
    assert ("†" in table) == bool(marked)
    # provenance and the override
    assert 'id="provenance"' in dom and records[0]["env"]["torch"] in dom and "--set fixed.steps=3" in dom
    # a screenshot under the run folder
    shot = run / "report_screenshot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri(), profile=tmp_path / "p2")
    from PIL import Image
    with Image.open(shot) as img:
        low, high = img.convert("L").getextrema()
        assert img.size == (1400, 2400) and high - low > 100  # not blank


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)")
@pytest.mark.parametrize("clicks", [1, 2])
def test_table_sorts_by_value_in_chromium(two_cell_run, tmp_path, clicks):
    """The page's own script, in the browser: a click on a header sorts the rows by the
    numbers (not the text) of that column, a second click reverses them."""
    page = (two_cell_run / "html" / "index.html").read_text()
    col = "latency p50 (ms)"
    click = (f"<script>var th = Array.from(document.querySelectorAll('#results th'))"
             f".find(function (h) {{ return h.textContent === {json.dumps(col)}; }});"
             + "th.click();" * clicks + "</script></body>")
    probe = two_cell_run / "html" / f"probe{clicks}.html"
    probe.write_text(page.replace("</body>", click))
    dom = _chromium("--dump-dom", probe.as_uri(), profile=tmp_path / "p").stdout
    probe.unlink()
    cells = [json.loads(p.read_text()) for p in (two_cell_run / "cells").glob("*.json")]
    by_latency = [r["label"] for r in sorted(cells, key=lambda r: r["profile"]["latency_ms"], reverse=clicks == 2)]
    body = re.search(r'<table class="sortable" id="results">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert [label for label in re.findall(r"<tr><td[^>]*>([^<]+)</td>", body)] == by_latency


def test_html_needs_nothing_outside_its_folder(two_cell_run):
    html = (two_cell_run / "html" / "index.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no CDN, no web font
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', html):
        assert (two_cell_run / "html" / ref).is_file()


def test_failed_cell_is_listed_open_under_findings(tmp_path):
    from mtbench.html_report import write_html
    from tests.test_report import _records
    html = write_html(_records(), tmp_path, "x").read_text()
    section = re.search(r'<section id="findings">(.*?)</section>', html, re.S).group(1)
    assert "<details open><summary><code>broken</code>" in section and "ValueError: x" in section
    assert {p.name for p in tmp_path.glob("*.svg")} >= {"task_weights.svg", "stages.svg", "loss_curves.svg"}
