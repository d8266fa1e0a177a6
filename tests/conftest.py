"""Shared fixtures. Real data is reached through MTBENCH_DATA (default: ../shared/data)."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    torch.set_num_threads(int(os.environ.get("MTBENCH_TEST_THREADS", "2")))
    # data fingerprints' file-hash cache (mtbench.identity): one per test session, not the user's
    os.environ.setdefault("MTBENCH_CACHE", tempfile.mkdtemp(prefix="mtbench-cache-"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("MTBENCH_DATA", REPO.parent / "shared" / "data"))
    if not (root / "mini_coco_det").is_dir():
        pytest.skip(f"real mini data sets not found under {root} (set MTBENCH_DATA)")
    return root


@pytest.fixture(scope="session")
def registry():
    from mtbench.plugins import get_registry
    return get_registry(load_entrypoints=False)


POINTS_PLUGIN = "pip install -e ./plugins/mtbench-point-heatmap (README set-up): the points task lives there"


@pytest.fixture(scope="session")
def points_registry():
    """Built-ins plus the installed plugin distributions: task ``points`` and its loader,
    losses and model come from plugins/mtbench-point-heatmap."""
    pytest.importorskip("mtbench_point_heatmap", reason=POINTS_PLUGIN)
    from mtbench.plugins import get_registry
    return get_registry(load_entrypoints=True)


TINY_SUITE = """\
name: tiny
tasks:
  det: {dataset: synthetic, params: {num_images: {train: 8, val: 4}}}
  seg: {dataset: synthetic, params: {num_images: {train: 8, val: 4}}}
  cls: {dataset: synthetic, params: {num_images: {train: 8, val: 4}}}
matrix:
  architecture:
    - name: unified-onehead
      label: mnv3s
      params: {backbone: mobilenetv3_small_100, neck_channels: 16}
  level: [P4]
  strategy: [equal, sequential]
fixed:
  image_size: 64
  batch_size: 4
  budget: {steps: 2}
  threads: 2
profile: {latency_warmup: 1, latency_repeats: 3, fps_repeats: 1}
"""


@pytest.fixture
def write_suite(tmp_path):
    """Write a suite YAML (default: the tiny 2-cell suite) and return its path."""

    def _write(text: str = TINY_SUITE, name: str = "suite.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return p

    return _write
