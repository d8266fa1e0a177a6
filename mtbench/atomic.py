"""Atomic file writes: the one place for "write a temporary file beside it, then rename".

A reader (another process, a DataLoader worker, the next run after ``kill -9``) sees either
the old file or the complete new one, never a half-written file: the content goes to a
``.<name>.<random>.tmp`` file in the target's folder and ``os.replace`` (atomic on POSIX within
one file system) puts it in place. A write that raises removes its temporary file; one killed
outright leaves a ``*.tmp`` file, which :mod:`mtbench.results` sweeps from its folders.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (created if missing) to write to; when the
    block completes, it is renamed over ``path``; when the block raises, it is removed and the
    error propagates (``path`` untouched).

    :param mode: permission bits given to the file before the rename (``mkstemp`` creates
        ``0600``), e.g. ``0o644`` for files meant to be read by others; None keeps ``0600``.
    :raises PermissionError: ``path``'s folder is not writable; names the folder and the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except PermissionError as exc:  # name the folder the user can fix, not a random temporary name
        raise PermissionError(exc.errno, f"{exc.strerror} (folder not writable, so {path.name} cannot be written)",
                              str(path.parent)) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
