"""Provenance stored with every cell (``record["env"]``), shown by ``report``, checked by ``compare``.

As pytest-benchmark's ``machine_info`` / ``commit_info``: the machine (CPU model from
py-cpuinfo where it is installed, else ``/proc/cpuinfo`` or ``platform``; physical and
logical cores; memory; GPU name, driver, CUDA and cuDNN when a GPU is used), the versions
(Python, torch, timm, mtbench and every plugin distribution the cell uses), the suite
file's sha256, and mtbench's git commit with a dirty flag. The keys older records have
(``mtbench``, ``torch``, ``timm``, ``python``, ``device``, ``threads``, ``commit``) keep
their meaning.

:func:`differences` says how two runs' machines and versions differ: ``compare`` prints it
as warnings and, with ``--strict``, refuses to compare.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from mtbench import __version__

if TYPE_CHECKING:  # compare / report read provenance without importing torch
    import torch

MACHINE_KEYS = ("cpu_model", "physical_cores", "logical_cores", "memory_gib", "gpu", "gpu_driver")
VERSION_KEYS = ("python", "torch", "timm", "mtbench", "cuda", "cudnn", "plugins")


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's brand string: py-cpuinfo, else ``/proc/cpuinfo``, else ``platform``."""
    try:
        import cpuinfo
        brand = cpuinfo.get_cpu_info().get("brand_raw")
        if brand:
            return brand
    except Exception:  # noqa: BLE001 - py-cpuinfo absent or failing: the fallbacks below
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _physical_cores() -> int | None:
    try:
        import psutil
        return psutil.cpu_count(logical=False)
    except ImportError:
        return None


def _gpu(device: torch.device) -> dict:
    import torch
    if device.type != "cuda":
        return {"gpu": None, "gpu_driver": None}
    driver = None
    try:
        import pynvml
        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
    except Exception:  # noqa: BLE001 - NVML missing: the driver stays unknown
        pass
    return {"gpu": torch.cuda.get_device_name(device), "gpu_driver": driver}


@functools.lru_cache(maxsize=1)
def git_state() -> dict:
    """mtbench's own git commit (full) and whether tracked files differ from it (None outside a checkout)."""
    here = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=here, timeout=5)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit_full": commit, "dirty": None if commit is None or dirty is None else bool(dirty)}


def environment(device: torch.device, plugins: dict[str, str] | None = None, suite_sha256: str | None = None) -> dict:
    """The provenance of a cell run on ``device``.

    :param plugins: distribution -> version of every plugin the cell uses
        (:func:`plugins_in_play`).
    :param suite_sha256: sha256 of the suite file the cell came from.
    """
    import timm
    import torch
    git = git_state()
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"mtbench": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version(), "device": f"{device.type}: {dev}",
            "threads": torch.get_num_threads(), "commit": (git["commit_full"] or "")[:7] or None,
            "commit_full": git["commit_full"], "dirty": git["dirty"], "cpu_model": cpu_model(),
            "physical_cores": _physical_cores(), "logical_cores": os.cpu_count(), "memory_gib": _memory_gib(),
            **_gpu(device), "cuda": torch.version.cuda if device.type == "cuda" else None,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "plugins": dict(sorted((plugins or {}).items())), "suite_sha256": suite_sha256,
            "node": platform.node()}


def plugins_in_play(identity: dict) -> dict[str, str]:
    """Distribution -> version (``+src.<hash>`` for an editable install) of the plugins a cell's
    identity names (:func:`mtbench.suite.cell_identity`)."""
    out = {}
    for fp in (identity.get("plugins") or {}).values():
        dist, _, version = fp.partition("==")
        out[dist] = version
    return out


def _values(records: list[dict], keys: tuple[str, ...]) -> dict[str, set]:
    return {k: {repr((r.get("env") or {}).get(k)) for r in records if r.get("status") == "ok"} for k in keys}


def differences(new: list[dict], baseline: list[dict]) -> list[str]:
    """How the machines and versions of two runs' ok cells differ: one line per key
    (``different machine: cpu_model 'A' (new) vs 'B' (baseline)``), and one line per run naming the keys
    it did not record (records written before provenance was stored)."""
    out = []
    for what, keys in (("machine", MACHINE_KEYS), ("version", VERSION_KEYS)):
        a, b = _values(new, keys), _values(baseline, keys)
        unknown = {run: [k for k in keys if vals[k] == {"None"} and other[k] != {"None"}]
                   for run, vals, other in (("new", a, b), ("baseline", b, a))}
        out += [f"different {what}: {k} {', '.join(sorted(a[k]))} (new) vs {', '.join(sorted(b[k]))} (baseline)"
                for k in keys if a[k] != b[k] and k not in unknown["new"] + unknown["baseline"]]
        out += [f"{what} unknown: the {run} run does not record {', '.join(ks)} (written before mtbench stored it)"
                for run, ks in unknown.items() if ks]
    return out


def summary(records: list[dict]) -> list[tuple[str, str]]:
    """(field, value) rows describing where a run's cells ran (distinct values joined by ``; ``)."""
    keys = ("cpu_model", "physical_cores", "logical_cores", "memory_gib", "gpu", "gpu_driver", "cuda", "cudnn",
            "python", "torch", "timm", "mtbench", "plugins", "commit_full", "dirty", "suite_sha256", "node")
    rows = []
    for k in keys:
        seen = list(dict.fromkeys(str((r.get("env") or {}).get(k)) for r in records))
        rows.append((k, "; ".join(seen)))
    return rows


def markdown(records: list[dict]) -> list[str]:
    """The report's "Provenance" section (:func:`summary` as a two-column table)."""
    from tabulate import tabulate
    return ["## Provenance", "", tabulate(summary(records), headers=["", "value"], tablefmt="github"), ""]
