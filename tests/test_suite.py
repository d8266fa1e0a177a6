"""Suite validation (field + line in every error) and matrix expansion."""

from __future__ import annotations

import pytest

from mtbench.errors import SuiteError
from mtbench.suite import expand, load_suite
from tests.conftest import TINY_SUITE


def test_valid_suite_expands_to_cells(write_suite, registry):
    cells = expand(load_suite(write_suite()), registry)
    assert [c.axes["strategy"] for c in cells] == ["equal", "sequential"]
    assert all(len(c.hash) == 12 for c in cells)
    assert cells[0].config["losses"] == {"det": "det/fcos", "seg": "seg/ce", "cls": "cls/ce"}


def test_hash_is_stable_and_config_sensitive(write_suite, registry):
    a = expand(load_suite(write_suite()), registry)
    b = expand(load_suite(write_suite()), registry)
    assert [c.hash for c in a] == [c.hash for c in b]
    c = expand(load_suite(write_suite(TINY_SUITE.replace("steps: 2", "steps: 3"))), registry)
    assert not {x.hash for x in a} & {x.hash for x in c}


def test_typo_field_names_key_and_line(write_suite):
    path = write_suite(TINY_SUITE.replace("batch_size: 4", "bach_size: 4"))
    with pytest.raises(SuiteError) as exc:
        load_suite(path)
    msg = str(exc.value)
    line = TINY_SUITE.splitlines().index("  batch_size: 4") + 1
    assert f"{path}:{line}: fixed.bach_size: unknown field" in msg
    assert "fixed.batch_size" in msg and "Field required" in msg


def test_bad_level_and_image_size(write_suite):
    text = TINY_SUITE.replace("level: [P4]", "level: [P7]").replace("image_size: 64", "image_size: 100")
    with pytest.raises(SuiteError) as exc:
        load_suite(write_suite(text))
    assert "matrix.level.0: level 'P7' is not one of P2, P3, P4, P5" in str(exc.value)
    assert "multiple of 32" in str(exc.value)


def test_unknown_plugin_lists_known(write_suite, registry):
    loaded = load_suite(write_suite(TINY_SUITE.replace("strategy: [equal, sequential]", "strategy: [equl]")))
    with pytest.raises(SuiteError) as exc:
        expand(loaded, registry)
    msg = str(exc.value)
    assert "unknown strategy 'equl'" in msg and "Did you mean 'equal'?" in msg
    assert "Known strategies: " + ", ".join(registry.names("strategy")) in msg
    assert "suite.yaml:" in msg


def test_unknown_model_parameter(write_suite, registry):
    loaded = load_suite(write_suite(TINY_SUITE.replace("neck_channels: 16", "neck_chanels: 16")))
    with pytest.raises(SuiteError, match="unknown parameter 'neck_chanels' for model 'unified-onehead'"):
        expand(loaded, registry)


def test_bad_gate(write_suite):
    with pytest.raises(SuiteError, match="gates.0: gate 'params lt 5'"):
        load_suite(write_suite(TINY_SUITE + "gates: ['params lt 5']\n"))


def test_delta_m_convention_option(write_suite, registry):
    plain = expand(load_suite(write_suite()), registry)
    every = expand(load_suite(write_suite(TINY_SUITE + "delta_m: all\n")), registry)
    assert [c.config["delta_m"] for c in plain] == ["headline"] * 2 and every[0].config["delta_m"] == "all"
    assert [c.hash for c in plain] == [c.hash for c in every]  # a table convention: nothing retrains
    with pytest.raises(SuiteError, match="delta_m"):
        load_suite(write_suite(TINY_SUITE + "delta_m: every\n"))


def test_invalid_yaml_names_file(write_suite):
    with pytest.raises(SuiteError, match="invalid YAML"):
        load_suite(write_suite("name: [unclosed\n"))


def test_include_and_exclude(write_suite, registry):
    text = TINY_SUITE.replace("level: [P4]", "level: [P3, P4]").replace(
        "  strategy: [equal, sequential]\n",
        "  strategy: [equal, sequential]\n  include:\n    - {level: P5, strategy: equal}\n"
        "  exclude:\n    - {level: P3, strategy: sequential}\n")
    loaded = load_suite(write_suite(text))
    labels = sorted((c.axes["level"], c.axes["strategy"]) for c in expand(loaded, registry))
    assert labels == [("P3", "equal"), ("P4", "equal"), ("P4", "sequential"), ("P5", "equal")]


def test_loss_axis_by_name_and_task(write_suite, registry):
    text = TINY_SUITE.replace("  level: [P4]", "  loss: [fcos, {seg: ce}]\n  level: [P4]")
    cells = expand(load_suite(write_suite(text)), registry)
    # {seg: ce} resolves to the same losses as the defaults: one cell per strategy, not two
    assert len(cells) == 2 and {c.axes["loss"] for c in cells} == {"det/fcos"}
    bad = TINY_SUITE.replace("  level: [P4]", "  loss: [ce]\n  level: [P4]")
    with pytest.raises(SuiteError, match="ambiguous"):
        expand(load_suite(write_suite(bad)), registry)


def test_data_root_from_env(write_suite, registry, monkeypatch, tmp_path):
    monkeypatch.setenv("MTBENCH_DATA", str(tmp_path))
    cells = expand(load_suite(write_suite()), registry)
    assert cells[0].config["data_root"] == str(tmp_path.resolve())


@pytest.mark.parametrize("written, read", [("off", "off"), ("on", "on"), ("'off'", "off"), ("auto", "auto")])
def test_overfit_check_reads_yaml_booleans_as_on_off(write_suite, written, read):
    """YAML 1.1 reads an unquoted on/off as a boolean; where the schema expects on/off it means on/off."""
    loaded = load_suite(write_suite(TINY_SUITE + f"checks: {{overfit_one_batch: {written}}}\n"))
    assert loaded.suite.checks.overfit_one_batch == read


def test_anchor_without_alias_and_lines_of_keys(write_suite):
    loaded = load_suite(write_suite(TINY_SUITE.replace("fixed:", "fixed: &fixed")))
    assert loaded.suite.fixed.batch_size == 4 and loaded.lines[("fixed", "batch_size")] == 15


def test_include_adds_a_new_strategy_with_checked_params(write_suite, registry):
    text = TINY_SUITE.replace("  strategy: [equal, sequential]\n", "  strategy: [equal]\n  include:\n"
                              "    - {strategy: {name: sequential, params: {order: [cls, det, seg]}}}\n")
    cells = expand(load_suite(write_suite(text)), registry)
    assert [c.config["strategy"]["params"].get("order") for c in cells] == [None, ["cls", "det", "seg"]]


def test_every_shipped_suite_validates(data_root, monkeypatch, capsys):
    """Every file under ``suites/`` is a valid suite on the real data (as ``mtbench validate``)."""
    from mtbench.cli import main
    from tests.conftest import REPO

    suites = sorted(str(p) for p in (REPO / "suites").glob("*.yaml"))
    monkeypatch.setenv("MTBENCH_DATA", str(data_root))
    assert main(["validate", *suites]) == 0
    out = capsys.readouterr().out
    assert out.count(": valid,") == len(suites) >= 11, out
