"""A cell's identities (mtbench.identity): data by its contents, not its path; plugins by their
version; profile apart from training; result folders of the path-based scheme migrated once."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

import mtbench.executors.local as local
import mtbench.identity as identity
from mtbench.cli import main
from mtbench.plugins import get_registry
from mtbench.results import ResultStore, cell_identity_record
from mtbench.suite import expand, load_suite
from tests import _coco_files
from tests._coco_files import suite_text, write_coco, write_voc


def _two_suites(tmp_path, root):
    """A det suite on tiny_coco and a seg suite on tiny_voc, both under ``root``."""
    det = tmp_path / "det.yaml"
    det.write_text(suite_text("det", root, "det", "coco", "{path: tiny_coco, min_box: 0}"))
    seg = tmp_path / "seg.yaml"
    seg.write_text(suite_text("seg", root, "seg", "voc", "{path: tiny_voc}"))
    return det, seg


def _fake_run(calls: list):
    """A stand-in for run_cell: records which cells ran, returns an ok record (identity logic only)."""
    def run(cell, registry, show_progress=True, **kw):
        calls.append(cell.label)
        return {"hash": cell.hash, "label": cell.label, "status": "ok", "metrics": {}, "wall_s": 0.0,
                "identity": cell_identity_record(cell)}
    return run


def _run_all(suites, results, registry, calls):
    for s in suites:
        cells = expand(load_suite(s), registry)
        local.run_local(cells, registry, ResultStore(results, load_suite(s).suite.name), echo=lambda _: None)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    write_coco(root, "tiny_coco")
    write_voc(root, "tiny_voc")
    return root


def test_copied_data_recomputes_nothing_and_an_edit_only_its_cells(tmp_path, data, registry, monkeypatch):
    det, seg = _two_suites(tmp_path, data)
    calls: list[str] = []
    monkeypatch.setattr(local, "run_cell", _fake_run(calls))
    results = tmp_path / "results"
    _run_all([det, seg], results, registry, calls)
    assert len(calls) == 2
    # the data folder copied byte for byte elsewhere, the suites pointed at the copy: 0 cells recomputed
    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(data, moved)
    det2, seg2 = (p.with_name(p.stem + "2.yaml") for p in (det, seg))
    for src, dst in ((det, det2), (seg, seg2)):
        dst.write_text(src.read_text().replace(str(data), str(moved)))
    calls.clear()
    _run_all([det2, seg2], results, registry, calls)
    assert calls == []
    # one annotation file edited: only the cells reading it (det) recomputed
    labels = moved / "tiny_coco" / "val" / "labels.json"
    doc = json.loads(labels.read_text())
    doc["annotations"][0]["bbox"][2] += 1
    labels.write_text(json.dumps(doc))
    _run_all([det2, seg2], results, registry, calls)
    assert calls == ["mnv3s|default|P4|equal|s0"] and len(list((results / "det" / "cells").glob("*.json"))) == 2


def test_data_path_is_not_in_the_training_identity(tmp_path, data, registry):
    det, _ = _two_suites(tmp_path, data)
    renamed = data.parent / "renamed"
    shutil.copytree(data / "tiny_coco", renamed / "coco_copy")
    other = tmp_path / "other.yaml"
    other.write_text(det.read_text().replace(str(data), str(renamed)).replace("tiny_coco", "coco_copy"))
    a, b = (expand(load_suite(p), registry)[0] for p in (det, other))
    assert a.hash == b.hash and a.config["data_root"] != b.config["data_root"]
    assert a.identity["data"]["det"] == b.identity["data"]["det"]


def test_plugin_version_bump_recomputes_exactly_its_cells(write_suite, registry, tmp_path, monkeypatch):
    reg = get_registry(load_entrypoints=False, extra_plugins=[_coco_files])
    entry = reg.entries["model"]["bright-box-oracle"]
    reg.entries["model"]["bright-box-oracle"] = dataclasses.replace(entry, distribution="mtbench-oracle",
                                                                    version="1.0")
    path = write_suite(suite_text("two", tmp_path, "cls", "synthetic", "{num_images: {train: 4, val: 2}}").replace(
        "\n  level:", "\n    - {name: bright-box-oracle, label: oracle, params: {backbone: mobilenetv3_small_100, "
                       "neck_channels: 16}}\n  level:"))
    calls: list[str] = []
    monkeypatch.setattr(local, "run_cell", _fake_run(calls))
    _run_all([path], tmp_path / "results", reg, calls)
    assert sorted(calls) == ["mnv3s|default|P4|equal|s0", "oracle|default|P4|equal|s0"]
    calls.clear()
    reg.entries["model"]["bright-box-oracle"] = dataclasses.replace(entry, distribution="mtbench-oracle",
                                                                    version="1.1")
    _run_all([path], tmp_path / "results", reg, calls)
    assert calls == ["oracle|default|P4|equal|s0"]


def test_editable_plugin_is_identified_by_its_source(tmp_path, monkeypatch):
    src = tmp_path / "plugin"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("X = 1\n")
    (src / "pkg" / "__pycache__").mkdir()
    (src / "pkg" / "__pycache__" / "junk.py").write_text("ignored")
    monkeypatch.setattr(identity, "_editable_dir", lambda dist: src)
    first = identity.plugin_fingerprint("mtbench-x", "0.1")
    assert first.startswith("mtbench-x==0.1+src.")
    (src / "pkg" / "__pycache__" / "junk.py").write_text("still ignored")
    identity.source_hash.cache_clear()
    assert identity.plugin_fingerprint("mtbench-x", "0.1") == first
    (src / "pkg" / "__init__.py").write_text("X = 2\n")
    identity.source_hash.cache_clear()
    assert identity.plugin_fingerprint("mtbench-x", "0.1") != first
    assert identity.plugin_fingerprint("mtbench", "0.1") == "mtbench==0.1"  # the core: version only


def test_profile_change_keeps_the_training_identity(write_suite, registry):
    from tests.conftest import TINY_SUITE
    a = expand(load_suite(write_suite()), registry)
    b = expand(load_suite(write_suite(TINY_SUITE.replace("latency_repeats: 3", "latency_repeats: 7"))), registry)
    assert [c.hash for c in a] == [c.hash for c in b]
    assert not {c.eval_hash for c in a} & {c.eval_hash for c in b}


def test_path_based_results_are_migrated_once(write_suite, tmp_path, capsys):
    suite = write_suite()
    cells = expand(load_suite(suite), get_registry(load_entrypoints=False))
    store = ResultStore(tmp_path / "results", "tiny")
    for c in cells:  # records as the scheme-1 store wrote them: named by the path-based hash, no identity
        store.write({"hash": c.legacy_hash, "label": c.label, "status": "ok", "metrics": {"cls/Top-1": 0.5}})
    args = ["--no-entrypoints", "run", str(suite), "--results", str(tmp_path / "results"), "--no-progress"]
    main(args)
    out = capsys.readouterr().out
    assert out.count("migrated 2 stored result(s)") == 1 and out.count("stored result (ok), skipped") == 2
    assert sorted(p.stem for p in store.cells_dir.glob("*.json")) == sorted(c.hash for c in cells)
    assert json.loads(store.path(cells[0].hash).read_text())["identity"]["training"] == cells[0].hash
    main(args)
    assert "migrated" not in capsys.readouterr().out


def test_fingerprint_cache_is_used(tmp_path, data):
    cache = identity.FingerprintCache(tmp_path / "cache.json")
    fp = identity.data_fingerprint(data / "tiny_voc", cache)
    cache.save()
    again = identity.FingerprintCache(tmp_path / "cache.json")
    assert identity.data_fingerprint(data / "tiny_voc", again) == fp and not again.changed  # no file read again
    (data / "tiny_voc" / "val" / "0.png").write_bytes(b"edited")
    assert identity.data_fingerprint(data / "tiny_voc", again) != fp and again.changed
