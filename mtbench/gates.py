"""Suite gates: ``"params < 8e6"``-style pass/fail checks on a cell's stored metrics.

Gates are evaluated when the table is built, from stored results, so editing a suite's
gates never needs a re-run. A gate on a metric the cell does not have (``forgetting`` of
a joint cell) is ``n/a``, neither pass nor fail; a gate on a metric a diagnostic finding
invalidates is ``not meaningful`` (``mtbench run`` then exits 3, see :mod:`mtbench.cli`).
"""

from __future__ import annotations

import operator
from typing import Collection

from mtbench.suite import GATE_RE

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def check_gates(gates: list[str], values: dict[str, float | None],
                invalidated: Collection[str] = frozenset()) -> dict[str, str]:
    """Return ``{gate: "pass" | "FAIL" | "n/a" | "not meaningful"}`` for the cell's ``values``.

    ``invalidated``: metric keys a diagnostic finding invalidates (``Finding.invalidates``,
    e.g. ``cls/Top-1`` of a dead cls loss, ``forgetting`` from a chance-level score, ``fps``
    of an implausible speed); a gate on one of them is "not meaningful", never pass or fail.
    """
    out = {}
    for gate in gates:
        m = GATE_RE.match(gate)
        v = values.get(m["metric"])
        if m["metric"] in invalidated:
            out[gate] = "not meaningful"
        elif v is None:
            out[gate] = "n/a"
        else:
            out[gate] = "pass" if _OPS[m["op"]](v, float(m["value"])) else "FAIL"
    return out
