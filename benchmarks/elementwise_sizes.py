"""python -m benchmarks elementwise: elementwise math over arrays of 1e3 to 1e7 elements, in f64
and f32, diffc beside NumPy and PyTorch eager (when importable), at one thread pinned to one
core (issue 12: "tanh and log1p over arrays as fast as exp"). Times are the calling thread's
CPU time (every library computes these in the calling thread at one thread), which a loaded
machine does not stretch as it does wall time: a call of milliseconds is often interrupted.

Each function is one diffc entry over a whole array (exp, tanh, log1p, sigmoid, erf and the
chain log1p(exp(tanh(x)) * sigmoid(x))), checked against NumPy (SciPy's erf; NumPy has none)
before it is timed. The tables give medians in µs and diffc's ns per element; --table writes
them as Markdown (docs/performance.md, "Elementwise math over sizes").
This is a benchmark, not a test: it asserts nothing about speed."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

import numpy as np

import diffc
from benchmarks import timing

SIZES = [1_000, 10_000, 100_000, 1_000_000, 10_000_000]
QUICK_SIZES = SIZES[:4]
DTYPES = {"f64": np.float64, "f32": np.float32}
RTOL = {"f64": 1e-13, "f32": 1e-5}


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def _scipy_erf():
    try:
        return importlib.import_module("scipy.special").erf
    except ImportError:
        return None


# name: (DFL body of fn f(x), NumPy, PyTorch (of the torch module), the input from a normal x)
FUNCTIONS = {
    "exp": ("exp(x)", np.exp, lambda t: t.exp, lambda x: x),
    "tanh": ("tanh(x)", np.tanh, lambda t: t.tanh, lambda x: x),
    "log1p": ("log1p(x)", np.log1p, lambda t: t.log1p, lambda x: np.abs(x) - 0.5),
    "sigmoid": ("sigmoid(x)", _sigmoid, lambda t: t.sigmoid, lambda x: x),
    "erf": ("erf(x)", _scipy_erf(), lambda t: t.erf, lambda x: x),
    "chain": (
        "log1p(exp(tanh(x)) * sigmoid(x))",
        lambda x: np.log1p(np.exp(np.tanh(x)) * _sigmoid(x)),
        lambda t: lambda x: t.log1p(t.exp(t.tanh(x)) * t.sigmoid(x)),
        lambda x: x,
    ),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks elementwise", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="up to 1e6 elements, shorter timing")
    p.add_argument("--only", default=",".join(FUNCTIONS), help=f"functions, of {', '.join(FUNCTIONS)}")
    p.add_argument("--dtype", default="f64,f32", help="f64, f32 or both (default)")
    p.add_argument("--sizes", help="element counts, comma-separated (default 1e3 to 1e7; --quick: to 1e6)")
    p.add_argument("--table", help="also write the Markdown tables here")
    args = p.parse_args(argv)
    args.only, args.dtype = args.only.split(","), args.dtype.split(",")
    default = QUICK_SIZES if args.quick else SIZES
    args.sizes = [int(float(n)) for n in args.sizes.split(",")] if args.sizes else default
    for name in args.only:
        if name not in FUNCTIONS:
            p.error(f"unknown function {name}; choose from {', '.join(FUNCTIONS)}")
    for name in args.dtype:
        if name not in DTYPES:
            p.error(f"unknown dtype {name}; choose from {', '.join(DTYPES)}")
    return args


def torch_module():
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    torch.set_num_threads(1)
    return torch


def run(args) -> list[dict]:
    torch = torch_module()
    module = diffc.compile("\n".join(f"fn of_{name}(x) = {body}" for name, (body, *_) in FUNCTIONS.items()))
    budget = timing.QUICK if args.quick else timing.FULL
    rng = np.random.default_rng(0)
    rows = []
    for dtype in args.dtype:
        for name in args.only:
            _, np_fn, torch_fn, make = FUNCTIONS[name]
            ours = getattr(module, "of_" + name)
            for n in args.sizes:
                x = np.ascontiguousarray(make(2 * rng.standard_normal(n)), DTYPES[dtype])
                row = {"dtype": dtype, "function": name, "n": n}
                if np_fn is not None:
                    with np.errstate(all="ignore"):
                        want = np_fn(x)
                    np.testing.assert_allclose(ours(x), want, rtol=RTOL[dtype], atol=0, err_msg=f"{name} {dtype} n={n}")
                    row["numpy"] = timing.measure(lambda: np_fn(x), budget, time.thread_time)["median_us"]
                row["diffc"] = timing.measure(lambda: ours(x), budget, time.thread_time)["median_us"]
                if torch is not None:
                    tx, tf = torch.from_numpy(x), torch_fn(torch)
                    row["torch"] = timing.measure(lambda: tf(tx), budget, time.thread_time)["median_us"]
                print(f"time {dtype} {name} n={n}: diffc {row['diffc']:.1f} us", file=sys.stderr, flush=True)
                rows.append(row)
    return rows


def _cell(v):
    return "—" if v is None else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def tables(rows) -> str:
    """One Markdown table per dtype: medians in µs, diffc's ns per element, the peers' times
    over diffc's (above 1: diffc is faster)."""
    out = []
    for dtype in DTYPES:
        mine = [r for r in rows if r["dtype"] == dtype]
        if not mine:
            continue
        out += [
            f"\n### {dtype}, CPU µs (medians, 1 thread)\n",
            "| function | n | diffc | ns/element | NumPy | PyTorch | NumPy / diffc | PyTorch / diffc |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in mine:
            peers = [r.get("numpy"), r.get("torch")]
            ratios = ["—" if p is None else f"{p / r['diffc']:.2f}" for p in peers]
            ns = 1000 * r["diffc"] / r["n"]
            out.append(
                f"| {r['function']} | {r['n']:.0e} | {_cell(r['diffc'])} | {ns:.2f} | "
                + " | ".join(_cell(p) for p in peers)
                + " | "
                + " | ".join(ratios)
                + " |"
            )
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    text = tables(run(args))
    print(text)
    if args.table:
        with open(args.table, "w", encoding="utf-8") as f:
            f.write(text)
    return 0
