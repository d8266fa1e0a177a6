"""The checks stay quiet on healthy cells: stored records of real runs of ``suites/compare.yaml``
(2 of its cells) and ``suites/regression.yaml`` (both cells), made in this repository and slimmed
(``tests/fixtures/healthy``: no env, history rounded to 5 digits).

What they may still say is true of them: ``gradient-conflict`` (informational, invalidates
nothing) and ``chance-level`` where the score really is at its chance level (the 24-step
regression cells and the sequential compare cell end with cls Top-1 at the majority-class share).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtbench.diagnostics import diagnose
from mtbench.diagnostics.binding import invalidated
from mtbench.report import build_frame, render

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "healthy").glob("*.json"))
#: what each healthy record may have invalidated, and why it is true (score vs majority-class chance)
EXPECTED = {
    "compare-66d427288aa5": set(),                       # lite0 P3 equal: Top-1 0.854, mIoU 0.575
    "compare-c1c2e86189a4": {"cls/Top-1"},               # mnv3s P4 sequential: Top-1 17/48 = chance 17/48
    "regression-8090bfca973c": {"cls/Top-1"},            # 24 steps: Top-1 0.25 < chance 0.5
    "regression-0fd52cb0c4b4": {"cls/Top-1", "seg/mIoU", "forgetting", "forgetting/seg", "BWT",
                                "forgetting_rel", "forgetting_rel/seg", "BWT/seg"},  # + seg at chance
}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_checks_are_quiet_on_healthy_records(path):
    rec = json.loads(path.read_text())
    findings = diagnose(rec)
    assert {f["check"] for f in findings} <= {"chance-level", "gradient-conflict"}, findings
    assert not [f for f in findings if f["severity"] == "error"]
    assert set(invalidated(findings)) == EXPECTED[path.stem]
    for f in findings:
        if f["check"] == "chance-level" and "value" in f["evidence"]:
            assert f["evidence"]["value"] <= f["evidence"]["chance"] + 1e-6  # true: not a false alarm
    over = rec["overfit"]
    assert over["steps"] == 4 and set(over["tasks"]) == {"det", "seg", "cls"}
    assert over["share_of_train"] <= 0.15  # the check's cost on these runs (measured on a loaded 2-core machine)


def test_healthy_compare_cell_is_unmarked_and_passes_its_gates():
    rec = json.loads((Path(__file__).parent / "fixtures" / "healthy" / "compare-66d427288aa5.json").read_text())
    rec["diagnostics"] = diagnose(rec)
    frame = build_frame([rec], ["params < 8e6", "latency_ms < 150"])
    assert frame.loc[0, "gates"] == "pass" and frame.loc[0, "flags"] == ""
    assert "†" not in render(frame)
