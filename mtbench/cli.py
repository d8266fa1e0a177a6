"""The ``mtbench`` command: parses arguments, calls the library, sets the exit code.

Exit codes (:class:`mtbench.errors.Exit`; README, "Errors and exit codes"):

- 0 success;
- 1 a cell failed or a gate failed (``run``), a rule was violated (``compare``);
- 2 invalid input (suite, plugin, data, result file, command-line argument): one line
  ``mtbench: error: FILE[:LINE]: ...`` (a list under it when a suite has several problems);
- 3 suspect result: every cell ran and no gate failed, but a gate is ``not meaningful``
  (its metric is invalidated by a diagnostic finding) or a cell has an ``error`` finding
  (``run``; ``run --allow-suspect`` reports it and exits 0), or ``doctor`` printed an
  ``error`` finding;
- 4 the results folder is in use by another ``mtbench run`` (the message names it);
- 70 an internal error (a bug in mtbench or a plugin): one line, ``--debug`` for the traceback;
- 130 interrupted (stored results stay valid; re-run to resume).

No traceback reaches the terminal unless ``mtbench --debug COMMAND ...`` asks for it.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from mtbench.errors import Exit, MtbenchError, ResultFileError

EXIT_SUSPECT = Exit.SUSPECT


def _registry(args):
    from mtbench.plugins import get_registry
    return get_registry(load_entrypoints=not args.no_entrypoints)


def cmd_validate(args) -> int:
    from mtbench.plugins import use_registry
    from mtbench.suite import expand, load_suite
    with use_registry(_registry(args)) as registry:  # the suite's tasks and gates are checked against it
        cells = expand(load_suite(args.suite), registry)
    print(f"{args.suite}: valid, {len(cells)} cells")
    return 0


def cmd_run(args) -> int:
    from mtbench.plugins import use_registry
    with use_registry(_registry(args)) as registry:  # tasks' rules (and the table's columns) from the run's plugins
        return _run(args, registry)


def _run(args, registry) -> int:
    from mtbench.diagnostics.binding import errors
    from mtbench.report import (aggregate_table, any_gate_failed, build_frame, harness_summary, not_meaningful_gates,
                                render, write_outputs)
    from mtbench.results import ResultStore
    from mtbench.suite import expand, load_suite

    loaded = load_suite(args.suite)
    cells = expand(loaded, registry)
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
        print(f"suite {loaded.suite.name}: {len(cells)} cells -> {store.dir} ({args.executor} executor)")
        force = args.force or not args.resume
        options = {"address": args.address, "cpus_per_cell": args.cpus_per_cell, "gpus_per_cell": args.gpus_per_cell,
                   "load_entrypoints": not args.no_entrypoints}
        records = execute(cells=cells, registry=registry, store=store, force=force,
                          show_progress=not args.no_progress, options=options)
        frame = build_frame(records, loaded.suite.gates, delta_m=loaded.suite.delta_m)
        print()
        print(render(frame if args.by_seed else aggregate_table(frame, records)))
        paths = write_outputs(frame, records, store.dir, loaded.suite.name)
    print(f"\nwrote {paths['csv']}, {paths['csv_by_seed']}, {paths['json']}, {paths['md']}")
    if harness_summary(records):
        print(harness_summary(records))
    failed = [r for r in records if r["status"] != "ok"]
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
    rules = parse_rules(args.fail_on)
    frame, failures = compare(_records(args.new), _records(args.baseline), rules)
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
    from mtbench.report import aggregate_table, build_frame, render, write_report
    run = Path(args.run)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent)
    records = _records(args.run)
    if out.exists() and not out.is_dir():
        raise ResultFileError(f"--out {out}: is a file; give a folder for report.md and its plots")
    path = write_report(records, out, title=run.resolve().name, by_seed=args.by_seed)
    frame = build_frame(records, [])
    print(render(frame if args.by_seed else aggregate_table(frame, records)))
    print(f"\nwrote {path}")
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


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def cmd_plugins(args) -> int:
    from tabulate import tabulate
    reg = _registry(args)
    rows = []
    for kind, bucket in reg.entries.items():
        for key in sorted(bucket):
            e = bucket[key]
            rows.append([kind, key, e.distribution, e.version, e.plugin, e.spec.summary])
    print(tabulate(rows, headers=["kind", "name", "distribution", "version", "plugin", "summary"]))
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtbench", description="Benchmark multi-task vision models.")
    p.add_argument("--no-entrypoints", action="store_true", help="load built-in plugins only")
    p.add_argument("--debug", action="store_true", help="on an error, show its traceback (default: one line)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run (or resume) every cell of a suite and print the table")
    r.add_argument("suite")
    r.add_argument("--dry-run", action="store_true", help="print the expanded cells and stop")
    r.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip cells whose config hash already has a stored result (default: on)")
    r.add_argument("--force", action="store_true", help="re-run every cell (same as --no-resume)")
    r.add_argument("--retry-failed", action="store_true", help="on resume, re-run cells whose stored result failed")
    r.add_argument("--allow-suspect", action="store_true",
                   help="exit 0 instead of 3 when a gate is not meaningful or a cell has an error finding")
    r.add_argument("--results", default="results", help="results folder (default: ./results)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--executor", default="local",
                   help="a registered executor (mtbench plugins): local (default): in this process, one cell "
                        "after another; ray: one Ray task per cell")
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
    cmp_.set_defaults(fn=cmd_compare)

    doc = sub.add_parser("doctor", help="print every diagnostic finding of a result with its evidence "
                                        "(exit 3 when one is an error)")
    doc.add_argument("result", help="a cell JSON, a run folder (results/<suite>) or its results.json")
    doc.set_defaults(fn=cmd_doctor)

    rep = sub.add_parser("report", help="write a Markdown report with plots for a run")
    rep.add_argument("run", help="run folder (results/<suite>) or its results.json")
    rep.add_argument("--out", default=None, help="output folder (default: the run folder)")
    rep.add_argument("--by-seed", action="store_true",
                     help="print (and put first in report.md) one row per seed instead of seeds aggregated")
    rep.set_defaults(fn=cmd_report)

    v = sub.add_parser("validate", help="validate a suite (schema and plugin names) without running")
    v.add_argument("suite")
    v.set_defaults(fn=cmd_validate)

    pl = sub.add_parser("plugins", help="list every registered model, loss, strategy and dataset")
    pl.set_defaults(fn=cmd_plugins)

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
        return args.fn(args)
    except KeyboardInterrupt:
        print("\nmtbench: interrupted; finished cells are stored, re-run to resume", file=sys.stderr)
        return Exit.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place every failure becomes a line and an exit code
        if args.debug:
            traceback.print_exc()
        print(f"mtbench: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, MtbenchError) else \
            Exit.INVALID if isinstance(exc, OSError) else Exit.INTERNAL


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
