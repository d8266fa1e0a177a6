"""The checks of ``mtbench parity`` (see :mod:`mtbench.parity`) and their report: a dict that
is written as JSON, rendered as tables, and lists its ``failures``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np
from tabulate import tabulate

from mtbench.parity.gates import ImposeRounding, compare_gates, gate_pieces
from mtbench.parity.sides import Side, Targets, Transfer
from mtbench.profiling.latency import StopRule, fps_figures, latency_figures, sample_adaptive


@dataclass(frozen=True)
class Tolerances:
    """Relative-difference limits (:func:`rel_diff`): per output, per loss component, per
    parameter gradient, per step of the loss curve."""

    forward: float = 1e-4
    loss: float = 1e-4
    grad: float = 1e-3
    curve: float = 1e-2


@dataclass(frozen=True)
class Options:
    """``steps`` SGD steps (``lr``, ``momentum``) on batches of ``batch_size``; modules grouped to
    ``depth`` dotted name parts; timing series under ``timing`` after ``warmup`` untimed calls;
    a difference passes up to ``max(tol, floor_factor * float32-vs-float64 difference)``;
    ``curve_gates``: the training steps gated as the gradients are (:func:`train_lockstep`)."""

    steps: int = 50
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    depth: int = 2
    warmup: int = 3
    timing: StopRule = StopRule(ci_target=0.05, max_s=2.0, max_samples=50)
    tol: Tolerances = field(default_factory=Tolerances)
    floor_factor: float = 10.0
    curve_gates: bool = True


def rel_diff(a, b) -> float:
    """``max|a - b| / max(max|a|, max|b|)`` of two arrays (or scalars) of one shape; 0 when both are 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
    diff = float(np.abs(a - b).max(initial=0.0))
    return diff / scale if scale > 0 else 0.0


def module_of(name: str, depth: int) -> str:
    """The first ``depth`` dotted parts of a parameter name (``neck.low_ifm.0.0.weight`` -> ``neck.low_ifm``)."""
    return ".".join(name.split(".")[:depth])


def _counts(params: dict[str, tuple], depth: int) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for name, shape in params.items():
        out[module_of(name, depth)] += int(np.prod(shape))
    return out


def compare_params(pa: dict | None, pb: dict | None, depth: int) -> list[dict]:
    """Per module: parameters of A and B (None where a side has none to show) and B - A."""
    if pa is None or pb is None:
        return []
    ca, cb = _counts(pa, depth), _counts(pb, depth)
    rows = [{"module": m, "a": ca.get(m), "b": cb.get(m), "diff": cb.get(m, 0) - ca.get(m, 0)}
            for m in list(dict.fromkeys([*ca, *cb]))]
    return rows + [{"module": "(total)", "a": sum(ca.values()), "b": sum(cb.values()),
                    "diff": sum(cb.values()) - sum(ca.values())}]


def compare_outputs(oa: dict[str, np.ndarray], ob: dict[str, np.ndarray]) -> list[dict]:
    """Per output name: shapes, max-abs and relative difference (None where a side lacks it or
    the shapes differ)."""
    rows = []
    for name in dict.fromkeys([*oa, *ob]):
        a, b = oa.get(name), ob.get(name)
        row = {"output": name, "shape_a": None if a is None else list(a.shape),
               "shape_b": None if b is None else list(b.shape), "max_abs": None, "rel": None}
        if a is not None and b is not None and a.shape == b.shape:
            row.update(max_abs=float(np.abs(a.astype(np.float64) - b).max(initial=0.0)), rel=rel_diff(a, b))
        rows.append(row)
    return rows


def compare_scalars(la: dict[str, float], lb: dict[str, float]) -> list[dict]:
    """Per loss component (and assigner counter) present on either side: A, B, their difference."""
    rows = []
    for k in dict.fromkeys([*la, *lb]):
        a, b = la.get(k), lb.get(k)
        both = a is not None and b is not None
        rows.append({"component": k, "a": a, "b": b, "abs": abs(a - b) if both else None,
                     "rel": rel_diff(a, b) if both else None})
    return rows


def compare_grads(ga: dict[str, np.ndarray], gb: dict[str, np.ndarray]) -> list[dict]:
    """Per parameter: max-abs and relative difference of the gradients (None: missing or reshaped)."""
    rows = []
    for name in dict.fromkeys([*ga, *gb]):
        a, b = ga.get(name), gb.get(name)
        ok = a is not None and b is not None and a.shape == b.shape
        rows.append({"param": name, "max_abs": float(np.abs(a.astype(np.float64) - b).max(initial=0.0)) if ok
                     else None, "rel": rel_diff(a, b) if ok else None})
    return rows


