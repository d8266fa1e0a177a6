"""``reference-figures``: a model whose parameter count or FLOPs differ from the figures it claims.

The claims come from the suite (``expect`` on an architecture entry) or from the model's
plugin (``reference_figures``, e.g. Gold-YOLO n/s from the paper); the measurement is made
at the claim's conditions (:mod:`mtbench.profiling.reference`). A relative difference above
the claim's ``tolerance`` is an ``error``: the architecture is not the one its name and
paper promise (the Gold-YOLO port in the seeds was +1.4 % off), so the cell's ``params``,
``params_m`` (and ``flops_g`` when FLOPs differ) are invalidated.
"""

from __future__ import annotations

from mtbench.diagnostics.binding import Finding

_INVALIDATES = {"params_m": ["params", "params_m"], "flops_g": ["flops_g"]}
_UNITS = {"params_m": "M params", "flops_g": "GFLOPs"}


def reference_figures(rec: dict) -> list[Finding]:
    """Every reference figure (``profile.reference``) off by more than its tolerance."""
    out = []
    for ref in (rec.get("profile") or {}).get("reference") or []:
        for fig, expected in ref["expected"].items():
            measured = (ref.get("measured") or {}).get(fig)
            if measured is None or not expected:
                continue
            rel = measured / expected - 1
            if abs(rel) > ref["tolerance"]:
                where = "at the cell's conditions" if ref["conditions"] == "cell" else f"at {ref['conditions']}"
                out.append(Finding("reference-figures", "error",
                                   f"{measured:.4g} {_UNITS[fig]} measured {where}, {rel:+.1%} off the "
                                   f"{expected:g} stated by {ref['source']} (tolerance {ref['tolerance']:.1%})",
                                   {"figure": fig, "measured": measured, "expected": expected, "relative": rel,
                                    "tolerance": ref["tolerance"], "source": ref["source"],
                                    "conditions": ref["conditions"]},
                                   _INVALIDATES[fig]))
    return out
