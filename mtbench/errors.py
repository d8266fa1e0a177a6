"""The one error hierarchy of mtbench.

Every message names the offending value, where it is (file, key path, plugin) and what
to do about it. The CLI turns an :class:`MtbenchError` into a clear message and exit code 2.
"""

from __future__ import annotations

import difflib


class MtbenchError(Exception):
    """Base class of every error mtbench raises on purpose."""


class SuiteError(MtbenchError):
    """An invalid suite file: the message names the field and, where known, the line."""


class PluginError(MtbenchError):
    """A plugin problem: an unknown name, a duplicate registration, a broken hook."""


class DataError(MtbenchError):
    """A missing or unreadable data file; the message names the file."""


class MetricError(MtbenchError):
    """A metric cannot be computed as defined (a missing score, an undeclared direction)."""


class CellFailure(MtbenchError):
    """A cell could not finish (NaN loss, divergence); recorded as a failed result."""


def did_you_mean(name: str, known: list[str]) -> str:
    """Return a ``" did you mean 'x'?"`` hint for ``name`` among ``known`` (or "")."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""
