"""A cell's two identities, and the fingerprints of what it reads.

- **Training identity** (``Cell.hash``, 12 hex digits, names the cell's record and folder):
  everything that changes the trained weights. The resolved config without the sections that
  only change how results are measured or summarised (``profile``, ``checks``,
  ``uncertainty``, ``delta_m``, ``expect``), without ``fixed.checkpoint_every`` (a resumed
  cell trains as an uninterrupted one), without where the data lies (``data_root``, a data
  set's ``path``) and without options added later while at their default (:data:`NEW_DEFAULTS`:
  ``fixed.precision: fp32``, ``fixed.channels_last: false``, ``fixed.augment`` the flip of
  earlier versions, ``fixed.ema`` unset; bf16, channels-last, another augmentation or an EMA is
  another identity), plus

  - the **data fingerprint** of every data set the cell reads (:func:`data_fingerprint`): the
    relative path, size and sha256 of every file under the data set's folder, so copying or
    moving the data keeps the identity and editing one file changes it;
  - the **plugins** the cell uses (its data sets, model, losses, strategy): each one's
    distribution and version, and for an editable install a hash of its source files
    (:func:`plugin_fingerprint`), so a changed plugin retrains its cells and only them.

- **Evaluation identity** (``Cell.eval_hash``): the training identity plus the ``profile``
  section (``cudnn_benchmark`` and ``runtime_metrics`` only when on, ``calibration_images``
  only when not 32): a cell whose training identity is stored but whose evaluation identity differs is
  re-evaluated and re-profiled from its stored weights, never retrained.

Before this scheme (records without ``identity``) one hash covered the whole config,
data path and ``profile`` included (:func:`legacy_hash`); the result store migrates such a
record once (:meth:`mtbench.results.ResultStore.resume`).

File hashes are cached (:class:`FingerprintCache`) by absolute path, size and modification
time in ``$MTBENCH_CACHE`` (default: the user cache folder, ``platformdirs``), so a data set is
read once per machine and place, not once per run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import platformdirs

from mtbench.data.augment import DEFAULT as AUGMENT_DEFAULT

SCHEME = 2  # identity scheme stored with each record; 1 = legacy_hash
# never in any identity: how results are summarised ("overrides" records the --set texts, whose effect
# is in the resolved sections; "gates" lets a report judge stored cells as the run did)
UNHASHED = ("checks", "uncertainty", "delta_m", "expect", "overrides", "gates")
EVALUATION_ONLY = ("profile",)  # in the evaluation identity only: how a trained model is measured
LOCATION = ("data_root",)  # where the data lies: replaced by its fingerprint
#: ``fixed.*`` keys of how images are loaded (cache, workers), which give the same items: in no identity
LOADER_KEYS = ("cache", "cache_ram_gib", "num_workers", "pin_memory", "persistent_workers")
RESUMING = ("checkpoint_every",)  # fixed.* keys that change how training survives, not what it trains
#: options added after records were stored, each left out of its identity at its default (the value every
#: earlier record trained or was profiled with), so those records keep their hashes; any other value is in
NEW_DEFAULTS = {"fixed": {"precision": "fp32", "channels_last": False, "augment": AUGMENT_DEFAULT, "ema": None},
                "profile": {"cudnn_benchmark": False, "runtime_metrics": False, "calibration_images": 32}}
SOURCE_SUFFIXES = (".py", ".toml", ".cfg", ".json", ".yaml", ".yml", ".txt")  # an editable plugin's source files


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _at_default(section: str, values: dict) -> dict:
    """``values`` (the ``section`` of a config) without the :data:`NEW_DEFAULTS` keys at their default."""
    defaults = NEW_DEFAULTS.get(section, {})
    return {k: v for k, v in values.items() if not (k in defaults and v == defaults[k])}


def _sections(config: dict, keys) -> dict:
    """The ``keys`` sections of ``config`` (None where absent), each without its
    :data:`NEW_DEFAULTS` keys at their default."""
    return {k: _at_default(k, config[k]) if isinstance(config.get(k), dict) else config.get(k) for k in keys}


def _without_loader_keys(config: dict, mark_workers: bool) -> dict:
    """``config`` with ``fixed``'s loader keys (and ``RESUMING`` keys, and :data:`NEW_DEFAULTS`
    keys at their default) left out; with
    ``mark_workers``, a cell that sets ``num_workers`` (per-item seeded augmentation, whatever
    the count) is told apart from one that does not (the global-generator flips of a single
    process; under the key ``augment``, beside a ``fixed.augment`` that is not the default)."""
    if "fixed" not in config:
        return config
    fixed = {k: v for k, v in _at_default("fixed", config["fixed"]).items() if k not in LOADER_KEYS + RESUMING}
    if mark_workers and config["fixed"].get("num_workers") is not None:
        fixed["augment"] = {**fixed["augment"], "seeds": "per-item"} if "augment" in fixed else "per-item seeds"
    return {**config, "fixed": fixed}


def legacy_hash(config: dict) -> str:
    """The scheme-1 cell hash: sha256 of the config without ``UNHASHED`` sections (12 hex)
    (nor the loader and checkpoint keys, which scheme 1 did not have)."""
    return _digest({k: v for k, v in _without_loader_keys(config, False).items() if k not in UNHASHED})[:12]


def _trained(config: dict, identity: dict) -> dict:
    """``config`` without measurement sections, data location (a task's ``path`` where
    ``identity`` has its fingerprint) and loader / resuming keys: what changes the weights."""
    drop = set(UNHASHED) | set(EVALUATION_ONLY) | set(LOCATION)
    trained = {k: v for k, v in _without_loader_keys(config, True).items() if k not in drop}
    trained["tasks"] = {t: {**td, "params": {k: v for k, v in td.get("params", {}).items()
                                             if not (k == "path" and t in identity.get("data", {}))}}
                        for t, td in config.get("tasks", {}).items()}
    return trained


def training_hash(config: dict, identity: dict) -> str:
    """The training identity (12 hex): ``config`` without measurement sections or data location,
    plus ``identity`` (``{"data": {task: fingerprint}, "plugins": {...}}``)."""
    return _digest({"config": _trained(config, identity), "identity": identity})[:12]


def seed_group(config: dict, identity: dict | None = None) -> str:
    """What a cell is apart from its seed (64 hex): the cells of one group are seeds of one cell,
    aggregated into one table row (:mod:`mtbench.aggregate`) and paired in ``versus``.

    Its training identity without ``seed`` (so neither the ``--set`` texts a seed was run with,
    ``overrides``, nor where the data lay, how images were loaded or checkpoints kept: seeds run
    by separate commands, or on another machine, still group), plus every section that changes
    how it is measured or judged (``profile``, ``checks``, ``uncertainty``, ``delta_m``,
    ``expect``, ``gates``). ``identity``: the record's stored ``data`` fingerprints and
    ``plugins``, where it has them (a record without them is grouped by its config alone).
    """
    ident = {k: v for k, v in (identity or {}).items() if k in ("data", "plugins")}
    trained = _trained({k: v for k, v in config.items() if k != "seed"}, ident)
    measured = _sections(config, [k for k in (*UNHASHED, *EVALUATION_ONLY) if k != "overrides"])
    return _digest({"config": trained, "identity": ident, "measured": measured})


def evaluation_hash(train_hash: str, config: dict) -> str:
    """The evaluation/profile identity (12 hex): the training identity plus ``profile``."""
    return _digest({"training": train_hash, **_sections(config, EVALUATION_ONLY)})[:12]


# --- data fingerprints ----------------------------------------------------------------------

def cache_path() -> Path:
    """Where file hashes are cached: ``$MTBENCH_CACHE/fingerprints.json`` or the user cache folder."""
    base = os.environ.get("MTBENCH_CACHE") or platformdirs.user_cache_dir("mtbench")
    return Path(base) / "fingerprints.json"


class FingerprintCache:
    """sha256 of files keyed by absolute path, size and mtime (ns); saved atomically on :meth:`save`."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_path()
        try:
            self.entries: dict[str, list] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def sha256(self, file: Path, stat: os.stat_result) -> str:
        key, stamp = str(file), [stat.st_size, stat.st_mtime_ns]
        hit = self.entries.get(key)
        if isinstance(hit, list) and hit[:2] == stamp:
            return hit[2]
        h = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self.entries[key] = stamp + [h.hexdigest()]
        self.changed = True
        return h.hexdigest()

    def save(self) -> None:
        """Write the cache if it changed; a cache that cannot be written is only slower next time."""
        if not self.changed:
            return
        from mtbench.results import write_json_atomic
        try:
            write_json_atomic(self.path, self.entries)
            self.changed = False
        except OSError:
            pass


