"""python -m benchmarks families: the families of benchmarks/families.py over their sizes, in
f64 and f32, diffc against whichever peers are importable (PyTorch eager, JAX jit).

Per family, dtype and size: every implementation's first calls (the compile time is the first
call minus the median), then the check (diffc's value and gradient against each peer's: a
mismatch is reported loudly and not timed), then fwd and value-and-grad medians, each with the
process's CPU time against its wall time (affinity.py). The tables go to stdout (and --table),
the JSON to benchmarks/results/families.json, the plot of diffc / best peer over sizes to --plot.

The environment (threads, pinning, caches) is set by __main__ before NumPy is imported."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from benchmarks import affinity, check, environment, family_report, runner, timing
from benchmarks.families import BY_NAME, DTYPES, NAMES, QUICK_SIZES, data

RESULTS = Path(__file__).resolve().parent / "results"
PEERS = {"torch": "benchmarks.peers.torch_families", "jax": "benchmarks.peers.jax_families"}
RTOL = {"f64": 1e-6, "f32": 1e-3}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks families", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"the first {QUICK_SIZES} sizes, shorter timing")
    p.add_argument("--only", default=",".join(NAMES), help=f"families, of {', '.join(NAMES)}")
    p.add_argument("--dtype", default="f64,f32", help="f64, f32 or both (default)")
    p.add_argument("--threads", type=int, default=affinity.cores(), help="1 pins the process to one core; default all")
    p.add_argument("--plot", type=Path, help="a PNG (matplotlib) or SVG of diffc / best peer over sizes")
    p.add_argument("--table", type=Path, help="also write the Markdown tables here")
    p.add_argument("--report", type=Path, metavar="JSON", help="run nothing: the tables and plot of a saved run")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"where families.json goes (default {RESULTS})")
    args = p.parse_args(argv)
    args.only, args.dtype = _pick(p, args.only, NAMES), _pick(p, args.dtype, list(DTYPES))
    return args


def _pick(parser, text, allowed):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        parser.error(f"unknown {', '.join(unknown) or 'nothing'}; choose from {', '.join(allowed)}")
    return names


def loud(message: str):
    print(f"\n!!! {message}", file=sys.stderr, flush=True)


def peers() -> tuple[dict, dict]:
    """The importable peers' modules, and why the others are missing."""
    found, missing = {}, {}
    for name, module in PEERS.items():
        mod = importlib.import_module(module)
        ok, reason = mod.available()
        if ok:
            found[name] = mod
        else:
            missing[name] = reason
            print(f"missing peer {name}: {reason}", file=sys.stderr)
    return found, missing


class DiffcFamily:
    """A family's DFL program, compiled once per signature (each size and dtype is one)."""

    def __init__(self, source: str):
        import diffc

        self.module = diffc.compile(source)
        self.diffc = diffc

    def make(self, params, inputs):
        loss = self.module.loss
        vg = self.diffc.value_and_grad(loss, argnums=tuple(range(len(params))))
        args = [*params, *inputs]

        def value_and_grad():
            value, grads = vg(*args)
            return float(value), [np.asarray(g) for g in grads]

        return (lambda: float(loss(*args))), value_and_grad


def first_calls(fwd, vg):
    """The first call of each (compiling), and the values they give."""
    t = time.perf_counter()
    fwd_value = fwd()
    t_fwd = time.perf_counter() - t
    t = time.perf_counter()
    vg_value = vg()
    return (fwd_value, vg_value), {"fwd": t_fwd, "vg": time.perf_counter() - t}


def agreement(ours, theirs) -> float:
    """The worst relative error of L and of the gradient between two implementations, the
    gradient taken as one vector of every param's (check.relative_error's max norm): a param
    whose gradient is zero in exact arithmetic, such as the key bias of attention, holds
    rounding noise that differs between any two implementations. NaN is infinitely wrong."""
    (f1, (l1, g1)), (f2, (l2, g2)) = ours, theirs
    errors = [check.relative_error(f1, f2), check.relative_error(l1, l2)]
    if len(g1) != len(g2) or any(np.shape(a) != np.shape(b) for a, b in zip(g1, g2)):
        return float("inf")
    flat = [np.ravel(np.asarray(g, dtype=float)) for g in (*g1, *g2)]
    if flat:
        errors.append(check.relative_error(np.concatenate(flat[: len(g1)]), np.concatenate(flat[len(g1) :])))
    worst = float(np.max(errors))
    return float("inf") if np.isnan(worst) else worst


