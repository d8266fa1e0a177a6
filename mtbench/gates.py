"""Suite gates: ``"params < 8e6"``-style pass/fail checks on a cell's stored metrics.

Gates are evaluated when the table is built, from stored results, so editing a suite's
gates never needs a re-run. A gate on a metric the cell does not have (``forgetting`` of
a joint cell) is ``n/a``, neither pass nor fail.
"""

from __future__ import annotations

import operator

from mtbench.suite import GATE_RE

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def check_gates(gates: list[str], values: dict[str, float | None],
                not_meaningful: set[str] = frozenset()) -> dict[str, str]:
    """Return ``{gate: "pass" | "FAIL" | "n/a" | "not meaningful"}`` for the cell's ``values``.

    ``not_meaningful``: per-task forgetting keys (``forgetting/seg``) computed from a
    chance-level score (chance-level diagnostic); a gate on ``forgetting``/``BWT`` or on
    those keys is then "not meaningful" instead of pass/fail.
    """
    out = {}
    for gate in gates:
        m = GATE_RE.match(gate)
        v = values.get(m["metric"])
        if not_meaningful and (m["metric"] in ("forgetting", "BWT") or m["metric"] in not_meaningful):
            out[gate] = "not meaningful"
        elif v is None:
            out[gate] = "n/a"
        else:
            out[gate] = "pass" if _OPS[m["op"]](v, float(m["value"])) else "FAIL"
    return out