def judge(rows: list[dict], key: str, tol: float, floor_rows: list[dict] | None, factor: float) -> list[dict]:
    """Mark each row ``ok`` when its ``rel`` is at most ``limit = max(tol, factor * floor_rel)``,
    ``floor_rel`` being the same row's relative difference between side A in float32 and in
    float64 (``floor_rows``, matched by ``key``; None: no floor, ``limit = tol``). A row
    without ``rel`` (missing on a side, shapes differ) is not ok."""
    floor = {r[key]: r["rel"] for r in floor_rows or []}
    for r in rows:
        f = floor.get(r[key])
        r["floor_rel"], r["limit"] = f, max(tol, factor * f) if f is not None else tol
        r["ok"] = r["rel"] is not None and r["rel"] <= r["limit"]
    return rows


def grad_modules(per: list[dict], depth: int) -> list[dict]:
    """Per module: parameters, largest max-abs difference, and the parameter furthest beyond
    (or closest to) its limit, with its ``rel``, ``floor_rel`` and ``limit``."""
    modules: dict[str, dict] = {}
    for row in per:
        name = module_of(row["param"], depth)
        m = modules.setdefault(name, {"module": name, "params": 0, "max_abs": 0.0, "ok": True, "_score": -1.0})
        m["params"] += 1
        m["ok"] &= row["ok"]
        m["max_abs"] = max(m["max_abs"], row["max_abs"] or 0.0)
        score = float("inf") if row["rel"] is None else row["rel"] / row["limit"]
        if score >= m["_score"]:
            m.update(_score=score, worst=row["param"], rel=row["rel"], floor_rel=row["floor_rel"], limit=row["limit"])
    return [{k: v for k, v in m.items() if k != "_score"} for m in modules.values()]


def compare_curves(ha: list[dict], hb: list[dict], tol: float, h64: list[dict] | None = None) -> dict:
    """Both ``total`` curves, their relative difference per step and the first step (0-based)
    beyond ``tol`` (None: none); each side's ``num_pos`` per step where it reports it; with
    ``h64`` (side A trained in float64) the same for A against it (``float64_*``): the step
    where float32 rounding alone has moved A's curve beyond ``tol``."""
    def first_beyond(rel):
        return next((i for i, r in enumerate(rel) if not r <= tol), None)

    a, b = [h["total"] for h in ha], [h["total"] for h in hb]
    rel = [rel_diff(x, y) for x, y in zip(a, b)]
    out = {"a": a, "b": b, "rel": rel, "diverged_at": first_beyond(rel)}
    if h64 is not None:
        out["float64"] = [h["total"] for h in h64]
        out["float64_rel"] = [rel_diff(x, y) for x, y in zip(a, out["float64"])]
        out["float64_diverged_at"] = first_beyond(out["float64_rel"])
    for side, h in (("a", ha), ("b", hb)):
        if all("num_pos" in s for s in h):
            out[f"num_pos_{side}"] = [s["num_pos"] for s in h]
    return out


def curve_ok(c: dict) -> bool:
    """B's curve stays within tolerance, or departs from A no earlier than A's float64 twin does."""
    d, d64 = c["diverged_at"], c.get("float64_diverged_at")
    return d is None or (d64 is not None and d >= d64)


def time_sides(sides: list[Side], x: np.ndarray, opts: Options) -> list[dict]:
    """Batch-1 latency then batch FPS of each side's :meth:`Side.forward`, series interleaved by side."""
    series = {}
    for what, inp in (("latency", x[:1]), ("fps", x)):
        for i, s in enumerate(sides):
            series[i, what] = sample_adaptive(lambda s=s, inp=inp: s.forward(inp), opts.warmup, 6, opts.timing)
    return [{"side": f"{'AB'[i]}: {s.label}", **latency_figures(series[i, "latency"]),
             **fps_figures(series[i, "fps"], len(x))} for i, s in enumerate(sides)]


def _transfer_failures(t: Transfer) -> list[str]:
    out = [f"weights: {n} given {list(g)} but B's is {list(o)}" for n, g, o in t.mismatched]
    out += [f"weights: B has no {n}" for n in t.unexpected]
    return out + [f"weights: A has no {n} (B keeps its own)" for n in t.missing]


