"""The ``mtbench`` command: parses arguments, calls the library, sets the exit code.

Exit codes (:class:`mtbench.errors.Exit`; README, "Errors and exit codes"):

- 0 success;
- 1 a cell failed or a gate failed (``run``), a rule was violated (``compare``), a check
  was beyond its tolerance (``parity``);
- 2 invalid input (suite, plugin, data, result file, command-line argument): one line
  ``mtbench: error: FILE[:LINE]: ...`` (a list under it when a suite has several problems);
- 3 suspect result: every cell ran and no gate failed, but a gate is ``not meaningful``
  (its metric is invalidated by a diagnostic finding) or a cell has an ``error`` finding
  (``run``; ``run --allow-suspect`` reports it and exits 0), or ``doctor`` printed an
  ``error`` finding;
- 4 the results folder is in use by another ``mtbench run`` (the message names it);
- 70 an internal error (a bug in mtbench or a plugin): one line, ``--debug`` for the traceback;
- 130 interrupted (Ctrl-C), 143 terminated (SIGTERM, as a scheduler or ``kill`` sends it):
  stored results stay valid, the results folder's lock is released; re-run to resume.

No traceback reaches the terminal unless ``mtbench --debug COMMAND ...`` asks for it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import traceback
from pathlib import Path

from mtbench import __version__
from mtbench.errors import Exit, MtbenchError, ResultFileError, UsageError

EXIT_SUSPECT = Exit.SUSPECT


def _registry(args, warn: bool = True):
    """The registry the command's options ask for; its warnings (plugins skipped because they
    failed to load, name clashes) printed as ``mtbench: warning: ...`` lines."""
    from mtbench.plugins import get_registry
    registry = get_registry(load_entrypoints=not args.no_entrypoints, disable=_disabled(args))
    for line in registry.warnings() if warn else ():
        print(f"mtbench: warning: {line}", file=sys.stderr)
    return registry


def _disabled(args) -> list[str]:
    """Names from ``-p no:NAME`` / ``--disable-plugin NAME``.

    :raises UsageError: a ``-p`` value without the ``no:`` prefix.
    """
    names = []
    for value in args.plugin_options:
        if not value.startswith("no:") or value == "no:":
            raise UsageError(f"-p {value}: only -p no:NAME (leave a plugin distribution out) is supported")
        names.append(value[3:])
    return names + list(args.disable_plugin)


def _load(args, registry):
    """The suite of ``args`` with its ``--set`` overrides, expanded into cells after every
    check (schema, registry, data folders, backbone names)."""
    from mtbench.backbones import check_backbones
    from mtbench.suite import expand, load_suite
    loaded = load_suite(args.suite, args.set)
    cells = expand(loaded, registry)
    check_backbones(loaded, registry)
    return loaded, cells


def cmd_validate(args) -> int:
    """Validate each suite file. One file: its error is raised as is. Several: each is
    checked and reported (``FILE: valid, N cells`` or ``FILE: invalid`` with its error
    indented under it), then one error names the invalid ones."""
    from mtbench.errors import SuiteError
    from mtbench.plugins import use_registry
    invalid = []
    with use_registry(_registry(args)) as registry:  # the suites' tasks and gates are checked against it
        for suite in args.suites:
            try:
                loaded, cells = _load(argparse.Namespace(suite=suite, set=args.set), registry)
            except MtbenchError as exc:
                if len(args.suites) == 1:
                    raise
                print(f"{suite}: invalid\n  " + str(exc).replace("\n", "\n  "))
                invalid.append(suite)
                continue
            sets = f" (with --set {', '.join(loaded.overrides)})" if loaded.overrides else ""
            print(f"{suite}: valid, {len(cells)} cells{sets}")
    if invalid:
        raise SuiteError(f"{len(invalid)} of {len(args.suites)} suites invalid: {', '.join(invalid)}")
    return 0


def cmd_run(args) -> int:
    from mtbench.plugins import use_registry
    if args.pdb and args.executor != "local":
        raise UsageError("--pdb needs --executor local (a Ray worker has no terminal to debug in)")
    with use_registry(_registry(args)) as registry:  # tasks' rules (and the table's columns) from the run's plugins
        return _run(args, registry)


def _run(args, registry) -> int:
    from mtbench.checkpoint import disk_used
    from mtbench.diagnostics.binding import errors
    from mtbench.report import (aggregate_table, any_gate_failed, build_frame, harness_summary, not_meaningful_gates,
                                render, write_outputs)
    from mtbench.results import ResultStore

    loaded, cells = _load(args, registry)
    if loaded.overrides:
        print(f"overrides: {', '.join(loaded.overrides)} (recorded in each cell's config)")
    execute = registry.get("executor", args.executor).factory  # an unknown name: PluginError, exit 2
    if args.dry_run:
        for c in cells:
            print(f"{c.hash}  {c.label}")
        print(f"{len(cells)} cells (dry run: nothing trained)")
        return 0
    store = ResultStore(args.results, loaded.suite.name, retry_failed=args.retry_failed)
    with store.locked() as stale:  # before any training: a second run on this folder stops here (exit 4)
        if stale:
            print(f"removed {len(stale)} temporary file(s) an interrupted run left: {', '.join(p.name for p in stale)}")
        migrated = store.migrate(cells)
        if migrated:
            print(f"migrated {len(migrated)} stored result(s) to content-based cell identities (data by its "
                  f"fingerprint, not its path; profile apart from training), taking their data as unchanged")
        print(f"suite {loaded.suite.name}: {len(cells)} cells -> {store.dir} ({args.executor} executor)")
        force = args.force or not args.resume
        options = {"address": args.address, "cpus_per_cell": args.cpus_per_cell, "gpus_per_cell": args.gpus_per_cell,
                   "load_entrypoints": not args.no_entrypoints, "disable": _disabled(args),
                   "fail_fast": args.fail_fast, "post_mortem": args.pdb, "keep_weights": args.keep_weights,
                   "reprofile_all": args.reprofile}
        records = execute(cells=cells, registry=registry, store=store, force=force,
                          show_progress=not args.no_progress, options=options)
        frame = build_frame(records, loaded.suite.gates, delta_m=loaded.suite.delta_m)
        print()
        print(render(frame if args.by_seed else aggregate_table(frame, records)))
        paths = write_outputs(frame, records, store.dir, loaded.suite.name)
    print(f"\nwrote {paths['csv']}, {paths['csv_by_seed']}, {paths['json']}, {paths['md']}")
    _export(args, records, store.dir, loaded.suite.name)
    print(f"weights and checkpoints: {disk_used(store.cells_dir) / 2**20:.1f} MiB under {store.cells_dir} "
          f"(--keep-weights {args.keep_weights})")
    if harness_summary(records):
        print(harness_summary(records))
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed if args.debug else ():  # the one-line reasons are above; --debug adds where they came from
        print(f"\n{r['label']}: {r['reason']}\n{r.get('traceback') or '(no traceback stored)'}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} cell(s) failed", file=sys.stderr)
    if any_gate_failed(frame):
        print("a gate failed", file=sys.stderr)
    if failed or any_gate_failed(frame):
        return 1
    moot = not_meaningful_gates(frame)
    suspect = [r["label"] for r in records if errors(r.get("diagnostics") or [])]
    for g in moot:
        print(f"gate not meaningful (its metric is invalidated by a finding): {g}", file=sys.stderr)
    for label in suspect:
        print(f"error finding in {label} (details: mtbench doctor {store.dir})", file=sys.stderr)
    if (moot or suspect) and not args.allow_suspect:
        print(f"suspect result: exit {EXIT_SUSPECT} (--allow-suspect to exit 0)", file=sys.stderr)
        return EXIT_SUSPECT
    return 0


def _records(path: str) -> list[dict]:
    """The records of a run folder, a ``results.json`` or a cell JSON (:func:`mtbench.report.load_records`).

    :raises ResultFileError: missing, unreadable or malformed (naming the file), or no record in it.
    """
    from mtbench.report import load_records
    records = load_records(Path(path))
    if not records:
        raise ResultFileError(f"{path}: no cell results in it (expected a run folder, its results.json "
                              f"or a cell JSON)")
    return records


def cmd_compare(args) -> int:
    from tabulate import tabulate

    from mtbench.compare import compare, parse_rules
    from mtbench.provenance import differences
    rules = parse_rules(args.fail_on)
    new, baseline = _records(args.new), _records(args.baseline)
    diffs = differences(new, baseline)
    if diffs and args.strict:
        raise MtbenchError(f"{args.new} and {args.baseline} come from different machines or versions "
                           f"(--strict): {'; '.join(diffs)}")
    for d in diffs:
        print(f"warning: {d}", file=sys.stderr)
    frame, failures = compare(new, baseline, rules)
    if len(frame) and not args.all:
        frame = frame[(frame["change"].fillna(1) != 0) | (frame["verdict"] != "")]
    show = frame.drop(columns=["ci"]) if len(frame) else frame
    print(tabulate(show, headers="keys", tablefmt="github", showindex=False, floatfmt=".6g", missingval="-")
          if len(frame) else "no differences")
    for f in failures:
        print(f"FAIL {f}")
    beyond = frame[frame["significant"] == "yes"] if len(frame) else frame
    timing = beyond[beyond["ci"] == "within-run"] if len(beyond) else beyond
    sig = beyond[beyond["ci"] != "within-run"] if len(beyond) else beyond
    if len(frame) and not len(sig):
        print("no significant difference: every change's 95 % CI includes 0 (or has no CI)"
              + (" (timing figures: see the next line)" if len(timing) else ""))
    elif len(sig):
        print("significant changes (95 % CI excludes 0): "
              + "; ".join(f"{r.cell} {r.metric} {r.change:+.4g}" for r in sig.itertuples()))
    if len(timing):
        print("timing changes beyond their within-run CIs (run-to-run variation of the machine is not in "
              "those CIs; re-measure before reading them as a change): "
              + "; ".join(f"{r.cell} {r.metric} {r.change:+.4g}" for r in timing.itertuples()))
    print(f"{len(failures)} failure(s) under rules: {', '.join(map(str, rules)) or '(none)'}")
    return 1 if failures else 0


def cmd_report(args) -> int:
    from tabulate import tabulate

    from mtbench.provenance import summary
    from mtbench.report import aggregate_table, build_frame, gates_of, render, write_report
    run = Path(args.run)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent)
    records = _records(args.run)
    if out.exists() and not out.is_dir():
        raise ResultFileError(f"--out {out}: is a file; give a folder for report.md and its plots")
    if args.versus:
        from mtbench.versus import parse_baseline
        parse_baseline(args.versus, records)  # a bad AXIS=VALUE fails before anything is written
    path = write_report(records, out, title=run.resolve().name, by_seed=args.by_seed, versus=args.versus)
    frame = build_frame(records, gates_of(records))
    print(render(frame if args.by_seed else aggregate_table(frame, records)))
    if args.versus:
        from mtbench import versus
        print(f"\nversus {args.versus}:\n" + versus.render(versus.versus(frame, records, args.versus), args.versus))
    print("\nprovenance:\n" + tabulate(summary(records), tablefmt="plain"))
    print(f"\nwrote {path}")
    if args.html:
        from mtbench.html_report import write_html
        print(f"wrote {write_html(records, out / 'html', title=run.resolve().name)} (opens offline)")
    _export(args, records, out, records[0].get("suite") or run.resolve().name)
    return 0


def _export(args, records: list[dict], run_dir: Path, suite: str) -> None:
    """``--tracker`` exports of the stored records (:mod:`mtbench.trackers`), if any were asked for."""
    if args.tracker:
        from mtbench.trackers import export
        for line in export(args.tracker, records, run_dir, suite):
            print(line)


def cmd_history(args) -> int:
    from mtbench.history import write_history
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ResultFileError(f"--out {out}: is a file; give a folder for the history page")
    path, found = write_history(args.runs, out)
    for f in found:
        print(f"regression at {f['commit']}: {f['cell']} {f['metric']} {f['before']:.6g} -> {f['after']:.6g} "
              f"(change {f['change']:+.4g}, 95 % CI {f['change CI']}, {f['ci']}; compared with {f['reference']})")
    print(f"{len(found)} regression(s) over {len(args.runs)} runs; wrote {path} (opens offline)")
    return 0


def cmd_doctor(args) -> int:
    from mtbench.diagnostics.checks import rediagnose
    records = _records(args.result)
    total, errors = 0, 0
    for rec in records:
        findings, stored = rediagnose(rec)  # current checks; stored findings where the history is gone
        print(f"{rec['label']} ({rec['hash']}): {rec['status']}" + ("" if rec["status"] == "ok" else f" - {rec.get('reason')}"))
        if stored:
            print("  (no loss history in this file: dead-loss and positive-ratio findings are the stored ones)")
        for f in findings:
            ev = ", ".join(f"{k}={_fmt(v)}" for k, v in f["evidence"].items())
            inv = f"\n      invalidates: {', '.join(f['invalidates'])}" if f.get("invalidates") else ""
            print(f"  [{f['severity']}] {f['check']}: {f['message']}\n      evidence: {ev}{inv}")
        if not findings:
            print("  no findings")
        total += len(findings)
        errors += sum(f["severity"] == "error" for f in findings)
    print(f"{total} finding(s) in {len(records)} cell(s), {errors} error(s)")
    return EXIT_SUSPECT if errors else 0


def cmd_parity(args) -> int:
    import json

    from mtbench.parity import Options, Tolerances, parity, render
    tol = Tolerances(args.tol_forward, args.tol_loss, args.tol_grad, args.tol_curve)
    opts = Options(steps=args.steps, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                   depth=args.depth, tol=tol, floor_factor=args.floor_factor, curve_gates=args.curve_gates)
    report = parity(args.a, args.b, _registry(args), data=args.data, image_size=args.image_size, loss=args.loss,
                    loss_params=dict(args.loss_param), seed=args.seed, opts=opts)
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        print(f"wrote {args.json}")
    return Exit.FAILED if report["failures"] else 0


def _key_value(text: str) -> tuple[str, object]:
    """An argparse type: ``key=value`` (the value a YAML scalar), as ``(key, value)``."""
    import yaml
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key, yaml.safe_load(value)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def cmd_plugins(args) -> int:
    """List every registered name; a name two plugins register is listed once per plugin and
    marked ``CLASH``; plugins that failed to load are listed after the table. Exit 2 when
    there is a clash or a broken plugin (the listing is complete either way)."""
    from tabulate import tabulate
    reg = _registry(args, warn=False)
    rows = []
    for kind, bucket in reg.entries.items():
        for key in sorted(bucket):
            for e in reg.clashes.get((kind, key), [bucket[key]]):
                mark = "CLASH" if (kind, key) in reg.clashes else ""
                rows.append([kind, key, e.distribution, e.version, e.plugin, mark, e.spec.summary])
    print(tabulate(rows, headers=["kind", "name", "distribution", "version", "plugin", "", "summary"]))
    for name in reg.disabled:
        print(f"disabled on request: {name}")
    problems = reg.warnings()
    for line in problems:
        print(f"mtbench: error: {line}", file=sys.stderr)
    return Exit.INVALID if problems else 0


def cmd_new_plugin(args) -> int:
    from mtbench.scaffold import new_plugin
    dest = new_plugin(args.name, Path(args.dir))
    print(f"wrote {dest}\nnext: cd {dest} && pip install -e '.[test]' && python -m pytest -q && mtbench run suite.yaml")
    return 0


def cmd_metrics_coco(args) -> int:
    from mtbench.metrics.coco_eval import COCO_STATS, coco_stats_files  # torch-free: starts fast
    stats, warnings = coco_stats_files(args.gt, args.dt, args.backend)
    for w in warnings:
        print(f"mtbench: warning: {w}", file=sys.stderr)
    for name, v in zip(COCO_STATS, stats):
        print(f"{name:>14s} {v:.6f}")
    return 0


def _count(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _amount(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number >= 0")
    return value


def _tracker_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracker", action="append", default=[], choices=["mlflow", "tensorboard"],
                        help="also export every cell to MLflow (MLFLOW_TRACKING_URI, else ./mlruns) or TensorBoard "
                             "(<run folder>/tensorboard); repeatable; needs pip install 'mtbench[tracking]'")


def _set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a suite field, e.g. --set fixed.epochs=2 (repeatable; VALUE is YAML; "
                             "recorded in the results)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtbench", description="Benchmark multi-task vision models.")
    p.add_argument("--no-entrypoints", action="store_true",
                   help="load built-in plugins only (no third-party distribution)")
    p.add_argument("-p", dest="plugin_options", action="append", default=[], metavar="no:NAME",
                   help="leave out the plugin distribution (or entry point) NAME, as pytest's -p no:NAME; "
                        "repeatable")
    p.add_argument("--disable-plugin", action="append", default=[], metavar="NAME", help="same as -p no:NAME")
    p.add_argument("--debug", action="store_true", help="on an error, show its traceback (default: one line)")
    p.add_argument("--version", action="version", version=f"mtbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run (or resume) every cell of a suite and print the table")
    r.add_argument("suite")
    _set_option(r)
    _tracker_option(r)
    r.add_argument("--dry-run", action="store_true", help="print the expanded cells and stop")
    r.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip cells whose config hash already has a stored result (default: on)")
    r.add_argument("--force", action="store_true", help="re-run every cell (same as --no-resume)")
    r.add_argument("--retry-failed", action="store_true", help="on resume, re-run cells whose stored result failed")
    r.add_argument("--allow-suspect", action="store_true",
                   help="exit 0 instead of 3 when a gate is not meaningful or a cell has an error finding")
    r.add_argument("--fail-fast", "-x", action="store_true", help="stop at the first failed cell")
    r.add_argument("--pdb", action="store_true",
                   help="enter the Python debugger where a failing cell raised (local executor)")
    r.add_argument("--results", default="results", help="results folder (default: ./results)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--reprofile", action="store_true",
                   help="re-profile every stored cell from its stored weights (no training); a cell whose "
                        "profile settings changed is re-profiled without it")
    r.add_argument("--keep-weights", choices=["none", "final", "all"], default="final",
                   help="after a finished cell keep: none, its final weights (weights.safetensors, default), "
                        "or those and its last checkpoint")
    r.add_argument("--executor", default="local",
                   help="a registered executor (mtbench plugins): local (default): in this process, one cell "
                        "after another; ray: a pool of long-lived Ray actors, one cell each at a time")
    r.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    r.add_argument("--cpus-per-cell", type=_count, default=None, help="Ray CPUs per cell (default: fixed.threads or 1)")
    r.add_argument("--gpus-per-cell", type=_amount, default=0.0, help="Ray GPUs per cell")
    r.add_argument("--by-seed", action="store_true",
                   help="print one row per seed instead of cells that differ only in seed aggregated")
    r.set_defaults(fn=cmd_run)

    cmp_ = sub.add_parser("compare", help="compare a run with a baseline; non-zero exit when a rule fails")
    cmp_.add_argument("new", help="run folder (results/<suite>) or its results.json")
    cmp_.add_argument("baseline", help="baseline run folder or results.json")
    cmp_.add_argument("--fail-on", default="", help="rules, e.g. 'seg/mIoU<-0.02,latency_ms>+10%%'")
    cmp_.add_argument("--all", action="store_true", help="print unchanged metrics too")
    cmp_.add_argument("--strict", action="store_true",
                      help="refuse (exit 2) when the runs come from different machines or versions "
                           "(default: warn and compare)")
    cmp_.set_defaults(fn=cmd_compare)

    doc = sub.add_parser("doctor", help="print every diagnostic finding of a result with its evidence "
                                        "(exit 3 when one is an error)")
    doc.add_argument("result", help="a cell JSON, a run folder (results/<suite>) or its results.json")
    doc.set_defaults(fn=cmd_doctor)

    rep = sub.add_parser("report", help="write a Markdown report with plots and a static HTML report for a run")
    rep.add_argument("run", help="run folder (results/<suite>) or its results.json")
    rep.add_argument("--out", default=None, help="output folder (default: the run folder)")
    rep.add_argument("--by-seed", action="store_true",
                     help="print (and put first in report.md) one row per seed instead of seeds aggregated")
    rep.add_argument("--versus", metavar="AXIS=VALUE", default=None,
                     help="also compare every row with the row of the same setting whose AXIS is VALUE "
                          "(e.g. strategy=equal), over seeds: paired t-tests, Holm-adjusted, better/worse/tie "
                          "(report.md section and versus.csv)")
    rep.add_argument("--html", action=argparse.BooleanOptionalAction, default=True,
                     help="also write the static HTML report, OUT/html/index.html + its SVG figures (default: on)")
    _tracker_option(rep)
    rep.set_defaults(fn=cmd_report)

    hist = sub.add_parser("history", help="a static page of every headline metric and latency over commits, "
                                          "regressions marked where they became significant (asv-style)")
    hist.add_argument("runs", nargs="+", metavar="RUN", help="result folders (or results.json), one per commit, "
                                                             "oldest first")
    hist.add_argument("--out", default="history", help="output folder (default: ./history)")
    hist.set_defaults(fn=cmd_history)

    v = sub.add_parser("validate", help="validate suites (schema, plugin names and parameters, data folders, "
                                        "backbone names) without running")
    v.add_argument("suites", nargs="+", metavar="suite")
    _set_option(v)
    v.set_defaults(fn=cmd_validate)

    pl = sub.add_parser("plugins", help="list every registered model, loss, strategy and dataset")
    pl.set_defaults(fn=cmd_plugins)

    np_ = sub.add_parser("new-plugin", help="write a plugin distribution (model, loss, strategy, one-cell suite, "
                                            "tests) to start from")
    np_.add_argument("name", help="plugin name, e.g. 'demo' (distribution mtbench-demo)")
    np_.add_argument("--dir", default=".", help="folder to write mtbench-NAME into (default: .)")
    np_.set_defaults(fn=cmd_new_plugin)

    par = sub.add_parser("parity", help="two implementations of one model side by side: parameters per module, "
                                        "outputs, loss, gradients, N training steps, latency (exit 1 beyond "
                                        "tolerances)")
    par.add_argument("a", help="reference: NAME[params] of a registered model, e.g. gold-yolo[n]")
    par.add_argument("b", help="NAME[params], FRAMEWORK:NAME[params] (e.g. jittor:gold-yolo[n]), runtime:onnx "
                               "or runtime:compile (side A's model)")
    par.add_argument("--data", default="synthetic", help="dataset spec, e.g. coco[path=mini_coco_det] (files "
                                                         "under $MTBENCH_DATA; default: synthetic)")
    par.add_argument("--image-size", type=_count, default=128, help="input side in pixels (default 128)")
    par.add_argument("--batch-size", type=_count, default=8)
    par.add_argument("--steps", type=_count, default=50, help="SGD steps on the same batches (default 50)")
    par.add_argument("--lr", type=_amount, default=0.01)
    par.add_argument("--momentum", type=_amount, default=0.9)
    par.add_argument("--loss", default="varifocal", help="det loss of both sides (default varifocal)")
    par.add_argument("--loss-param", action="append", default=[], type=_key_value, metavar="KEY=VALUE")
    par.add_argument("--seed", type=int, default=0, help="weights of side A and batch order")
    par.add_argument("--depth", type=_count, default=2, help="module name parts per table row (default 2)")
    par.add_argument("--tol-forward", type=_amount, default=1e-4)
    par.add_argument("--tol-loss", type=_amount, default=1e-4)
    par.add_argument("--tol-grad", type=_amount, default=1e-3)
    par.add_argument("--tol-curve", type=_amount, default=1e-2)
    par.add_argument("--floor-factor", type=_amount, default=10.0,
                     help="a difference also passes up to this many times side A's own float32-vs-float64 "
                          "difference (default 10)")
    par.add_argument("--no-curve-gates", dest="curve_gates", action="store_false",
                     help="train without imposing side A's rounding-level activation gates on side B and the "
                          "float64 twin at each step (default: imposed, as for the gradients)")
    par.add_argument("--json", default=None, help="write the full report (per parameter, every step) here")
    par.set_defaults(fn=cmd_parity)

    m = sub.add_parser("metrics", help="compute metrics of existing predictions")
    msub = m.add_subparsers(dest="metric", required=True)
    c = msub.add_parser("coco", help="the 12 COCO bbox stats of a detections JSON against a GT JSON")
    c.add_argument("--gt", required=True, help="COCO instances JSON")
    c.add_argument("--dt", required=True, help="detections JSON list (image_id, category_id, bbox xywh, score)")
    c.add_argument("--backend", default="faster-coco-eval", choices=["faster-coco-eval", "pycocotools"])
    c.set_defaults(fn=cmd_metrics_coco)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one ``mtbench`` command; return its exit code (module docstring). Every failure ends
    in one ``mtbench: error: ...`` line on stderr; the traceback only with ``--debug``."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed usage and its one-line error (exit 2), or --help (0)
        return exc.code if isinstance(exc.code, int) else Exit.INVALID
    try:
        with _sigterm_as_interrupt():
            return args.fn(args)
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"\nmtbench: {how}; finished cells are stored, re-run to resume", file=sys.stderr)
        return Exit.TERMINATED if isinstance(exc, Terminated) else Exit.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place every failure becomes a line and an exit code
        if args.debug:
            traceback.print_exc()
        print(f"mtbench: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, MtbenchError) else \
            Exit.INVALID if isinstance(exc, OSError) else Exit.INTERNAL


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C's ``KeyboardInterrupt`` is, so the same
    clean-up runs (the cell's checkpoint kept, the results folder's lock released)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While the command runs, SIGTERM raises :class:`Terminated` (only from the main thread,
    the one place a signal handler can be set; elsewhere, as when a test calls :func:`main`
    from a thread, the default stays)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(exc: Exception) -> str:
    """What the user reads: an :class:`MtbenchError`'s message; a file system error with its
    file; anything else as an internal error to report (``--debug`` shows where)."""
    if isinstance(exc, MtbenchError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
    first = (str(exc).splitlines() or [""])[0]
    return (f"internal error: {type(exc).__name__}: {first} (a bug in mtbench or a plugin; "
            f"re-run with --debug for the traceback and report it)")


if __name__ == "__main__":
    sys.exit(main())
