"""The one error hierarchy of mtbench, and the exit codes of the ``mtbench`` command.

Every message names the offending value, where it is (file, line, key path, plugin) and what
to do about it. The CLI prints an :class:`MtbenchError` as one line (``mtbench: error: ...``;
a multi-line message, e.g. several suite errors, keeps its list under that line) and exits
with the error's :attr:`MtbenchError.exit_code`; a traceback only with ``mtbench --debug``.
"""

from __future__ import annotations

import difflib
from enum import IntEnum


class Exit(IntEnum):
    """The exit codes of ``mtbench`` (README, "Errors and exit codes")."""

    OK = 0
    FAILED = 1  # a cell or a gate failed (run), a rule was violated (compare)
    INVALID = 2  # invalid input: suite, plugin, data, result file, command-line argument
    SUSPECT = 3  # a gate not meaningful / an error finding (run, doctor)
    LOCKED = 4  # another run holds the results folder
    INTERNAL = 70  # a bug in mtbench or a plugin (EX_SOFTWARE): the message says to re-run with --debug
    INTERRUPTED = 130  # Ctrl-C; stored results stay valid
    TERMINATED = 143  # SIGTERM (128 + 15), as a shell reports it; stored results stay valid


#: at most this many error lines are printed for one input (then "... and N more")
MAX_ERROR_LINES = 20


class MtbenchError(Exception):
    """Base class of every error mtbench raises on purpose (exit 2, invalid input)."""

    exit_code: int = Exit.INVALID


class SuiteError(MtbenchError):
    """An invalid suite file: the message names the field and, where known, the line."""


class PluginError(MtbenchError):
    """A plugin problem: an unknown name, a duplicate registration, a broken hook."""


class DataError(MtbenchError):
    """A missing or unreadable data file; the message names the file."""


class ResultFileError(MtbenchError):
    """A missing, unreadable or malformed result file (cell JSON, ``results.json``) or results
    folder; the message names the file and, where known, the line or key."""


class RunLocked(MtbenchError):
    """Another ``mtbench run`` holds the lock of the results folder (exit 4); the message says
    which process (pid, host, start time)."""

    exit_code = Exit.LOCKED


class MetricError(MtbenchError):
    """A metric cannot be computed as defined (a missing score, an undeclared direction)."""


class UsageError(MtbenchError):
    """A command-line option the command cannot take (an option value of the wrong form, two
    options that exclude each other)."""


class RuntimeUnavailable(MtbenchError):
    """A deployment runtime cannot run on this machine (no CUDA device, its library not
    installed): the cell records ``{"unavailable": reason}`` for it and goes on."""


class CellFailure(MtbenchError):
    """A cell could not finish (NaN loss, divergence); recorded as a failed result."""


def did_you_mean(name: str, known: list[str]) -> str:
    """Return a ``" did you mean 'x'?"`` hint for ``name`` among ``known`` (or "")."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def fail(header: str, problems: list[str], error: type[MtbenchError] = MtbenchError) -> None:
    """Raise ``error`` for ``problems`` (each a located sentence): one line for one problem,
    else ``header`` and at most :data:`MAX_ERROR_LINES` of them, indented; nothing for none."""
    if len(problems) == 1:
        raise error(problems[0].strip())
    if problems:
        raise error(f"{header}\n" + "\n".join(bounded([f"  {p.strip()}" for p in problems])))


def bounded(lines: list[str], limit: int = MAX_ERROR_LINES) -> list[str]:
    """The first ``limit`` of ``lines`` plus ``"... and N more"`` when there are more (a
    13 MB file of unknown keys must not print half a million lines)."""
    return lines if len(lines) <= limit else [*lines[:limit], f"  ... and {len(lines) - limit} more"]