def run_parity(a: Side, b: Side, batches: list[tuple[np.ndarray, Targets]], opts: Options) -> dict:
    """Every check of :mod:`mtbench.parity` on ``batches`` (the first one for forward, loss and
    gradients, the first ``opts.steps`` for training), judged against ``opts.tol`` and, where
    side A has a float64 twin (``a.float64()``, PyTorch sides), against ``opts.floor_factor``
    times A's own float32-vs-float64 difference (:func:`judge`, :func:`curve_ok`). Returns the
    report (JSON-ready), whose ``failures`` lists each check beyond its limit."""
    x, targets = batches[0]
    state = a.state()
    transfer = b.load(state)
    ref = a.float64() if hasattr(a, "float64") else None
    tol, k = opts.tol, opts.floor_factor
    oa = a.forward(x)
    report = {"a": a.label, "b": b.label, "options": asdict(opts), "transfer": asdict(transfer),
              "params": compare_params(a.parameters(), b.parameters(), opts.depth),
              "outputs": judge(compare_outputs(oa, b.forward(x)), "output", tol.forward,
                               ref and compare_outputs(oa, ref.forward(x)), k)}
    report["timing"] = time_sides([a, b], x, opts)
    la, lb = a.loss_and_grads(x, targets), b.loss_and_grads(x, targets)
    if la is not None and lb is not None:
        l64 = ref.loss_and_grads(x, targets) if ref else None
        report["loss"] = judge(compare_scalars(la[0], lb[0]), "component", tol.loss,
                               l64 and compare_scalars(la[0], l64[0]), k)
        report["grads"] = judge(compare_grads(la[1], lb[1]), "param", tol.grad, l64 and compare_grads(la[1], l64[1]), k)
        report["grad_modules"] = grad_modules(report["grads"], opts.depth)
        _gate_check(report, (a, la), b, ref, x, targets, opts)
        for side in (a, b, *([ref] if ref else [])):
            side.load(state)  # the loss pass moved BatchNorm statistics: start training from the same weights
        report["curves"] = train_lockstep(a, b, ref, batches[:opts.steps], opts)
    else:
        report["not_compared"] = f"{(a if la is None else b).label} runs inference only: no loss, gradients or training"
    report["failures"] = failures(report)
    return report


def _gates_of(side: Side) -> dict | None:
    return getattr(side, "gates", lambda: None)()


def train_lockstep(a: Side, b: Side, ref: Side | None, batches: list[tuple[np.ndarray, Targets]], opts: Options
                   ) -> dict:
    """One SGD step per batch on each side in turn (A, B, A's float64 twin ``ref``), from a fresh
    optimiser each, and :func:`compare_curves` of their losses. Unless ``opts.curve_gates`` is
    off, gated as the one-batch gradients are (:func:`_gate_check`): where A and the other side
    both record their activation gates (:meth:`Side.gates` after their last
    :meth:`Side.loss_and_grads`), each step's A gates go to B and to the twin as
    :class:`~mtbench.parity.gates.ImposeRounding`, which imposes A's piece on every input that
    flipped within float rounding (``opts.tol.forward``) and leaves a flip beyond it as it is.
    Adds per step, for ``b`` and ``float64``: ``imposed_*`` (flips imposed), ``beyond_*`` (flips
    not imposed), ``beyond_rel_*`` (the largest relative ``|x_a - x_b|`` among those) and
    ``unmatched_*`` (activation calls A did not record alike: not gated), and ``gated``
    (whether B was gated)."""
    others = [("b", b), *([("float64", ref)] if ref else [])]
    gated = {k: opts.curve_gates and _gates_of(a) is not None and _gates_of(s) is not None for k, s in others}
    for s in (a, *(s for _, s in others)):
        s.start_training(opts.lr, opts.momentum)
    hist: dict[str, list] = defaultdict(list)
    for x, targets in batches:
        hist["a"].append(a.train_step(x, targets))
        ga = _gates_of(a)
        for k, s in others:
            force = ImposeRounding(ga, opts.tol.forward) if gated[k] else None
            hist[k].append(s.train_step(x, targets, gates=force))
            if force is not None:
                hist[f"imposed_{k}"].append(sum(force.imposed.values()))
                hist[f"beyond_{k}"].append(sum(force.beyond.values()))
                hist[f"beyond_rel_{k}"].append(force.beyond_rel)
                hist[f"unmatched_{k}"].append(len(force.unmatched))
    out = compare_curves(hist.pop("a"), hist.pop("b"), opts.tol.curve, hist.pop("float64", None))
    return {**out, **hist, "gated": gated["b"]}