def timed(fwd, vg, budget, threads) -> dict:
    out = {}
    for phase, fn in (("fwd", fwd), ("vg", vg)):
        out[phase] = timing.measure(fn, budget)
        cpu, wall = affinity.cpu_and_wall(fn)
        out[phase]["cpu_over_wall"] = cpu / wall if wall > 0 else float("nan")
        out[phase]["warning"] = affinity.warning(cpu, wall, threads)
    return out


def run_size(fam, size, dtype, program, found, args, budget) -> dict:
    params, inputs = data(fam, size, dtype)
    row = {"family": fam.name, "dtype": dtype, "size": size, "label": fam.label(size), "impls": {}}
    made, values = {}, {}
    for impl in ["diffc", *found]:
        entry = row["impls"][impl] = {}
        try:
            fwd, vg = program.make(params, inputs) if impl == "diffc" else found[impl].make(fam.name, params, inputs)
            values[impl], entry["first_call_s"] = first_calls(fwd, vg)
            made[impl] = fwd, vg
            entry["status"] = "ok"
        except Exception as e:
            entry.update(status="error", detail=f"{type(e).__name__}: {e}")
            loud(f"ERROR {impl} {fam.name} {dtype} {row['label']}: {entry['detail']}\n{traceback.format_exc()}")
    if "diffc" in values:
        for impl in found:
            if impl not in values:
                continue
            worst = agreement(values["diffc"], values[impl])
            row["impls"][impl]["error_vs_diffc"] = worst
            if worst > RTOL[dtype]:
                for who in ("diffc", impl):
                    row["impls"][who]["status"] = "mismatch"
                where = f"{fam.name} {dtype} {row['label']}"
                loud(f"MISMATCH diffc vs {impl}, {where}: relative error {worst:.3g} > {RTOL[dtype]:g}")
    for impl, (fwd, vg) in made.items():
        entry = row["impls"][impl]
        if entry["status"] != "ok":
            continue
        print(f"time {impl} {fam.name} {dtype} {row['label']}", file=sys.stderr, flush=True)
        try:
            entry.update(timed(fwd, vg, budget, args.threads))
        except Exception as e:
            entry.update(status="error", detail=f"{type(e).__name__}: {e}")
            loud(f"ERROR {impl} {fam.name} {dtype} {row['label']} while timing: {entry['detail']}")
            continue
        first = entry["first_call_s"]
        entry["compile_s"] = {p: max(first[p] - entry[p]["median_us"] * 1e-6, 0.0) for p in ("fwd", "vg")}
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        return publish(json.loads(args.report.read_text()), args)
    found, missing = peers()
    environment.pin_libraries(args.threads)
    budget = timing.QUICK if args.quick else timing.FULL
    started = datetime.datetime.now().isoformat(timespec="seconds")
    rows = []
    for name in args.only:
        fam = BY_NAME[name]
        sizes = fam.sizes[:QUICK_SIZES] if args.quick else fam.sizes
        program = DiffcFamily(fam.source)
        for dtype in args.dtype:
            for size in sizes:
                rows.append(run_size(fam, size, dtype, program, found, args, budget))
    results = {
        "meta": {
            "started": started,
            "machine": runner.machine(),
            "versions": runner.versions(),
            "diffc_source": runner.diffc_source(),
            "threads": args.threads,
            "pinned_to_one_core": args.threads == 1,
            "cores_allowed": affinity.cores(),
            "quick": args.quick,
            "peers": list(found),
            "missing_peers": missing,
            "rtol": RTOL,
        },
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "families.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    return publish(results, args)


def publish(results: dict, args) -> int:
    """The tables on stdout (and --table), the plot (--plot); 1 if anything failed or disagreed."""
    rows = results["rows"]
    text = family_report.render(results)
    print(text)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text + "\n")
    if args.plot:
        print(f"plot: {family_report.plot(results, args.plot)}", file=sys.stderr)
    bad = [(r["family"], r["dtype"], r["label"], i) for r in rows for i, e in r["impls"].items() if e["status"] != "ok"]
    if bad:
        loud("FAILED: " + ", ".join(" ".join(b) for b in bad))
        return 1
    return 0