def data_fingerprint(folder: Path, cache: FingerprintCache) -> str:
    """sha256 (16 hex) of a data set's folder: every file under it (hidden ones excepted) as its
    path relative to ``folder``, its size and the sha256 of its contents, in sorted order, and
    every empty folder under it as its relative path (an ImageFolder class folder is a class,
    images or not). The folder's own location is not part of it.

    :raises OSError: a file that cannot be read.
    """
    folder = Path(folder).resolve()
    lines = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files = sorted(n for n in filenames if not n.startswith("."))
        if not files and not dirnames and Path(dirpath) != folder:
            lines.append(f"{Path(dirpath).relative_to(folder).as_posix()}/")
        for name in files:
            file = Path(dirpath, name)
            st = file.stat()
            lines.append(f"{file.relative_to(folder).as_posix()}\t{st.st_size}\t{cache.sha256(file, st)}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]


# --- plugin fingerprints --------------------------------------------------------------------

def _editable_dir(distribution: str) -> Path | None:
    """The project folder of an editable install of ``distribution`` (PEP 610 ``direct_url.json``)."""
    import importlib.metadata
    try:
        text = importlib.metadata.distribution(distribution).read_text("direct_url.json")
        info = json.loads(text or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
    if not (info.get("dir_info") or {}).get("editable") or not info.get("url", "").startswith("file:"):
        return None
    folder = Path(unquote(urlparse(info["url"]).path))
    return folder if folder.is_dir() else None


@functools.lru_cache(maxsize=None)
def source_hash(folder: Path) -> str:
    """sha256 (16 hex) of an editable project's source files (``SOURCE_SUFFIXES``; hidden folders,
    ``build``, ``*.egg-info`` and ``__pycache__`` left out): relative path and contents."""
    h = hashlib.sha256()
    for file in sorted(folder.rglob("*")):
        rel = file.relative_to(folder)
        if (file.suffix in SOURCE_SUFFIXES and file.is_file()
                and not any(p.startswith(".") or p in ("build", "__pycache__") or p.endswith(".egg-info")
                            for p in rel.parts[:-1])):
            h.update(rel.as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def plugin_fingerprint(distribution: str, version: str, core: str = "mtbench") -> str:
    """``distribution==version``, plus ``+src.<hash>`` for an editable install of a third-party
    distribution (:func:`source_hash`). The core (``core``: built-in plugins) is named by its
    version only: editing mtbench itself does not retrain every stored cell."""
    name = f"{distribution}=={version}"
    if distribution == core:
        return name
    folder = _editable_dir(distribution)
    return f"{name}+src.{source_hash(folder)}" if folder else name