def _gate_check(report: dict, a_la: tuple, b: Side, ref: Side | None, x: np.ndarray, targets: Targets,
                opts: Options) -> None:
    """Where both sides record their activation gates (:meth:`Side.gates`): ``gates_compared``
    (modules, elements), ``gates`` (:func:`~mtbench.parity.gates.compare_gates`, the modules
    whose pieces differ) and, when some do (same modules and shapes on both sides), B's
    gradients again with A's pieces imposed on B
    (and on A's float64 twin, for the floor): ``grads_gated`` / ``grad_modules_gated``."""
    a, la = a_la
    ga, gb = _gates_of(a), _gates_of(b)
    if ga is None or gb is None:
        return
    report["gates_compared"] = {"modules": len(ga), "elements": sum(x.size for calls in ga.values() for x, _ in calls)}
    report["gates"] = compare_gates(ga, gb, opts.tol.forward)
    if not report["gates"] or any(r["rel"] is None for r in report["gates"]):
        return  # the same gates or other modules / shapes: nothing to impose
    force = gate_pieces(ga)
    lb = b.loss_and_grads(x, targets, gates=force)
    l64 = ref.loss_and_grads(x, targets, gates=force) if ref else None
    report["grads_gated"] = judge(compare_grads(la[1], lb[1]), "param", opts.tol.grad,
                                  l64 and compare_grads(la[1], l64[1]), opts.floor_factor)
    report["grad_modules_gated"] = grad_modules(report["grads_gated"], opts.depth)


def gates_explained(report: dict) -> bool:
    """Whether the gradients are judged with A's gates imposed on B: some activation gates
    differ, and every difference is float rounding at a kink (:func:`~mtbench.parity.gates.compare_gates`)."""
    return "grad_modules_gated" in report and all(r["ok"] for r in report["gates"])


def failures(report: dict) -> list[str]:
    """One line per check of ``report`` beyond its limit."""
    out = _transfer_failures(Transfer(**report["transfer"]))
    out += [f"params: {r['module']} A {r['a']} B {r['b']}" for r in report["params"]
            if r["diff"] or r["a"] is None or r["b"] is None]
    out += [f"forward: {r['output']} " + (f"rel {r['rel']:.3g} > {r['limit']:.3g}" if r["rel"] is not None
                                         else f"shape A {r['shape_a']} B {r['shape_b']}")
            for r in report["outputs"] if not r["ok"]]
    for r in report.get("loss", []):
        if not r["ok"]:
            zero = " (0 in B only)" if r["b"] == 0 and r["a"] else " (0 in A only)" if r["a"] == 0 and r["b"] else ""
            out.append(f"loss: {r['component']} A {r['a']:.6g} B {r['b']:.6g}{zero}"
                       + (f", rel {r['rel']:.3g} > {r['limit']:.3g}" if r["rel"] is not None else ""))
    out += [f"gates: {r['module']} " + (f"{r['flipped']} of {r['elements']} inputs on another piece, "
                                        f"|x_a - x_b| rel {r['rel']:.3g} > {r['limit']:.3g}" if r["rel"] is not None
                                        else "recorded on one side only, or with other calls or shapes")
            for r in report.get("gates", []) if not r["ok"]]
    gated = gates_explained(report)
    out += [f"grads{' (A gates imposed on B)' if gated else ''}: {m['module']} worst {m['worst']} "
            + (f"rel {m['rel']:.3g} > {m['limit']:.3g}" if m["rel"] is not None else "missing on a side or reshaped")
            for m in report.get("grad_modules_gated" if gated else "grad_modules", []) if not m["ok"]]
    c = report.get("curves")
    if c and any(c.get("unmatched_b", [])):
        out.append(f"curve: {sum(c['unmatched_b'])} activation calls of B not recorded alike in A, not gated")
    if c and not curve_ok(c):
        d64 = c.get("float64_diverged_at")
        out.append(f"curve: total loss differs by rel {c['rel'][c['diverged_at']]:.3g} > "
                   f"{report['options']['tol']['curve']:g} from step {c['diverged_at']}"
                   + (f" (A's float64 twin: from step {d64})" if "float64" in c else ""))
    return out


def _table(rows: list[dict], keys: list[str]) -> str:
    return tabulate([[r.get(k) for k in keys] for r in rows], headers=keys, tablefmt="github", floatfmt=".4g",
                    missingval="-")


