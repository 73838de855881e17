"""diffc on one thread and on all cores, over sizes (issue 12, "Every core"): an elementwise
chain, a reduction of rows, a sum to one number, a `map` over a batch with temporaries in each
row, a transposing copy, and the value and gradient of a wide MLP (OpenBLAS's products).
Each size runs the same compiled code at each thread count (diffc.set_threads), checks that
the results are identical, and prints the medians and the speed-up.

Run: python benchmarks/threads.py [--quick] [--threads N]
A benchmark, not a test: on a shared machine the speed-up says as much about the other load
as about diffc (it also prints the CPU time of the process against its wall time)."""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import diffc

SOURCE = """
fn chain(x) = exp(tanh(x)) * sigmoid(x) + log1p(x * x)
fn rows(x) = sum(exp(x), axis=1)
fn total(x) = sum(exp(tanh(x)) * x)
fn softmax_rows(x) = map(fn(r) { let e = exp(r - max(r)); e / sum(e) }, x)
fn flip(x) = transpose(x) * 2.0
fn mlp(p, x) = sum(tanh(tanh(x @ p.w1) @ p.w2) ** 2)
"""


def cases(quick: bool):
    """(family, size label, function, arguments)."""
    rng = np.random.default_rng(0)
    sizes = [10**5, 10**6] if quick else [10**4, 10**5, 10**6, 10**7]
    for n in sizes:
        yield "elementwise chain", f"n={n:.0e}", "chain", (rng.standard_normal(n),)
    for n in sizes:
        yield "sum to one number", f"n={n:.0e}", "total", (rng.standard_normal(n),)
    for r in [64, 512] if quick else [64, 512, 4096]:
        x = rng.standard_normal((r, 1000))
        yield "row sums", f"{r}x1000", "rows", (x,)
        yield "map: softmax of rows", f"{r}x1000", "softmax_rows", (x,)
    for n in [256, 1024] if quick else [256, 1024, 2048]:
        yield "transposing copy", f"{n}x{n}", "flip", (rng.standard_normal((n, n)),)
    for width, batch in [(256, 64), (1024, 256)] if quick else [(256, 64), (1024, 32), (1024, 256)]:
        p = {"w1": rng.standard_normal((784, width)) * 0.03, "w2": rng.standard_normal((width, width)) * 0.03}
        yield "MLP value_and_grad", f"w={width} b={batch}", "mlp_vg", (p, rng.standard_normal((batch, 784)))


def median_us(fn, args, budget: float) -> float:
    fn(*args)
    times, spent = [], 0.0
    while spent < budget or len(times) < 5:
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
        spent += times[-1]
    return float(np.median(times)) * 1e6


def _flat(v):
    if isinstance(v, dict):
        return [a for k in sorted(v) for a in _flat(v[k])]
    if isinstance(v, tuple | list):
        return [a for x in v for a in _flat(x)]
    return [np.asarray(v)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, smaller sizes")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="all cores by default")
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of timing per case and count")
    args = ap.parse_args(argv)
    m = diffc.compile(SOURCE)
    fns = {name: getattr(m, name) for name in ("chain", "rows", "total", "softmax_rows", "flip")}
    fns["mlp_vg"] = diffc.value_and_grad(m.mlp)
    print(f"diffc {diffc.__version__}, 1 thread against {args.threads}; medians in us")
    print(f"| family | size | 1 thread | {args.threads} threads | speed-up |")
    print("|---|---|---|---|---|")
    for family, size, name, fargs in cases(args.quick):
        fn = fns[name]
        results, times = [], []
        for n in (1, args.threads):
            diffc.set_threads(n)
            results.append(_flat(fn(*fargs)))
            times.append(median_us(fn, fargs, args.budget))
        same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(*results))
        note = "" if same else " (results differ!)"
        print(f"| {family} | {size} | {times[0]:.0f} | {times[1]:.0f} | {times[0] / times[1]:.2f}{note} |")
    wall, cpu = time.perf_counter(), time.process_time()
    diffc.set_threads(args.threads)
    x = np.random.default_rng(1).standard_normal(10**7)
    for _ in range(5):
        fns["chain"](x)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"\nthe 1e7 chain five times on {args.threads} threads: {cpu:.2f} s of CPU in {wall:.2f} s")


if __name__ == "__main__":
    main()
