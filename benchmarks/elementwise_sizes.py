"""python -m benchmarks elementwise: elementwise math over arrays of 1e3 to 1e7 elements, in f64
and f32, diffc beside NumPy and PyTorch eager (when importable), at one thread pinned to one
core (issue 12: "tanh and log1p over arrays as fast as exp"). Times are the calling thread's
CPU time (every library computes these in the calling thread at one thread), which a loaded
machine does not stretch as it does wall time: a call of milliseconds is often interrupted.

Each function is one diffc entry over a whole array (exp, tanh, log1p, sigmoid, erf and the
chain log1p(exp(tanh(x)) * sigmoid(x))), checked against NumPy (SciPy's erf; NumPy has none)
before it is timed. The tables give medians in µs and diffc's ns per element; --table writes
them as Markdown (docs/performance.md, "Elementwise math over sizes").
--pow times pow instead (docs/performance.md, "pow"): sum(x ** 3), sum(abs(x) ** 1.5) and
sum(x ** y), forward and value-and-grad, beside NumPy (forward only), JAX (jit) and PyTorch
eager, each checked against NumPy or JAX first. JAX's times are the process's CPU time (XLA may
run a call on a thread of its own, on the one core the process is pinned to).
This is a benchmark, not a test: it asserts nothing about speed."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

import numpy as np

import diffc
from benchmarks import environment, timing

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


# pow (issue 12): name: (DFL body of fn f(x) or f(x, y), a sum; the same for a module m of
# NumPy, jax.numpy or torch; the arguments from a normal x and y)
POWERS = {
    "x**3": ("sum(x ** 3)", lambda m, x: m.sum(x**3), lambda x, y: (x,)),
    "abs(x)**1.5": ("sum(abs(x) ** 1.5)", lambda m, x: m.sum(m.abs(x) ** 1.5), lambda x, y: (x,)),
    "x**y": ("sum(x ** y)", lambda m, x, y: m.sum(x**y), lambda x, y: (np.exp(x / 2), y)),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks elementwise", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="up to 1e6 elements, shorter timing")
    p.add_argument("--only", help=f"functions, of {', '.join(FUNCTIONS)} (--pow: of {', '.join(POWERS)})")
    p.add_argument("--pow", action="store_true", help="time pow's forms and gradients instead")
    p.add_argument("--dtype", default="f64,f32", help="f64, f32 or both (default)")
    p.add_argument("--sizes", help="element counts, comma-separated (default 1e3 to 1e7; --quick: to 1e6)")
    p.add_argument("--table", help="also write the Markdown tables here")
    args = p.parse_args(argv)
    known = POWERS if args.pow else FUNCTIONS
    args.only = args.only.split(",") if args.only else list(known)
    args.dtype = args.dtype.split(",")
    default = QUICK_SIZES if args.quick else SIZES
    args.sizes = [int(float(n)) for n in args.sizes.split(",")] if args.sizes else default
    for name in args.only:
        if name not in known:
            p.error(f"unknown function {name}; choose from {', '.join(known)}")
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


def jax_modules():
    """jax and jax.numpy with float64 on, or None."""
    try:
        jax = importlib.import_module("jax")
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax, importlib.import_module("jax.numpy")


def run_pow(args) -> list[dict]:
    """pow's rows: diffc's forward and value-and-grad (w.r.t. every argument), the peers'."""
    torch, jaxes = torch_module(), jax_modules()
    module = diffc.compile("\n".join(_pow_source(name, body) for name, (body, *_) in POWERS.items()))
    budget = timing.QUICK if args.quick else timing.FULL
    rng = np.random.default_rng(0)
    rows = []
    for dtype in args.dtype:
        for name in args.only:
            _, peer, make = POWERS[name]
            fn = module.function(_pow_name(name))
            argnums = tuple(range(len(make(0.0, 0.0))))
            vg = diffc.value_and_grad(fn, argnums)
            for n in args.sizes:
                xs = tuple(np.ascontiguousarray(a, DTYPES[dtype]) for a in make(*(2 * rng.standard_normal((2, n)))))
                row = {"dtype": dtype, "function": name, "n": n}
                want = peer(np, *xs)
                np.testing.assert_allclose(fn(*xs), want, rtol=RTOL[dtype] * 10, err_msg=f"{name} {dtype} n={n}")
                row["numpy"] = timing.measure(lambda: peer(np, *xs), budget, time.thread_time)["median_us"]
                row["diffc"] = timing.measure(lambda: fn(*xs), budget, time.thread_time)["median_us"]
                row["diffc_vg"] = timing.measure(lambda: vg(*xs), budget, time.thread_time)["median_us"]
                if jaxes is not None:
                    jax, jnp = jaxes
                    jf = jax.jit(lambda *a: peer(jnp, *a))
                    jvg = jax.jit(jax.value_and_grad(lambda *a: peer(jnp, *a), argnums))
                    jxs = [jnp.asarray(a) for a in xs]
                    (v, g), (jv, jg) = vg(*xs), jvg(*jxs)
                    for ours, theirs in zip((v, *g), (jv, *jg)):
                        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=RTOL[dtype] * 10, err_msg=name)
                    for key, call in (("jax", jf), ("jax_vg", jvg)):
                        done = lambda c=call: jax.block_until_ready(c(*jxs))  # noqa: E731
                        row[key] = timing.measure(done, budget, time.process_time)["median_us"]
                if torch is not None:
                    txs = [torch.from_numpy(a).requires_grad_() for a in xs]
                    with torch.no_grad():
                        row["torch"] = timing.measure(lambda: peer(torch, *txs), budget, time.thread_time)["median_us"]

                    def torch_vg():
                        out = peer(torch, *txs)
                        return out, torch.autograd.grad(out, txs)

                    row["torch_vg"] = timing.measure(torch_vg, budget, time.thread_time)["median_us"]
                print(f"time {dtype} {name} n={n}: diffc {row['diffc']:.1f} us", file=sys.stderr, flush=True)
                rows.append(row)
    return rows


