"""The result store: one JSON record per cell, written atomically; resume by the cell's
training identity (:mod:`mtbench.identity`).

Layout: ``<results>/<suite>/cells/<hash>.json``, and beside it the folder ``cells/<hash>/``
with the cell's checkpoint and final weights (:mod:`mtbench.checkpoint`). A record is
written to a temporary file in the same folder and renamed over the target (``os.replace``),
so an interrupted run never leaves a half-written result and every finished cell stays
valid; a temporary file a killed run left behind (in ``cells/`` or a cell's folder) is
removed when the next run takes the folder's lock.

One run at a time per folder: ``mtbench run`` holds ``<results>/<suite>/.lock`` (``filelock``,
an OS lock the kernel releases when the process dies, even by ``kill -9``) for the whole run,
with ``.lock.json`` beside it saying who holds it (pid, host, start time). A second run on the
same folder stops at once with :class:`mtbench.errors.RunLocked` (exit 4) naming that holder.

Reading records back (:func:`read_record`) checks what every reader relies on, so a truncated
or foreign file is one :class:`mtbench.errors.ResultFileError` naming the file and the line or
key, never a traceback; resume treats such a file as absent and recomputes the cell.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, ValidationError

from mtbench.atomic import atomic_path
from mtbench.errors import ResultFileError, RunLocked

if TYPE_CHECKING:
    from mtbench.suite import Cell

LOCK, LOCK_INFO = ".lock", ".lock.json"


def json_safe(obj):
    """JSON-safe copy: non-finite floats become None (JSON has no NaN); numpy scalars and
    arrays become Python numbers and lists."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    elif isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomic(path: Path, data) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file + rename."""
    with atomic_path(path, mode=0o644) as tmp, open(tmp, "w") as f:  # results: ordinary readable files
        json.dump(json_safe(data), f, indent=1)
        f.flush()
        os.fsync(f.fileno())


class _Record(BaseModel):
    """The keys of a cell record every reader (table, compare, doctor, report) relies on, and
    the types of those it reads when present (records made by hand or before a key existed
    lack some)."""

    model_config = ConfigDict(extra="allow")
    hash: str
    label: str
    status: str
    axes: dict | None = None
    config: dict | None = None
    metrics: dict | None = None
    profile: dict | None = None
    diagnostics: list | None = None
    stages: list | None = None
    history: list | None = None


def cell_identity_record(cell: "Cell") -> dict:
    """What a record stores of its cell's identities (:mod:`mtbench.identity`)."""
    from mtbench.identity import SCHEME
    return {"scheme": SCHEME, "training": cell.hash, "evaluation": cell.eval_hash, **cell.identity}


def read_json(path: str | Path) -> Any:
    """The JSON document in ``path``.

    :raises ResultFileError: missing, a folder, unreadable, not UTF-8 or not JSON (with line and
        column: e.g. a file truncated by a full disk).
    """
    path = Path(path)
    if not path.exists():
        raise ResultFileError(f"{path}: no such file")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except IsADirectoryError:
        raise ResultFileError(f"{path}: is a folder, not a result file") from None
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ResultFileError(f"{path}: not a JSON result file (not UTF-8 text at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); a truncated "
                              f"result? re-run the suite to recompute it") from None


