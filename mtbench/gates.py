"""Suite gates: ``"params < 8e6"``-style pass/fail checks on a cell's stored metrics.

Gates are evaluated when the table is built, from stored results, so editing a suite's
gates never needs a re-run. A gate on a metric the cell does not have (``forgetting`` of
a joint cell) is ``n/a``, neither pass nor fail.
"""

from __future__ import annotations

import operator

from mtbench.suite import GATE_RE

_FORGETTING_COLUMNS = ("forgetting", "forgetting_rel", "BWT")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def check_gates(gates: list[str], values: dict[str, float | None],
                not_meaningful: set[str] = frozenset()) -> dict[str, str]:
    """Return ``{gate: "pass" | "FAIL" | "n/a" | "not meaningful"}`` for the cell's ``values``.

    ``not_meaningful``: per-task forgetting keys (``forgetting/seg``) computed from a
    chance-level score (chance-level diagnostic); a gate on a forgetting column
    (``forgetting``, ``forgetting_rel``, ``BWT``) or on that task's keys
    (``forgetting/seg``, ``forgetting_rel/seg``, ``BWT/seg``) is then "not meaningful"
    instead of pass/fail.
    """
    moot = set()
    for key in not_meaningful:
        task = key.rpartition("/")[2]
        moot |= {key, *(f"{col}/{task}" for col in _FORGETTING_COLUMNS)}
    if not_meaningful:
        moot |= set(_FORGETTING_COLUMNS)
    out = {}
    for gate in gates:
        m = GATE_RE.match(gate)
        v = values.get(m["metric"])
        if m["metric"] in moot:
            out[gate] = "not meaningful"
        elif v is None:
            out[gate] = "n/a"
        else:
            out[gate] = "pass" if _OPS[m["op"]](v, float(m["value"])) else "FAIL"
    return out
