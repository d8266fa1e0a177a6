"""Suite gates: ``"params < 8e6"``-style pass/fail checks on a cell's stored metrics.

Gates are evaluated when the table is built, from stored results, so editing a suite's
gates never needs a re-run. A gate on a metric the cell does not have (``forgetting`` of
a joint cell) is ``n/a``, neither pass nor fail.
"""

from __future__ import annotations

import operator

from mtbench.suite import GATE_RE

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def check_gates(gates: list[str], values: dict[str, float | None]) -> dict[str, str]:
    """Return ``{gate: "pass" | "FAIL" | "n/a"}`` for the cell's ``values``."""
    out = {}
    for gate in gates:
        m = GATE_RE.match(gate)
        v = values.get(m["metric"])
        if v is None:
            out[gate] = "n/a"
        else:
            out[gate] = "pass" if _OPS[m["op"]](v, float(m["value"])) else "FAIL"
    return out
