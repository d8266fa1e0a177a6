"""The result store: one JSON record per cell, written atomically; resume by config hash.

Layout: ``<results>/<suite>/cells/<hash>.json``. A record is written to a temporary file
in the same folder and renamed over the target (``os.replace``), so an interrupted run
never leaves a half-written result and every finished cell stays valid.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np


def _clean(obj):
    """JSON-safe copy: non-finite floats become None (JSON has no NaN); numpy scalars and
    arrays become Python numbers and lists."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    elif isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json_atomic(path: Path, data) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(data), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """Cell results of one suite under ``root/<suite>``.

    :param retry_failed: on resume, re-run cells whose stored result is ``failed`` (e.g. after
        fixing the cause) instead of keeping the failure.
    """

    def __init__(self, root: str | Path, suite: str, retry_failed: bool = False):
        self.dir = Path(root) / suite
        self.cells_dir = self.dir / "cells"
        self.retry_failed = retry_failed

    def path(self, cell_hash: str) -> Path:
        return self.cells_dir / f"{cell_hash}.json"

    def has(self, cell_hash: str) -> bool:
        return self.path(cell_hash).is_file()

    def write(self, result: dict) -> Path:
        p = self.path(result["hash"])
        write_json_atomic(p, result)
        return p

    def reusable(self, cell_hash: str) -> dict | None:
        """The stored record a resumed run keeps for this cell, or None when the cell must run."""
        stored = self.load(cell_hash)
        if stored is not None and self.retry_failed and stored.get("status") != "ok":
            return None
        return stored

    def load(self, cell_hash: str) -> dict | None:
        """The stored record, or None when absent or unreadable (then the cell re-runs)."""
        try:
            return json.loads(self.path(cell_hash).read_text())
        except (OSError, json.JSONDecodeError):
            return None