def _render_gates(report: dict) -> list[str]:
    if "gates_compared" not in report:
        return []
    n = report["gates_compared"]
    if not report["gates"]:
        return [f"\nActivation gates: all {n['elements']} inputs of {n['modules']} ReLU/ReLU6 modules on the same "
                "piece in A and B"]
    parts = [f"\nActivation gates that differ ({n['modules']} ReLU/ReLU6 modules, {n['elements']} inputs compared; "
             "kink_dist_a: A's input's distance from the kink; rel: |x_a - x_b| over the module's largest |x|)",
             _table(report["gates"], ["module", "elements", "flipped", "kink_dist_a", "rel", "limit", "ok"])]
    if "grad_modules_gated" in report:
        parts += ["\nGradients with A's activation gates imposed on B"
                  + (" (judged instead of the table above: every differing gate is float rounding at its kink)"
                     if gates_explained(report) else " (not judged: a gate differs beyond rounding)"),
                  _table(report["grad_modules_gated"], ["module", "params", "max_abs", "worst", "rel", "floor_rel",
                                                        "limit", "ok"])]
    return parts


def render(report: dict, every: int | None = None) -> str:
    """The report as Markdown tables (curves every ``every`` steps, default ~10 rows, plus the divergence step)."""
    parts = [f"A = {report['a']}, B = {report['b']}"]
    if report["params"]:
        parts += ["\nParameters per module", _table(report["params"], ["module", "a", "b", "diff"])]
    parts += ["\nForward (eval mode, first batch; floor_rel: A float32 vs float64, limit: max(tol, "
              f"{report['options']['floor_factor']:g} x floor_rel))",
              _table(report["outputs"], ["output", "shape_a", "shape_b", "max_abs", "rel", "floor_rel", "limit", "ok"])]
    if "loss" in report:
        parts += ["\nLoss components (train mode, first batch, same targets)",
                  _table(report["loss"], ["component", "a", "b", "abs", "rel", "floor_rel", "limit", "ok"]),
                  "\nGradients after one backward of total (per module the parameter nearest or furthest beyond "
                  "its limit)",
                  _table(report["grad_modules"], ["module", "params", "max_abs", "worst", "rel", "floor_rel", "limit",
                                                  "ok"])]
        parts += _render_gates(report)
        c = report["curves"]
        n = len(c["a"])
        step = every or max(1, n // 10)
        keep = sorted({*range(0, n, step), n - 1, *([c["diverged_at"]] if c["diverged_at"] is not None else [])})
        none = [None] * n
        column = {"total_a": "a", "total_b": "b", "rel": "rel", "total_a_float64": "float64",
                  "rel_float64": "float64_rel", **{k: k for k in ("num_pos_a", "num_pos_b", "imposed_b", "beyond_b",
                                                                  "imposed_float64", "beyond_float64")}}
        rows = [{"step": i, **{k: c.get(key, none)[i] for k, key in column.items()}} for i in keep]

        def at(d):
            return "never" if d is None else f"step {d}"
        parts += [f"\nTraining: {n} SGD steps on the same batches, in lockstep"
                  + ("; at each step A's activation gates imposed on B and on A's float64 twin wherever an input "
                     "flipped within rounding (imposed_*; beyond_*: flips beyond rounding, left as they are)"
                     if c.get("gated") else " (activation gates not imposed)")
                  + f"; B departs from A (rel > {report['options']['tol']['curve']:g}) at {at(c['diverged_at'])}"
                  + (f", A's float64 twin at {at(c['float64_diverged_at'])}" if "float64" in c else ""),
                  _table(rows, ["step", "total_a", "total_b", "rel", "total_a_float64", "rel_float64", "num_pos_a",
                                "num_pos_b", *(["imposed_b", "beyond_b", "imposed_float64", "beyond_float64"]
                                               if c.get("gated") else [])])]
    else:
        parts.append(f"\n{report['not_compared']}")
    timing = [{**r, "latency_ms_ci": "[{:.4g}, {:.4g}]".format(*r["latency_ms_ci"]) if r["latency_ms_ci"] else None}
              for r in report["timing"]]
    parts += ["\nTiming of forward (numpy in and out; same method both sides, series interleaved A, B)",
              _table(timing, ["side", "latency_ms", "latency_ms_ci", "fps", "fps_batch"])]
    fails = report["failures"]
    parts.append("\n" + ("\n".join(f"FAIL {f}" for f in fails) if fails else "parity: every check within tolerance"))
    return "\n".join(parts)