def _pow_name(name: str) -> str:
    return "pow_" + "".join(c if c.isalnum() else "_" for c in name)


def _pow_source(name: str, body: str) -> str:
    params = "x, y" if "y" in body else "x"
    return f"fn {_pow_name(name)}({params}) = {body}"


def pow_tables(rows) -> str:
    """One Markdown table per dtype: forward and value-and-grad medians in µs, diffc's ns per
    element, and the peers' times."""

    def line(r):
        pair = lambda a, b: f"{_cell(r.get(a))} / {_cell(r.get(b))}"  # noqa: E731
        ns = f"{1000 * r['diffc'] / r['n']:.2f} / {1000 * r['diffc_vg'] / r['n']:.2f}"
        return (
            f"| {r['function']} | {r['n']:.0e} | {pair('diffc', 'diffc_vg')} | {ns} | {_cell(r.get('numpy'))} | "
            f"{pair('jax', 'jax_vg')} | {pair('torch', 'torch_vg')} |"
        )

    return _per_dtype(
        rows,
        "pow, {dtype}, CPU µs (medians, 1 thread): forward / value and gradient",
        ["function", "n", "diffc", "ns/element", "NumPy", "JAX (jit)", "PyTorch"],
        line,
    )


def _per_dtype(rows, title: str, columns: list, line) -> str:
    """A Markdown table of `line(row)` per dtype that has rows, under its `title`."""
    out = []
    for dtype in DTYPES:
        mine = [r for r in rows if r["dtype"] == dtype]
        if mine:
            out += [f"\n### {title.format(dtype=dtype)}\n", "| " + " | ".join(columns) + " |"]
            out += ["| " + " | ".join("---" for _ in columns) + " |"] + [line(r) for r in mine]
    return "\n".join(out) + "\n"


def _cell(v):
    return "—" if v is None else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def tables(rows) -> str:
    """One Markdown table per dtype: medians in µs, diffc's ns per element, the peers' times
    over diffc's (above 1: diffc is faster)."""

    def line(r):
        peers = [r.get("numpy"), r.get("torch")]
        ratios = ["—" if p is None else f"{p / r['diffc']:.2f}" for p in peers]
        ns = 1000 * r["diffc"] / r["n"]
        cells = [r["function"], f"{r['n']:.0e}", _cell(r["diffc"]), f"{ns:.2f}", *map(_cell, peers), *ratios]
        return "| " + " | ".join(cells) + " |"

    columns = ["function", "n", "diffc", "ns/element", "NumPy", "PyTorch", "NumPy / diffc", "PyTorch / diffc"]
    return _per_dtype(rows, "{dtype}, CPU µs (medians, 1 thread)", columns, line)


def main(argv=None) -> int:
    args = parse_args(argv)
    if torch_module() is not None:
        environment.pin_libraries(1)  # (in the benchmark's own process: it sets the float mode)
    text = pow_tables(run_pow(args)) if args.pow else tables(run(args))
    print(text)
    if args.table:
        with open(args.table, "w", encoding="utf-8") as f:
            f.write(text)
    return 0