def check_record(rec: Any, where: str) -> dict:
    """``rec`` itself when it is a cell record (:class:`_Record`'s keys and types).

    :raises ResultFileError: naming ``where`` (the file, or ``file: cells[3]``) and the key.
    """
    if not isinstance(rec, dict):
        raise ResultFileError(f"{where}: not a cell record (a JSON {type(rec).__name__}, expected an object "
                              f"with hash, label, status, ...)")
    try:
        _Record.model_validate(rec)
    except ValidationError as exc:
        bad = [f"{'.'.join(map(str, e['loc']))} ({e['msg'].lower()})" for e in exc.errors()]
        raise ResultFileError(f"{where}: not a cell record: {', '.join(bad[:5])}"
                              + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")) from None
    return rec


def read_record(path: str | Path) -> dict:
    """One cell record (``cells/<hash>.json``).

    :raises ResultFileError: see :func:`read_json` and :func:`check_record`.
    """
    return check_record(read_json(path), str(path))


def records_of(doc: Any, where: str) -> list[dict]:
    """The cell records in a parsed result file: a ``results.json`` (``{"cells": [...]}``) or
    one cell record.

    :raises ResultFileError: ``cells`` is not a list, or an entry is not a cell record.
    """
    if isinstance(doc, dict) and "cells" in doc:
        if not isinstance(doc["cells"], list):
            raise ResultFileError(f"{where}: 'cells' is a {type(doc['cells']).__name__}, not a list of records")
        return [check_record(c, f"{where}: cells[{i}]") for i, c in enumerate(doc["cells"])]
    return [check_record(doc, where)]


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

    def cell_dir(self, cell_hash: str) -> Path:
        """The cell's folder beside its record: checkpoints and final weights (:mod:`mtbench.checkpoint`)."""
        return self.cells_dir / cell_hash

    def has(self, cell_hash: str) -> bool:
        return self.path(cell_hash).is_file()

    def write(self, result: dict) -> Path:
        p = self.path(result["hash"])
        write_json_atomic(p, result)
        return p

    def load(self, cell_hash: str) -> dict | None:
        """The stored record, or None when absent or unreadable (then the cell re-runs)."""
        return self.resume(cell_hash, keep_failed=True)[0]

    def resume(self, cell: "Cell | str", keep_failed: bool | None = None) -> tuple[dict | None, str | None]:
        """What a resumed run does with this cell: ``(record, note)``; ``record`` is the stored one
        to keep, or None when the cell must run; ``note`` says why (None: nothing is stored).

        :param cell: a :class:`~mtbench.suite.Cell` (a stored ok record whose evaluation identity
            is not the cell's, :meth:`profile_stale`, is returned to be re-profiled when the cell's
            weights are stored, else recomputed), or a hash.
        :param keep_failed: keep a failed record (default: unless ``retry_failed``).
        """
        keep_failed = not self.retry_failed if keep_failed is None else keep_failed
        cell_hash = cell if isinstance(cell, str) else cell.hash
        if not self.path(cell_hash).exists():
            return None, None
        try:
            rec = read_record(self.path(cell_hash))
        except ResultFileError as exc:
            return None, f"stored result unreadable, recomputed ({exc})"
        if not isinstance(cell, str) and self.profile_stale(cell, rec):
            from mtbench.checkpoint import WEIGHTS  # torch: not for the reading commands
            if (self.cell_dir(cell.hash) / WEIGHTS).is_file():
                return rec, "stored result measured with other profile settings: re-profiling its stored weights"
            return None, "stored result measured with other profile settings and no stored weights, recomputed"
        if rec["status"] == "ok":
            return rec, "stored result (ok), skipped"
        if keep_failed:
            return rec, "stored result (failed), skipped; re-run it with --retry-failed"
        return None, "stored result (failed), recomputed (--retry-failed)"

    @staticmethod
    def profile_stale(cell: "Cell", rec: dict) -> bool:
        """An ok record of ``cell``'s training identity measured under other ``profile`` settings."""
        stored = (rec.get("identity") or {}).get("evaluation")
        return rec.get("status") == "ok" and stored is not None and stored != cell.eval_hash

    def migrate(self, cells: list["Cell"]) -> list[str]:
        """Move each cell's record stored under its scheme-1 hash (:func:`mtbench.identity.legacy_hash`:
        data path and ``profile`` in one hash) to its current training identity, stamped with
        ``identity``; returns the hashes moved. Such a record's data path and ``profile`` matched
        the cell's when it ran; its data is taken to be unchanged since."""
        moved = []
        for cell in cells:
            old = self.path(cell.legacy_hash)
            if cell.legacy_hash == cell.hash or self.has(cell.hash) or not old.is_file():
                continue
            try:
                rec = read_record(old)
            except ResultFileError:
                continue  # unreadable: the cell recomputes
            if rec.get("identity"):
                continue  # a current record that happens to sit there
            rec.update(hash=cell.hash, legacy_hash=cell.legacy_hash, identity=cell_identity_record(cell))
            self.write(rec)
            old.unlink()
            moved.append(cell.legacy_hash)
        return moved

    @contextmanager
    def locked(self) -> Iterator[list[Path]]:
        """Hold this folder's run lock (module docstring) for the ``with`` block; yields the stale
        temporary files of an interrupted earlier run it removed.

        :raises ResultFileError: the folder cannot be made (a file is in the way, no permission).
        :raises RunLocked: another process holds the lock; names it (pid, host, start time).
        """
        try:
            self.cells_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultFileError(f"cannot make the results folder {self.cells_dir}: {exc.strerror}"
                                  f"{f' ({exc.filename})' if exc.filename else ''}; give --results a folder") from None
        lock = FileLock(self.dir / LOCK)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunLocked(f"{self.dir} is in use by another mtbench run ({self._holder()}); wait for it to "
                            f"finish, or give --results another folder") from None
        try:
            write_json_atomic(self.dir / LOCK_INFO, {"pid": os.getpid(), "host": socket.gethostname(),
                                                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            folders = [self.dir, self.cells_dir, *(d for d in self.cells_dir.iterdir() if d.is_dir())]  # + checkpoints
            stale = [p for d in folders for p in d.glob("*.tmp")]
            for p in stale:
                p.unlink(missing_ok=True)
            yield stale
        finally:
            (self.dir / LOCK_INFO).unlink(missing_ok=True)
            lock.release()

    def _holder(self, wait_s: float = 2.0) -> str:
        """Who holds the lock (pid, host, start), waiting up to ``wait_s`` seconds for a holder
        that took the lock an instant ago to write its details."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                info = json.loads((self.dir / LOCK_INFO).read_text())
                return f"pid {info['pid']} on {info['host']}, started {info['started']}"
            except (OSError, ValueError, KeyError, TypeError):
                if time.monotonic() >= deadline:
                    return f"its details in {self.dir / LOCK_INFO} are not written yet"
                time.sleep(0.05)
